"""The floor any Python endpoint can reach here: FastAPI + uvicorn with no database, no key lookup
and no revocation, so what is left is the framework and the signature.

- `POST /token/{alg}`: checks an HTTP Basic client credential (BENCH_CLIENTS) and signs a JWT
  shaped like our client_credentials access token (`at+jwt`) with `alg` (ES256 or RS256).
- `POST /refresh`: the same check, then what a rotated refresh answers with: an ES256 access
  token, an ID token with BENCH_ID_TOKEN_ALG, and a new random refresh token (the one presented
  is not looked up: that lookup is the database work the ratio measures).
- `GET /discovery`, `GET /jwks`: the same bytes as our documents, from plain FastAPI routes.
- `/floor/...`: a bare password login (authorize, login page, login post, token), the floor of
  the logins row; see its section below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from fastapi import FastAPI, Form, Header, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from idp.accounts.passwords import PasswordHasher  # the login floor hashes as the server does
from idp.settings import Settings

app = FastAPI()
# The same key types and sizes as the server's (keys/service.py).
KEYS = {"ES256": ECKey.generate_key("P-256", parameters={"kid": "bench-ec"}),
        "RS256": RSAKey.generate_key(2048, parameters={"kid": "bench-rsa"})}
CLIENTS: dict[str, str] = json.loads(os.environ.get("BENCH_CLIENTS", "{}"))  # client_id -> secret
ISSUER = os.environ.get("BENCH_ISSUER", "http://127.0.0.1")
ID_TOKEN_ALG = os.environ.get("BENCH_ID_TOKEN_ALG", "ES256")
FILES = Path(os.environ.get("BENCH_FILES", "."))


def _bytes(name: str) -> bytes:
    path = FILES / name
    return path.read_bytes() if path.exists() else b"{}"


DISCOVERY, JWKS = _bytes("discovery.json"), _bytes("jwks.json")


def _check_client(authorization: str) -> str:
    client_id, _, secret = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
    if client_id not in CLIENTS or not hmac.compare_digest(secret, CLIENTS[client_id]):
        raise HTTPException(401)
    return client_id


def _sign(alg: str, typ: str, claims: dict) -> str:
    return jwt.encode({"alg": alg, "typ": typ, "kid": KEYS[alg].kid}, claims, KEYS[alg], algorithms=[alg])


def _claims(client_id: str, sub: str, scope: str) -> dict:
    now = int(time.time())
    return {"iss": ISSUER, "sub": sub, "aud": client_id, "client_id": client_id, "iat": now,
            "exp": now + 300, "jti": secrets.token_urlsafe(16), "scope": scope}


@app.post("/token/{alg}")
async def token(alg: str, grant_type: str = Form(), authorization: str = Header("")) -> dict:
    client_id = _check_client(authorization)
    if grant_type != "client_credentials" or alg not in KEYS:
        raise HTTPException(400)
    access = _sign(alg, "at+jwt", _claims(client_id, client_id, "bench"))
    return {"access_token": access, "token_type": "Bearer", "expires_in": 300, "scope": "bench"}


@app.post("/refresh")
async def refresh(grant_type: str = Form(), refresh_token: str = Form(), authorization: str = Header("")) -> dict:
    client_id = _check_client(authorization)
    if grant_type != "refresh_token" or not refresh_token:
        raise HTTPException(400)
    scope, sub, now = "openid offline_access", "bench-user", int(time.time())
    claims = _claims(client_id, sub, scope)
    access = _sign("ES256", "at+jwt", {**claims, "auth_time": now, "amr": ["pwd"]})
    id_token = _sign(ID_TOKEN_ALG, "JWT", {"iss": ISSUER, "sub": sub, "aud": client_id, "azp": client_id,
                                           "iat": now, "exp": now + 600, "auth_time": now, "amr": ["pwd"],
                                           "at_hash": secrets.token_urlsafe(16)})
    return {"access_token": access, "token_type": "Bearer", "expires_in": 300, "scope": scope,
            "id_token": id_token, "refresh_token": "idprt_" + secrets.token_urlsafe(32)}


@app.get("/discovery")
async def discovery() -> Response:
    return Response(DISCOVERY, media_type="application/json")


@app.get("/jwks")
async def jwks() -> Response:
    return Response(JWKS, media_type="application/jwk-set+json")


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


# ---- the floor of a password login ---------------------------------------------------------------
# What any Python login must do, and nothing else: four HTTP exchanges (authorize → login page with
# a CSRF token → POST the password, one argon2id verification at the server's settings through the
# server's own hasher (same threads, same priority, same concurrency) → code → token with PKCE,
# two ES256 signatures). State lives in dicts: no database, no sessions, no audit, no rate limits.

_settings = Settings(_env_file=None)
_HASHER = PasswordHasher(memory_kib=_settings.argon2_memory_kib, time_cost=_settings.argon2_time_cost,
                         parallelism=_settings.argon2_parallelism, concurrency=_settings.hash_concurrency)
_STORED = Argon2Hasher(time_cost=_settings.argon2_time_cost, memory_cost=_settings.argon2_memory_kib,
                       parallelism=_settings.argon2_parallelism, type=Type.ID).hash(os.environ.get("BENCH_PASSWORD", ""))
_FLOWS: dict[str, dict] = {}
_CODES: dict[str, dict] = {}


@app.get("/floor/authorize")
async def floor_authorize(request: Request) -> Response:
    params = dict(request.query_params)
    if params.get("client_id") not in CLIENTS or params.get("code_challenge_method") != "S256":
        raise HTTPException(400)
    flow, csrf = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    _FLOWS[flow] = {**params, "csrf": csrf}
    response = RedirectResponse(f"/floor/login?flow={flow}", status_code=303)
    response.set_cookie("csrf", csrf, httponly=True, samesite="lax")
    return response


@app.get("/floor/login")
async def floor_login_page(flow: str) -> Response:
    if flow not in _FLOWS:
        raise HTTPException(400)
    return HTMLResponse(f'<form method="post" action="/floor/login"><input type="hidden" name="flow" '
                        f'value="{flow}"><input type="hidden" name="csrf_token" value="{_FLOWS[flow]["csrf"]}">'
                        '<input name="username"><input type="password" name="password"></form>')


@app.post("/floor/login")
async def floor_login(request: Request, flow: str = Form(), csrf_token: str = Form(), username: str = Form(),
                      password: str = Form()) -> Response:
    params = _FLOWS.pop(flow, None)
    if params is None or not hmac.compare_digest(csrf_token, request.cookies.get("csrf", "")):
        raise HTTPException(400)
    if not await _HASHER.verify(_STORED, password):
        raise HTTPException(401)
    code = secrets.token_urlsafe(32)
    _CODES[code] = {**params, "sub": username, "auth_time": int(time.time())}
    return RedirectResponse(f"{params['redirect_uri']}?code={code}&state={params.get('state', '')}", status_code=303)


@app.post("/floor/token")
async def floor_token(grant_type: str = Form(), code: str = Form(), redirect_uri: str = Form(),
                      code_verifier: str = Form(), authorization: str = Header("")) -> dict:
    client_id = _check_client(authorization)
    granted = _CODES.pop(code, None)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()
    if (grant_type != "authorization_code" or granted is None or granted["client_id"] != client_id
            or granted["redirect_uri"] != redirect_uri or challenge != granted["code_challenge"]):
        raise HTTPException(400)
    claims = _claims(client_id, granted["sub"], granted["scope"])
    access = _sign("ES256", "at+jwt", {**claims, "auth_time": granted["auth_time"], "amr": ["pwd"]})
    id_token = _sign("ES256", "JWT", {"iss": ISSUER, "sub": granted["sub"], "aud": client_id, "azp": client_id,
                                      "iat": claims["iat"], "exp": claims["iat"] + 600,
                                      "auth_time": granted["auth_time"], "amr": ["pwd"],
                                      "nonce": granted.get("nonce"), "at_hash": secrets.token_urlsafe(16)})
    return {"access_token": access, "token_type": "Bearer", "expires_in": 300, "scope": granted["scope"],
            "id_token": id_token}


@app.get("/floor/jwks")
async def floor_jwks() -> dict:
    return {"keys": [KEYS["ES256"].as_dict(private=False)]}
