"""Contacts and contact-change requests over /api/v1: a change asked for through the API and
confirmed by both parties through the links they read in real mail; contacts set directly with
If-Match; requests withdrawn and re-sent; the billing lock; audit events naming the client; and
organisation-bound clients kept to their own organisation."""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from sqlalchemy import func, select

from idp.audit.service import Actor
from idp.orgs.models import ContactChangeRequest, Membership, OrgContact
from tests import secrets_registry
from tests.api_support import assert_problem, integrator
from tests.conftest import delivering_fixtures
from tests.mail_sms import until
from tests.rp import form_field

s, rp, browser = delivering_fixtures()
LINK = re.compile(r"http://idp\.test/orgs/contact-requests\?token=([A-Za-z0-9_-]+)")
ORG_SCOPES = ["idp:orgs:read", "idp:orgs:write"]


@pytest.fixture
async def http(delivering_app):
    """The API on the app whose courier really sends the links."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=delivering_app),
                                 base_url="http://idp.test") as client:
        yield client


class Org:
    def __init__(self, org, people: dict[str, tuple[str, str]]) -> None:
        self.id, self.handle, self.people = org.id, org.handle, people

    def id_of(self, name: str) -> str:
        return self.people[name][0]

    def email_of(self, name: str) -> str:
        return self.people[name][1]


async def an_org(s, *members: str, name: str = "Acme Oy") -> Org:
    """An organisation whose owner holds the three contacts, with `members` as plain members."""
    people = {}
    for person in ("owner", *members):
        email = f"{person}-{secrets.token_hex(5)}@example.com"
        user = await s.db.run(lambda db, e=email, p=person: s.accounts.create_user(
            db, email=e, password=None, name=p.title()))
        people[person] = (user.id, email)

    async def work(db):
        org = await s.orgs.create(db, Actor.operator(), name=name, handle=f"acme-{secrets.token_hex(4)}",
                                  owner_id=people["owner"][0])
        for person in members:
            db.add(Membership(org_id=org.id, user_id=people[person][0], role="member"))
        await db.flush()
        return org

    return Org(await s.db.run(work), people)


def links_to(smtp, email: str) -> list[str]:
    return [m.group(1) for m in (LINK.search(smtp.body(message)) for message in smtp.to(email)) if m]


async def link(smtp, email: str, count: int = 1) -> str:
    """The token of the `count`-th confirmation link mailed to `email`."""
    tokens = await until(lambda: len(links_to(smtp, email)) >= count and links_to(smtp, email))
    secrets_registry.remember(tokens[count - 1])
    return tokens[count - 1]


async def confirm_by_link(delivering_app, token: str) -> httpx.Response:
    """What the person does: open the emailed link in a browser of their own and confirm."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=delivering_app),
                                 base_url="http://idp.test") as person:
        page = await person.get(f"/orgs/contact-requests?token={token}")
        assert page.status_code == 200, page.text
        return await person.post("/orgs/contact-requests", data={
            "token": token, "decision": "confirm", "csrf_token": form_field(page.text, "csrf_token")})


async def holders(s, org: Org) -> dict[str, str]:
    rows = await s.db.run(lambda db: db.execute(select(OrgContact.kind, OrgContact.user_id).where(
        OrgContact.org_id == org.id)))
    return dict(rows.all())


# ---- a change entirely through the API ------------------------------------------------------------

async def test_a_contact_change_through_the_api_confirmed_by_both_through_their_emailed_links(
        http, rp, s, smtp, delivering_app):
    org = await an_org(s, "maija")
    caller = await integrator(http, rp, scopes=ORG_SCOPES)
    base = f"/api/v1/organisations/{org.handle}"

    reply = await http.post(f"{base}/contact-change-requests", headers=caller.key(),
                            json={"kind": "technical", "to_user_id": org.id_of("maija")})
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert reply.headers["location"] == f"/api/v1/contact-change-requests/{created['id']}"
    assert "idpcc_" not in reply.text  # the links go to the people only
    assert created | {"id": None, "created_at": None, "expires_at": None} == {
        "id": None, "org_id": org.id, "kind": "technical", "status": "pending",
        "from_user": {"id": org.id_of("owner"), "name": "Owner", "email": org.email_of("owner")},
        "to_user": {"id": org.id_of("maija"), "name": "Maija", "email": org.email_of("maija")},
        "requested_by": None, "old_confirmed": False, "new_confirmed": False,
        "created_at": None, "expires_at": None, "closed_at": None}
    pending = await http.get(f"{base}/contact-change-requests", headers=caller.headers)
    assert pending.status_code == 200 and pending.json() == {"items": [created], "next_cursor": None}

    new_token, old_token = await link(smtp, org.email_of("maija")), await link(smtp, org.email_of("owner"))
    done = await confirm_by_link(delivering_app, new_token)
    assert done.status_code == 200 and "waits for the other contact" in done.text
    halfway = await http.get(f"/api/v1/contact-change-requests/{created['id']}", headers=caller.headers)
    assert (halfway.json()["status"], halfway.json()["new_confirmed"], halfway.json()["old_confirmed"]) == (
        "pending", True, False)
    done = await confirm_by_link(delivering_app, old_token)
    assert done.status_code == 200 and "the change has taken effect" in done.text

    contacts = await http.get(f"{base}/contacts", headers=caller.headers)
    assert contacts.status_code == 200 and contacts.headers["etag"]
    assert {kind: (person or {}).get("id") for kind, person in contacts.json().items()
            if kind != "billing_contact_locked"} == {
        "admin": org.id_of("owner"), "technical": org.id_of("maija"), "billing": org.id_of("owner")}
    closed = await http.get(f"/api/v1/contact-change-requests/{created['id']}", headers=caller.headers)
    assert closed.json()["status"] == "completed" and closed.json()["closed_at"]
    assert (await http.get(f"{base}/contact-change-requests", headers=caller.headers)).json()["items"] == []

    asked = (await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="contact_request.created")))[0]
    assert (asked.actor_type, asked.actor_id, asked.client_id, asked.org_id, asked.target_id) == (
        "client", caller.client_id, caller.client_id, org.id, created["id"])
    changed = (await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="contact.changed")))[0]
    assert changed.after["user_id"] == org.id_of("maija")


async def test_a_request_is_re_sent_and_withdrawn(http, rp, s, smtp, delivering_app):
    org = await an_org(s, "maija")
    caller = await integrator(http, rp, scopes=ORG_SCOPES)
    created = (await http.post(f"/api/v1/organisations/{org.id}/contact-change-requests", headers=caller.key(),
                               json={"kind": "admin", "to_user_id": org.id_of("maija")})).json()
    first = await link(smtp, org.email_of("maija"))
    path = f"/api/v1/contact-change-requests/{created['id']}"

    resent = await http.post(f"{path}/resend", headers=caller.key())
    assert resent.status_code == 202 and resent.json()["id"] == created["id"]
    second = await link(smtp, org.email_of("maija"), count=2)
    assert second != first
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=delivering_app),
                                 base_url="http://idp.test") as maija:
        assert (await maija.get(f"/orgs/contact-requests?token={first}")).status_code == 404

    assert (await http.delete(path, headers=caller.headers)).status_code == 204
    assert (await http.get(path, headers=caller.headers)).json()["status"] == "withdrawn"
    assert_problem(await http.delete(path, headers=caller.headers), 409, "conflict")
    assert_problem(await http.post(f"{path}/resend", headers=caller.key()), 409, "conflict")
    assert (await http.get(f"/api/v1/organisations/{org.id}/contact-change-requests",
                           headers=caller.headers)).json()["items"] == []
    assert (await holders(s, org))["admin"] == org.id_of("owner")
    assert_problem(await http.get("/api/v1/contact-change-requests/no-such-request", headers=caller.headers),
                   404, "not-found")


async def test_refused_requests_say_why(http, rp, s):
    org = await an_org(s, "maija")
    stranger = await an_org(s)
    caller = await integrator(http, rp, scopes=ORG_SCOPES)
    url = f"/api/v1/organisations/{org.id}/contact-change-requests"
    body = assert_problem(await http.post(url, headers=caller.key(), json={
        "kind": "billing", "to_user_id": stranger.id_of("owner")}), 400, "invalid-request")
    assert body["detail"] == "The new contact must be a member of the organisation."
    body = assert_problem(await http.post(url, headers=caller.key(), json={
        "kind": "billing", "to_user_id": org.id_of("owner")}), 400, "invalid-request")
    assert body["detail"] == "This person already is that contact."
    assert_problem(await http.post(url, headers=caller.key(), json={
        "kind": "cleaning", "to_user_id": org.id_of("maija")}), 422, "validation-error")
    await s.db.run(lambda db: s.contacts.set_billing_lock(db, Actor.operator(), org.id, True))
    body = assert_problem(await http.post(url, headers=caller.key(), json={
        "kind": "billing", "to_user_id": org.id_of("maija")}), 409, "conflict")
    assert body["detail"].startswith("The billing contact cannot be changed at the moment")
    assert (await http.get(f"/api/v1/organisations/{org.id}/contacts", headers=caller.headers)
            ).json()["billing_contact_locked"] is True
    reader = await integrator(http, rp, scopes=["idp:orgs:read"])
    body = assert_problem(await http.post(url, headers=reader.key(), json={
        "kind": "admin", "to_user_id": org.id_of("maija")}), 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:orgs:write"
    count = await s.db.run(lambda db: db.scalar(select(func.count()).select_from(ContactChangeRequest).where(
        ContactChangeRequest.org_id == org.id)))
    assert count == 0


async def test_the_same_idempotency_key_asks_once(http, rp, s, smtp):
    org = await an_org(s, "maija")
    caller = await integrator(http, rp, scopes=ORG_SCOPES)
    headers = caller.key()
    url = f"/api/v1/organisations/{org.id}/contact-change-requests"
    body = {"kind": "technical", "to_user_id": org.id_of("maija")}
    first, again = [await http.post(url, json=body, headers=headers) for _ in range(2)]
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    rows = await s.db.run(lambda db: db.scalar(select(func.count()).select_from(ContactChangeRequest).where(
        ContactChangeRequest.org_id == org.id)))
    assert rows == 1
    await link(smtp, org.email_of("maija"))
    assert len(links_to(smtp, org.email_of("maija"))) == 1


# ---- set directly ---------------------------------------------------------------------------------

async def test_a_contact_set_directly_with_if_match(http, rp, s, smtp):
    org = await an_org(s, "maija", "matti")
    caller = await integrator(http, rp, scopes=ORG_SCOPES)
    url = f"/api/v1/organisations/{org.id}/contacts"
    read = await http.get(url, headers=caller.headers)
    stale = read.headers["etag"]

    done = await http.put(f"{url}/billing", json={"user_id": org.id_of("maija")},
                          headers={**caller.headers, "If-Match": stale})
    assert done.status_code == 200, done.text
    assert done.json()["billing"]["id"] == org.id_of("maija")
    assert done.headers["etag"] == (await http.get(url, headers=caller.headers)).headers["etag"] != stale
    told = await until(lambda: smtp.to(org.email_of("maija")))
    assert [m["Subject"] for m in told] == ["An organisation contact was changed"]

    # A stale ETag: 412, and nothing changes.
    assert_problem(await http.put(f"{url}/billing", json={"user_id": org.id_of("matti")},
                                  headers={**caller.headers, "If-Match": stale}), 412, "precondition-failed")
    assert (await holders(s, org))["billing"] == org.id_of("maija")
    # The same PUT again changes nothing (no second event).
    again = await http.put(f"{url}/billing", json={"user_id": org.id_of("maija")}, headers=caller.headers)
    assert again.status_code == 200 and again.json() == done.json()
    set_events = await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="contact.set"))
    assert len(set_events) == 1
    assert (set_events[0].actor_type, set_events[0].client_id, set_events[0].before, set_events[0].after) == (
        "client", caller.client_id, {"kind": "billing", "user_id": org.id_of("owner")},
        {"kind": "billing", "user_id": org.id_of("maija")})

    outsider = await an_org(s)
    body = assert_problem(await http.put(f"{url}/admin", json={"user_id": outsider.id_of("owner")},
                                         headers=caller.headers), 400, "invalid-request")
    assert body["detail"] == "The new contact must be a member of the organisation."
    assert_problem(await http.put(f"{url}/cleaning", json={"user_id": org.id_of("maija")},
                                  headers=caller.headers), 422, "validation-error")
    assert_problem(await http.put(f"{url}/admin", json={"user_id": "bad\x00id"}, headers=caller.headers),
                   422, "validation-error")
    assert_problem(await http.get("/api/v1/organisations/no-such-org/contacts", headers=caller.headers),
                   404, "not-found")


# ---- organisation-bound clients -------------------------------------------------------------------

async def test_an_organisation_bound_client_works_on_its_own_contacts(http, rp, s, smtp):
    org = await an_org(s, "maija")
    bound = await integrator(http, rp, scopes=ORG_SCOPES, org=org.handle)
    assert (await http.get(f"/api/v1/organisations/{org.id}/contacts", headers=bound.headers)).status_code == 200
    asked = await http.post(f"/api/v1/organisations/{org.handle}/contact-change-requests", headers=bound.key(),
                            json={"kind": "technical", "to_user_id": org.id_of("maija")})
    assert asked.status_code == 201, asked.text
    event = (await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="contact_request.created")))[0]
    assert (event.actor_type, event.client_id, event.org_id) == ("client", bound.client_id, org.id)
    # It has the owner's powers, not the platform's: an occupied slot changes by a request only.
    before = (await http.get(f"/api/v1/organisations/{org.id}/contacts", headers=bound.headers)).json()
    refused = await http.put(f"/api/v1/organisations/{org.id}/contacts/billing", headers=bound.headers,
                             json={"user_id": org.id_of("maija")})
    assert_problem(refused, 409, "conflict")
    after = (await http.get(f"/api/v1/organisations/{org.id}/contacts", headers=bound.headers)).json()
    assert after == before


async def test_an_organisation_bound_client_gets_404_for_another_organisations_contacts(http, rp, s, smtp):
    mine, other = await an_org(s), await an_org(s, "maija", name="Other Oy")
    platform = await integrator(http, rp, scopes=ORG_SCOPES)
    theirs = (await http.post(f"/api/v1/organisations/{other.id}/contact-change-requests",
                              headers=platform.key(),
                              json={"kind": "admin", "to_user_id": other.id_of("maija")})).json()
    bound = await integrator(http, rp, scopes=ORG_SCOPES, org=mine.handle)
    base = f"/api/v1/organisations/{other.id}"
    assert_problem(await http.get(f"{base}/contacts", headers=bound.headers), 404, "not-found")
    assert_problem(await http.get(f"{base}/contact-change-requests", headers=bound.headers), 404, "not-found")
    assert_problem(await http.put(f"{base}/contacts/admin", json={"user_id": other.id_of("maija")},
                                  headers=bound.headers), 404, "not-found")
    assert_problem(await http.post(f"{base}/contact-change-requests", headers=bound.key(),
                                   json={"kind": "billing", "to_user_id": other.id_of("maija")}), 404, "not-found")
    request_path = f"/api/v1/contact-change-requests/{theirs['id']}"
    assert_problem(await http.get(request_path, headers=bound.headers), 404, "not-found")
    assert_problem(await http.delete(request_path, headers=bound.headers), 404, "not-found")
    assert_problem(await http.post(f"{request_path}/resend", headers=bound.key()), 404, "not-found")
    assert (await holders(s, other))["admin"] == other.id_of("owner")
    assert (await http.get(request_path, headers=platform.headers)).json()["status"] == "pending"
