"""The happy path of the authorization code flow, as a relying party sees it."""

from __future__ import annotations

import base64
import hashlib

from tests.conftest import ISSUER
from tests.rp import now


async def test_code_flow_issues_tokens_that_verify_against_the_published_jwks(http, rp):
    client = await rp.register()
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email)

    assert result.params["state"] == result.state
    assert result.params["iss"] == ISSUER  # RFC 9207

    reply = await rp.exchange(http, client, result)
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert "refresh_token" not in body  # no offline_access asked

    id_token = await rp.verify(http, body["id_token"])
    assert id_token["header"]["alg"] == "RS256" and id_token["header"]["kid"]
    assert id_token["iss"] == ISSUER and id_token["sub"] == sub and id_token["aud"] == client.client_id
    assert id_token["nonce"] == result.nonce
    assert abs(id_token["iat"] - now()) < 60 and id_token["exp"] > now()
    assert id_token["auth_time"] <= now() and id_token["amr"] == ["pwd"] and id_token["sid"]
    digest = hashlib.sha256(body["access_token"].encode()).digest()
    assert id_token["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    assert id_token["email"] == email

    access = await rp.verify(http, body["access_token"])
    assert access["header"]["typ"] == "at+jwt"  # RFC 9068
    assert access["client_id"] == client.client_id and access["sub"] == sub and access["jti"]

    info = await http.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.json()["sub"] == sub and info.json()["email"] == email
