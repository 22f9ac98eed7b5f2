"""Full password logins per second against the raw argon2id rate: the physical limit of a
password login on the server's core.

The raw rate is measured in the same run by `python bench/logins.py hash <seconds>`, pinned to the
server's core while the server idles: argon2id verifications at the server's own settings
(IDP_ARGON2_*), from as many threads as the server lets hash at once (IDP_HASH_CONCURRENCY)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from stack import BIN, LOAD_CORE, PASSWORD, SERVER_CORE
from table import Row, ratio_row

HERE = Path(__file__).resolve().parent
CONCURRENT_USERS = 32  # browsers signing in at once: enough to keep the hash slots full


def start_logins(bench, *, seconds: float, warmup: float = 1.0, floor: bool = False) -> subprocess.Popen:
    """Logins against the idp, or (`floor`) against the baseline's bare login (bench/baseline.py)."""
    web = bench.clients["web"]
    config = {"issuer": bench.baseline.url if floor else bench.idp.url, "prefix": "/floor" if floor else "",
              "client_id": web.client_id, "secret": web.secret,
              "redirect_uri": web.redirect_uri, "emails": bench.login_emails, "password": PASSWORD,
              "seconds": seconds, "warmup": warmup, "concurrency": CONCURRENT_USERS}
    return subprocess.Popen(["taskset", "-c", LOAD_CORE, str(BIN / "python"), str(HERE / "login_client.py"),
                             json.dumps(config)], stdout=subprocess.PIPE, text=True)


def login_results(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError("the login load generator failed")
    result = json.loads(out)
    if result["errors"]:
        raise RuntimeError(f"failed logins: {result['errors']}")
    return result


def raw_hash_rate(bench, seconds: float) -> float:
    out = subprocess.run(["taskset", "-c", SERVER_CORE, str(BIN / "python"), str(HERE / "logins.py"), "hash",
                          str(seconds)], env=bench.env, capture_output=True, text=True, check=True).stdout
    return float(out)


def row(bench) -> list[Row]:
    # The raw rate before and after the logins: a change in the machine's load falls on both.
    before = raw_hash_rate(bench, bench.seconds / 2)
    ours = login_results(start_logins(bench, seconds=bench.seconds, warmup=2.0))["logins_per_second"]
    bare = login_results(start_logins(bench, seconds=bench.seconds, warmup=2.0, floor=True))["logins_per_second"]
    raw = (before + raw_hash_rate(bench, bench.seconds / 2)) / 2
    return [ratio_row("password logins (authorize → form → code → token)", ours, raw, 0.85),
            Row("the bare login (baseline's /floor: no database) against the raw argon2id rate",
                f"{bare:,.0f}/s", f"{raw:,.0f}/s", f"{bare / raw:.2f}" if raw else "—"),
            Row("password logins against the bare login", f"{ours:,.0f}/s", f"{bare:,.0f}/s",
                f"{ours / bare:.2f}" if bare else "—")]


def _hash_for(seconds: float) -> None:
    from argon2 import PasswordHasher, Type

    from idp.settings import Settings

    settings = Settings(_env_file=None)
    argon2 = PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib,
                            parallelism=settings.argon2_parallelism, type=Type.ID)
    stored = argon2.hash(PASSWORD)
    counts = [0] * settings.hash_concurrency
    end = time.monotonic() + seconds

    def hash_until_end(slot: int) -> None:
        while time.monotonic() < end:
            argon2.verify(stored, PASSWORD)
            counts[slot] += 1

    threads = [threading.Thread(target=hash_until_end, args=(n,)) for n in range(len(counts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(sum(counts) / seconds)


if __name__ == "__main__" and sys.argv[1:2] == ["hash"]:
    _hash_for(float(sys.argv[2]))
