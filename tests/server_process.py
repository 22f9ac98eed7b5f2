"""A real server process: `idp migrate`, then uvicorn on a spare loopback port, as production
runs it. For tests that need a restart (webhook outbox) or an outside tool (schemathesis)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
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

    def start(self) -> ServerProcess:
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
