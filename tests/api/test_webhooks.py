"""/api/v1/webhooks: subscriptions, their secrets, the URL rules, organisation scoping, and the
outbox that audit events feed (delivery itself: tests/test_webhook_delivery.py)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from sqlalchemy import delete, select

from idp.audit.models import AuditEvent
from idp.audit.service import SYSTEM, Actor
from idp.events.models import WebhookDelivery, WebhookSubscription
from idp.keys.crypto import unseal
from tests import secrets_registry
from tests.api_support import assert_problem, integrator
from tests.org_support import organisation, person

URL = "https://hooks.example.com/idp?token=abc"
RW = ["idp:webhooks:read", "idp:webhooks:write", "idp:audit:read"]  # a subscription reads the audit log


@pytest.fixture(autouse=True)
async def no_subscriptions(services):
    """Each test sees only its own subscriptions, and leaves none to collect other modules' events."""
    async def empty(db):
        await db.execute(delete(WebhookSubscription))
    await services.db.run(empty)
    yield
    await services.db.run(empty)


async def _org(services):
    _, owner = await person(services)
    return await organisation(services, owner)


async def _create(http, caller, **body):
    reply = await http.post("/api/v1/webhooks", json={"url": URL, "event_types": ["member.added"]} | body,
                            headers=caller.key())
    assert reply.status_code == 201, reply.text
    secrets_registry.remember(reply.json()["secret"])
    return reply


async def _row(services, subscription_id):
    return await services.db.run(lambda db: db.get(WebhookSubscription, subscription_id))


async def _audit(services, action, target_id):
    """The audit events of `action` about one subscription."""
    rows = await services.db.run(lambda db: db.scalars(select(AuditEvent).where(
        AuditEvent.action == action, AuditEvent.target_id == target_id)))
    return list(rows)


async def test_create_returns_the_secret_once_and_stores_it_sealed(http, rp, services):
    caller = await integrator(http, rp, RW)
    reply = await _create(http, caller, description="HR system")
    created = reply.json()
    assert reply.headers["location"] == f"/api/v1/webhooks/{created['id']}"
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    assert {k: created[k] for k in ("url", "event_types", "description", "org_id", "enabled",
                                    "disabled_reason", "consecutive_failures", "last_errors")} == {
        "url": URL, "event_types": ["member.added"], "description": "HR system", "org_id": None,
        "enabled": True, "disabled_reason": None, "consecutive_failures": 0, "last_errors": []}

    read = await http.get(reply.headers["location"], headers=caller.headers)
    assert read.status_code == 200
    assert "secret" not in read.json()
    assert read.json() == {k: v for k, v in created.items() if k != "secret"}
    assert read.headers["etag"] == reply.headers["etag"]

    row = await _row(services, created["id"])
    assert created["secret"].encode() not in row.secret
    assert unseal(services.webhooks.key, row.secret, row.id).decode() == created["secret"]
    [event] = await _audit(services, "webhook.created", created["id"])
    assert event.client_id == caller.client_id
    assert event.after["url"] == "https://hooks.example.com/idp"  # the query (a token) is not logged
    assert "secret" not in str(event.after)


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/x", "http://127.0.0.1:8080/x", "https://localhost/x",
    "https://user:pw@hooks.example.com/x", "https://10.0.0.7/x", "https://169.254.169.254/latest",
    "https://[::1]/x", "ftp://hooks.example.com/x", "https:///x", "https://hooks.example.com:99999/x",
    "https://127.1/x", "https://2130706433/x", "https://0x7f.0.0.1/x", "https://localhost./x",
    "https://a.localhost/x", "https://[::ffff:10.0.0.1]/x", "https://0.0.0.0/x",
    # IPv6 addresses that carry an IPv4 one (is_global does not look inside), and site-local:
    "https://[64:ff9b::a9fe:a9fe]/latest",  # NAT64 of 169.254.169.254
    "https://[64:ff9b::7f00:1]/x", "https://[64:ff9b:1::a9fe:a9fe]/x",  # NAT64 of 127.0.0.1; local-use NAT64
    "https://[2002:a9fe:a9fe::1]/x",  # 6to4 of 169.254.169.254
    "https://[::127.0.0.1]/x", "https://[::ffff:169.254.169.254]/x",  # IPv4-compatible; IPv4-mapped
    "https://[fec0::1]/x", "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",  # site-local; Teredo
])
async def test_urls_that_are_not_public_https_are_422(http, rp, services, url):
    caller = await integrator(http, rp, RW)
    reply = await http.post("/api/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=caller.key())
    assert_problem(reply, 422, "validation-error")
    assert await services.db.run(lambda db: db.scalar(select(WebhookSubscription.id))) is None


async def test_a_public_ipv6_literal_is_accepted(http, rp):
    caller = await integrator(http, rp, RW)
    reply = await _create(http, caller, url="https://[2606:4700::1]/hook")
    assert reply.json()["url"] == "https://[2606:4700::1]/hook"


@pytest.mark.parametrize("event_types", [[], ["Member.Added"], ["member"], ["*", "member.added"],
                                         ["member.added\n"], ["x" * 65 + ".y"]])
async def test_event_types_must_be_action_names_or_a_lone_star(http, rp, event_types):
    caller = await integrator(http, rp, RW)
    reply = await http.post("/api/v1/webhooks", json={"url": URL, "event_types": event_types},
                            headers=caller.key())
    assert_problem(reply, 422, "validation-error")


async def test_patch_changes_only_named_fields_and_a_stale_etag_is_412(http, rp, services):
    caller = await integrator(http, rp, RW)
    created = await _create(http, caller, description="first")
    location, etag = created.headers["location"], created.headers["etag"]

    changed = await http.patch(location, json={"event_types": ["*"]},
                               headers={**caller.headers, "If-Match": etag})
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == ["*"]
    assert changed.json()["description"] == "first" and changed.json()["url"] == URL
    assert changed.headers["etag"] != etag

    stale = await http.patch(location, json={"description": "second"}, headers={**caller.headers, "If-Match": etag})
    assert_problem(stale, 412, "precondition-failed")
    assert (await http.get(location, headers=caller.headers)).json()["description"] == "first"
    assert_problem(await http.patch(location, json={"url": None}, headers=caller.headers), 422, "validation-error")
    assert_problem(await http.patch(location, json={"url": "http://hooks.example.com/"}, headers=caller.headers),
                   422, "validation-error")
    [event] = await _audit(services, "webhook.updated", created.json()["id"])
    assert event.before == {"event_types": ["member.added"]} and event.after == {"event_types": ["*"]}


async def test_rotate_the_secret_and_delete(http, rp, services):
    caller = await integrator(http, rp, RW)
    created = (await _create(http, caller)).json()
    rotated = await http.post(f"/api/v1/webhooks/{created['id']}/secret", headers=caller.key())
    assert rotated.status_code == 200, rotated.text
    secret = rotated.json()["secret"]
    secrets_registry.remember(secret)
    assert secret.startswith("whsec_") and secret != created["secret"]
    row = await _row(services, created["id"])
    assert unseal(services.webhooks.key, row.secret, row.id).decode() == secret
    assert len(await _audit(services, "webhook.secret_rotated", created["id"])) == 1

    stale = await http.delete(f"/api/v1/webhooks/{created['id']}", headers={**caller.headers, "If-Match": '"old"'})
    assert_problem(stale, 412, "precondition-failed")
    deleted = await http.delete(f"/api/v1/webhooks/{created['id']}", headers=caller.headers)
    assert deleted.status_code == 204
    assert_problem(await http.get(f"/api/v1/webhooks/{created['id']}", headers=caller.headers), 404, "not-found")
    assert await _row(services, created["id"]) is None
    assert len(await _audit(services, "webhook.deleted", created["id"])) == 1


async def test_enable_resets_a_disabled_subscription(http, rp, services):
    caller = await integrator(http, rp, RW)
    created = (await _create(http, caller)).json()

    async def disable(db):
        row = await db.get(WebhookSubscription, created["id"])
        row.enabled, row.disabled_reason, row.consecutive_failures = False, "50 failed attempts in a row", 50
    await services.db.run(disable)

    reply = await http.post(f"/api/v1/webhooks/{created['id']}/enable", headers=caller.key())
    assert reply.status_code == 200, reply.text
    assert (reply.json()["enabled"], reply.json()["disabled_reason"], reply.json()["consecutive_failures"]) == (
        True, None, 0)
    assert (await http.get(f"/api/v1/webhooks/{created['id']}", headers=caller.headers)).json()["enabled"] is True
    [event] = await _audit(services, "webhook.enabled", created["id"])
    assert event.before == {"enabled": False, "disabled_reason": "50 failed attempts in a row"}


async def test_the_same_post_ten_times_in_parallel_creates_one_subscription(http, rp, services):
    caller = await integrator(http, rp, RW)
    headers = caller.key()
    body = {"url": URL, "event_types": ["member.added"]}
    replies = await asyncio.gather(*(http.post("/api/v1/webhooks", json=body, headers=headers) for _ in range(10)))
    assert [reply.status_code for reply in replies] == [201] * 10, [r.text for r in replies]
    assert len({reply.json()["id"] for reply in replies}) == 1
    assert sum(reply.headers.get("idempotent-replayed") == "true" for reply in replies) == 9
    secrets_registry.remember(replies[0].json()["secret"])
    rows = await services.db.run(lambda db: db.scalars(select(WebhookSubscription.id)))
    assert list(rows) == [replies[0].json()["id"]]


async def test_an_org_bound_client_has_its_own_organisations_subscriptions_only(http, rp, services):
    acme, other = await _org(services), await _org(services)
    platform = await integrator(http, rp, RW)
    bound = await integrator(http, rp, RW, org=acme.id)

    mine = (await _create(http, bound)).json()
    assert mine["org_id"] == acme.id
    theirs = (await _create(http, platform, org_id=other.id)).json()
    everyone = (await _create(http, platform)).json()
    assert theirs["org_id"] == other.id and everyone["org_id"] is None

    assert_problem(await http.post("/api/v1/webhooks", json={"url": URL, "event_types": ["*"], "org_id": other.id},
                                   headers=bound.key()), 404, "not-found")
    assert_problem(await http.post("/api/v1/webhooks", json={"url": URL, "event_types": ["*"], "org_id": "nosuch"},
                                   headers=platform.key()), 404, "not-found")
    listed = await http.get("/api/v1/webhooks", headers=bound.headers)
    assert [item["id"] for item in listed.json()["items"]] == [mine["id"]]
    for other_id in (theirs["id"], everyone["id"]):
        assert_problem(await http.get(f"/api/v1/webhooks/{other_id}", headers=bound.headers), 404, "not-found")
        assert_problem(await http.delete(f"/api/v1/webhooks/{other_id}", headers=bound.headers), 404, "not-found")
        assert_problem(await http.get(f"/api/v1/webhooks/{other_id}/deliveries", headers=bound.headers),
                       404, "not-found")
    every = await http.get("/api/v1/webhooks", headers=platform.headers)
    assert {item["id"] for item in every.json()["items"]} == {mine["id"], theirs["id"], everyone["id"]}
    only = await http.get("/api/v1/webhooks", params={"org_id": other.id}, headers=platform.headers)
    assert [item["id"] for item in only.json()["items"]] == [theirs["id"]]


async def test_scopes_read_and_write(http, rp):
    reader = await integrator(http, rp, ["idp:webhooks:read"])
    body = assert_problem(await http.post("/api/v1/webhooks", json={"url": URL, "event_types": ["*"]},
                                          headers=reader.key()), 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:webhooks:write"
    nobody = await integrator(http, rp, ["idp:audit:read"])
    body = assert_problem(await http.get("/api/v1/webhooks", headers=nobody.headers), 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:webhooks:read"


async def test_choosing_what_a_subscription_receives_needs_audit_read_too(http, rp, services):
    """A subscription is a standing read of the audit log (events with their before and after):
    creating or changing one needs idp:audit:read, whether platform-wide, an organisation's made by
    a platform client, or an organisation-bound client's own."""
    acme = await _org(services)
    writer = await integrator(http, rp, ["idp:webhooks:read", "idp:webhooks:write"])
    bound_writer = await integrator(http, rp, ["idp:webhooks:read", "idp:webhooks:write"], org=acme.id)
    for caller, org_id in ((writer, None), (writer, acme.id), (bound_writer, None), (bound_writer, acme.id)):
        reply = await http.post("/api/v1/webhooks", json={"url": URL, "event_types": ["*"], "org_id": org_id},
                                headers=caller.key())
        body = assert_problem(reply, 403, "insufficient-scope")
        assert body["missing_scope"] == "idp:audit:read"
        assert reply.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="idp:audit:read"'
    assert await services.db.run(lambda db: db.scalar(select(WebhookSubscription.id))) is None

    owner = await integrator(http, rp, RW)
    created = (await _create(http, owner, event_types=["member.added"])).json()
    location = f"/api/v1/webhooks/{created['id']}"
    for change in ({"event_types": ["*"]}, {"url": "https://elsewhere.example.com/x"}, {"description": "x"}):
        body = assert_problem(await http.patch(location, json=change, headers=writer.headers),
                              403, "insufficient-scope")
        assert body["missing_scope"] == "idp:audit:read"
    row = await _row(services, created["id"])
    assert (row.url, row.event_types, row.description) == (URL, ["member.added"], None)

    # What changes neither what is sent nor where needs idp:webhooks:write only.
    rotated = await http.post(f"{location}/secret", headers=writer.key())
    assert rotated.status_code == 200, rotated.text
    secrets_registry.remember(rotated.json()["secret"])
    assert (await http.post(f"{location}/enable", headers=writer.key())).status_code == 200
    assert (await http.delete(location, headers=writer.headers)).status_code == 204
    assert await _row(services, created["id"]) is None

    # With both scopes an organisation-bound client subscribes to its own organisation's events.
    bound = await integrator(http, rp, RW, org=acme.id)
    assert (await _create(http, bound)).json()["org_id"] == acme.id


# ---- the outbox ---------------------------------------------------------------------------------

async def _record(services, action, org_id=None, actor=Actor.operator("tester")):
    return await services.db.run(lambda db: services.audit.record(
        db, actor, action, org_id=org_id, target_type="thing", target_id="t1",
        before={"role": "member"}, after={"role": "admin"}))


async def _deliveries(services):
    rows = await services.db.run(lambda db: db.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))
    return list(rows)


async def test_events_queue_deliveries_by_type_and_organisation(http, rp, services):
    acme, other = await _org(services), await _org(services)
    platform = await integrator(http, rp, RW)
    everything = (await _create(http, platform, event_types=["*"])).json()
    acme_roles = (await _create(http, platform, event_types=["member.role_changed"], org_id=acme.id)).json()
    await _create(http, platform, event_types=["member.removed"])  # wants another type

    async def clear(db):
        await db.execute(delete(WebhookDelivery))
    await services.db.run(clear)  # the webhook.created events above

    in_acme = await _record(services, "member.role_changed", org_id=acme.id)
    in_other = await _record(services, "member.role_changed", org_id=other.id)
    platform_wide = await _record(services, "member.role_changed")
    got = {(d.subscription_id, d.event_id) for d in await _deliveries(services)}
    assert got == {(everything["id"], in_acme.id), (everything["id"], in_other.id),
                   (everything["id"], platform_wide.id), (acme_roles["id"], in_acme.id)}

    [delivery] = [d for d in await _deliveries(services) if d.subscription_id == acme_roles["id"]]
    assert delivery.state == "pending" and delivery.attempts == 0 and delivery.event_type == "member.role_changed"
    assert delivery.payload == {
        "type": "member.role_changed", "timestamp": in_acme.at.isoformat().replace("+00:00", "Z"),
        "data": {"id": in_acme.id, "actor": {"type": "operator", "id": "tester"}, "client_id": None,
                 "ip": None, "org_id": acme.id, "target": {"type": "thing", "id": "t1"},
                 "before": {"role": "member"}, "after": {"role": "admin"}}}

    page = await http.get(f"/api/v1/webhooks/{acme_roles['id']}/deliveries", headers=platform.headers)
    assert page.status_code == 200
    assert page.json() == {"items": [{
        "id": delivery.id, "event_type": "member.role_changed", "state": "pending", "attempts": 0,
        "last_error": None, "created_at": delivery.created_at.isoformat().replace("+00:00", "Z"),
        "delivered_at": None}], "next_cursor": None}


async def test_the_workers_own_bookkeeping_queues_nothing_and_a_disabled_subscription_still_queues(
        http, rp, services):
    platform = await integrator(http, rp, RW)
    created = (await _create(http, platform, event_types=["*"])).json()

    async def clear(db):
        await db.execute(delete(WebhookDelivery))
    await services.db.run(clear)
    await _record(services, "webhook.disabled", actor=SYSTEM)  # what the worker writes
    assert await _deliveries(services) == []

    async def disable(db):
        (await db.get(WebhookSubscription, created["id"])).enabled = False
    await services.db.run(disable)
    event = await _record(services, "member.added")
    # Kept waiting, not dropped: re-enabling the subscription sends it (test_webhook_delivery.py).
    assert [(d.subscription_id, d.event_id, d.state, d.attempts) for d in await _deliveries(services)] == [
        (created["id"], event.id, "pending", 0)]


async def test_deliveries_page_with_a_cursor(http, rp, services):
    platform = await integrator(http, rp, RW)
    created = (await _create(http, platform, event_types=["test.paged"])).json()
    events = [await _record(services, "test.paged") for _ in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await http.get(f"/api/v1/webhooks/{created['id']}/deliveries", params=params,
                               headers=platform.headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    rows = {d.id: d.event_id for d in await _deliveries(services)}
    assert [rows[delivery_id] for delivery_id in seen] == [event.id for event in reversed(events)]
