"""A client chooses the algorithm of its JWT access tokens (RFC 9068): ES256 unless it registered
another (`access_token_signed_response_alg`), for every grant; the tokens verify against the JWKS
as a resource server would check them, and at our own /userinfo and /introspect. Registration
by the services, the REST API and the CLI; an unknown algorithm is refused everywhere."""

from __future__ import annotations

import json
import secrets
import subprocess
import warnings

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp.audit.models import AuditEvent
from idp.oauth.models import Client
from tests import secrets_registry
from tests.api_support import assert_problem, integrator
from tests.conftest import ISSUER
from tests.test_cli import _env, failed, idp, ok
from tests.token_support import introspect, refresh, signed_in, userinfo

WRITE = ["idp:clients:read", "idp:clients:write"]
KEY_TYPE = {"ES256": "EC", "RS256": "RSA", "Ed25519": "OKP", "EdDSA": "OKP"}


async def verified_access_token(http, token: str, alg: str, audience: str) -> dict:
    """What a resource server does with only the JWKS: the token must be an at+jwt signed with
    `alg` by a published key of the right type, for us as issuer and for `audience`."""
    jwks = (await http.get("/jwks")).json()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns that "EdDSA" is deprecated (RFC 9864)
        decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=[alg])
    assert decoded.header["alg"] == alg and decoded.header["typ"] == "at+jwt"
    [key] = [key for key in jwks["keys"] if key["kid"] == decoded.header["kid"]]
    assert key["kty"] == KEY_TYPE[alg]
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER},
                          aud={"essential": True, "value": audience}).validate(decoded.claims)
    return decoded.claims


async def client_credentials(http, client_id: str, secret: str) -> str:
    reply = await http.post("/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert reply.status_code == 200, reply.text
    secrets_registry.remember(reply.json()["access_token"])
    return reply.json()["access_token"]


async def stored_alg(services, client_id: str) -> str | None:
    return await services.db.run(lambda db: db.scalar(
        select(Client.access_token_signed_response_alg).where(Client.client_id == client_id)))


# ---- the grants --------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", [None, "RS256", "Ed25519", "EdDSA"])
async def test_client_credentials_tokens_are_signed_with_the_clients_alg(http, rp, services, alg):
    chosen = {} if alg is None else {"access_token_signed_response_alg": alg}
    client = await rp.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"],
                               first_party=False, **chosen)
    expected = alg or "ES256"
    assert await stored_alg(services, client.client_id) == expected

    token = await client_credentials(http, client.client_id, client.secret)
    claims = await verified_access_token(http, token, expected, client.client_id)
    assert claims["client_id"] == claims["sub"] == client.client_id and claims["scope"] == "api.read"
    described = await introspect(http, client, token)
    assert described["active"] is True and described["client_id"] == client.client_id


async def test_code_exchange_and_refresh_give_rs256_access_tokens_that_userinfo_accepts(http, rp):
    # The ID token keeps its own algorithm: the two choices are independent.
    client = await rp.register(access_token_signed_response_alg="RS256", id_token_signed_response_alg="ES256")
    session = await signed_in(http, rp, client)

    claims = await verified_access_token(http, session.access_token, "RS256", client.client_id)
    assert claims["sub"] == session.sub
    assert (await rp.verify(http, session.body["id_token"]))["header"]["alg"] == "ES256"
    info = await userinfo(http, session.access_token)
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == session.sub

    rotated = await refresh(http, rp, client, session.refresh_token)
    assert rotated.status_code == 200, rotated.text
    renewed = rotated.json()["access_token"]
    assert (await verified_access_token(http, renewed, "RS256", client.client_id))["sub"] == session.sub
    assert (await userinfo(http, renewed)).status_code == 200
    described = await introspect(http, client, renewed)
    assert described["active"] is True and described["sub"] == session.sub


async def test_a_default_client_still_gets_es256_from_the_code_flow(http, rp):
    client = await rp.register()
    session = await signed_in(http, rp, client)
    await verified_access_token(http, session.access_token, "ES256", client.client_id)
    assert (await userinfo(http, session.access_token)).status_code == 200


# ---- the REST API ------------------------------------------------------------------------------

async def test_the_api_registers_and_changes_the_access_token_alg(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    body = {"name": f"RS client {secrets.token_hex(3)}", "grant_types": ["client_credentials"],
            "redirect_uris": [], "scopes": ["api.read"]}
    default = await http.post("/api/v1/clients", json=body, headers=caller.key())
    assert default.status_code == 201, default.text
    assert default.json()["access_token_signed_response_alg"] == "ES256"

    created = await http.post("/api/v1/clients", json=body | {"access_token_signed_response_alg": "RS256"},
                              headers=caller.key())
    assert created.status_code == 201, created.text
    shown = created.json()
    secrets_registry.remember(shown["client_secret"])
    client_id = shown["client_id"]
    assert shown["access_token_signed_response_alg"] == "RS256"
    token = await client_credentials(http, client_id, shown["client_secret"])
    await verified_access_token(http, token, "RS256", client_id)

    read = await http.get(f"/api/v1/clients/{client_id}", headers=caller.headers)
    changed = await http.patch(f"/api/v1/clients/{client_id}",
                               json={"access_token_signed_response_alg": "Ed25519"},
                               headers={**caller.headers, "If-Match": read.headers["etag"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["access_token_signed_response_alg"] == "Ed25519"
    assert await stored_alg(services, client_id) == "Ed25519"
    # The next token is the new algorithm's at once (the client cache drops the changed row).
    token = await client_credentials(http, client_id, shown["client_secret"])
    await verified_access_token(http, token, "Ed25519", client_id)

    events = await services.db.run(lambda db: db.scalars(select(AuditEvent).where(
        AuditEvent.target_id == client_id, AuditEvent.action == "client.updated")))
    [event] = list(events)
    assert event.before == {"access_token_signed_response_alg": "RS256"}
    assert event.after == {"access_token_signed_response_alg": "Ed25519"}


@pytest.mark.parametrize("alg", ["HS256", "none", "ES512"])
async def test_the_api_refuses_an_unknown_access_token_alg(http, rp, services, alg):
    caller = await integrator(http, rp, WRITE)
    name = f"bad alg {secrets.token_hex(3)}"
    reply = await http.post("/api/v1/clients", json={
        "name": name, "grant_types": ["client_credentials"], "redirect_uris": [], "scopes": ["api.read"],
        "access_token_signed_response_alg": alg}, headers=caller.key())
    problem = assert_problem(reply, 422, "invalid-client-metadata")
    assert problem["detail"] == f"unsupported access token algorithm: {alg}"
    assert await services.db.run(lambda db: db.scalar(select(Client).where(Client.name == name))) is None

    client = await rp.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"],
                               first_party=False)
    read = await http.get(f"/api/v1/clients/{client.client_id}", headers=caller.headers)
    reply = await http.patch(f"/api/v1/clients/{client.client_id}", json={"access_token_signed_response_alg": alg},
                             headers={**caller.headers, "If-Match": read.headers["etag"]})
    assert_problem(reply, 422, "invalid-client-metadata")
    assert await stored_alg(services, client.client_id) == "ES256"


# ---- the CLI -----------------------------------------------------------------------------------

def _idp(settings, *args: str) -> subprocess.CompletedProcess:
    """`idp` on the suite's own database and keys, so the app under test serves what it made."""
    env = _env(settings.dev_key_dir.parent, IDP_DATABASE_URL=settings.database_url,
               IDP_DEV_KEY_DIR=str(settings.dev_key_dir))
    return idp(env, *args, cwd=settings.dev_key_dir)


async def test_the_cli_registers_an_rs256_client_and_refuses_an_unknown_alg(http, settings, services):
    machine = ["clients", "add", "--name", "CLI machine", "--grant-type", "client_credentials",
               "--scope", "api.read", "--json"]
    refused = _idp(settings, *machine, "--access-token-alg", "HS256")
    failed(refused, "unsupported access token algorithm: HS256")
    assert refused.returncode == 1 and refused.stdout == ""

    shown = json.loads(ok(_idp(settings, *machine, "--access-token-alg", "RS256")).stdout)
    secrets_registry.remember(shown["client_secret"])
    assert shown["access_token_signed_response_alg"] == "RS256"
    token = await client_credentials(http, shown["client_id"], shown["client_secret"])
    await verified_access_token(http, token, "RS256", shown["client_id"])
