"""A real server process: `idp migrate`, then uvicorn on a spare loopback port, as production
runs it. For tests that need a restart (webhook outbox), an outside tool (schemathesis) or
several nodes on one database (`start(migrate=False)` for the second; `scratch_database`)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`env` holds IDP_* settings; the database defaults to a SQLite file in `folder`."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.env = {
            **os.environ,
            "IDP_ISSUER": self.url,
            "IDP_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'idp.db'}",
            "IDP_DEV_KEY_DIR": str(folder / "keys"),
            "IDP_DEV_OUTBOX_FILE": str(folder / "outbox.log"),
            "IDP_ARGON2_MEMORY_KIB": "1024", "IDP_ARGON2_TIME_COST": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def idp(self, *args: str) -> subprocess.CompletedProcess:
        """Run the `idp` command against this server's database and keys."""
        return subprocess.run([str(BIN / "idp"), *args], env=self.env, cwd=self.folder,
                              capture_output=True, text=True, timeout=120, check=True)

    def start(self, *, migrate: bool = True) -> ServerProcess:
        """Migrate (unless another node of the same database did) and serve."""
        if migrate:
            self.idp("migrate")
        log = self.log.open("a")
        self.process = subprocess.Popen(
            [str(BIN / "python"), "-m", "uvicorn", "idp.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=self.env, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start within 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def migrated_database_of_its_own(run_url: str, name: str, folder: Path) -> Iterator[str]:
    """A migrated database for one test module, on the kind of database the run uses
    (`run_url`): a scratch PostgreSQL database, or a SQLite file in `folder`."""
    from idp.db.migrate import upgrade

    with ExitStack() as stack:
        if run_url.startswith("postgresql"):
            url = stack.enter_context(scratch_database(run_url, name))
        else:
            url = f"sqlite+aiosqlite:///{folder}/idp.db"
        upgrade(url)
        yield url


@contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database `<name>_<random>` on the server of `server_url` (a
    postgresql+asyncpg URL), dropped afterwards: for tests that need a database of their own."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    database = f"{name}_{secrets.token_hex(4)}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(admin, timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{database}"'))
    try:
        yield url.set(database=database).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
