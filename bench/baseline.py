"""The floor any Python token endpoint can reach here: FastAPI + uvicorn that checks HTTP Basic
client credentials against one constant and signs an ES256 JWT shaped like our access tokens.
No database, no key lookup, no revocation: what is left is the framework and the signature.

Also `/discovery`: the same bytes as our discovery document, from a plain FastAPI route."""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import time

from fastapi import FastAPI, Form, Header, HTTPException, Response
from joserfc import jwt
from joserfc.jwk import ECKey

app = FastAPI()
KEY = ECKey.generate_key("P-256", parameters={"kid": "bench"})
CLIENT = os.environ.get("BENCH_CLIENT", "bench")
SECRET = os.environ.get("BENCH_SECRET", "secret")
ISSUER = os.environ.get("BENCH_ISSUER", "http://127.0.0.1")
DISCOVERY = open(os.environ["BENCH_DISCOVERY_FILE"], "rb").read() if os.environ.get("BENCH_DISCOVERY_FILE") else b"{}"


@app.post("/token")
async def token(grant_type: str = Form(), authorization: str = Header("")) -> dict:
    client_id, _, secret = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
    if grant_type != "client_credentials" or client_id != CLIENT or not hmac.compare_digest(secret, SECRET):
        raise HTTPException(401)
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": client_id, "aud": ISSUER, "client_id": client_id, "iat": now,
              "exp": now + 300, "jti": secrets.token_urlsafe(16), "scope": "bench"}
    access = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "bench"}, claims, KEY)
    return {"access_token": access, "token_type": "Bearer", "expires_in": 300, "scope": "bench"}


@app.get("/discovery")
async def discovery() -> Response:
    return Response(DISCOVERY, media_type="application/json")
