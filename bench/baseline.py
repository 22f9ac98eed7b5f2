"""The floor any Python endpoint can reach here: FastAPI + uvicorn with no database, no key lookup
and no revocation, so what is left is the framework and the signature.

- `POST /token/{alg}`: checks an HTTP Basic client credential (BENCH_CLIENTS) and signs a JWT
  shaped like our client_credentials access token (`at+jwt`) with `alg` (ES256 or RS256).
- `POST /refresh`: the same check, then what a rotated refresh answers with: an ES256 access
  token, an ID token with BENCH_ID_TOKEN_ALG, and a new random refresh token (the one presented
  is not looked up: that lookup is the database work the ratio measures).
- `GET /discovery`, `GET /jwks`: the same bytes as our documents, from plain FastAPI routes.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from fastapi import FastAPI, Form, Header, HTTPException, Response
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

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
