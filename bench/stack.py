"""What every row runs against: a fresh database, the idp server as production runs it (uvicorn,
one process pinned to one core, no access log), the baseline server, and the clients and users
the rows need. Load comes from the other core (`LOAD_CORE`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVER_CORE, LOAD_CORE = "0", "1"
PASSWORD = "bench password, long enough to pass the policy"
LOGIN_USERS = 32
# The idp as production runs it (one uvicorn process, no access log).
IDP_SERVER = [str(BIN / "python"), "-m", "uvicorn", "idp.app:create_app", "--factory", "--log-level", "warning",
              "--no-access-log"]


@dataclass
class Node:
    process: subprocess.Popen
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid  # taskset execs the server, so this is the server's own pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Client:
    client_id: str
    secret: str
    redirect_uri: str = ""


@dataclass
class Bench:
    folder: Path
    env: dict
    seconds: int
    connections: int
    clients: dict[str, Client] = field(default_factory=dict)
    login_emails: list[str] = field(default_factory=list)
    idp: Node | None = None
    baseline: Node | None = None
    population: object | None = None  # population.Population, made when a row first needs it
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _services: object | None = None

    @property
    def issuer(self) -> str:
        return self.env["IDP_ISSUER"]

    @property
    def database_url(self) -> str:
        return self.env["IDP_DATABASE_URL"]

    # ---- in-process access for setup (never for the measured requests) ----------------------

    def services(self):
        if self._services is None:
            from idp.services import Services
            from idp.settings import Settings

            self._services = Services(Settings(
                _env_file=None, issuer=self.issuer, database_url=self.database_url,
                dev_key_dir=Path(self.env["IDP_DEV_KEY_DIR"]), hash_concurrency=1))
        return self._services

    def run(self, coroutine):
        return self._loop.run_until_complete(coroutine)

    # ---- processes ---------------------------------------------------------------------------

    def start_idp(self, port: int | None = None, core: str = SERVER_CORE) -> Node:
        port = port or int(self.issuer.rsplit(":", 1)[1])  # the first node answers at the issuer
        return start_server(IDP_SERVER, self.env, port, self.folder / f"idp-{port}.log", core=core)

    def start_baseline(self) -> Node:
        env = {**self.env, "BENCH_ISSUER": self.issuer, "BENCH_FILES": str(self.folder), "BENCH_PASSWORD": PASSWORD,
               "BENCH_CLIENTS": json.dumps({c.client_id: c.secret for c in self.clients.values()}),
               "PYTHONPATH": str(ROOT / "bench")}
        return start_server([str(BIN / "python"), "-m", "uvicorn", "baseline:app", "--log-level", "warning",
                             "--no-access-log"], env, free_port(), self.folder / "baseline.log", core=SERVER_CORE)

    def close(self) -> None:
        for node in (self.idp, self.baseline):
            if node is not None:
                node.stop()
        if self._services is not None:
            self.run(self._services.close())
        self._loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server(args: list[str], env: dict, port: int, log: Path, *, core: str | None = None) -> Node:
    """Start `args` on `port` (pinned to `core` when given) and wait until /healthz answers."""
    pinned = ["taskset", "-c", core] if core is not None else []
    process = subprocess.Popen([*pinned, *args, "--port", str(port)], env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Node(process, url)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server on {port} did not start: {log.read_text()[-2000:]}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(folder: Path, database_url: str, redis_url: str | None) -> dict:
    env = {**os.environ, "IDP_ISSUER": f"http://127.0.0.1:{free_port()}", "IDP_LOG_LEVEL": "WARNING",
           "IDP_DATABASE_URL": database_url, "IDP_DEV_KEY_DIR": str(folder / "keys"),
           "IDP_COURIER_IN_PROCESS": "false", "IDP_WEBHOOKS_IN_PROCESS": "false",
           # One core per server process, so one hash in flight (ARCHITECTURE.md). The default,
           # os.cpu_count(), counts the machine's cores, not the ones the process is pinned to.
           "IDP_HASH_CONCURRENCY": "1",
           # Every benchmark browser comes from 127.0.0.1: the per-address sign-in limit (20/min)
           # would stop the login rows after a second.
           "IDP_RATE_LIMITS": json.dumps({"login_per_ip": "100000000/minute"})}
    env.pop("IDP_REDIS_URL", None)
    if redis_url:
        env["IDP_REDIS_URL"] = redis_url
    return env


async def _fresh_postgres(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def _register(bench: Bench) -> None:
    """The clients (in-process, as the CLI does) and the users the login rows sign in as."""
    from idp.oauth.clients import ClientSpec

    s = bench.services()
    redirect_uri = "http://127.0.0.1:9/cb"  # never followed: the load generator reads the code
    specs = {
        "cc_es256": ClientSpec(name="bench cc", grant_types=["client_credentials"], scopes=["bench"]),
        "web": ClientSpec(name="bench web", redirect_uris=[redirect_uri], first_party=True,
                          grant_types=["authorization_code", "refresh_token"],
                          scopes=["openid", "offline_access"], id_token_signed_response_alg="ES256"),
    }
    if "access_token_signed_response_alg" in ClientSpec.__dataclass_fields__:
        specs["cc_rs256"] = ClientSpec(name="bench cc rs256", grant_types=["client_credentials"],
                                       scopes=["bench"], access_token_signed_response_alg="RS256")
    for name, spec in specs.items():
        client, secret = await s.db.run(lambda db, spec=spec: s.clients.create(db, spec))
        bench.clients[name] = Client(client.client_id, secret, redirect_uri)
    for number in range(LOGIN_USERS):
        email = f"login-{number}@bench.example"
        await s.db.run(lambda db, email=email: s.accounts.create_user(db, email=email, password=PASSWORD))
        bench.login_emails.append(email)


def prepare(*, database_url: str | None, redis_url: str | None, seconds: int, connections: int) -> Bench:
    folder = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    url = database_url or f"sqlite+aiosqlite:///{folder / 'idp.db'}"
    env = server_env(folder, url, redis_url)
    bench = Bench(folder, env, seconds, connections)
    if url.startswith("postgresql"):
        bench.run(_fresh_postgres(url))  # the bench database is wiped: it must be a scratch one
    try:
        subprocess.run([str(BIN / "idp"), "migrate"], env=env, check=True, capture_output=True)
        bench.run(_register(bench))
        bench.idp = bench.start_idp()
        for name, path in (("discovery.json", "/.well-known/openid-configuration"), ("jwks.json", "/jwks")):
            (folder / name).write_bytes(httpx.get(bench.idp.url + path).content)
        bench.baseline = bench.start_baseline()
    except BaseException:
        bench.close()
        raise
    return bench
