"""Redis goes away under a running server: rate limiting moves to the process's memory with one
logged warning, password sign-in keeps working, the limits still apply (per process), and the
server counts in Redis again by itself once Redis is back (issue 6, "Faults").

A real uvicorn process (tests/server_process.py) counts in a private redis-server on a spare
port, which this test starts, kills with SIGKILL and starts again; the shared Redis is never
touched. FailoverStorage's rules are unit-tested in tests/test_ratelimit.py; this is the proof end
to end. It brings its own server, database and Redis, so it runs once: in the SQLite run of
`make test` (`only_in_sqlite_run`). Without redis-server it is skipped, except on CI (CI=true).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.faults.conftest import migrated, only_in_sqlite_run
from tests.rp import PASSWORD, RelyingParty
from tests.server_process import ServerProcess, free_port

pytestmark = only_in_sqlite_run

RETRY_SECONDS = 0.5
WRONG_PASSWORD = "not the password of this account"
UNREACHABLE = "rate-limit storage: Redis unreachable"
BACK = "rate-limit storage: Redis answers again"


class PrivateRedis:
    """A throwaway redis-server on a fixed port: no persistence, so a restart starts empty."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return self
            except redis.ConnectionError:
                assert self.process.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)

    def kill(self) -> None:
        """Gone without a goodbye, as a crashed or partitioned Redis is."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)

    def rate_limit_keys(self) -> list[bytes]:
        with self.client() as client:
            return client.keys("idp-rl*")


def storage_warnings(log: Path) -> list[str]:
    """The rate-limit storage's messages in the server's JSON log."""
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [entry["message"] for entry in entries
            if entry.get("logger") == "idp.ratelimit" and entry["level"] == "WARNING"]


def count(messages: list[str], prefix: str) -> int:
    return sum(message.startswith(prefix) for message in messages)


async def password_sign_in(server: ServerProcess, rp: RelyingParty, client, email: str, user_id: str) -> None:
    """authorize → login form → code → tokens, in a fresh browser (no session to skip the
    password), with the ID token checked by joserfc against the published keys."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as browser:
        result = await rp.sign_in(browser, client, email)
        reply = await rp.exchange(browser, client, result)
        assert reply.status_code == 200, reply.text
        tokens = reply.json()
        assert tokens["token_type"] == "Bearer" and tokens["access_token"]
        claims = await rp.verify(browser, tokens["id_token"])
        assert (claims["iss"], claims["aud"], claims["sub"]) == (server.url, client.client_id, user_id)


async def login_attempt(server: ServerProcess, rp: RelyingParty, client, email: str,
                        password: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as browser:
        started = await rp.authorize(browser, client)
        assert started.status_code == 303, started.text
        return await rp.login(browser, started.headers["location"], email, password)


@pytest.fixture
def private_redis():
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server not found: the Redis outage test cannot be skipped on CI",
                        pytrace=False)
        pytest.skip("redis-server not found")
    server = PrivateRedis(free_port()).start()
    yield server
    server.kill()


async def test_sign_in_survives_redis_going_away_and_counting_returns_to_it(tmp_path, private_redis):
    server = ServerProcess(tmp_path, env={
        "IDP_REDIS_URL": f"redis://127.0.0.1:{private_redis.port}/0",
        "IDP_REDIS_RETRY_SECONDS": str(RETRY_SECONDS),
        # The cheap rule to watch: 3 wrong passwords per account and address, then 429. The
        # per-address rule must not get in the way of the sign-ins around it.
        "IDP_RATE_LIMITS": json.dumps({"login_per_account": "3/minute", "login_per_ip": "1000/minute"}),
        "IDP_COURIER_IN_PROCESS": "false", "IDP_WEBHOOKS_IN_PROCESS": "false",
    })
    services = await migrated(server)
    try:
        rp = RelyingParty(app=None, services=services)
        client = await rp.register()
        email, user_id = await rp.user()
        guessed_email, _ = await rp.user()
    finally:
        await services.close()
    try:
        server.start(migrate=False)
        await password_sign_in(server, rp, client, email, user_id)
        assert private_redis.rate_limit_keys(), "before the outage the server counts in Redis"
        assert storage_warnings(server.log) == []

        private_redis.kill()
        await password_sign_in(server, rp, client, email, user_id)
        assert count(storage_warnings(server.log), UNREACHABLE) == 1

        # The limit holds in memory: three wrong passwords, then even the right one is refused
        # before it is checked, with the same 429 page the Redis-backed limit gives.
        for _ in range(3):
            assert (await login_attempt(server, rp, client, guessed_email, WRONG_PASSWORD)).status_code == 401
        refused = await login_attempt(server, rp, client, guessed_email, PASSWORD)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        # Probes every RETRY_SECONDS kept failing meanwhile, and said nothing more.
        await asyncio.sleep(RETRY_SECONDS * 1.2)
        await password_sign_in(server, rp, client, email, user_id)
        assert count(storage_warnings(server.log), UNREACHABLE) == 1

        private_redis.start()  # the same port, empty (no persistence)
        deadline = time.monotonic() + 10  # generous: a loaded CI machine
        while count(storage_warnings(server.log), BACK) == 0:
            assert time.monotonic() < deadline, storage_warnings(server.log)
            await asyncio.sleep(RETRY_SECONDS / 2)  # the next probe is due after RETRY_SECONDS
            await password_sign_in(server, rp, client, email, user_id)
        assert private_redis.rate_limit_keys(), "after the outage the server counts in Redis again"
        warnings = storage_warnings(server.log)
        assert (count(warnings, UNREACHABLE), count(warnings, BACK), len(warnings)) == (1, 1, 2), warnings
    finally:
        server.stop()
