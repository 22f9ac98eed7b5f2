"""OAuth clients over the API: registration with the secret shown once, reads without it,
If-Match on changes, secret rotation, deletion that ends the client's tokens, idempotency, the
org-bound client's 404, the audit event of every change, and no way from `idp:clients:write` to
more power (SECURITY-CHECKLIST 89): no scopes beyond the caller's, no first-party clients, no
change to its own registration or to a stronger client; a removed scope ends at once."""

from __future__ import annotations

import asyncio
import secrets

from sqlalchemy import select

from idp.api.scopes import SCOPES
from idp.audit.models import AuditEvent
from idp.oauth.models import Client
from tests import secrets_registry
from tests.api_support import assert_problem, integrator
from tests.org_support import organisation, person

# The caller carries idp:audit:read too: it may give a client only the API scopes it holds itself.
WRITE = ["idp:clients:read", "idp:clients:write", "idp:audit:read"]
MACHINE = {"grant_types": ["client_credentials"], "redirect_uris": [], "scopes": ["idp:audit:read"]}


def _name() -> str:
    return f"HR sync {secrets.token_hex(4)}"


async def _create(http, caller, **body):
    reply = await http.post("/api/v1/clients", json={"name": _name(), **MACHINE, **body}, headers=caller.key())
    assert reply.status_code == 201, reply.text
    secrets_registry.remember(reply.json()["client_secret"])
    return reply


async def _token(http, client_id: str, secret: str, scope: str | None = None):
    data = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
    return await http.post("/token", data=data, auth=(client_id, secret))


async def _events(services, client_id: str) -> list[AuditEvent]:
    async def read(db):
        return list((await db.execute(select(AuditEvent).where(
            AuditEvent.target_type == "client", AuditEvent.target_id == client_id)
            .order_by(AuditEvent.at, AuditEvent.id))).scalars())
    return await services.db.run(read)


def _assert_no_secret_material(text: str, secret: str | None = None) -> None:
    assert "secret_hash" not in text
    if secret:
        assert text.count(secret) <= 1


def _by(caller) -> dict:
    """The audit columns of an event an API caller made (httpx's ASGI transport is 127.0.0.1)."""
    return {"actor_type": "client", "actor_id": caller.client_id, "client_id": caller.client_id,
            "ip": "127.0.0.1"}


def _who(event: AuditEvent) -> dict:
    return {"actor_type": event.actor_type, "actor_id": event.actor_id, "client_id": event.client_id,
            "ip": event.ip}


async def test_a_client_registered_over_the_api_gets_tokens_with_its_secret(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    reply = await _create(http, caller)
    body = reply.json()
    client_id, secret = body["client_id"], body["client_secret"]
    assert secret.startswith("idpcs_") and body["has_secret"] is True
    assert reply.headers["location"] == f"/api/v1/clients/{client_id}"
    assert body["grant_types"] == ["client_credentials"] and body["scopes"] == ["idp:audit:read"]
    assert body["client_type"] == "confidential" and body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["org_id"] is None and body["product_id"] is None
    stored = await services.db.run(lambda db: db.get(Client, client_id))
    assert stored.secret_hash not in reply.text
    _assert_no_secret_material(reply.text, secret)

    # The read has an ETag matching the creation reply's, has_secret, and no secret at all.
    read = await http.get(f"/api/v1/clients/{client_id}", headers=caller.headers)
    assert read.status_code == 200
    assert read.headers["etag"] == reply.headers["etag"]
    assert "client_secret" not in read.json() and read.json()["has_secret"] is True
    assert secret not in read.text and stored.secret_hash not in read.text and "secret_hash" not in read.text
    listed = await http.get("/api/v1/clients", params={"limit": 200}, headers=caller.headers)
    assert secret not in listed.text and "secret_hash" not in listed.text and stored.secret_hash not in listed.text

    # The secret works at /token, and the token works on the API.
    token = await _token(http, client_id, secret)
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "idp:audit:read"
    secrets_registry.remember(token.json()["access_token"])
    audit = await http.get("/api/v1/audit-events", params={"target_id": client_id},
                           headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert audit.status_code == 200
    assert [item["action"] for item in audit.json()["items"]] == ["client.created"]

    [event] = await _events(services, client_id)
    assert event.action == "client.created" and _who(event) == _by(caller)
    assert event.org_id is None and event.before is None
    assert event.after == {
        "client_id": client_id, "name": body["name"], "client_type": "confidential",
        "application_type": "web", "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": [], "post_logout_redirect_uris": [], "grant_types": ["client_credentials"],
        "scopes": ["idp:audit:read"], "first_party": False, "id_token_signed_response_alg": "RS256",
        "access_token_signed_response_alg": "ES256", "jwks": None, "product_id": None, "org_id": None}


async def test_registration_follows_the_client_rules(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    name = _name()
    cases = [
        ({"scopes": ["idp:everything"]}, "unknown API scope: idp:everything"),
        ({"grant_types": ["password"]}, "unknown or missing grant types"),
        ({"grant_types": ["authorization_code"], "redirect_uris": ["http://rp.example/cb"]}, "https"),
        ({"public": True}, "a public client cannot use client_credentials"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "private_key_jwt needs"),
        ({"id_token_signed_response_alg": "HS256"}, "unsupported ID token algorithm"),
        ({"org_id": "no-such-org"}, "unknown organisation"),
        ({"token_endpoint_auth_method": "private_key_jwt",
          "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0"}]}}, "jwks"),
    ]
    for extra, message in cases:
        reply = await http.post("/api/v1/clients", json={"name": name, **MACHINE, **extra}, headers=caller.key())
        body = assert_problem(reply, 422, "invalid-client-metadata")
        assert message in body["detail"], (extra, body)
    assert_problem(await http.post("/api/v1/clients", json={"name": name, **MACHINE, "secret_hash": "x"},
                                   headers=caller.key()), 422, "validation-error")
    assert_problem(await http.post("/api/v1/clients", json={"name": "a\x00b", **MACHINE},
                                   headers=caller.key()), 422, "validation-error")
    names = await services.db.run(lambda db: db.execute(select(Client).where(Client.name == name)))
    assert names.scalars().all() == []


async def test_an_under_scoped_token_cannot_register(http, rp):
    caller = await integrator(http, rp, ["idp:clients:read"])
    body = assert_problem(await http.post("/api/v1/clients", json={"name": _name(), **MACHINE},
                                          headers=caller.key()), 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:clients:write"


async def test_patch_needs_a_fresh_etag_and_changes_only_what_it_names(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    created = (await _create(http, caller)).json()
    client_id = created["client_id"]
    url = f"/api/v1/clients/{client_id}"
    etag = (await http.get(url, headers=caller.headers)).headers["etag"]

    first = await http.patch(url, json={"name": "Renamed"}, headers=caller.headers | {"If-Match": etag})
    assert first.status_code == 200, first.text
    assert first.json()["name"] == "Renamed" and first.json()["scopes"] == ["idp:audit:read"]
    assert first.headers["etag"] != etag

    # The first ETag is stale now: 412, and nothing changes.
    stale = await http.patch(url, json={"scopes": ["idp:users:read"]}, headers=caller.headers | {"If-Match": etag})
    assert_problem(stale, 412, "precondition-failed")
    now = (await http.get(url, headers=caller.headers)).json()
    assert now["scopes"] == ["idp:audit:read"] and now["name"] == "Renamed"

    # The registration rules hold for changes too; null is not a value for a required field.
    bad = await http.patch(url, json={"scopes": ["idp:nope"]}, headers=caller.headers)
    assert "unknown API scope" in assert_problem(bad, 422, "invalid-client-metadata")["detail"]
    assert_problem(await http.patch(url, json={"grant_types": ["authorization_code"]}, headers=caller.headers),
                   422, "invalid-client-metadata")
    assert_problem(await http.patch(url, json={"name": None}, headers=caller.headers), 422, "validation-error")
    assert_problem(await http.patch(url, json={"token_endpoint_auth_method": "none"}, headers=caller.headers),
                   422, "validation-error")
    assert (await http.get(url, headers=caller.headers)).json() == now

    events = await _events(services, client_id)
    assert [e.action for e in events] == ["client.created", "client.updated"]
    assert _who(events[1]) == _by(caller)
    assert events[1].before == {"name": created["name"]} and events[1].after == {"name": "Renamed"}


async def test_rotating_the_secret_refuses_the_old_one_at_token(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    created = (await _create(http, caller)).json()
    client_id, old = created["client_id"], created["client_secret"]

    reply = await http.post(f"/api/v1/clients/{client_id}/secret", headers=caller.key())
    assert reply.status_code == 200, reply.text
    new = reply.json()["client_secret"]
    secrets_registry.remember(new)
    assert new != old and new.startswith("idpcs_") and "secret_hash" not in reply.text
    assert reply.headers["etag"] == (await http.get(f"/api/v1/clients/{client_id}", headers=caller.headers)).headers["etag"]

    refused = await _token(http, client_id, old)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert (await _token(http, client_id, new)).status_code == 200

    events = await _events(services, client_id)
    assert [e.action for e in events] == ["client.created", "client.secret_rotated"]
    assert _who(events[1]) == _by(caller) and events[1].before is None and events[1].after is None


async def test_a_client_without_a_secret_has_none_to_rotate(http, rp):
    caller = await integrator(http, rp, WRITE)
    reply = await http.post("/api/v1/clients", json={
        "name": _name(), "public": True, "redirect_uris": ["https://spa.example/cb"],
        "grant_types": ["authorization_code"], "scopes": ["openid"]}, headers=caller.key())
    assert reply.status_code == 201, reply.text
    assert reply.json()["client_secret"] is None and reply.json()["has_secret"] is False
    body = assert_problem(await http.post(f"/api/v1/clients/{reply.json()['client_id']}/secret",
                                          headers=caller.key()), 422, "invalid-client-metadata")
    assert body["detail"] == "this client has no secret: it authenticates with none"


async def test_deleting_a_client_ends_its_tokens(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    created = (await _create(http, caller, scopes=["idp:clients:read"])).json()
    client_id = created["client_id"]
    token = (await _token(http, client_id, created["client_secret"])).json()["access_token"]
    secrets_registry.remember(token)
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/api/v1/clients", headers=bearer)).status_code == 200
    introspector = await rp.register(first_party=False)

    async def introspect() -> dict:
        reply = await http.post("/introspect", data={"token": token},
                                auth=(introspector.client_id, introspector.secret))
        assert reply.status_code == 200
        return reply.json()

    assert (await introspect())["active"] is True

    stale = await http.delete(f"/api/v1/clients/{client_id}", headers=caller.headers | {"If-Match": '"stale"'})
    assert_problem(stale, 412, "precondition-failed")
    deleted = await http.delete(f"/api/v1/clients/{client_id}", headers=caller.headers)
    assert deleted.status_code == 204 and deleted.content == b""

    assert_problem(await http.get("/api/v1/clients", headers=bearer), 401, "unauthorized")
    assert await introspect() == {"active": False}
    refused = await _token(http, client_id, created["client_secret"])
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert_problem(await http.get(f"/api/v1/clients/{client_id}", headers=caller.headers), 404, "not-found")
    assert_problem(await http.delete(f"/api/v1/clients/{client_id}", headers=caller.headers), 404, "not-found")
    assert await services.db.run(lambda db: db.get(Client, client_id)) is None

    events = await _events(services, client_id)
    assert [e.action for e in events] == ["client.created", "client.deleted"]
    assert _who(events[1]) == _by(caller) and events[1].after is None
    assert events[1].before == events[0].after  # the registration it had, never a secret


async def test_an_org_bound_client_gets_404_for_clients(http, rp, services):
    _, owner = await person(services)
    org = await organisation(services, owner)
    bound = await integrator(http, rp, org=org.id)
    platform = await integrator(http, rp, WRITE)
    other = (await _create(http, platform)).json()["client_id"]
    for method, url in [("GET", "/api/v1/clients"), ("GET", f"/api/v1/clients/{other}"),
                        ("GET", f"/api/v1/clients/{bound.client_id}"),
                        ("PATCH", f"/api/v1/clients/{other}"), ("DELETE", f"/api/v1/clients/{other}"),
                        ("POST", f"/api/v1/clients/{other}/secret")]:
        reply = await http.request(method, url, headers=bound.headers, json={"name": "x"} if method == "PATCH" else None)
        assert_problem(reply, 404, "not-found")
    reply = await http.post("/api/v1/clients", json={"name": _name(), **MACHINE}, headers=bound.key())
    assert_problem(reply, 404, "not-found")
    assert [e.action for e in await _events(services, other)] == ["client.created"]


async def test_a_client_bound_to_an_organisation_is_listed_by_it(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    _, owner = await person(services)
    org = await organisation(services, owner)
    created = (await _create(http, caller, org_id=org.handle)).json()
    assert created["org_id"] == org.id
    [event] = await _events(services, created["client_id"])
    assert event.org_id == org.id and event.after["org_id"] == org.id

    seen, cursor = [], None
    while True:
        params = {"org_id": org.id, "limit": 1} | ({"cursor": cursor} if cursor else {})
        page = (await http.get("/api/v1/clients", params=params, headers=caller.headers)).json()
        seen += [item["client_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [created["client_id"]]

    # The bound client works, and the API shows it its organisation only.
    token = (await _token(http, created["client_id"], created["client_secret"])).json()["access_token"]
    secrets_registry.remember(token)
    reply = await http.get("/api/v1/audit-events", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200
    assert {item["org_id"] for item in reply.json()["items"]} <= {org.id}


async def test_ten_parallel_registrations_with_one_key_make_one_client(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    name = _name()
    headers = caller.key()
    replies = await asyncio.gather(*(
        http.post("/api/v1/clients", json={"name": name, **MACHINE}, headers=headers) for _ in range(10)))
    assert [r.status_code for r in replies] == [201] * 10, [r.text for r in replies]
    assert len({r.json()["client_id"] for r in replies}) == 1
    assert len({r.json()["client_secret"] for r in replies}) == 1  # the replay: same caller, same reply
    secrets_registry.remember(replies[0].json()["client_secret"])
    assert sorted(r.headers.get("idempotent-replayed", "false") for r in replies) == ["false"] + ["true"] * 9
    rows = await services.db.run(lambda db: db.execute(select(Client).where(Client.name == name)))
    assert len(rows.scalars().all()) == 1
    assert [e.action for e in await _events(services, replies[0].json()["client_id"])] == ["client.created"]


async def test_a_client_cannot_delete_itself(http, rp, services):
    caller = await integrator(http, rp, scopes=["idp:clients:write", "idp:clients:read"])
    assert_problem(await http.delete(f"/api/v1/clients/{caller.client_id}", headers=caller.headers),
                   409, "conflict")
    assert (await http.get(f"/api/v1/clients/{caller.client_id}", headers=caller.headers)).status_code == 200


# ---- idp:clients:write gives no more power than the caller has (SECURITY-CHECKLIST 89) ----------

EVERY_API_SCOPE = sorted(SCOPES)


async def _registration(services, client_id: str) -> dict:
    client = await services.db.run(lambda db: db.get(Client, client_id))
    return {"scopes": client.scopes, "first_party": client.first_party, "name": client.name,
            "redirect_uris": client.redirect_uris, "secret_hash": client.secret_hash}


async def test_a_caller_gives_a_client_only_the_api_scopes_its_token_carries(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    name = _name()
    reply = await http.post("/api/v1/clients", json={"name": name, **MACHINE, "scopes": EVERY_API_SCOPE},
                            headers=caller.key())
    body = assert_problem(reply, 403, "forbidden")
    beyond = sorted(set(SCOPES) - set(WRITE))
    assert body["detail"] == ("you may give a client only the API scopes your token carries; "
                              f"not these: {' '.join(beyond)}")
    one_more = await http.post("/api/v1/clients", json={"name": name, **MACHINE,
                                                         "scopes": ["idp:audit:read", "idp:users:write"]},
                               headers=caller.key())
    assert assert_problem(one_more, 403, "forbidden")["detail"].endswith("not these: idp:users:write")
    rows = await services.db.run(lambda db: db.execute(select(Client).where(Client.name == name)))
    assert rows.scalars().all() == []

    # What it holds it may give, with any non-API scopes; then not one scope more by a change.
    created = (await _create(http, caller, scopes=["openid", "idp:audit:read", "idp:clients:read"])).json()
    assert created["scopes"] == ["openid", "idp:audit:read", "idp:clients:read"]
    url = f"/api/v1/clients/{created['client_id']}"
    widened = await http.patch(url, json={"scopes": ["idp:audit:read", "idp:users:write"]}, headers=caller.headers)
    assert assert_problem(widened, 403, "forbidden")["detail"].endswith("not these: idp:users:write")
    assert (await _registration(services, created["client_id"]))["scopes"] == created["scopes"]
    assert [e.action for e in await _events(services, created["client_id"])] == ["client.created"]
    # And the client it registered cannot get more at /token than it was given.
    token = await _token(http, created["client_id"], created["client_secret"], "idp:users:write")
    assert token.status_code == 400 and token.json()["error"] == "invalid_scope"


async def test_a_token_narrower_than_its_client_grants_only_what_it_carries(http, rp, services):
    caller = await integrator(http, rp, [*WRITE, "idp:users:write"], request_scope="idp:clients:write")
    reply = await http.post("/api/v1/clients", json={"name": _name(), **MACHINE, "scopes": ["idp:users:write"]},
                            headers=caller.key())
    assert assert_problem(reply, 403, "forbidden")["detail"].endswith("not these: idp:users:write")


async def test_a_client_cannot_change_its_own_registration_but_may_rotate_its_secret(http, rp, services):
    client = await rp.register(grant_types=["client_credentials"], redirect_uris=[], first_party=False,
                               scopes=["idp:clients:read", "idp:clients:write"], name="self-widener")
    token = (await _token(http, client.client_id, client.secret)).json()["access_token"]
    secrets_registry.remember(token)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/v1/clients/{client.client_id}"
    before = await _registration(services, client.client_id)
    for change in ({"scopes": EVERY_API_SCOPE}, {"name": "Renamed"}, {"first_party": True}):
        body = assert_problem(await http.patch(url, json=change, headers=headers), 409, "conflict")
        assert body["detail"] == "a client cannot change its own registration; use another client or the CLI"
    assert await _registration(services, client.client_id) == before
    assert [e.action for e in await _events(services, client.client_id)] == ["client.created"]
    refused = await _token(http, client.client_id, client.secret, "idp:users:write")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"

    # Rotating its own secret is credential hygiene: allowed, and the new secret works.
    rotated = await http.post(f"{url}/secret", headers=headers | {"Idempotency-Key": secrets.token_hex(8)})
    assert rotated.status_code == 200, rotated.text
    secret = rotated.json()["client_secret"]
    secrets_registry.remember(secret)
    assert (await _token(http, client.client_id, client.secret)).status_code == 401
    assert (await _token(http, client.client_id, secret)).status_code == 200
    events = await _events(services, client.client_id)
    assert [(e.action, e.actor_type, e.actor_id) for e in events] == [
        ("client.created", "operator", None), ("client.secret_rotated", "client", client.client_id)]


async def test_a_caller_cannot_change_rotate_or_delete_a_stronger_client(http, rp, services):
    weak = await integrator(http, rp, WRITE)
    strong = await integrator(http, rp)  # every API scope
    url = f"/api/v1/clients/{strong.client_id}"
    before = await _registration(services, strong.client_id)
    beyond = " ".join(sorted(set(SCOPES) - set(WRITE)))
    for method, path, body in [("PATCH", url, {"name": "Mine now"}), ("PATCH", url, {"scopes": WRITE}),
                               ("POST", f"{url}/secret", None), ("DELETE", url, None)]:
        reply = await http.request(method, path, json=body, headers=weak.key())
        problem = assert_problem(reply, 403, "forbidden")
        assert problem["detail"] == f"this client has API scopes your token does not carry: {beyond}"
    assert await _registration(services, strong.client_id) == before
    assert [e.action for e in await _events(services, strong.client_id)] == ["client.created"]
    # It may still read it, and the strong client's token still works.
    assert (await http.get(url, headers=weak.headers)).status_code == 200
    assert (await http.get("/api/v1/clients", headers=strong.headers)).status_code == 200
    # A caller that carries all of its API scopes may change it.
    renamed = await http.patch(f"/api/v1/clients/{weak.client_id}", json={"name": "Renamed by strong"},
                               headers=strong.headers)
    assert renamed.status_code == 200, renamed.text


async def test_first_party_clients_are_for_operators_only(http, rp, services):
    caller = await integrator(http, rp, WRITE)
    name = _name()
    reply = await http.post("/api/v1/clients", json={"name": name, **MACHINE, "first_party": True},
                            headers=caller.key())
    body = assert_problem(reply, 403, "forbidden")
    assert body["detail"] == "only an operator (the idp command) may make a client first-party"
    rows = await services.db.run(lambda db: db.execute(select(Client).where(Client.name == name)))
    assert rows.scalars().all() == []

    created = (await _create(http, caller)).json()
    reply = await http.patch(f"/api/v1/clients/{created['client_id']}", json={"first_party": True},
                             headers=caller.headers)
    assert assert_problem(reply, 403, "forbidden")["detail"] == body["detail"]
    assert (await _registration(services, created["client_id"]))["first_party"] is False

    # An operator's first-party client (no consent page) is not the API's to redirect or take over.
    app = await rp.register(scopes=["openid", "profile"])
    url = f"/api/v1/clients/{app.client_id}"
    before = await _registration(services, app.client_id)
    assert before["first_party"] is True
    for method, path, change in [("PATCH", url, {"redirect_uris": ["https://evil.example/cb"]}),
                                 ("PATCH", url, {"first_party": False}),
                                 ("POST", f"{url}/secret", None), ("DELETE", url, None)]:
        reply = await http.request(method, path, json=change, headers=caller.key())
        problem = assert_problem(reply, 403, "forbidden")
        assert problem["detail"] == "a first-party client is managed by operators only (the idp command)"
    assert await _registration(services, app.client_id) == before
    assert [e.action for e in await _events(services, app.client_id)] == ["client.created"]


async def test_a_scope_removed_from_a_client_leaves_its_tokens_at_once(http, rp, services):
    target = await integrator(http, rp, ["idp:audit:read", "idp:clients:read"])
    admin = await integrator(http, rp, WRITE)
    assert (await http.get("/api/v1/audit-events", headers=target.headers)).status_code == 200

    reply = await http.patch(f"/api/v1/clients/{target.client_id}", json={"scopes": ["idp:clients:read"]},
                             headers=admin.headers)
    assert reply.status_code == 200 and reply.json()["scopes"] == ["idp:clients:read"]

    # The same token, issued with idp:audit:read, no longer has it; what the client kept works.
    refused = await http.get("/api/v1/audit-events", headers=target.headers)
    assert assert_problem(refused, 403, "insufficient-scope")["missing_scope"] == "idp:audit:read"
    assert (await http.get("/api/v1/clients", headers=target.headers)).status_code == 200
