"""`make bench`: issue 6's benchmark table. The server runs as production runs it (uvicorn, one
process pinned to core 0), loaded from core 1 over loopback, each figure next to a baseline
measured in the same run. What each row measures: bench/README.md.

Options (environment):
  IDP_BENCH_SECONDS      seconds per measurement (default 10)
  IDP_BENCH_CONNECTIONS  wrk connections (default 16)
  IDP_BENCH_DATABASE_URL a scratch database to bench on (it is wiped); default a new SQLite file
  IDP_BENCH_REDIS_URL    Redis for the rate-limit counters (default none: in process memory)
  IDP_BENCH_ONLY         rows to run, comma-separated (default all): cc_es256, cc_rs256,
                         refresh, logins, latency, discovery, jwks, memory, nodes
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import latency
import logins
import memory
import nodes
import published
import tokens
from stack import prepare
from table import render

ROWS = {
    "cc_es256": lambda bench: tokens.client_credentials(bench, "ES256"),
    "cc_rs256": lambda bench: tokens.client_credentials(bench, "RS256"),
    "refresh": tokens.refresh,
    "logins": logins.row,
    "latency": latency.row,
    "discovery": published.discovery,
    "jwks": published.jwks,
    "memory": memory.row,
    "nodes": nodes.row,
}


def main() -> None:
    missing = [tool for tool in ("wrk", "taskset") if not shutil.which(tool)]
    if missing:
        sys.exit(f"needed: {' '.join(missing)} (apt-get install -y wrk util-linux)")
    only = [name.strip() for name in os.environ.get("IDP_BENCH_ONLY", "").split(",") if name.strip()]
    unknown = set(only) - set(ROWS)
    if unknown:
        sys.exit(f"unknown rows {', '.join(sorted(unknown))}; known: {', '.join(ROWS)}")
    bench = prepare(database_url=os.environ.get("IDP_BENCH_DATABASE_URL"),
                    redis_url=os.environ.get("IDP_BENCH_REDIS_URL"),
                    seconds=int(os.environ.get("IDP_BENCH_SECONDS", "10")),
                    connections=int(os.environ.get("IDP_BENCH_CONNECTIONS", "16")))
    rows, started = [], time.monotonic()
    try:
        for name, measure in ROWS.items():
            if not only or name in only:
                print(f"… {name}", file=sys.stderr, flush=True)
                rows += measure(bench)
    finally:
        bench.close()
    database = "PostgreSQL" if bench.database_url.startswith("postgresql") else "SQLite"
    print(f"\n{database}, {bench.seconds} s per measurement, {bench.connections} connections, "
          f"{time.monotonic() - started:.0f} s in all\n")
    print(render(rows))


if __name__ == "__main__":
    main()
