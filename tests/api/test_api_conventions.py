"""The API's shared conventions: bearer authentication, scopes, problem+json, cursor pagination,
the audit log read."""

from __future__ import annotations

from idp.audit.service import Actor
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
