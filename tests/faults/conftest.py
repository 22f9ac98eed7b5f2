"""Fault tests: a private PostgreSQL cluster that a test may stop and start at will.

`initdb` and `pg_ctl` from the installed PostgreSQL build a throwaway cluster in a temporary
folder, on a spare loopback port, with trust authentication and fsync off (nothing in it needs to
survive a power cut). Stopping it harms nothing else: the shared server at 5432 is never touched.

The cluster is shared by the whole session (initdb costs a second or two); each test takes a
database of its own in it (`PrivateCluster.new_database`). Without PostgreSQL's binaries the tests
that need the cluster are skipped, except on CI (CI=true), where that is a failure: a skipped fault
test proves nothing.

Tests that bring their own servers and databases need not run twice: `only_in_sqlite_run` keeps
them to the one `make test` process that runs without IDP_TEST_DATABASE_URL (scripts/test.sh).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from idp.db.migrate import upgrade
from idp.services import Services
from idp.settings import Settings
from tests.server_process import ServerProcess, free_port

ON_CI = os.environ.get("CI") == "true"

only_in_sqlite_run = pytest.mark.skipif(
    bool(os.environ.get("IDP_TEST_DATABASE_URL")),
    reason="brings its own servers and databases: runs once, in the SQLite run of make test")


def _bindir() -> Path | None:
    """Where initdb and pg_ctl are: IDP_TEST_PG_BINDIR, else PATH, else the newest Debian one."""
    candidates = []
    if os.environ.get("IDP_TEST_PG_BINDIR"):
        candidates.append(Path(os.environ["IDP_TEST_PG_BINDIR"]))
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                    key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
    candidates += reversed(debian)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _run_as() -> tuple[dict, str | None]:
    """subprocess arguments that run PostgreSQL's programs as the `postgres` system account when
    the tests run as root (containers, CI): PostgreSQL refuses to run as root. Popen's own `user`
    and `group`, not a preexec_fn, which is unsafe in a process with threads."""
    if os.geteuid() != 0:
        return {}, None
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        return {}, "running as root and there is no `postgres` account to run initdb as"
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}, None


@dataclass
class PrivateCluster:
    bindir: Path
    data: Path
    port: int
    run_as: dict = field(default_factory=dict)  # see _run_as

    @property
    def log(self) -> Path:
        return self.data.parent / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str, timeout: float = 30) -> None:
        done = subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
                              capture_output=True, text=True, timeout=timeout, **self.run_as)
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl {args[0]} failed: {done.stdout}{done.stderr}\n{tail}")

    def start(self) -> None:
        # The socket goes into the cluster's own folder, not /var/run/postgresql (another owner).
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._pg_ctl("start", "-w", "-t", "20", "-l", str(self.log), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-w", "-t", "20", "-m", mode)

    def running(self) -> bool:
        status = subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
                                capture_output=True, timeout=10, **self.run_as)
        return status.returncode == 0

    def new_database(self, name: str) -> str:
        """A fresh, empty database in the cluster; its SQLAlchemy URL."""
        async def create() -> None:
            connection = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                               database="postgres", timeout=10)
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        asyncio.run(create())
        return self.url(name)


def _unavailable(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"fault tests cannot be skipped on CI (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def private_postgres():
    """A running private cluster; stopped (immediately) and deleted at the end of the session,
    whatever happened to the tests. A test that stops it starts it again before it ends."""
    bindir = _bindir()
    if bindir is None:
        _unavailable("PostgreSQL's initdb and pg_ctl were not found (set IDP_TEST_PG_BINDIR)")
    run_as, problem = _run_as()
    if problem:
        _unavailable(problem)
    folder = Path(tempfile.mkdtemp(prefix="idp-faults-pg-"))
    if run_as:
        os.chown(folder, run_as["user"], run_as["group"])
    cluster = PrivateCluster(bindir, folder / "data", free_port(), run_as)
    try:
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust",
             "--no-sync", "--encoding=UTF8", "--locale=C"],
            capture_output=True, text=True, timeout=120, **run_as)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
        cluster.start()
        yield cluster
    finally:
        if cluster.data.exists() and cluster.running():
            try:
                cluster.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass  # the folder goes anyway; a postmaster without its folder exits on its own
        shutil.rmtree(folder, ignore_errors=True)


def services_of(server: ServerProcess, **overrides) -> Services:
    """The project's services on a server process's database and keys, for a test's setup and
    for looking at the rows afterwards; everything under test goes to the server over HTTP.
    `overrides` are Settings fields. The caller closes them (`await services.close()`)."""
    env = server.env
    return Services(Settings(**{
        "issuer": server.url, "database_url": env["IDP_DATABASE_URL"], "dev_key_dir": Path(env["IDP_DEV_KEY_DIR"]),
        "argon2_memory_kib": int(env["IDP_ARGON2_MEMORY_KIB"]), "argon2_time_cost": int(env["IDP_ARGON2_TIME_COST"]),
        "courier_in_process": False, "webhooks_in_process": False, **overrides}))


async def migrated(server: ServerProcess) -> Services:
    """What `idp migrate` does, done in this process, where idp is imported already (the command
    costs a second or two of CPU more); the services on the migrated database, for the setup."""
    await asyncio.to_thread(upgrade, server.env["IDP_DATABASE_URL"])
    services = services_of(server)
    await services.db.run(services.keyring.ensure_keys)
    return services


def started(server: ServerProcess) -> ServerProcess:
    """`server` on its migrated database. The migrations run in this process, not through
    `idp migrate` (tested in test_cli.py): a second and a half less per server."""
    upgrade(server.env["IDP_DATABASE_URL"])
    return server.start(migrate=False)
