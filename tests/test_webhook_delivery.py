"""Webhook delivery end to end: subscriptions made through the API, events made by the services,
the worker in the app's lifespan, and a real HTTP receiver on 127.0.0.1 that verifies the Standard
Webhooks signatures with the `standardwebhooks` library."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, select

from idp.app import create_app
from idp.audit.models import AuditEvent
from idp.audit.service import Actor
from idp.api.models import IdempotencyRecord
from idp.db import new_id, utcnow
from idp.events.delivery import PURGE_EVERY
from idp.events.egress import GuardedTransport, allowed
from idp.events.models import WebhookDelivery, WebhookSubscription
from tests import secrets_registry
from tests.api_support import integrator
from tests.org_support import organisation, person
from tests.rp import RelyingParty
from tests.server_process import free_port
from tests.webhook_receiver import Dripping, Receiver

POLL = 0.1
RW = ["idp:webhooks:read", "idp:webhooks:write", "idp:audit:read"]


@pytest.fixture(autouse=True)
async def no_subscriptions(services):
    """Each test's workers see only its own subscriptions and deliveries."""
    async def empty(db):
        await db.execute(delete(WebhookSubscription))
    await services.db.run(empty)
    yield
    await services.db.run(empty)


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


class Running:
    """An app with its webhook worker running, an HTTP client on it and an integrator's token."""

    def __init__(self, app, http: httpx.AsyncClient) -> None:
        self.app, self.http = app, http
        self.s = app.state.services
        self.caller = None

    async def subscribe(self, url: str, event_types: list[str], **body) -> tuple[str, str]:
        """A subscription through the API: (id, secret)."""
        if self.caller is None:
            self.caller = await integrator(self.http, RelyingParty(self.app, self.s), RW)
        reply = await self.http.post("/api/v1/webhooks", json={"url": url, "event_types": event_types, **body},
                                     headers=self.caller.key())
        assert reply.status_code == 201, reply.text
        secrets_registry.remember(reply.json()["secret"])
        return reply.json()["id"], reply.json()["secret"]

    async def subscription(self, subscription_id: str) -> dict:
        reply = await self.http.get(f"/api/v1/webhooks/{subscription_id}", headers=self.caller.headers)
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def deliveries(self, subscription_id: str) -> list[dict]:
        reply = await self.http.get(f"/api/v1/webhooks/{subscription_id}/deliveries", headers=self.caller.headers)
        assert reply.status_code == 200, reply.text
        return reply.json()["items"]

    async def record(self, action: str, org_id: str | None = None) -> AuditEvent:
        return await self.s.db.run(lambda db: self.s.audit.record(
            db, Actor.operator("tester"), action, org_id=org_id, target_type="thing", target_id="t1"))


@asynccontextmanager
async def running(settings, **extra):
    app = create_app(settings.model_copy(update={
        "webhooks_in_process": True, "webhook_poll_seconds": POLL, "webhook_backoff_seconds": 0.1,
        "webhook_backoff_max_seconds": 0.4, "webhook_allow_http_loopback": True,
        "webhook_timeout_seconds": 3.0, **extra}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as http:
            yield Running(app, http)


async def _until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_delivery_is_signed_as_standard_webhooks_says(settings, receiver):
    async with running(settings) as r:
        subscription_id, secret = await r.subscribe(f"{receiver.url}/hook", ["test.signed"])
        event = await r.record("test.signed")
        [got] = await receiver.wait_for(1)
        payload = got.verify(secret)  # the library's check: signature and a fresh timestamp
        assert payload == {"type": "test.signed", "timestamp": event.at.isoformat().replace("+00:00", "Z"),
                           "data": {"id": event.id, "actor": {"type": "operator", "id": "tester"},
                                    "client_id": None, "ip": None, "org_id": None,
                                    "target": {"type": "thing", "id": "t1"}, "before": None, "after": None}}
        assert got.path == "/hook" and got.headers["content-type"] == "application/json"
        assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 30
        assert got.headers["webhook-signature"].startswith("v1,")

        async def delivered():
            return (await r.deliveries(subscription_id))[0]["state"] == "delivered"
        await _until(delivered)
        [delivery] = await r.deliveries(subscription_id)
        assert delivery["id"] == got.id and delivery["attempts"] == 1 and delivery["delivered_at"]

        # A rotated secret signs from the next delivery on; the old one no longer verifies.
        rotated = await r.http.post(f"/api/v1/webhooks/{subscription_id}/secret", headers=r.caller.key())
        new_secret = rotated.json()["secret"]
        secrets_registry.remember(new_secret)
        await r.record("test.signed")
        second = (await receiver.wait_for(2))[1]
        assert second.verify(new_secret)["type"] == "test.signed"
        with pytest.raises(Exception, match="signature"):
            second.verify(secret)


async def test_retries_after_500_keep_the_webhook_id_and_then_succeed(settings, receiver):
    receiver.answers = [500, 500]
    async with running(settings) as r:
        subscription_id, secret = await r.subscribe(f"{receiver.url}/hook", ["test.retried"])
        await r.record("test.retried")
        attempts = await receiver.wait_for(3)
        assert len({got.id for got in attempts}) == 1
        for got in attempts:
            got.verify(secret)

        async def delivered():
            return (await r.deliveries(subscription_id))[0]["state"] == "delivered"
        await _until(delivered)
        [delivery] = await r.deliveries(subscription_id)
        assert (delivery["id"], delivery["attempts"], delivery["last_error"]) == (attempts[0].id, 3, None)
        shown = await r.subscription(subscription_id)
        assert shown["enabled"] is True and shown["consecutive_failures"] == 0  # a success resets it
        assert [(e["status"], e["message"]) for e in shown["last_errors"]] == [
            (500, "HTTP 500 Internal Server Error")] * 2
    assert len(receiver.received()) == 3


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_an_endpoint_that_keeps_failing_is_disabled_and_shows_its_last_errors(settings, receiver, services):
    """Disabled only when failing long enough (here 1 s) as well as often enough (3 attempts);
    events go on being queued while it is disabled and are all sent when it is re-enabled."""
    receiver.status = 500
    async with running(settings, webhook_disable_after=3, webhook_disable_after_seconds=1.0) as r:
        subscription_id, secret = await r.subscribe(f"{receiver.url}/hook", ["test.failing"])
        await r.record("test.failing")
        await receiver.wait_for(3)

        async def disabled():
            return (await r.subscription(subscription_id))["enabled"] is False
        await _until(disabled)
        await asyncio.sleep(6 * POLL)
        failures = len(receiver.received())
        assert failures >= 4  # three came within the first second: not yet a sustained failure
        shown = await r.subscription(subscription_id)
        since = shown["failing_since"]
        assert shown["consecutive_failures"] == failures
        assert shown["disabled_reason"] == f"{failures} failed attempts in a row since {since.replace('+00:00', 'Z')}"
        assert [e["status"] for e in shown["last_errors"]] == [500] * min(failures, 5)
        stamps = [e["at"] for e in shown["last_errors"]]
        assert stamps == sorted(stamps, reverse=True)  # newest first
        assert _time(stamps[0]) - _time(since) >= timedelta(seconds=1)
        [delivery] = await r.deliveries(subscription_id)
        assert (delivery["state"], delivery["attempts"]) == ("pending", failures)
        events = await services.db.run(lambda db: services.audit.events(db, action="webhook.disabled"))
        assert [e.actor_type for e in events if e.target_id == subscription_id] == ["system"]

        # An event while it is disabled is queued, not lost, and not sent yet.
        during = await r.record("test.failing")
        await asyncio.sleep(6 * POLL)
        assert len(receiver.received()) == failures  # nothing is sent to a disabled subscription
        waiting = await r.deliveries(subscription_id)
        assert [(d["state"], d["attempts"]) for d in waiting] == [("pending", 0), ("pending", failures)]

        # Re-enabled by its owner once the endpoint works: both waiting deliveries go out.
        receiver.status = 204
        enabled = await r.http.post(f"/api/v1/webhooks/{subscription_id}/enable", headers=r.caller.key())
        assert enabled.status_code == 200 and enabled.json()["consecutive_failures"] == 0
        assert enabled.json()["failing_since"] is None
        sent = (await receiver.wait_for(failures + 2))[failures:]
        assert {got.id for got in sent} == {delivery["id"], waiting[0]["id"]}
        assert {got.verify(secret)["data"]["id"] for got in sent} >= {during.id}


async def test_a_short_outage_does_not_disable_and_loses_nothing(settings, receiver):
    """Many queued deliveries each failing once are many failed attempts in a row, but not a
    sustained failure (24 h by default): the subscription stays enabled and all arrive after."""
    receiver.status = 500
    async with running(settings, webhook_disable_after=3) as r:
        subscription_id, secret = await r.subscribe(f"{receiver.url}/hook", ["test.outage"])
        events = [await r.record("test.outage") for _ in range(6)]

        async def failed_twice_each():  # the marks follow the receiver's answers
            return (await r.subscription(subscription_id))["consecutive_failures"] >= 12
        await _until(failed_twice_each)
        shown = await r.subscription(subscription_id)
        assert shown["enabled"] is True and shown["disabled_reason"] is None
        assert shown["failing_since"] is not None

        receiver.status = 204

        async def all_delivered():
            return [d["state"] for d in await r.deliveries(subscription_id)] == ["delivered"] * 6
        await _until(all_delivered)
        delivered = {got.verify(secret)["data"]["id"] for got in receiver.received()}
        assert delivered == {event.id for event in events}
        shown = await r.subscription(subscription_id)
        assert (shown["enabled"], shown["consecutive_failures"], shown["failing_since"]) == (True, 0, None)


@pytest.mark.parametrize("mode", ["headers", "body"])
async def test_a_dripping_endpoint_holds_a_worker_no_longer_than_the_timeout(settings, mode):
    """httpx's timeouts are per read: an endpoint sending a byte every 0.1 s never trips them. The
    whole attempt has a deadline; the body of an answer is never read (a 2xx status is enough)."""
    dripping = Dripping(mode).start()
    try:
        async with running(settings, webhook_timeout_seconds=1.0, webhook_max_attempts=1) as r:
            subscription_id, _ = await r.subscribe(f"{dripping.url}/hook", ["test.drip"])
            started = time.monotonic()
            await r.record("test.drip")

            async def finished():
                return (await r.deliveries(subscription_id))[0]["state"] != "pending"
            await _until(finished, timeout=10)
            assert time.monotonic() - started < 1.0 + 1.5  # the timeout, and a poll or two
            [delivery] = await r.deliveries(subscription_id)
            shown = await r.subscription(subscription_id)
            if mode == "headers":  # the answer never came: a failed attempt
                assert (delivery["state"], delivery["last_error"]) == ("failed", "no answer within 1 s")
                assert [(e["error"], e["message"]) for e in shown["last_errors"]] == [
                    ("timeout", "no answer within 1 s")]
            else:  # 200 came at once; the endless body was not waited for
                assert (delivery["state"], delivery["last_error"]) == ("delivered", None)
                assert shown["last_errors"] == []
            assert dripping.connections == 1
    finally:
        dripping.stop()


async def test_a_worker_claims_only_what_it_sends_at_once(settings, services):
    """A claimed delivery is sent at once, so its lease cannot run out while it waits its turn."""
    from idp.events.delivery import CONCURRENCY

    subscription = WebhookSubscription(
        id=new_id(), url="http://127.0.0.1:9/x", event_types=["*"], secret=b"x", enabled=True,
        consecutive_failures=0, last_errors=[])
    now = utcnow()

    async def fill(db):
        db.add(subscription)
        await db.flush()
        for _ in range(CONCURRENCY * 3):
            db.add(WebhookDelivery(subscription_id=subscription.id, event_id="e", event_type="test.x",
                                   payload={}, state="pending", attempts=0, next_attempt_at=now))
    await services.db.run(fill)
    worker = services.webhooks.worker
    # Its secret does not open (not sealed under our key): each claimed one is failed at once,
    # which shows how many one round claims.
    claimed = await services.db.run(lambda db: worker._claim(db, utcnow()))
    assert claimed == []
    states = await services.db.run(lambda db: db.scalars(select(WebhookDelivery.state).where(
        WebhookDelivery.subscription_id == subscription.id)))
    assert sorted(states) == ["failed"] * CONCURRENCY + ["pending"] * CONCURRENCY * 2


async def test_housekeeping_deletes_exactly_what_is_past_its_time(settings, services):
    now = utcnow()
    old, recent = now - timedelta(days=8), now - timedelta(days=6)
    enabled = WebhookSubscription(id=new_id(), url="https://a.example.com/", event_types=["*"], secret=b"x",
                                  enabled=True, consecutive_failures=0, last_errors=[])
    disabled = WebhookSubscription(id=new_id(), url="https://b.example.com/", event_types=["*"], secret=b"x",
                                   enabled=False, consecutive_failures=0, last_errors=[])
    rows = {  # name: (subscription, state, created_at, next_attempt_at, delivered_at)
        "delivered_old": (enabled, "delivered", old, old, old),
        "delivered_recent": (enabled, "delivered", old, old, recent),  # made long ago, delivered lately
        "failed_old": (enabled, "failed", old, old, None),
        "failed_recent": (enabled, "failed", old, recent, None),
        "pending_old": (enabled, "pending", old, now, None),  # still being retried: kept
        "waiting_old": (disabled, "pending", old, old, None),  # waited too long: expires
        "waiting_recent": (disabled, "pending", recent, recent, None),
    }
    ids = {name: new_id() for name in rows}
    client = f"housekeeping-{new_id()}"

    async def fill(db):
        db.add_all([enabled, disabled])
        await db.flush()
        for name, (subscription, state, created, next_at, delivered) in rows.items():
            db.add(WebhookDelivery(id=ids[name], subscription_id=subscription.id, event_id="e",
                                   event_type="test.x", payload={}, state=state, attempts=1,
                                   next_attempt_at=next_at, created_at=created, delivered_at=delivered))
        for key, expires in (("expired", now - timedelta(seconds=1)), ("live", now + timedelta(hours=1))):
            db.add(IdempotencyRecord(client_id=client, key=key, fingerprint="f", status=201, body=None,
                                     headers={}, created_at=now - timedelta(hours=24), expires_at=expires))
    await services.db.run(fill)

    purged = await services.webhooks.worker.housekeep(services.db, now=now)
    assert purged.deliveries >= 2 and purged.expired >= 1 and purged.idempotency_records >= 1
    left = {row.id: row for row in await services.db.run(lambda db: db.scalars(select(WebhookDelivery).where(
        WebhookDelivery.id.in_(ids.values()))))}
    assert {name for name, delivery_id in ids.items() if delivery_id in left} == {
        "delivered_recent", "failed_recent", "pending_old", "waiting_old", "waiting_recent"}
    assert (left[ids["waiting_old"]].state, left[ids["waiting_old"]].last_error) == (
        "failed", "expired: its subscription stayed disabled")
    assert left[ids["waiting_recent"]].state == "pending" and left[ids["pending_old"]].state == "pending"
    keys = await services.db.run(lambda db: db.scalars(select(IdempotencyRecord.key).where(
        IdempotencyRecord.client_id == client)))
    assert list(keys) == ["live"]

    # An expired delivery is kept a full retention after it expired, then deleted.
    later = await services.webhooks.worker.housekeep(services.db, now=now + timedelta(days=8))
    assert later.deliveries >= 1
    assert await services.db.run(lambda db: db.get(WebhookDelivery, ids["waiting_old"])) is None


async def test_the_worker_loop_does_the_housekeeping(settings, receiver):
    async with running(settings) as r:
        subscription_id, _ = await r.subscribe(f"{receiver.url}/hook", ["test.kept"])
        old = utcnow() - timedelta(days=8)
        delivery_id = new_id()

        async def add(db):
            db.add(WebhookDelivery(id=delivery_id, subscription_id=subscription_id, event_id="e",
                                   event_type="test.kept", payload={}, state="delivered", attempts=1,
                                   next_attempt_at=old, created_at=old, delivered_at=old))
        await r.s.db.run(add)
        # The loop's first round ran at start-up: the next is PURGE_EVERY later; run it sooner.
        r.s.webhooks.worker._last_housekeeping = time.monotonic() - PURGE_EVERY

        async def gone():
            return await r.s.db.run(lambda db: db.get(WebhookDelivery, delivery_id)) is None
        await _until(gone, timeout=10)


async def test_the_last_attempt_fails_the_delivery_and_errors_never_show_the_query(settings, receiver):
    closed = f"http://127.0.0.1:{free_port()}/down?token=very-private"
    receiver.status = 302
    async with running(settings, webhook_max_attempts=2) as r:
        down, _ = await r.subscribe(closed, ["test.lost"])
        moved, _ = await r.subscribe(f"{receiver.url}/moved", ["test.lost"])
        await r.record("test.lost")

        async def both_failed():
            states = [(await r.deliveries(subscription_id))[0]["state"] for subscription_id in (down, moved)]
            return states == ["failed", "failed"]
        await _until(both_failed)
        assert [got.path for got in receiver.received()] == ["/moved", "/moved"]  # the redirect not followed
        for subscription_id in (down, moved):
            [delivery] = await r.deliveries(subscription_id)
            assert delivery["attempts"] == 2
        shown = await r.subscription(down)
        assert [e["error"] for e in shown["last_errors"]] == ["connection", "connection"]
        assert "very-private" not in str(shown["last_errors"])
        assert "very-private" not in str(await r.deliveries(down))
        assert [(e["status"], e["message"]) for e in (await r.subscription(moved))["last_errors"]] == [
            (302, "redirects are not followed")] * 2


async def test_an_organisation_subscription_receives_only_its_organisations_events(settings, receiver):
    async with running(settings) as r:
        s = r.s
        _, acme_owner = await person(s)
        _, other_owner = await person(s)
        acme, other = await organisation(s, acme_owner), await organisation(s, other_owner)
        _, acme_secret = await r.subscribe(f"{receiver.url}/acme", ["member.added"], org_id=acme.id)
        _, all_secret = await r.subscribe(f"{receiver.url}/all", ["member.added"])
        newcomers = {}
        for org in (acme, other):
            _, newcomers[org.id] = await person(s)
            await s.db.run(lambda db, org=org: s.orgs.members.add(
                db, Actor.operator(), org.id, newcomers[org.id], "member"))
        everything = await receiver.wait_for(2, "/all")
        await receiver.wait_for(1, "/acme")
        await asyncio.sleep(6 * POLL)  # time for a wrong second one to arrive
        [acme_only] = receiver.received("/acme")
        assert acme_only.verify(acme_secret)["data"]["org_id"] == acme.id
        assert acme_only.verify(acme_secret)["type"] == "member.added"
        assert {got.verify(all_secret)["data"]["org_id"] for got in everything} == {acme.id, other.id}


async def test_two_workers_on_one_database_send_each_delivery_once(settings, receiver):
    async with running(settings) as first, running(settings) as second:
        _, secret = await first.subscribe(f"{receiver.url}/hook", ["test.once"])
        for _ in range(20):
            await second.record("test.once")
        received = await receiver.wait_for(20)
        await asyncio.sleep(6 * POLL)
        assert len(receiver.received()) == 20
        assert len({got.id for got in received}) == 20
        for got in received:
            got.verify(secret)

        async def all_marked():
            ids = await first.s.db.run(lambda db: db.scalars(
                select(WebhookDelivery.id).where(WebhookDelivery.state == "delivered")))
            return set(ids) == {got.id for got in received}
        await _until(all_marked)  # the mark follows the receiver's answer


async def test_the_worker_connects_to_public_addresses_only(receiver):
    """Checked on the resolved addresses when connecting, so a public-looking name that resolves
    to this host or the private network reaches nothing."""
    async with httpx.AsyncClient(transport=GuardedTransport(allow_loopback=False)) as guarded:
        with pytest.raises(httpx.ConnectError, match="may not reach"):
            await guarded.post(f"http://localhost:{receiver.port}/x", content=b"{}")
    assert receiver.received() == []
    async with httpx.AsyncClient(transport=GuardedTransport(allow_loopback=True)) as loopback_ok:
        assert (await loopback_ok.post(f"http://localhost:{receiver.port}/x", content=b"{}")).status_code == 204
    assert len(receiver.received()) == 1
    for address in ("10.1.2.3", "192.168.0.1", "169.254.169.254", "fd00::1", "0.0.0.0", "::ffff:10.0.0.1",
                    # IPv6 that carries IPv4 (NAT64, local NAT64, 6to4, IPv4-compatible, Teredo), site-local
                    "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b:1::a9fe:a9fe", "2002:a9fe:a9fe::1",
                    "2002:7f00:1::1", "::127.0.0.1", "::a9fe:a9fe", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                    "fec0::1", "fe80::1%eth0", "::"):
        assert not allowed(address, allow_loopback=True), address
    # ... refused when connecting, before any packet is sent.
    async with httpx.AsyncClient(transport=GuardedTransport(allow_loopback=True)) as loopback_ok:
        for literal in ("[64:ff9b::7f00:1]", "[::127.0.0.1]", "[2002:7f00:1::1]", "[fec0::1]"):
            with pytest.raises(httpx.ConnectError, match="may not reach"):
                await loopback_ok.post(f"http://{literal}:{receiver.port}/x", content=b"{}")
    assert not allowed("::ffff:127.0.0.1", allow_loopback=False)
    assert allowed("93.184.215.14", allow_loopback=False) and allowed("2606:4700::1", allow_loopback=False)
    assert not allowed("127.0.0.1", allow_loopback=False) and allowed("::1", allow_loopback=True)
