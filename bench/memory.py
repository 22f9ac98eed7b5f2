"""Memory per active browser session and per refresh token, at 100,000 of each.

Both live in the database only (the server keeps no per-session state), so the server's RSS
should not grow with them: after a warm-up it is read before and after two equal rounds of wrk
opening the account page with distinct session cookies and refreshing distinct tokens. What each
costs is its rows: table plus indexes over row count."""

from __future__ import annotations

import httpx

from load import basic, feed_script, wrk
from population import Population
from table import Row

PEOPLE = 100_000
MIB = 1024 * 1024


def row(bench) -> list[Row]:
    if bench.population is None:
        bench.population = Population(bench)
    people = bench.population
    people.ensure(PEOPLE)
    sizes = people.bytes_per_row()
    cookies = people.session_cookies[:PEOPLE]
    page = httpx.get(f"{bench.idp.url}/account", cookies={"idp_session": cookies[0]})
    if page.status_code != 200:
        raise RuntimeError(f"a bulk-made session does not open the account page: {page.status_code}")
    # First requests fill caches that are paid once per process (templates, compiled queries):
    # a warm-up on people not used afterwards, then two equal rounds on others. Growth that
    # stops after the first round is warm-up; growth that repeats would be per-request state.
    # Measured here: RSS grows by ~14 kB/request in the first seconds and falls towards zero.
    rounds, warm_up = max(2, bench.seconds // 3), max(2, bench.seconds // 2)
    _use(bench, cookies[-20_000:], people.take_refresh_tokens(3000 * warm_up), seconds=warm_up)
    rss = [bench.idp.rss_bytes()]
    used = []
    for number in range(2):
        part = cookies[number * 40_000:(number + 1) * 40_000]
        used.append(_use(bench, part, people.take_refresh_tokens(3000 * rounds), seconds=rounds))
        rss.append(bench.idp.rss_bytes())
    rows = [Row(f"server RSS, round {number + 1}: {sessions.requests:,} distinct sessions + "
                f"{refreshed.requests:,} distinct refresh tokens used",
                f"{rss[number] / MIB:.1f} → {rss[number + 1] / MIB:.1f} MiB",
                ratio=f"{(rss[number + 1] - rss[number]) / (sessions.requests + refreshed.requests):+,.0f} B/request")
            for number, (sessions, refreshed) in enumerate(used)]
    for table, label in (("browser_sessions", "database per browser session"),
                         ("refresh_tokens", "database per refresh token"),
                         ("grants", "database per grant (token family)")):
        used_bytes, count = sizes[table]
        rows.append(Row(f"{label} ({count:,} rows, incl. indexes)", f"{used_bytes / max(count, 1):,.0f} B"))
    return rows


def _use(bench, cookies: list[str], tokens: list[str], *, seconds: int):
    """The account page with distinct session cookies, then refreshes with distinct tokens."""
    web = bench.clients["web"]
    sessions = wrk(f"{bench.idp.url}/account", seconds=seconds, connections=bench.connections,
                   lua=feed_script(bench.folder / "sessions.lua", cookies, method="GET",
                                   header="Cookie: idp_session=%s"))
    refreshed = wrk(f"{bench.idp.url}/token", seconds=seconds, connections=bench.connections,
                    lua=feed_script(bench.folder / "memory-refresh.lua", tokens, method="POST",
                                    body="grant_type=refresh_token&refresh_token=%s",
                                    authorization=basic(web.client_id, web.secret)))
    if sessions.requests > len(cookies) or refreshed.requests > len(tokens):
        raise RuntimeError("the memory row ran out of distinct sessions or tokens")
    return sessions, refreshed
