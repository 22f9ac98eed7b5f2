"""`make bench`: the server as production runs it (uvicorn, one process on one core), loaded by wrk
from the other core over loopback, each figure next to a baseline measured in the same run.

Only the first rows of issue 6's table so far: client_credentials tokens and discovery/JWKS.
Set IDP_BENCH_DATABASE_URL to a PostgreSQL URL to bench on PostgreSQL (default: SQLite file).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DURATION = os.environ.get("IDP_BENCH_SECONDS", "10")
CONNECTIONS = os.environ.get("IDP_BENCH_CONNECTIONS", "16")
SERVER_CORE, LOAD_CORE = "0", "1"


def _start(args: list[str], env: dict, port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(["taskset", "-c", SERVER_CORE, *args, "--port", str(port)], env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"server on {port} did not start: {log.read_text()[-1000:]}")


def _wrk(url: str, *, lua: Path | None = None) -> float:
    """Requests per second, from wrk pinned to the other core."""
    command = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}s", url]
    if lua is not None:
        command[-1:-1] = ["-s", str(lua)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed responses\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def _post_lua(folder: Path, client_id: str, secret: str) -> Path:
    import base64

    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    script = folder / "token.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.body = "grant_type=client_credentials"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = "Basic {basic}"\n')
    return script


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")
    folder = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    idp_port, base_port = 8731, 8732
    issuer = f"http://127.0.0.1:{idp_port}"
    env = {**os.environ, "IDP_ISSUER": issuer, "IDP_LOG_LEVEL": "WARNING",
           "IDP_DATABASE_URL": os.environ.get("IDP_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{folder / 'idp.db'}"),
           "IDP_DEV_KEY_DIR": str(folder / "keys"), "IDP_COURIER_IN_PROCESS": "false",
           "IDP_WEBHOOKS_IN_PROCESS": "false"}
    subprocess.run([str(BIN / "idp"), "migrate"], env=env, check=True, capture_output=True)
    added = subprocess.run([str(BIN / "idp"), "clients", "add", "--name", "bench", "--grant-type",
                            "client_credentials", "--scope", "bench", "--json"],
                           env=env, check=True, capture_output=True, text=True)
    client = json.loads(added.stdout)
    servers = []
    try:
        servers.append(_start([str(BIN / "python"), "-m", "uvicorn", "idp.app:create_app", "--factory",
                               "--log-level", "warning", "--no-access-log"], env, idp_port, folder / "idp.log"))
        discovery = httpx.get(f"{issuer}/.well-known/openid-configuration").content
        (folder / "discovery.json").write_bytes(discovery)
        base_env = {**env, "BENCH_CLIENT": client["client_id"], "BENCH_SECRET": client["client_secret"],
                    "BENCH_ISSUER": issuer, "BENCH_DISCOVERY_FILE": str(folder / "discovery.json"),
                    "PYTHONPATH": str(ROOT / "bench")}
        servers.append(_start([str(BIN / "python"), "-m", "uvicorn", "baseline:app", "--log-level", "warning",
                               "--no-access-log"], base_env, base_port, folder / "baseline.log"))
        lua = _post_lua(folder, client["client_id"], client["client_secret"])
        rows = [
            ("client_credentials /token (ES256)", _wrk(f"{issuer}/token", lua=lua),
             _wrk(f"http://127.0.0.1:{base_port}/token", lua=lua), 0.70),
            ("discovery", _wrk(f"{issuer}/.well-known/openid-configuration"),
             _wrk(f"http://127.0.0.1:{base_port}/discovery"), 0.80),
        ]
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=20)
    print(f"{'what':36} {'idp req/s':>10} {'baseline':>10} {'ratio':>7} {'target':>7}")
    for name, ours, floor, target in rows:
        ratio = ours / floor
        print(f"{name:36} {ours:10.0f} {floor:10.0f} {ratio:7.2f} {target:7.2f} {'ok' if ratio >= target else 'BELOW'}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
