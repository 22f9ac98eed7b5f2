"""The API's shared conventions: bearer authentication, scopes, problem+json, cursor pagination,
the audit log read."""

from __future__ import annotations

import base64
import secrets

from idp.audit.service import Actor
from tests import secrets_registry
from tests.api_support import assert_problem, integrator


async def test_no_token_is_401_with_a_bearer_challenge(http):
    reply = await http.get("/api/v1/audit-events")
    assert_problem(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"] == "Bearer"


async def test_a_forged_token_is_401_invalid_token(http):
    reply = await http.get("/api/v1/audit-events", headers={"Authorization": "Bearer not.a.token"})
    assert_problem(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_an_under_scoped_token_gets_403_naming_the_missing_scope(http, rp):
    caller = await integrator(http, rp, scopes=["idp:users:read"])
    reply = await http.get("/api/v1/audit-events", headers=caller.headers)
    body = assert_problem(reply, 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:audit:read"
    assert reply.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="idp:audit:read"'


async def test_unknown_api_paths_and_methods_answer_problem_json(http):
    assert_problem(await http.get("/api/v1/no-such-thing"), 404, "not-found")
    assert_problem(await http.delete("/api/v1/audit-events"), 405, "method-not-allowed")


async def test_audit_events_page_newest_first_with_a_cursor(http, rp, services):
    caller = await integrator(http, rp, scopes=["idp:audit:read"])
    action = "test.paging"
    for number in range(5):
        await services.db.run(lambda db, n=number: services.audit.record(
            db, Actor.operator("pager"), action, target_type="thing", target_id=f"t{n}"))
    seen, cursor = [], None
    while True:
        params = {"action": action, "limit": 2} | ({"cursor": cursor} if cursor else {})
        reply = await http.get("/api/v1/audit-events", params=params, headers=caller.headers)
        assert reply.status_code == 200, reply.text
        page = reply.json()
        assert len(page["items"]) <= 2
        seen += [item["target"]["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["t4", "t3", "t2", "t1", "t0"]


async def test_bad_cursor_and_limit_over_the_cap_are_problems(http, rp):
    caller = await integrator(http, rp, scopes=["idp:audit:read"])
    assert_problem(await http.get("/api/v1/audit-events", params={"cursor": "garbage"}, headers=caller.headers),
                   400, "invalid-cursor")
    body = assert_problem(await http.get("/api/v1/audit-events", params={"limit": 201}, headers=caller.headers),
                          422, "validation-error")
    assert body["errors"][0]["loc"] == ["query", "limit"]


async def test_a_replayed_creation_shows_its_secret_again_but_the_table_holds_it_sealed(http, rp, services):
    from sqlalchemy import select

    from idp.api.models import IdempotencyRecord

    caller = await integrator(http, rp, scopes=["idp:clients:write", "idp:users:read"])
    headers = caller.key()
    body = {"name": "Sealed reply", "grant_types": ["client_credentials"], "scopes": ["idp:users:read"]}
    first = await http.post("/api/v1/clients", json=body, headers=headers)
    again = await http.post("/api/v1/clients", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201), first.text
    secret = first.json()["client_secret"]
    secrets_registry.remember(secret)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    record = await services.db.run(lambda db: db.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.client_id == caller.client_id, IdempotencyRecord.key == headers["Idempotency-Key"])))
    assert set(record.body) == {"sealed"} and secret not in str(record.body)


# ---- bad input is never "service unavailable" ------------------------------------------------


async def test_a_name_longer_than_its_parts_columns_is_stored(http, rp, services):
    """A valid name (≤ 200) whose derived given or family name would not fit its 100-character
    column: the account is created (PostgreSQL refused the row, and the API answered 503), the
    full name whole, a part that does not fit left out rather than cut short."""
    from idp.accounts.models import User

    caller = await integrator(http, rp, scopes=["idp:users:write"])
    cases = [("A" * 150, None, None), ("Maija " + "B" * 150, "Maija", None),
             ("C" * 120 + " " + "D" * 79, None, "D" * 79), ("E" * 100 + " " + "F" * 99, "E" * 100, "F" * 99)]
    for name, given, family in cases:
        reply = await http.post("/api/v1/users", json={"email": f"long-{secrets.token_hex(4)}@example.com",
                                                       "name": name}, headers=caller.key())
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert (body["name"], body["given_name"], body["family_name"]) == (name, given, family)
        stored = await services.db.run(lambda db: db.get(User, body["id"]))
        assert (stored.name, stored.given_name, stored.family_name) == (name, given, family)
    # Both parts at their maximum and no full name: joined they would not fit its column.
    body = {"email": f"parts-{secrets.token_hex(4)}@example.com", "given_name": "G" * 100, "family_name": "F" * 100}
    reply = await http.post("/api/v1/users", json=body, headers=caller.key())
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert (created["name"], created["given_name"], created["family_name"]) == (None, "G" * 100, "F" * 100)


async def test_nul_and_odd_characters_in_audit_filters_are_422(http, rp):
    caller = await integrator(http, rp, scopes=["idp:audit:read"])
    for param in ("action", "org_id", "target_id"):
        for bad in ("\x00", "a\x00b", "x y", "a\nb"):
            body = assert_problem(await http.get("/api/v1/audit-events", params={param: bad},
                                                 headers=caller.headers), 422, "validation-error")
            assert body["errors"][0]["loc"] == ["query", param]
    ok = await http.get("/api/v1/audit-events", params={"action": "member.added", "org_id": "b3JnX2FjbWU",
                                                        "target_id": "some-client:id"}, headers=caller.headers)
    assert ok.status_code == 200 and ok.json()["items"] == []


async def test_a_stored_reply_sealed_under_an_old_key_runs_the_request_again(http, rp, services):
    from sqlalchemy import update

    from idp.api.models import IdempotencyRecord
    from idp.keys.crypto import seal

    caller = await integrator(http, rp, scopes=["idp:products:write", "idp:products:read"])
    headers = caller.key()
    body = {"handle": f"kek-{secrets.token_hex(3)}", "name": "Rekeyed", "roles": ["user"]}
    first = await http.post("/api/v1/products", json=body, headers=headers)
    assert first.status_code == 201, first.text
    unreadable = {"sealed": base64.b64encode(seal(b"k" * 32, b"{}", "other key")).decode()}
    await services.db.run(lambda db: db.execute(update(IdempotencyRecord).where(
        IdempotencyRecord.client_id == caller.client_id).values(body=unreadable)))
    again = await http.post("/api/v1/products", json=body, headers=headers)
    # It ran again: the handle is taken now, a clear refusal, never a 500.
    assert_problem(again, 409, "conflict")
    assert "idempotent-replayed" not in again.headers
