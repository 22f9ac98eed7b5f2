"""A tiny relying party for `make run` (IDP_DEMO=true): shows a real sign-in end to end.

It behaves as an outside client would: PKCE + state + nonce, the code exchanged at /token over
HTTP (in-process transport), the ID token shown as received.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from html import escape
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from idp.oauth.clients import ClientSpec

router = APIRouter(include_in_schema=False)
DEMO_CLIENT_ID = "demo"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "correct horse battery staple"
_COOKIE = "idp_demo_rp"


async def ensure_demo(services, db) -> dict:
    issuer = services.settings.issuer
    if await services.clients.get(db, DEMO_CLIENT_ID) is None:
        await services.clients.create(db, ClientSpec(
            client_id=DEMO_CLIENT_ID, name="Demo app", public=True, first_party=True,
            redirect_uris=[f"{issuer}/_demo/callback"], post_logout_redirect_uris=[f"{issuer}/_demo"],
        ))
    if await services.accounts.find_by_email(db, DEMO_EMAIL) is None:
        await services.accounts.create_user(db, email=DEMO_EMAIL, password=DEMO_PASSWORD, name="Demo User")
    return {"email": DEMO_EMAIL, "password": DEMO_PASSWORD, "client_id": DEMO_CLIENT_ID,
            "redirect_uri": f"{issuer}/_demo/callback"}


def _page(body: str) -> HTMLResponse:
    return HTMLResponse(f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Demo app</title>'
                        f'<link rel="stylesheet" href="/static/idp.css"></head><body><main>{body}</main></body></html>')


@router.get("/_demo")
async def start(request: Request) -> Response:
    issuer = request.app.state.services.settings.issuer
    state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({
        "response_type": "code", "client_id": DEMO_CLIENT_ID, "redirect_uri": f"{issuer}/_demo/callback",
        "scope": "openid profile email", "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    })
    response = _page(f'<h1>Demo app</h1><p><a href="/authorize?{escape(query)}">Sign in with idp</a></p>')
    response.set_cookie(_COOKIE, json.dumps([state, nonce, verifier]), httponly=True, samesite="lax", path="/_demo")
    return response


@router.get("/_demo/callback")
async def callback(request: Request) -> Response:
    issuer = request.app.state.services.settings.issuer
    try:
        state, nonce, verifier = json.loads(request.cookies.get(_COOKIE, "[]"))
    except ValueError:
        state = None
    if not state or request.query_params.get("state") != state or request.query_params.get("iss") != issuer:
        return _page("<h1>Demo app</h1><p>State or issuer mismatch. <a href='/_demo'>Start again</a></p>")
    if "error" in request.query_params:
        return _page(f"<h1>Demo app</h1><p>Error: {escape(request.query_params['error'])}</p>")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=request.app), base_url=issuer) as http:
        reply = await http.post("/token", data={
            "grant_type": "authorization_code", "code": request.query_params.get("code", ""),
            "redirect_uri": f"{issuer}/_demo/callback", "client_id": DEMO_CLIENT_ID, "code_verifier": verifier,
        })
    tokens = reply.json()
    if reply.status_code != 200:
        return _page(f"<h1>Demo app</h1><p>Token error: {escape(json.dumps(tokens))}</p>")
    id_token = tokens["id_token"]
    payload = id_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if claims.get("nonce") != nonce:
        return _page("<h1>Demo app</h1><p>Nonce mismatch.</p>")
    logout = "/logout?" + urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": f"{issuer}/_demo"})
    response = _page(
        f"<h1>Signed in</h1><p>Hello, {escape(str(claims.get('name', claims['sub'])))}.</p>"
        f"<pre>{escape(json.dumps(claims, indent=2))}</pre>"
        f'<p><a href="{escape(logout)}">Sign out</a></p>'
    )
    response.delete_cookie(_COOKIE, path="/_demo")
    return response
