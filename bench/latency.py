"""Token-endpoint latency while password logins saturate the server's core: argon2id runs off the
event loop, so a client_credentials request must not wait behind a hash (p99 in the tens of
milliseconds)."""

from __future__ import annotations

import time

from load import basic, post_script, wrk
from logins import login_results, start_logins
from table import Row

CONNECTIONS = 4  # a few token clients next to the crowd signing in
P99_TARGET_MS = 100.0  # "tens of milliseconds"
WARMUP = 2.0


def row(bench) -> list[Row]:
    client = bench.clients["cc_es256"]
    script = post_script(bench.folder / "latency.lua", "grant_type=client_credentials",
                         basic(client.client_id, client.secret))
    quiet = wrk(f"{bench.idp.url}/token", seconds=max(2, bench.seconds // 3), connections=CONNECTIONS,
                lua=script, latency=True)
    logins = start_logins(bench, seconds=bench.seconds + 1, warmup=WARMUP)
    time.sleep(WARMUP)
    loaded = wrk(f"{bench.idp.url}/token", seconds=bench.seconds, connections=CONNECTIONS, lua=script, latency=True)
    during = login_results(logins)
    return [Row(f"client_credentials p50 / p99, {CONNECTIONS} connections, during "
                f"{during['logins_per_second']:.0f} logins/s",
                f"{loaded.p50_ms:.1f} / {loaded.p99_ms:.1f} ms ({loaded.rate:,.0f}/s)",
                f"idle server: {quiet.p50_ms:.1f} / {quiet.p99_ms:.1f} ms", "—",
                f"p99 < {P99_TARGET_MS:.0f} ms", loaded.p99_ms < P99_TARGET_MS)]
