"""Data scale (issue 6): login, token and userinfo latency at 1,000 accounts and at 1,000,000.

    IDP_BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bench .venv/bin/python bench/scale.py
        [--accounts 1000000 --organisations 100000 --memberships 2000000 --small 1000]
        [--samples 200 --login-samples 30] [--json]

THE DATABASE IS EMPTIED FIRST (DROP SCHEMA public CASCADE): give it one of its own.

1. Migrate, register two clients, `idp seed` the small size (prefix `small`: 1,000 accounts, 100
   organisations, 2,000 memberships), ANALYZE, start uvicorn as production does, and measure the
   p50 of sequential requests over loopback: a full password login (authorize → login form →
   code → token, real argon2 parameters), a client_credentials token, a refresh_token grant
   (rotation included) and userinfo (scope `organization:*`, so it reads the person's memberships).
2. Stop the server, `idp seed` the rest up to the full size (prefix `bulk`), ANALYZE, start it
   again and measure the same (signing in as accounts of the big seed).
3. EXPLAIN, at full size, the queries of the hot lookups as the services build them (captured
   from the real service calls): identifier at sign-in, user by id, memberships of a user, client
   by id, and the refresh grant's rotation statement (oauth/grants/refresh_rotation.py, which runs
   on the driver, EXPLAINed as it is). A sequential scan is reported; when the table is small the plan
   is checked again with `enable_seqscan = off`, which tells "no usable index" from "the planner
   prefers a scan of a tiny table".

Prints the seeding times, each latency at both sizes with the ratio (target ≤ 1.2×) and the
EXPLAIN findings; `--json` prints the same as one JSON object instead (for bench/run.py). Exits 1
when a ratio is above target or a hot lookup has no index.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from stack import IDP_SERVER, free_port, start_server

BIN = Path(sys.executable).parent
PASSWORD = "bench seed password, the same for every account"
REDIRECT_URI = "http://127.0.0.1:9/callback"
SCOPE = "openid profile email offline_access organization:*"
TARGET = 1.2


def main() -> None:
    args = _arguments()
    url = os.environ.get("IDP_BENCH_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        sys.exit("IDP_BENCH_DATABASE_URL must name a PostgreSQL database (it is emptied first)")
    folder = Path(tempfile.mkdtemp(prefix="idp-scale-"))
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IDP_")},
           "IDP_DATABASE_URL": url, "IDP_ISSUER": f"http://127.0.0.1:{port}",
           "IDP_DEV_KEY_DIR": str(folder / "keys"), "IDP_LOG_LEVEL": "WARNING",
           "IDP_COURIER_IN_PROCESS": "false", "IDP_WEBHOOKS_IN_PROCESS": "false",
           # One client address sends every login: the per-address limit is not what is measured.
           "IDP_RATE_LIMITS": json.dumps({"login_per_ip": "1000000/minute"}),
           "IDP_SEED_PASSWORD": PASSWORD, "COLUMNS": "200"}
    _say(args, f"emptying and migrating {_masked(url)}")
    asyncio.run(_sql(url, "DROP SCHEMA IF EXISTS public CASCADE", "CREATE SCHEMA public"))
    _idp(env, "migrate")
    code_client = json.loads(_idp(env, "clients", "add", "--name", "scale bench", "--first-party",
                                  "--redirect-uri", REDIRECT_URI, *_flags("--scope", SCOPE.split() + ["organization"]),
                                  "--json"))
    cc_client = json.loads(_idp(env, "clients", "add", "--name", "scale bench cc", "--grant-type",
                                "client_credentials", "--scope", "bench", "--json"))

    small = (args.small, args.small // 10, args.small * 2)
    seeding = {"small": _seed(args, env, "small", *small)}
    asyncio.run(_sql(url, "ANALYZE"))
    at_small = _measure(args, env, port, folder, code_client, cc_client, "small", args.small)
    seeding["bulk"] = _seed(args, env, "bulk", args.accounts - small[0], args.organisations - small[1],
                            args.memberships - small[2])
    asyncio.run(_sql(url, "ANALYZE"))
    at_full = _measure(args, env, port, folder, code_client, cc_client, "bulk", args.accounts - small[0])
    try:
        findings = asyncio.run(_explain(env, code_client["client_id"], args.accounts - small[0]))
    except Exception as exc:  # the figures measured so far are still worth printing
        findings = [{"lookup": "EXPLAIN", "verdict": f"failed: {exc!r}", "plan": ""}]

    rows = [{"what": what, "small_ms": at_small[what], "full_ms": at_full[what],
             "ratio": at_full[what] / at_small[what], "target": TARGET} for what in at_small]
    report = {"accounts": (args.small, args.accounts), "seeding": seeding, "latency_p50": rows,
              "explain": findings}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    bad = [r for r in rows if r["ratio"] > TARGET] + [f for f in findings if not f["verdict"].startswith(
        ("index", "small table"))]
    sys.exit(1 if bad else 0)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--organisations", type=int, default=100_000)
    parser.add_argument("--memberships", type=int, default=2_000_000)
    parser.add_argument("--small", type=int, default=1000, help="accounts of the first measurement")
    parser.add_argument("--samples", type=int, default=200, help="requests per token/userinfo figure")
    parser.add_argument("--login-samples", type=int, default=30, help="password logins per figure")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.accounts < args.small * 2:
        parser.error("--accounts must be at least twice --small")
    return args


def _say(args, message: str) -> None:
    print(message, file=sys.stderr if args.json else sys.stdout, flush=True)


def _flags(name: str, values: list[str]) -> list[str]:
    return [part for value in values for part in (name, value)]


def _masked(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//…@", url)


def _idp(env: dict, *args: str) -> str:
    done = subprocess.run([str(BIN / "idp"), *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"idp {args[0]} failed: {done.stderr[-2000:]}")
    return done.stdout


async def _sql(url: str, *statements: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")  # ANALYZE runs outside one
    async with engine.connect() as connection:
        for statement in statements:
            await connection.execute(text(statement))
    await engine.dispose()


def _seed(args, env: dict, prefix: str, accounts: int, organisations: int, memberships: int) -> dict:
    _say(args, f"seeding {accounts:,} accounts, {organisations:,} organisations, "
               f"{memberships:,} memberships (prefix {prefix})")
    started = time.perf_counter()
    output = _idp(env, "seed", "--prefix", prefix, "--accounts", str(accounts),
                  "--organisations", str(organisations), "--memberships", str(memberships))
    tables = {name: {"rows": int(rows), "seconds": float(seconds)}
              for name, rows, seconds in re.findall(r"│ (\w+)\s+│ (\d+)\s+│ ([\d.]+)", output)}
    return {"tables": tables, "total_seconds": round(time.perf_counter() - started, 1)}


# ---- latency ---------------------------------------------------------------------------------

def _measure(args, env: dict, port: int, folder: Path, code_client: dict, cc_client: dict,
             prefix: str, accounts: int) -> dict[str, float]:
    from idp.seed import email_of

    base = f"http://127.0.0.1:{port}"
    server = start_server(IDP_SERVER, env, port, folder / f"server-{prefix}.log")
    try:
        # Accounts scattered over the whole seed, so the lookups are not all in hot pages.
        indices = [i for i in random.Random(6).sample(range(accounts), min(accounts, 2000)) if email_of(prefix, i)]
        emails = [email_of(prefix, i) for i in indices]
        with httpx.Client(base_url=base, timeout=30) as http:
            _say(args, f"measuring at {prefix} size: password logins")
            logins, tokens = _timed(args.login_samples, lambda k: _login(base, code_client, emails[k % len(emails)]))
            refresh, access = tokens[-1]["refresh_token"], tokens[-1]["access_token"]
            _say(args, f"measuring at {prefix} size: token and userinfo requests")
            cc_auth = (cc_client["client_id"], cc_client["client_secret"])
            client_credentials, _ = _timed(args.samples, lambda k: _ok(http.post(
                "/token", data={"grant_type": "client_credentials", "scope": "bench"}, auth=cc_auth)))
            code_auth = (code_client["client_id"], code_client["client_secret"])
            chain = [refresh]

            def rotate(_k):
                body = _ok(http.post("/token", data={"grant_type": "refresh_token",
                                                     "refresh_token": chain[-1]}, auth=code_auth))
                chain.append(body["refresh_token"])

            refreshes, _ = _timed(args.samples, rotate)
            userinfo, _ = _timed(args.samples, lambda k: _ok(http.get(
                "/userinfo", headers={"Authorization": f"Bearer {access}"})))
    finally:
        server.stop()
    return {"password login (authorize → token)": logins, "client_credentials token": client_credentials,
            "refresh_token grant": refreshes, "userinfo (with memberships)": userinfo}


def _timed(samples: int, call) -> tuple[float, list]:
    """p50 in milliseconds of `samples` sequential calls, after a few unmeasured warm-up calls."""
    results, times = [], []
    for k in range(samples + 3):
        started = time.perf_counter()
        results.append(call(k))
        if k >= 3:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), results


def _ok(reply: httpx.Response):
    if reply.status_code != 200:
        raise RuntimeError(f"{reply.request.url.path}: {reply.status_code} {reply.text[:300]}")
    return reply.json()


def _login(base: str, client: dict, email: str) -> dict:
    """The whole browser flow with PKCE, then the code exchange: what one sign-in costs."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT_URI,
              "scope": SCOPE, "state": secrets.token_urlsafe(8), "code_challenge": challenge,
              "code_challenge_method": "S256"}
    with httpx.Client(base_url=base, timeout=30) as browser:
        location = browser.get("/authorize?" + urlencode(params)).headers["location"]
        page = browser.get(location).text
        field = lambda name: re.search(rf'name="{name}" value="([^"]*)"', page).group(1)  # noqa: E731
        done = browser.post("/login", data={"flow": field("flow"), "csrf_token": field("csrf_token"),
                                            "username": email, "password": PASSWORD})
        location = done.headers.get("location", "")
        if not location.startswith(REDIRECT_URI):
            raise RuntimeError(f"login of a seeded account did not succeed: {done.status_code} {location}")
        code = parse_qs(urlsplit(location).query)["code"][0]
        return _ok(browser.post("/token", auth=(client["client_id"], client["client_secret"]), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier}))


# ---- EXPLAIN of the hot lookups ---------------------------------------------------------------

async def _explain(env: dict, client_id: str, bulk_accounts: int) -> list[dict]:
    """Run each hot lookup through the real service, capture the SELECT it sends, EXPLAIN it."""
    from sqlalchemy import event, select

    from idp.db import utcnow
    from idp.db.driver import postgres_fetch
    from idp.oauth.grants import refresh_rotation
    from idp.oauth.models import RefreshToken
    from idp.seed import email_of
    from idp.services import Services
    from idp.settings import Settings

    s = Services(Settings(database_url=env["IDP_DATABASE_URL"], issuer=env["IDP_ISSUER"],
                          dev_key_dir=Path(env["IDP_DEV_KEY_DIR"])))
    one_email, other_email = (next(email_of("bulk", i) for i in range(start, bulk_accounts) if email_of("bulk", i))
                              for start in (bulk_accounts // 3, 2 * bulk_accounts // 3))
    captured: list[tuple[str, object]] = []
    event.listen(s.db.engine.sync_engine, "before_cursor_execute",
                 lambda conn, cursor, statement, params, context, many: captured.append((statement, params)))

    async def judged(db, what: str, explain) -> dict:
        plan = await explain()
        finding = {"lookup": what, "plan": plan, "verdict": "index"}
        if "Seq Scan" in plan:
            rows = {m: int(n) for m, n in re.findall(r"Seq Scan on (\w+) .*?rows=(\d+)", plan)}
            connection = await db.connection()
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            forced = await explain()
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = on")
            finding["verdict"] = "no index" if "Seq Scan" in forced else f"small table, index usable ({rows})"
        return finding

    async def one(db, what: str, call) -> dict:
        captured.clear()
        await call()
        statement, params = next((c for c in captured if c[0].lstrip().upper().startswith("SELECT")),
                                 (None, None))
        return await judged(db, what, lambda: _plan(db, statement, params))

    async def rotation_plan(db, token_hash: str) -> str:
        """The refresh grant's one statement (it runs on the driver, unseen by SQLAlchemy's events)."""
        now = utcnow()
        rows = await postgres_fetch(db, "EXPLAIN " + refresh_rotation.POSTGRES_ROTATION, token_hash, client_id,
                                    now, "0" * 64, now)
        return "\n".join(row[0] for row in rows)

    async def work(db):
        user = await s.accounts.find_by_login(db, one_email)
        token_hash = (await db.execute(select(RefreshToken.token_hash).limit(1))).scalar_one()
        db.expunge_all()  # `accounts.get` must go to the database, not the identity map
        return [
            await one(db, "identifier at sign-in", lambda: s.accounts.find_by_login(db, other_email)),
            await one(db, "user by id", lambda: s.accounts.get(db, user.id)),
            await one(db, "memberships of a user", lambda: s.orgs.memberships_of(db, user.id)),
            await one(db, "client by id", lambda: s.clients.get(db, client_id)),
            await judged(db, "refresh rotation (by token hash)", lambda: rotation_plan(db, token_hash)),
        ]

    try:
        return await s.db.run(work)
    finally:
        await s.close()


async def _plan(db, statement: str, params) -> str:
    connection = await db.connection()
    result = await connection.exec_driver_sql("EXPLAIN " + statement, params)
    return "\n".join(row[0] for row in result)


# ---- report ---------------------------------------------------------------------------------

def _print(report: dict) -> None:
    small, full = report["accounts"]
    print("\nseeding (idp seed, PostgreSQL COPY):")
    for run, seeded in report["seeding"].items():
        parts = ", ".join(f"{name} {t['rows']:,} in {t['seconds']:.1f} s" for name, t in seeded["tables"].items())
        print(f"  {run:6} {parts}; {seeded['total_seconds']:.0f} s in all")
    print(f"\np50 latency over loopback, {small:,} accounts vs {full:,}:")
    print(f"  {'what':38} {small:>10,} {full:>10,} {'ratio':>7} {'target':>7}")
    for r in report["latency_p50"]:
        verdict = "ok" if r["ratio"] <= r["target"] else "ABOVE"
        print(f"  {r['what']:38} {r['small_ms']:8.1f}ms {r['full_ms']:8.1f}ms {r['ratio']:7.2f} "
              f"{'≤' + str(r['target']):>7} {verdict}")
    print("\nEXPLAIN of the hot lookups at full size:")
    for f in report["explain"]:
        print(f"  {f['lookup']:28} {f['verdict']}")
        if f["verdict"] != "index":
            print("    " + f["plan"].replace("\n", "\n    "))


if __name__ == "__main__":
    main()
