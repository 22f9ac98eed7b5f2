"""Token endpoint rows: client_credentials (ES256 and RS256 access tokens) and refresh_token
grants with rotation, each against the baseline that signs the same tokens with no database."""

from __future__ import annotations

import json

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from load import basic, feed_script, paired, post_script, wrk
from population import Population
from table import Row, ratio_row

CLIENT_CREDENTIALS = "grant_type=client_credentials"
REFRESH = "grant_type=refresh_token&refresh_token=%s"


def _issued_alg(bench, client) -> str:
    """Ask for one token and verify it as an outside client would: its alg, from the JWKS."""
    reply = httpx.post(f"{bench.idp.url}/token", data={"grant_type": "client_credentials"},
                       auth=(client.client_id, client.secret))
    reply.raise_for_status()
    keys = KeySet.import_key_set(httpx.get(f"{bench.idp.url}/jwks").json())
    return jwt.decode(reply.json()["access_token"], keys, algorithms=["ES256", "RS256", "EdDSA"]).header["alg"]


def client_credentials(bench, alg: str) -> list[Row]:
    what = f"client_credentials /token ({alg})"
    client = bench.clients.get(f"cc_{alg.lower()}")
    # No client of its own: the server offers no per-client access-token alg; the baseline is
    # still measured (with the ES256 client's credentials) to show the floor.
    usable = client is not None and _issued_alg(bench, client) == alg
    client = client if usable else bench.clients["cc_es256"]
    script = post_script(bench.folder / f"cc-{alg}.lua", CLIENT_CREDENTIALS, basic(client.client_id, client.secret))

    def load(url: str):
        return lambda seconds: wrk(url, seconds=seconds, connections=bench.connections, lua=script)

    if not usable:
        floor = load(f"{bench.baseline.url}/token/{alg}")(bench.seconds)
        return [Row(what, "n/a: access tokens are ES256 only", f"{floor.rate:,.0f}/s", target="≥ 0.70")]
    ours, floor = paired(load(f"{bench.idp.url}/token"), load(f"{bench.baseline.url}/token/{alg}"), bench.seconds)
    return [ratio_row(what, ours, floor, 0.70)]


def refresh(bench) -> list[Row]:
    """Every request presents a refresh token never used before (rotation issues the next one,
    which the load generator does not need), so nothing is a replay."""
    web = bench.clients["web"]
    authorization = basic(web.client_id, web.secret)
    if bench.population is None:
        bench.population = Population(bench)
    _check_refresh(bench, web, bench.population.take_refresh_tokens(1)[0])
    dummy = [f"idprt_{n:043d}" for n in range(1000)]  # the baseline does not look tokens up
    floor_script = feed_script(bench.folder / "refresh-baseline.lua", dummy, method="POST", body=REFRESH,
                               authorization=authorization)
    floor_rates: list[float] = []

    def floor(seconds: int):
        result = wrk(f"{bench.baseline.url}/refresh", seconds=seconds, connections=bench.connections,
                     lua=floor_script)
        floor_rates.append(result.rate)
        return result

    def ours(seconds: int):
        # Enough for the idp to run as fast as the baseline did, and half as fast again.
        tokens = bench.population.take_refresh_tokens(int(max(floor_rates) * seconds * 1.5) + 500)
        result = wrk(f"{bench.idp.url}/token", seconds=seconds, connections=bench.connections,
                     lua=feed_script(bench.folder / "refresh.lua", tokens, method="POST", body=REFRESH,
                                     authorization=authorization))
        if result.requests > len(tokens):
            raise RuntimeError("the refresh row ran out of fresh tokens")
        return result

    ours_rate, floor_rate = paired(ours, floor, bench.seconds)
    return [ratio_row("refresh_token /token (rotation; ES256 access + ID token)", ours_rate, floor_rate, 0.50)]


def _check_refresh(bench, web, token: str) -> None:
    """One refresh as a client sees it: new tokens in exchange for a token never used before."""
    reply = httpx.post(f"{bench.idp.url}/token", data={"grant_type": "refresh_token", "refresh_token": token},
                       auth=(web.client_id, web.secret))
    body = reply.json()
    if reply.status_code != 200 or not body.get("refresh_token") or not body.get("id_token"):
        raise RuntimeError(f"refresh failed: {reply.status_code} {json.dumps(body)[:200]}")
