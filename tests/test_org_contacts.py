"""Organisation contacts and their change requests (seed 002): both the current and the new contact
confirm with personal single-use links read from real mail; either refusing closes the request; a
locked billing contact cannot change; requests expire, are withdrawn, re-sent (old links die) and
replaced; ten parallel uses of links change the contact exactly once; strangers, editors and
members cannot ask; the page the link opens works over HTTP with CSRF; every change is audited.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from idp.accounts.models import User
from idp.audit.service import Actor
from idp.db import utcnow
from idp.orgs import contacts as texts
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.models import ContactChangeRequest, Membership, OrgContact
from tests import secrets_registry
from tests.mail_sms import until
from tests.rp import form_field

OPERATOR = Actor.operator("ops")
LINK = re.compile(r"http://idp\.test(/orgs/contact-requests\?token=([A-Za-z0-9_-]+))")


@pytest.fixture
def s(delivering_app):
    return delivering_app.state.services


@pytest.fixture
async def browser(delivering_app):
    import httpx
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=delivering_app),
                                 base_url="http://idp.test") as client:
        yield client


# ---- helpers -------------------------------------------------------------------------------------

class Org:
    """An organisation whose owner holds all three contacts, with one member per role."""

    def __init__(self, org_id: str, people: dict[str, tuple[str, str]]) -> None:
        self.id = org_id
        self.people = people  # name -> (user id, email)

    def id_of(self, name: str) -> str:
        return self.people[name][0]

    def email_of(self, name: str) -> str:
        return self.people[name][1]

    def actor(self, name: str) -> Actor:
        return Actor.user(self.id_of(name))


async def _person(s, name: str) -> tuple[str, str]:
    email = f"{name}-{secrets.token_hex(5)}@example.com"
    user = await s.db.run(lambda db: s.accounts.create_user(db, email=email, password=None, name=name.title()))
    return user.id, email


async def _org(s, *roles: tuple[str, str]) -> Org:
    """roles: (name, role) besides the owner "owner"; plus an outsider "stranger"."""
    people = {"owner": await _person(s, "owner"), "stranger": await _person(s, "stranger")}
    for name, _ in roles:
        people[name] = await _person(s, name)

    async def work(db):
        org = await s.orgs.create(db, OPERATOR, name="Acme Oy", handle=f"acme-{secrets.token_hex(4)}",
                                  owner_id=people["owner"][0])
        for name, role in roles:
            db.add(Membership(org_id=org.id, user_id=people[name][0], role=role))
        await db.flush()
        await s.contacts.assign_initial(db, org.id, people["owner"][0])
        return org.id

    return Org(await s.db.run(work), people)


async def _run(s, method: str, *args):
    return await s.db.run(lambda db: getattr(s.contacts, method)(db, *args))


async def _holders(s, org: Org) -> dict[str, str]:
    rows = await s.db.run(lambda db: db.execute(select(OrgContact.kind, OrgContact.user_id).where(
        OrgContact.org_id == org.id)))
    return dict(rows.all())


def _tokens_in(smtp, email: str) -> list[str]:
    found = []
    for message in smtp.to(email):
        match = LINK.search(smtp.body(message))
        if match:
            found.append(match.group(2))
    return found


async def _token(smtp, email: str, count: int = 1) -> str:
    """The link token of the `count`-th request mail to `email` (remembered for the log test)."""
    tokens = await until(lambda: len(_tokens_in(smtp, email)) >= count and _tokens_in(smtp, email))
    secrets_registry.remember(tokens[count - 1])
    return tokens[count - 1]


async def _subjects(smtp, email: str, count: int) -> list[str]:
    messages = await until(lambda: len(smtp.to(email)) >= count and smtp.to(email))
    return [m["Subject"] for m in messages]


async def _state(s, request_id: str) -> str:
    return await s.db.run(lambda db: db.scalar(select(ContactChangeRequest.state).where(
        ContactChangeRequest.id == request_id)))


async def _events(s, org: Org, action: str) -> list:
    return await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action=action))


# ---- the change needs both confirmations ------------------------------------------------------------

async def test_the_change_needs_both_confirmations_and_both_are_told(s, smtp):
    org = await _org(s, ("maija", "member"))
    request = await _run(s, "request_change", org.actor("owner"), org.id, "technical", org.id_of("maija"))
    old_token = await _token(smtp, org.email_of("owner"))
    new_token = await _token(smtp, org.email_of("maija"))
    body = smtp.body(smtp.to(org.email_of("maija"))[0])
    assert "Acme Oy" in body and "technical contact" in body and "Owner <" in body

    answer = await _run(s, "confirm", new_token)
    assert answer.outcome == "waiting"
    assert (await _holders(s, org))["technical"] == org.id_of("owner")  # one alone changes nothing

    answer = await _run(s, "confirm", old_token)
    assert answer.outcome == "completed"
    holders = await _holders(s, org)
    assert holders == {"admin": org.id_of("owner"), "technical": org.id_of("maija"),
                       "billing": org.id_of("owner")}
    assert await _state(s, request.id) == "completed"
    for name in ("owner", "maija"):
        assert "An organisation contact was changed" in await _subjects(smtp, org.email_of(name), 2)

    changed = await _events(s, org, "contact.changed")
    assert len(changed) == 1
    assert changed[0].before == {"kind": "technical", "user_id": org.id_of("owner")}
    assert changed[0].after["user_id"] == org.id_of("maija")
    assert changed[0].actor_id == org.id_of("owner")  # the second confirmation completed it
    created = await _events(s, org, "contact_request.created")
    assert created[0].actor_id == org.id_of("owner") and created[0].after["to_user_id"] == org.id_of("maija")
    assert len(await _events(s, org, "contact_request.confirmed")) == 2

    # Each link works once, also after the change.
    for token in (old_token, new_token):
        with pytest.raises(Conflict):
            await _run(s, "confirm", token)


async def test_either_contact_refusing_closes_the_request_and_the_requester_is_told(s, smtp):
    org = await _org(s, ("tech", "editor"), ("maija", "member"), ("pekka", "member"))
    await _run(s, "set_directly", OPERATOR, org.id, "technical", org.id_of("tech"))

    # The admin contact (the owner) asks; the new contact refuses.
    first = await _run(s, "request_change", org.actor("owner"), org.id, "technical", org.id_of("maija"))
    old_token = await _token(smtp, org.email_of("tech"))
    answer = await _run(s, "refuse", await _token(smtp, org.email_of("maija")))
    assert answer.outcome == "refused" and await _state(s, first.id) == "refused"
    with pytest.raises(Conflict) as refused:
        await _run(s, "confirm", old_token)
    assert refused.value.message == texts.CLOSED["refused"]
    assert "A contact change was refused" in await _subjects(smtp, org.email_of("owner"), 2)
    assert "A contact change was refused" in await _subjects(smtp, org.email_of("tech"), 3)

    # The current contact refuses after the new one confirmed: still nothing changes.
    second = await _run(s, "request_change", org.actor("owner"), org.id, "technical", org.id_of("pekka"))
    await _run(s, "confirm", await _token(smtp, org.email_of("pekka")))
    await _run(s, "refuse", await _token(smtp, org.email_of("tech"), 2))
    assert await _state(s, second.id) == "refused"
    assert (await _holders(s, org))["technical"] == org.id_of("tech")
    refusals = await _events(s, org, "contact_request.refused")
    assert {e.actor_id for e in refusals} == {org.id_of("maija"), org.id_of("tech")}
    assert all(e.before == {"state": "pending"} and e.after["state"] == "refused" for e in refusals)


# ---- the billing lock ---------------------------------------------------------------------------------

async def test_a_locked_billing_contact_cannot_change_with_a_clear_message(s, smtp):
    org = await _org(s, ("maija", "admin"))
    # A request made before the lock cannot complete while it holds.
    request = await _run(s, "request_change", org.actor("owner"), org.id, "billing", org.id_of("maija"))
    old_token = await _token(smtp, org.email_of("owner"))
    new_token = await _token(smtp, org.email_of("maija"))
    await _run(s, "set_billing_lock", OPERATOR, org.id, True)

    for token in (new_token, old_token):
        with pytest.raises(Conflict) as locked:
            await _run(s, "confirm", token)
        assert locked.value.message == texts.BILLING_LOCKED
        assert "unpaid invoices" in locked.value.message
    with pytest.raises(Conflict) as locked:
        await _run(s, "request_change", org.actor("owner"), org.id, "billing", org.id_of("maija"))
    assert locked.value.message == texts.BILLING_LOCKED
    assert (await _holders(s, org))["billing"] == org.id_of("owner")
    assert await _state(s, request.id) == "pending"  # the refused request made before stays
    # Other kinds are not affected.
    await _run(s, "request_change", org.actor("owner"), org.id, "technical", org.id_of("maija"))

    # Only operators and integrators lock; a stranger does not learn the organisation exists.
    with pytest.raises(Forbidden):
        await _run(s, "set_billing_lock", org.actor("owner"), org.id, False)
    with pytest.raises(OrgNotFound):
        await _run(s, "set_billing_lock", org.actor("stranger"), org.id, False)

    # Unlocked, the same links still work (a refused confirmation spent nothing).
    await _run(s, "set_billing_lock", Actor.client("integrator"), org.id, False)
    await _run(s, "confirm", new_token)
    assert (await _run(s, "confirm", old_token)).outcome == "completed"
    assert (await _holders(s, org))["billing"] == org.id_of("maija")
    locks = await _events(s, org, "org.billing_contact_lock")
    assert [(e.before, e.after) for e in reversed(locks)] == [
        ({"billing_contact_locked": False}, {"billing_contact_locked": True}),
        ({"billing_contact_locked": True}, {"billing_contact_locked": False})]


# ---- expiry, withdrawal, re-sending, replacement ----------------------------------------------------

async def test_an_expired_request_is_refused_with_a_clear_message(s, smtp, browser):
    org = await _org(s, ("maija", "member"))
    request = await _run(s, "request_change", org.actor("owner"), org.id, "admin", org.id_of("maija"))
    new_token = await _token(smtp, org.email_of("maija"))
    await s.db.run(lambda db: db.execute(update(ContactChangeRequest).where(
        ContactChangeRequest.id == request.id).values(expires_at=utcnow() - timedelta(seconds=1))))

    for method in ("confirm", "refuse"):
        with pytest.raises(Conflict) as expired:
            await _run(s, method, new_token)
        assert expired.value.message == texts.EXPIRED
    with pytest.raises(Conflict):
        await _run(s, "resend", org.actor("owner"), request.id)
    assert await _run(s, "pending", org.actor("owner"), org.id) == []
    assert (await _holders(s, org))["admin"] == org.id_of("owner")
    page = await browser.get(f"/orgs/contact-requests?token={new_token}")
    assert page.status_code == 200 and "This request has expired" in page.text
    assert 'value="confirm"' not in page.text


async def test_the_requester_or_the_admin_contact_withdraws(s, smtp):
    org = await _org(s, ("tech", "member"), ("maija", "member"), ("eeva", "editor"))
    await _run(s, "set_directly", OPERATOR, org.id, "technical", org.id_of("tech"))
    # The technical contact hands over its own role, then withdraws.
    request = await _run(s, "request_change", org.actor("tech"), org.id, "technical", org.id_of("maija"))
    token = await _token(smtp, org.email_of("maija"))
    assert [i.request.id for i in await _run(s, "pending", org.actor("tech"), org.id)] == [request.id]
    assert await _run(s, "pending", org.actor("eeva"), org.id) == []  # not hers to see
    with pytest.raises(Forbidden):
        await _run(s, "withdraw", org.actor("eeva"), request.id)
    with pytest.raises(OrgNotFound):
        await _run(s, "withdraw", org.actor("stranger"), request.id)
    await _run(s, "withdraw", org.actor("tech"), request.id)
    assert await _state(s, request.id) == "withdrawn"
    with pytest.raises(Conflict) as closed:
        await _run(s, "confirm", token)
    assert closed.value.message == texts.CLOSED["withdrawn"]
    with pytest.raises(Conflict):
        await _run(s, "withdraw", org.actor("tech"), request.id)

    # The admin contact withdraws another's request.
    again = await _run(s, "request_change", org.actor("tech"), org.id, "technical", org.id_of("maija"))
    await _run(s, "withdraw", org.actor("owner"), again.id)
    assert await _state(s, again.id) == "withdrawn"
    withdrawn = await _events(s, org, "contact_request.withdrawn")
    assert {e.actor_id for e in withdrawn} == {org.id_of("tech"), org.id_of("owner")}
    assert (await _holders(s, org))["technical"] == org.id_of("tech")


async def test_resending_sends_new_links_and_the_old_ones_die(s, smtp):
    org = await _org(s, ("maija", "member"))
    request = await _run(s, "request_change", org.actor("owner"), org.id, "technical", org.id_of("maija"))
    old_first = await _token(smtp, org.email_of("owner"))
    new_first = await _token(smtp, org.email_of("maija"))
    await _run(s, "confirm", old_first)  # the current contact has answered: only the new one is resent

    await _run(s, "resend", org.actor("owner"), request.id)
    new_second = await _token(smtp, org.email_of("maija"), 2)
    assert new_second != new_first
    await asyncio.sleep(0.3)
    assert len(_tokens_in(smtp, org.email_of("owner"))) == 1
    with pytest.raises(OrgNotFound) as dead:
        await _run(s, "confirm", new_first)
    assert dead.value.message == texts.LINK_NOT_VALID
    with pytest.raises(Forbidden):
        await _run(s, "resend", org.actor("maija"), request.id)
    assert (await _run(s, "confirm", new_second)).outcome == "completed"
    assert (await _events(s, org, "contact_request.resent"))[0].after == {"sent_to": ["new"]}


async def test_a_new_request_for_the_same_contact_replaces_the_older(s, smtp):
    org = await _org(s, ("maija", "member"), ("pekka", "member"))
    first = await _run(s, "request_change", org.actor("owner"), org.id, "billing", org.id_of("maija"))
    maija_token = await _token(smtp, org.email_of("maija"))
    second = await _run(s, "request_change", org.actor("owner"), org.id, "billing", org.id_of("pekka"))
    assert await _state(s, first.id) == "withdrawn"
    with pytest.raises(Conflict):
        await _run(s, "confirm", maija_token)
    pending = await _run(s, "pending", org.actor("owner"), org.id)
    assert [i.request.id for i in pending] == [second.id]
    await _run(s, "confirm", await _token(smtp, org.email_of("pekka")))
    await _run(s, "confirm", await _token(smtp, org.email_of("owner"), 2))
    assert (await _holders(s, org))["billing"] == org.id_of("pekka")


# ---- single use under concurrency -------------------------------------------------------------------

async def _attempt(s, method: str, token: str):
    try:
        return (await _run(s, method, token)).outcome
    except OrgError as exc:
        return type(exc).__name__


async def test_ten_parallel_uses_of_one_link_count_once(s, smtp):
    org = await _org(s, ("maija", "member"))
    await _run(s, "request_change", org.actor("owner"), org.id, "technical", org.id_of("maija"))
    token = await _token(smtp, org.email_of("maija"))
    outcomes = await asyncio.gather(*[_attempt(s, "confirm", token) for _ in range(10)])
    assert sorted(outcomes) == ["Conflict"] * 9 + ["waiting"]
    assert len(await _events(s, org, "contact_request.confirmed")) == 1


async def test_ten_parallel_confirmations_by_both_contacts_apply_the_change_exactly_once(s, smtp):
    org = await _org(s, ("maija", "member"))
    request = await _run(s, "request_change", org.actor("owner"), org.id, "admin", org.id_of("maija"))
    old_token = await _token(smtp, org.email_of("owner"))
    new_token = await _token(smtp, org.email_of("maija"))
    attempts = [_attempt(s, "confirm", old_token if i % 2 else new_token) for i in range(10)]
    outcomes = await asyncio.gather(*attempts)
    assert sorted(outcomes) == ["Conflict"] * 8 + ["completed", "waiting"]
    assert (await _holders(s, org))["admin"] == org.id_of("maija")
    assert await _state(s, request.id) == "completed"
    assert len(await _events(s, org, "contact.changed")) == 1


async def test_parallel_refusals_and_confirmations_end_in_one_state(s, smtp):
    org = await _org(s, ("maija", "member"))
    request = await _run(s, "request_change", org.actor("owner"), org.id, "technical", org.id_of("maija"))
    old_token = await _token(smtp, org.email_of("owner"))
    new_token = await _token(smtp, org.email_of("maija"))
    attempts = [_attempt(s, "refuse" if i % 3 == 0 else "confirm", old_token if i % 2 else new_token)
                for i in range(10)]
    outcomes = await asyncio.gather(*attempts)
    state = await _state(s, request.id)
    holder = (await _holders(s, org))["technical"]
    if state == "completed":
        assert holder == org.id_of("maija") and outcomes.count("completed") == 1
    else:
        assert state == "refused" and holder == org.id_of("owner") and outcomes.count("refused") == 1
        assert "completed" not in outcomes


# ---- who may ask -------------------------------------------------------------------------------------

async def test_who_may_request_a_change(s, smtp):
    org = await _org(s, ("admin", "admin"), ("eeva", "editor"), ("maija", "member"), ("tech", "member"))
    stranger = org.actor("stranger")
    with pytest.raises(OrgNotFound):
        await _run(s, "request_change", stranger, org.id, "technical", org.id_of("maija"))
    with pytest.raises(OrgNotFound):
        await _run(s, "request_change", stranger, "no-such-org", "technical", org.id_of("maija"))
    for name in ("eeva", "maija"):
        with pytest.raises(Forbidden):
            await _run(s, "request_change", org.actor(name), org.id, "technical", org.id_of(name))
        with pytest.raises(Forbidden):
            await _run(s, "contacts", org.actor(name), org.id)
    with pytest.raises(OrgNotFound):
        await _run(s, "contacts", stranger, org.id)

    # A holder hands over its own kind only.
    await _run(s, "set_directly", OPERATOR, org.id, "technical", org.id_of("tech"))
    with pytest.raises(Forbidden):
        await _run(s, "request_change", org.actor("tech"), org.id, "billing", org.id_of("tech"))
    await _run(s, "request_change", org.actor("tech"), org.id, "technical", org.id_of("maija"))
    seen = await _run(s, "contacts", org.actor("tech"), org.id)  # a contact sees the contacts
    assert seen["technical"].id == org.id_of("tech") and seen["admin"].id == org.id_of("owner")
    # Owners and admins may ask too (still both contacts confirm).
    await _run(s, "request_change", org.actor("admin"), org.id, "billing", org.id_of("eeva"))

    # The new contact is a member, someone else than the holder; bad input is refused cleanly.
    with pytest.raises(OrgError) as outsider:
        await _run(s, "request_change", org.actor("owner"), org.id, "admin", org.id_of("stranger"))
    assert outsider.value.message == texts.NOT_A_MEMBER
    with pytest.raises(OrgError):
        await _run(s, "request_change", org.actor("owner"), org.id, "admin", org.id_of("owner"))
    for kind, user_id in (("owner", org.id_of("maija")), ("admin", "x\x00y"), ("admin", "x" * 500),
                          (None, org.id_of("maija")), ("admin", None)):
        with pytest.raises(OrgError):
            await _run(s, "request_change", org.actor("owner"), org.id, kind, user_id)
    for bad in ("", "x" * 5000, "idpcc_" + "\x00" * 40, None):
        with pytest.raises(OrgNotFound):
            await _run(s, "confirm", bad)


async def test_set_directly_fills_an_empty_slot_or_is_an_operators_act(s, smtp):
    org = await _org(s, ("admin", "admin"), ("eeva", "editor"), ("tech", "member"))
    with pytest.raises(Conflict) as occupied:
        await _run(s, "set_directly", org.actor("admin"), org.id, "technical", org.id_of("tech"))
    assert occupied.value.message == texts.USE_A_REQUEST
    await _run(s, "set_directly", OPERATOR, org.id, "technical", org.id_of("tech"))
    # The holder leaves the organisation: the slot is empty, an admin may fill it.
    await s.db.run(lambda db: db.execute(delete(Membership).where(
        Membership.org_id == org.id, Membership.user_id == org.id_of("tech"))))
    assert (await _run(s, "contacts", org.actor("admin"), org.id))["technical"] is None
    with pytest.raises(Forbidden):
        await _run(s, "set_directly", org.actor("eeva"), org.id, "technical", org.id_of("eeva"))
    await _run(s, "set_directly", org.actor("admin"), org.id, "technical", org.id_of("eeva"))
    assert (await _holders(s, org))["technical"] == org.id_of("eeva")
    events = await _events(s, org, "contact.set")
    assert events[0].before == {"kind": "technical", "user_id": org.id_of("tech")}
    assert events[0].after == {"kind": "technical", "user_id": org.id_of("eeva")}
    assert "An organisation contact was changed" in await _subjects(smtp, org.email_of("eeva"), 1)


async def test_a_party_confirms_signed_in_by_the_requests_id(s, smtp):
    org = await _org(s, ("maija", "member"), ("eeva", "editor"))
    request = await _run(s, "request_change", org.actor("owner"), org.id, "technical", org.id_of("maija"))
    with pytest.raises(Forbidden):
        await _run(s, "confirm_as", org.actor("eeva"), request.id)
    with pytest.raises(OrgNotFound):
        await _run(s, "confirm_as", org.actor("stranger"), request.id)
    assert (await _run(s, "confirm_as", org.actor("maija"), request.id)).outcome == "waiting"
    with pytest.raises(Conflict):
        await _run(s, "confirm", await _token(smtp, org.email_of("maija")))  # answered already
    assert (await _run(s, "confirm_as", org.actor("owner"), request.id)).outcome == "completed"
    assert (await _holders(s, org))["technical"] == org.id_of("maija")


# ---- the page the link opens --------------------------------------------------------------------------

async def test_the_confirmation_page_works_over_http_with_csrf(s, smtp, delivering_app):
    import httpx

    org = await _org(s, ("maija", "member"))
    await _run(s, "request_change", org.actor("owner"), org.id, "billing", org.id_of("maija"))
    old_token = await _token(smtp, org.email_of("owner"))
    new_token = await _token(smtp, org.email_of("maija"))

    def browser():
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=delivering_app), base_url="http://idp.test")

    async with browser() as maija, browser() as owner:
        page = await maija.get(f"/orgs/contact-requests?token={new_token}")
        assert page.status_code == 200
        assert "Acme Oy" in page.text and "You are the new contact" in page.text
        # No CSRF token, or one from another browser: refused, nothing spent.
        forged = await maija.post("/orgs/contact-requests", data={"token": new_token, "decision": "confirm"})
        assert forged.status_code == 400
        other = await owner.get(f"/orgs/contact-requests?token={old_token}")
        stolen = await maija.post("/orgs/contact-requests", data={
            "token": new_token, "decision": "confirm", "csrf_token": form_field(other.text, "csrf_token")})
        assert stolen.status_code == 400
        assert (await _holders(s, org))["billing"] == org.id_of("owner")

        done = await maija.post("/orgs/contact-requests", data={
            "token": new_token, "decision": "confirm", "csrf_token": form_field(page.text, "csrf_token")})
        assert done.status_code == 200 and "waits for the other contact" in done.text
        again = await maija.post("/orgs/contact-requests", data={
            "token": new_token, "decision": "confirm", "csrf_token": form_field(page.text, "csrf_token")})
        assert again.status_code == 409 and "works once" in again.text
        reopened = await maija.get(f"/orgs/contact-requests?token={new_token}")
        assert "You have already confirmed" in reopened.text and 'value="confirm"' not in reopened.text

        other = await owner.get(f"/orgs/contact-requests?token={old_token}")
        assert "The other contact has already confirmed" in other.text
        done = await owner.post("/orgs/contact-requests", data={
            "token": old_token, "decision": "confirm", "csrf_token": form_field(other.text, "csrf_token")})
        assert done.status_code == 200 and "the change has taken effect" in done.text
        assert (await _holders(s, org))["billing"] == org.id_of("maija")

        unknown = await maija.get("/orgs/contact-requests?token=idpcc_" + "A" * 43)
        assert unknown.status_code == 404 and "This link is not valid" in unknown.text
        garbage = await maija.get("/orgs/contact-requests?token=%00")
        assert garbage.status_code == 404
        bad_decision = await maija.post("/orgs/contact-requests", data={
            "token": new_token, "decision": "maybe", "csrf_token": form_field(page.text, "csrf_token")})
        assert bad_decision.status_code == 400


async def test_refusing_on_the_page(s, smtp, browser):
    org = await _org(s, ("maija", "member"))
    request = await _run(s, "request_change", org.actor("owner"), org.id, "technical", org.id_of("maija"))
    token = await _token(smtp, org.email_of("owner"))
    page = await browser.get(f"/orgs/contact-requests?token={token}")
    assert "You are the current contact" in page.text
    done = await browser.post("/orgs/contact-requests", data={
        "token": token, "decision": "refuse", "csrf_token": form_field(page.text, "csrf_token")})
    assert done.status_code == 200 and "You refused the request" in done.text
    assert await _state(s, request.id) == "refused"
    assert "A contact change was refused" in await _subjects(smtp, org.email_of("maija"), 2)


# ---- the messages ---------------------------------------------------------------------------------

CONTACT_NOTICE_PARAMS = {
    "contact_change_request": {"requester": "Owner <owner@example.com>", "org": "Acme Oy",
                               "contact_kind": "technical contact", "old": "Owner <owner@example.com>",
                               "new": "Maija <maija@example.com>", "until": "2030-01-08 12:00 UTC",
                               "link": "http://idp.test/orgs/contact-requests?token=idpcc_" + "A" * 43},
    "contact_changed": {"org": "Acme Oy", "contact_kind": "technical contact",
                        "old": "Owner <owner@example.com>", "new": "Maija <maija@example.com>"},
    "contact_change_refused": {"org": "Acme Oy", "contact_kind": "technical contact",
                               "old": "Owner <owner@example.com>", "new": "Maija <maija@example.com>",
                               "by": "Maija <maija@example.com>"},
}


def test_the_contact_messages_exist_in_every_language():
    from idp.courier.templates import CONTACT_WORDS, LOCALES, render

    for kind, params in CONTACT_NOTICE_PARAMS.items():
        english = render("email", kind, "en", params)
        for locale in LOCALES:
            assert set(CONTACT_WORDS[locale]) == {"admin", "technical", "billing", "none", "administrator"}
            email, sms = render("email", kind, locale, params), render("sms", kind, locale, params)
            assert email.subject and email.body.endswith("\n") and sms.subject is None, (kind, locale)
            assert "{" not in email.body + sms.body, (kind, locale)
            assert len(sms.body) <= 320, (kind, locale)
            assert "Acme Oy" in email.body and "Maija <maija@example.com>" in email.body
            if kind == "contact_change_request":
                assert params["link"] in email.body and params["until"] in email.body
            if locale != "en":
                assert email.subject != english.subject and email.body != english.body, (kind, locale)
        with pytest.raises(ValueError):
            render("email", kind, "en", {})


async def test_a_contact_is_written_to_in_their_language(s, smtp):
    org = await _org(s, ("maija", "member"))

    await s.db.run(lambda db: db.execute(
        update(User).where(User.id == org.id_of("maija")).values(locale="fi-FI")))
    await _run(s, "request_change", org.actor("owner"), org.id, "billing", org.id_of("maija"))
    await _token(smtp, org.email_of("maija"))
    mail = smtp.to(org.email_of("maija"))[0]
    assert mail["Subject"] == "Vahvista organisaation yhteyshenkilön vaihto"
    assert "laskutusyhteyshenkilö" in smtp.body(mail)
