"""Discovery metadata and the signing keys behind it.

Config OP conformance (oidcc-discovery-endpoint-verification), SECURITY-CHECKLIST items 1–4:
the metadata document, the JWKS (public members only, unique kids, every issued kid resolves),
key rotation (oidcc-server-rotate-keys: the next key is published before it signs, the old key
stays published) and restarts that never change the JWKS.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import warnings
from datetime import timedelta

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.app import create_app
from idp.db import Database
from idp.db import utcnow
from idp.oauth.discovery import metadata
from idp.settings import Settings
from tests.conftest import ISSUER
from tests.rp import now

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
WELL_KNOWN = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")


def _header(token: str) -> dict:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


async def _tokens(http, rp, client=None, **register) -> tuple[dict, object]:
    """Sign a fresh user in with a (fresh) client and return the token response and the client."""
    client = client or await rp.register(**register)
    email, _ = await rp.user()
    result = await rp.sign_in(http, client, email)
    reply = await rp.exchange(http, client, result)
    assert reply.status_code == 200, reply.text
    return reply.json(), client


async def _jwks(http) -> dict:
    reply = await http.get("/jwks")
    assert reply.status_code == 200
    return reply.json()


async def _keys(services) -> list:
    return await services.db.run(services.keyring.list_keys)


# ---- discovery ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", WELL_KNOWN)
async def test_discovery_document_is_json_with_the_exact_issuer_and_safe_choices(http, path):
    reply = await http.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    doc = reply.json()

    assert doc["issuer"] == ISSUER  # identical, no trailing slash drift (OIDC Discovery §4.3)
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                     "end_session_endpoint", "revocation_endpoint", "introspection_endpoint"):
        assert doc[endpoint].startswith(ISSUER + "/"), endpoint
    assert "openid" in doc["scopes_supported"]
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert "none" not in doc["id_token_signing_alg_values_supported"]
    assert not any(alg.startswith("HS") for alg in doc["id_token_signing_alg_values_supported"])
    assert not {"password", "implicit"} & set(doc["grant_types_supported"])
    assert "authorization_code" in doc["grant_types_supported"]
    assert not any("token" in rt.split() for rt in doc["response_types_supported"])
    assert doc["subject_types_supported"] == ["public"]
    assert "none" not in doc["token_endpoint_auth_signing_alg_values_supported"]
    assert not any(alg.startswith("HS") for alg in doc["token_endpoint_auth_signing_alg_values_supported"])
    # Well-formed booleans the Config OP module checks.
    for flag in ("claims_parameter_supported", "request_parameter_supported", "request_uri_parameter_supported"):
        assert isinstance(doc[flag], bool), flag


async def test_both_well_known_documents_are_the_same(http):
    first, second = [await http.get(path) for path in WELL_KNOWN]
    assert first.content == second.content


async def test_every_advertised_endpoint_exists(http):
    doc = (await http.get(WELL_KNOWN[0])).json()

    def path(name: str) -> str:
        return doc[name].removeprefix(ISSUER)

    assert (await http.get(path("jwks_uri"))).status_code == 200
    assert (await http.get(path("authorization_endpoint"))).status_code == 400  # error page, not 404
    assert (await http.post(path("token_endpoint"), data={})).status_code in (400, 401)
    assert (await http.get(path("userinfo_endpoint"))).status_code == 401
    assert (await http.post(path("revocation_endpoint"), data={})).status_code in (400, 401)
    assert (await http.post(path("introspection_endpoint"), data={})).status_code in (400, 401)
    assert (await http.get(path("end_session_endpoint"))).status_code == 200  # confirmation page


def test_an_https_issuer_yields_only_https_endpoints_and_loses_a_trailing_slash():
    settings = Settings(issuer="https://id.example.com/", database_url="sqlite+aiosqlite:///:memory:",
                        kek=base64.urlsafe_b64encode(b"k" * 32).decode())
    assert settings.issuer == "https://id.example.com"
    doc = metadata(settings.issuer)
    assert doc["issuer"] == "https://id.example.com"
    urls = [v for k, v in doc.items() if k.endswith("_endpoint") or k == "jwks_uri"]
    assert urls and all(url.startswith("https://id.example.com/") for url in urls)


# ---- JWKS --------------------------------------------------------------------------------------

async def test_jwks_has_public_members_only_and_unique_kids(http):
    reply = await http.get("/jwks")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/jwk-set+json")
    keys = reply.json()["keys"]
    assert keys
    kids = [key["kid"] for key in keys]
    assert len(kids) == len(set(kids)), "duplicate kid in JWKS"
    for key in keys:
        assert not PRIVATE_MEMBERS & set(key), f"private member published in {key['kid']}"
        assert key["use"] == "sig" and key["kty"] in ("RSA", "EC", "OKP")
        if key["kty"] == "RSA":
            modulus = base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4))
            assert len(modulus) * 8 >= 2048
    KeySet.import_key_set(reply.json())  # joserfc accepts it as a key set


async def test_jwks_publishes_an_active_and_a_next_key_per_algorithm(http, services):
    published = {key["kid"] for key in (await _jwks(http))["keys"]}
    rows = await _keys(services)
    for family in ("RS256", "ES256", "Ed25519"):
        statuses = {row.status for row in rows if row.alg == family and row.kid in published}
        assert {"active", "next"} <= statuses, family


async def test_every_issued_token_kid_resolves_in_the_jwks(http, rp):
    body, _ = await _tokens(http, rp)
    kids = {key["kid"] for key in (await _jwks(http))["keys"]}
    for name in ("id_token", "access_token"):
        header = _header(body[name])
        assert header["kid"] in kids, name
    claims = await rp.verify(http, body["id_token"])
    assert claims["header"]["alg"] == "RS256"


@pytest.mark.parametrize("alg", ["ES256", "Ed25519", "EdDSA"])
async def test_client_registered_id_token_alg_is_used_and_verifies(http, rp, alg):
    body, client = await _tokens(http, rp, id_token_signed_response_alg=alg)
    header = _header(body["id_token"])
    assert header["alg"] == alg
    keys = KeySet.import_key_set(await _jwks(http))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns that "EdDSA" is deprecated (RFC 9864)
        token = jwt.decode(body["id_token"], keys, algorithms=[alg])
    assert token.claims["aud"] == client.client_id and token.claims["iss"] == ISSUER
    assert token.header["kid"] == header["kid"]
    # The key that signed it is of the family the algorithm needs.
    key = next(k for k in (await _jwks(http))["keys"] if k["kid"] == header["kid"])
    assert key["kty"] == {"ES256": "EC", "Ed25519": "OKP", "EdDSA": "OKP"}[alg]


# ---- rotation ----------------------------------------------------------------------------------

async def test_rotation_signs_with_the_published_next_key_and_keeps_the_old_one(http, rp, services, settings):
    before_rows = await _keys(services)
    next_kid = next(row.kid for row in before_rows if row.alg == "RS256" and row.status == "next")
    active_kid = next(row.kid for row in before_rows if row.alg == "RS256" and row.status == "active")
    before_jwks = {key["kid"] for key in (await _jwks(http))["keys"]}
    assert next_kid in before_jwks, "the next key must be published before it signs"

    old_body, old_client = await _tokens(http, rp)
    assert _header(old_body["id_token"])["kid"] == active_kid

    promoted = await services.db.run(services.keyring.rotate)
    assert next_kid in {row.kid for row in promoted}

    new_body, _ = await _tokens(http, rp)
    assert _header(new_body["id_token"])["kid"] == next_kid
    after_jwks = {key["kid"] for key in (await _jwks(http))["keys"]}
    assert active_kid in after_jwks and next_kid in after_jwks
    new_next = {row.kid for row in await _keys(services) if row.alg == "RS256" and row.status == "next"}
    assert len(new_next) == 1 and new_next <= after_jwks and new_next.isdisjoint(before_jwks)

    # The token signed before the rotation still verifies, for the RP and for the IdP itself.
    claims = await rp.verify(http, old_body["id_token"])
    assert claims["header"]["kid"] == active_kid and claims["aud"] == old_client.client_id
    info = await http.get("/userinfo", headers={"Authorization": f"Bearer {old_body['access_token']}"})
    assert info.status_code == 200, info.text

    # The old key stays published at least until every token it signed has expired.
    retired = next(row for row in await _keys(services) if row.kid == active_kid)
    assert retired.status == "retired" and retired.expires_at is not None
    longest = max(settings.id_token_ttl, settings.access_token_ttl)
    assert retired.expires_at >= utcnow() + timedelta(seconds=longest - 60)
    assert claims["exp"] <= retired.expires_at.timestamp()


async def test_a_retired_key_leaves_the_jwks_after_it_expires(http, services):
    from sqlalchemy import update

    from idp.keys.models import SigningKey

    await services.db.run(services.keyring.rotate)
    retired = [row for row in await _keys(services) if row.status == "retired"]
    victim = retired[-1]
    assert victim.kid in {key["kid"] for key in (await _jwks(http))["keys"]}

    async def expire(db):
        await db.execute(update(SigningKey).where(SigningKey.kid == victim.kid)
                         .values(expires_at=utcnow() - timedelta(seconds=1)))
        services.keyring.invalidate()

    await services.db.run(expire)
    assert victim.kid not in {key["kid"] for key in (await _jwks(http))["keys"]}


async def test_concurrent_rotations_leave_exactly_one_active_and_one_next_key(http, rp, services, settings):
    """Two operators (or nodes) rotating at once must not leave a family without a signing key."""
    from idp.services import Services

    nodes = [Services(settings) for _ in range(4)]
    try:
        for _ in range(2):
            before = await _keys(services)
            await asyncio.gather(*(node.db.run(node.keyring.rotate) for node in nodes))
            rows = await _keys(services)
            for family in ("RS256", "ES256", "Ed25519"):
                live = sorted(row.status for row in rows if row.alg == family and row.status != "retired")
                assert live == ["active", "next"], (family, live)
                # Each rotation retired one active key and added one next key: none was lost.
                def count(keys, status=None):
                    return sum(1 for r in keys if r.alg == family and status in (None, r.status))
                assert count(rows) == count(before) + len(nodes)
                assert count(rows, "retired") == count(before, "retired") + len(nodes)
    finally:
        for node in nodes:
            await node.close()
    body, _ = await _tokens(http, rp)
    assert (await rp.verify(http, body["id_token"]))["header"]["alg"] == "RS256"


async def test_nodes_starting_together_on_existing_keys_create_none(services, settings):
    from idp.services import Services

    before = [row.kid for row in await _keys(services)]
    nodes = [Services(settings) for _ in range(4)]
    try:
        created = await asyncio.gather(*(node.db.run(node.keyring.ensure_keys) for node in nodes))
    finally:
        for node in nodes:
            await node.close()
    assert created == [False] * 4
    assert [row.kid for row in await _keys(services)] == before


@pytest.fixture
async def empty_database(tmp_path, database_url):
    """A migrated database of its own with no keys yet (a scratch PostgreSQL database when the
    suite runs on PostgreSQL)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from idp.db.migrate import upgrade

    async def admin(statement: str) -> None:
        engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    name = f"idp_keys_{secrets.token_hex(4)}"
    if database_url.startswith("postgresql"):
        await admin(f'CREATE DATABASE "{name}"')
        url = database_url.rsplit("/", 1)[0] + "/" + name
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/{name}.db"
    await asyncio.to_thread(upgrade, url)  # alembic runs its own event loop
    # One first connection, as `idp migrate` makes: on SQLite it switches the file to WAL. Four
    # first connections racing to do that get "database is locked" (see the report on engine.py).
    first = Database(url)
    await first.ping()
    await first.dispose()
    yield url
    if database_url.startswith("postgresql"):
        await admin(f'DROP DATABASE IF EXISTS "{name}"')


async def test_workers_starting_together_on_an_empty_database_make_one_set_of_keys(settings, empty_database):
    from idp.services import Services

    fresh = settings.model_copy(update={"database_url": empty_database})
    nodes = [Services(fresh) for _ in range(4)]
    try:
        created = await asyncio.gather(*(node.db.run(node.keyring.ensure_keys) for node in nodes))
        rows = await nodes[0].db.run(nodes[0].keyring.list_keys)
        jwks = set()
        for node in nodes:
            node.keyring.invalidate()
            await node.db.run(node.keyring.load)
            jwks.add(node.keyring.jwks_bytes)
    finally:
        for node in nodes:
            await node.close()
    assert sorted(created) == [False, False, False, True]
    assert sorted((row.alg, row.status) for row in rows) == sorted(
        (family, status) for family in ("RS256", "ES256", "Ed25519") for status in ("active", "next"))
    assert len(jwks) == 1  # every worker publishes the same keys


# ---- restart -----------------------------------------------------------------------------------

async def test_a_restart_never_changes_the_jwks(http, rp, settings):
    body, _ = await _tokens(http, rp)
    before = (await http.get("/jwks")).content

    second = create_app(settings)
    async with second.router.lifespan_context(second):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url=ISSUER) as other:
            after = (await other.get("/jwks")).content
            # Tokens issued before the restart are still accepted by the restarted instance.
            info = await other.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
            discovery = (await other.get(WELL_KNOWN[0])).content
    assert after == before
    assert info.status_code == 200, info.text
    assert discovery == (await http.get(WELL_KNOWN[0])).content
    keys = KeySet.import_key_set(json.loads(after))
    assert jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims["exp"] > now()
