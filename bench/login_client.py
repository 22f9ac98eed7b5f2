"""Load generator for full password logins, run as its own process pinned to the load core:
`python bench/login_client.py '<json config>'` prints one JSON line of results.

Each virtual user is a browser of its own (cookie jar, one keep-alive connection) that signs in
over and over, every time from scratch: /authorize → the login page (flow id, CSRF token and
cookie) → POST /login with username and password → the code on the redirect → POST /token
with the code and its PKCE verifier. The first ID token is verified against the JWKS."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import sys
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet


class LoginFailed(Exception):
    pass


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    if not match:
        raise LoginFailed(f"login page without {name}")
    return match.group(1)


async def login(http: httpx.AsyncClient, config: dict, email: str) -> dict:
    prefix = config.get("prefix", "")  # "/floor": the baseline's bare login (bench/baseline.py)
    http.cookies.clear()  # a new browser every time: no session to reuse
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    reply = await http.get(f"{prefix}/authorize", params={
        "response_type": "code", "client_id": config["client_id"], "redirect_uri": config["redirect_uri"],
        "scope": "openid", "state": secrets.token_urlsafe(12), "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge, "code_challenge_method": "S256"})
    if reply.status_code not in (302, 303):
        raise LoginFailed(f"authorize {reply.status_code}")
    page = await http.get(reply.headers["location"])
    if page.status_code != 200:
        raise LoginFailed(f"login page {page.status_code}")
    reply = await http.post(f"{prefix}/login", data={"flow": _field(page.text, "flow"),
                                            "csrf_token": _field(page.text, "csrf_token"),
                                            "username": email, "password": config["password"]})
    code = parse_qs(urlsplit(reply.headers.get("location", "")).query).get("code")
    if reply.status_code != 303 or not code:
        raise LoginFailed(f"login {reply.status_code}")
    reply = await http.post(f"{prefix}/token", auth=(config["client_id"], config["secret"]), data={
        "grant_type": "authorization_code", "code": code[0], "redirect_uri": config["redirect_uri"],
        "code_verifier": verifier})
    if reply.status_code != 200:
        raise LoginFailed(f"token {reply.status_code}")
    return reply.json()


async def main(config: dict) -> dict:
    warmup, seconds = config.get("warmup", 1.0), config["seconds"]
    emails = config["emails"]
    async with httpx.AsyncClient(base_url=config["issuer"]) as http:
        tokens = await login(http, config, emails[0])
        keys = KeySet.import_key_set((await http.get(f"{config.get('prefix', '')}/jwks")).json())
        jwt.decode(tokens["id_token"], keys, algorithms=["ES256", "RS256", "EdDSA"])  # raises if bad
    start = time.monotonic()
    window = (start + warmup, start + warmup + seconds)
    done: list[float] = []
    errors: Counter = Counter()

    async def user(number: int) -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=config["issuer"], limits=limits, timeout=60) as http:
            while time.monotonic() < window[1]:
                try:
                    await login(http, config, emails[number % len(emails)])
                    done.append(time.monotonic())
                except (LoginFailed, httpx.HTTPError) as exc:
                    errors[str(exc) or type(exc).__name__] += 1

    await asyncio.gather(*(user(n) for n in range(config["concurrency"])))
    counted = sum(window[0] <= t < window[1] for t in done)
    return {"logins_per_second": counted / seconds, "logins": counted, "errors": dict(errors)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
