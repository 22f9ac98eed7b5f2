"""Organisations over the REST API, as an integrator's back office uses them: an organisation with
members, invitations (the real email arrives over SMTP and a person accepts on the page), an
ownership transfer, usernames and the sign-in policy, all with a client-credentials token;
scopes, If-Match, Idempotency-Key, and the audit events the writes leave."""

from __future__ import annotations

import asyncio
import re
import secrets

import httpx
import pytest
from sqlalchemy import func, select

from idp.audit.models import AuditEvent
from idp.orgs.models import Invitation, Membership, Organisation
from tests import secrets_registry
from tests.api_support import assert_problem, integrator
from tests.conftest import delivering_fixtures
from tests.mail_sms import until
from tests.rp import form_field

s, rp, browser = delivering_fixtures()

ORGS = ["idp:orgs:read", "idp:orgs:write"]
API = "/api/v1/organisations"


@pytest.fixture
async def http(delivering_app):
    """The integrator's HTTP client, on the app whose courier really sends mail."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=delivering_app),
                                 base_url="http://idp.test") as client:
        yield client


def handle() -> str:
    return f"api-{secrets.token_hex(4)}"


async def link_in_mail(smtp, address: str, kind: str, number: int = 1) -> str:
    """The path of the `kind` link ("invitations" or "ownership") in the `number`-th such mail to
    `address` (waiting for it)."""
    pattern = re.compile(rf"http://idp\.test(/orgs/{kind}/(idp(?:inv|own)_[A-Za-z0-9_-]+))")

    def found():
        matches = [pattern.search(smtp.body(m)) for m in smtp.to(address)]
        return [m for m in matches if m]

    match = (await until(lambda: len(found()) >= number and found()))[number - 1]
    secrets_registry.remember(match.group(2))
    return match.group(1)


async def accept_on_page(rp, path: str, email: str) -> httpx.Response:
    """A person opens the emailed link, signs in, and presses Accept."""
    async with rp.browser() as person:
        gate = await person.get(path)
        assert gate.status_code == 303, gate.text
        back = await rp.login(person, gate.headers["location"], email)
        assert back.status_code == 303 and back.headers["location"] == path, back.text
        page = await person.get(path)
        assert page.status_code == 200, page.text
        return await person.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})


async def create_org(http, caller, owner: str, name: str = "Acme Oy") -> dict:
    reply = await http.post(API, json={"name": name, "handle": handle(), "owner": owner}, headers=caller.key())
    assert reply.status_code == 201, reply.text
    return reply.json()


async def count(s, model, *where) -> int:
    return await s.db.run(lambda db: db.scalar(select(func.count()).select_from(model).where(*where)))


# ---- the whole life of an organisation through the API ------------------------------------------

async def test_an_organisation_with_members_invitations_and_a_transfer_entirely_through_the_api(
        http, rp, s, smtp):
    caller = await integrator(http, rp, ORGS)
    owner_email, owner = await rp.user()
    admin_email, admin = await rp.user()
    invitee_email, invitee = await rp.user()

    # The organisation, its owner named by email.
    wanted = handle()
    reply = await http.post(API, json={"name": "Acme  Oy", "handle": wanted.upper(), "business_id": "1234567-8",
                                       "owner": owner_email.upper()}, headers=caller.key())
    assert reply.status_code == 201, reply.text
    org = reply.json()
    assert org == {"id": org["id"], "handle": wanted, "name": "Acme Oy", "business_id": "1234567-8",
                   "billing_contact_locked": False, "owner_id": owner, "created_at": org["created_at"]}
    assert reply.headers["location"] == f"{API}/{org['id']}"
    for ref in (org["id"], wanted):
        got = await http.get(f"{API}/{ref}", headers=caller.headers)
        assert got.status_code == 200 and got.json() == org and got.headers["etag"] == reply.headers["etag"]
    base = f"{API}/{wanted}"

    # A member added by user id.
    added = await http.post(f"{base}/members", json={"user_id": admin, "role": "admin"}, headers=caller.key())
    assert added.status_code == 201, added.text
    assert added.json()["role"] == "admin" and added.json()["email"] == admin_email
    assert added.headers["location"] == f"{API}/{org['id']}/members/{admin}"
    again = await http.post(f"{base}/members", json={"user_id": admin, "role": "member"}, headers=caller.key())
    assert_problem(again, 409, "conflict")

    # An invitation: the real email arrives, the person accepts on the page.
    sent = await http.post(f"{base}/invitations", json={"email": invitee_email, "role": "editor"},
                           headers=caller.key())
    assert sent.status_code == 201, sent.text
    invitation = sent.json()
    assert set(invitation) == {"id", "email", "role", "state", "invited_by", "created_at", "expires_at"}
    assert (invitation["email"], invitation["role"], invitation["state"], invitation["invited_by"]) == (
        invitee_email, "editor", "pending", None)
    assert sent.headers["location"] == f"{API}/{org['id']}/invitations/{invitation['id']}"
    listed = await http.get(f"{base}/invitations", headers=caller.headers)
    assert [i["id"] for i in listed.json()["items"]] == [invitation["id"]]
    path = await link_in_mail(smtp, invitee_email, "invitations")
    assert path.rsplit("/", 1)[1] not in sent.text
    done = await accept_on_page(rp, path, invitee_email)
    assert done.status_code == 200 and "Acme Oy" in done.text, done.text
    members = (await http.get(f"{base}/members", headers=caller.headers)).json()
    assert {(m["user_id"], m["role"]) for m in members["items"]} == {
        (owner, "owner"), (admin, "admin"), (invitee, "editor")}
    assert members["next_cursor"] is None
    accepted = await http.get(f"{base}/invitations/{invitation['id']}", headers=caller.headers)
    assert accepted.json()["state"] == "accepted"
    assert (await http.get(f"{base}/invitations", headers=caller.headers)).json()["items"] == []

    # A second invitation: revoked, and revoking again is a conflict.
    other = (await http.post(f"{base}/invitations", json={"email": "later@example.com", "role": "member"},
                             headers=caller.key())).json()
    resent = await http.post(f"{base}/invitations/{other['id']}/resend", headers=caller.key())
    assert resent.status_code == 202 and resent.json()["state"] == "pending"
    assert len(await until(lambda: len(smtp.to("later@example.com")) >= 2 and smtp.to("later@example.com"))) >= 2
    assert (await http.delete(f"{base}/invitations/{other['id']}", headers=caller.headers)).status_code == 204
    assert_problem(await http.delete(f"{base}/invitations/{other['id']}", headers=caller.headers), 409, "conflict")
    assert (await s.db.run(lambda db: db.get(Invitation, other["id"]))).revoked_at is not None

    # The ownership offer: made, withdrawn, made again, accepted by the member on the page.
    assert_problem(await http.get(f"{base}/ownership-offer", headers=caller.headers), 404, "not-found")
    offered = await http.post(f"{base}/ownership-offer", json={"to_user_id": admin}, headers=caller.key())
    assert offered.status_code == 201, offered.text
    assert (offered.json()["from_user_id"], offered.json()["to_user_id"], offered.json()["state"]) == (
        owner, admin, "pending")
    assert (await http.get(f"{base}/ownership-offer", headers=caller.headers)).json() == offered.json()
    assert (await http.delete(f"{base}/ownership-offer", headers=caller.headers)).status_code == 204
    assert_problem(await http.get(f"{base}/ownership-offer", headers=caller.headers), 404, "not-found")
    assert_problem(await http.delete(f"{base}/ownership-offer", headers=caller.headers), 409, "conflict")
    assert (await http.post(f"{base}/ownership-offer", json={"to_user_id": admin},
                            headers=caller.key())).status_code == 201
    path = await link_in_mail(smtp, admin_email, "ownership", number=2)
    assert (await accept_on_page(rp, path, admin_email)).status_code == 200
    after = (await http.get(f"{base}", headers=caller.headers)).json()
    assert after["owner_id"] == admin
    member = (await http.get(f"{base}/members/{owner}", headers=caller.headers)).json()
    assert member["role"] == "admin"

    # A username, listed afterwards.
    made = await http.post(f"{base}/usernames", json={"local_part": "Maija", "name": "Maija Meikäläinen",
                                                      "deliver_to": "maija.temp@example.com", "role": "member"},
                           headers=caller.key())
    assert made.status_code == 201, made.text
    assert made.json() == {"username": f"maija@{wanted}", "user_id": made.json()["user_id"], "role": "member"}
    usernames = (await http.get(f"{base}/usernames", headers=caller.headers)).json()
    assert usernames == {"items": [{"username": f"maija@{wanted}", "user_id": made.json()["user_id"]}],
                         "next_cursor": None}
    assert_problem(await http.post(f"{base}/usernames", json={"local_part": "maija", "name": "M",
                                                              "deliver_to": "x@example.com"},
                                   headers=caller.key()), 409, "conflict")

    # Removing a member; the owner cannot be removed.
    assert (await http.delete(f"{base}/members/{invitee}", headers=caller.headers)).status_code == 204
    assert_problem(await http.get(f"{base}/members/{invitee}", headers=caller.headers), 404, "not-found")
    assert_problem(await http.delete(f"{base}/members/{admin}", headers=caller.headers), 403, "forbidden")
    assert (await s.db.run(lambda db: s.orgs.owner_of(db, org["id"]))).user_id == admin

    # Every write left an audit event naming the client and the organisation.
    events = await s.db.run(lambda db: s.audit.events(db, org_id=org["id"], limit=200))
    by_client = {e.action for e in events if e.actor_type == "client"}
    assert {"org.created", "member.added", "invitation.created", "invitation.resent", "invitation.revoked",
            "ownership.offered", "ownership.offer_withdrawn", "username.created", "member.removed"} <= by_client
    assert all(e.client_id == caller.client_id and e.actor_id == caller.client_id and e.org_id == org["id"]
               for e in events if e.actor_type == "client")
    assert {"invitation.accepted", "ownership.transferred"} <= {e.action for e in events if e.actor_type == "user"}


async def test_the_sign_in_policy_is_read_and_replaced_with_if_match(http, rp, s):
    caller = await integrator(http, rp, ORGS)
    _, owner = await rp.user()
    base = f"{API}/{(await create_org(http, caller, owner))['id']}"
    first = await http.get(f"{base}/policy", headers=caller.headers)
    assert first.status_code == 200
    assert first.json()["policy"] == {"require_second_factor": False, "allowed_factors": ["totp", "sms", "email"],
                                      "sms_after_password": False, "phone_code_sign_in": True,
                                      "phone_code_max_role": "member", "max_session_age": None}
    wanted = {"require_second_factor": True, "allowed_factors": ["sms", "totp"], "max_session_age": 3600}
    put = await http.put(f"{base}/policy", json=wanted, headers={**caller.headers, "If-Match": first.headers["etag"]})
    assert put.status_code == 200, put.text
    assert put.json()["policy"] == {**first.json()["policy"], **wanted, "allowed_factors": ["totp", "sms"]}
    stale = await http.put(f"{base}/policy", json={}, headers={**caller.headers, "If-Match": first.headers["etag"]})
    assert_problem(stale, 412, "precondition-failed")
    rejected = await http.put(f"{base}/policy", json={"require_second_factor": True, "allowed_factors": []},
                              headers=caller.headers)
    body = assert_problem(rejected, 422, "policy-rejected")
    assert "choose at least one second factor" in body["detail"]
    assert (await http.get(f"{base}/policy", headers=caller.headers)).json() == put.json()
    [event] = await s.db.run(lambda db: s.audit.events(db, action="policy.updated", org_id=base.rsplit("/", 1)[1]))
    assert (event.actor_type, event.client_id) == ("client", caller.client_id)
    assert event.after == {"require_second_factor": True, "allowed_factors": ["totp", "sms"], "max_session_age": 3600}


# ---- scopes, If-Match, idempotency ---------------------------------------------------------------

async def test_an_under_scoped_token_gets_403_naming_the_missing_scope(http, rp, s):
    reader = await integrator(http, rp, ["idp:orgs:read"])
    _, owner = await rp.user()
    wanted = handle()
    reply = await http.post(API, json={"name": "Acme Oy", "handle": wanted, "owner": owner}, headers=reader.key())
    body = assert_problem(reply, 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:orgs:write"
    assert await count(s, Organisation, Organisation.handle == wanted) == 0
    other = await integrator(http, rp, ["idp:users:read"])
    body = assert_problem(await http.get(API, headers=other.headers), 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:orgs:read"


async def test_a_stale_if_match_is_412_and_changes_nothing(http, rp, s):
    caller = await integrator(http, rp, ORGS)
    _, owner = await rp.user()
    _, member = await rp.user()
    org = await create_org(http, caller, owner)
    base = f"{API}/{org['id']}"
    etag = (await http.get(base, headers=caller.headers)).headers["etag"]
    renamed = await http.patch(base, json={"name": "Acme Group Oy"}, headers={**caller.headers, "If-Match": etag})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Acme Group Oy"
    assert renamed.json()["business_id"] is None  # only the named field changed
    stale = await http.patch(base, json={"name": "Lost Update Oy"}, headers={**caller.headers, "If-Match": etag})
    assert_problem(stale, 412, "precondition-failed")
    row = await s.db.run(lambda db: db.get(Organisation, org["id"]))
    assert row.name == "Acme Group Oy"
    [event] = await s.db.run(lambda db: s.audit.events(db, org_id=org["id"], action="org.updated"))
    assert (event.before, event.after, event.client_id) == ({"name": "Acme Oy"}, {"name": "Acme Group Oy"},
                                                            caller.client_id)

    await http.post(f"{base}/members", json={"user_id": member, "role": "member"}, headers=caller.key())
    member_etag = (await http.get(f"{base}/members/{member}", headers=caller.headers)).headers["etag"]
    changed = await http.patch(f"{base}/members/{member}", json={"role": "editor"},
                               headers={**caller.headers, "If-Match": member_etag})
    assert changed.status_code == 200 and changed.json()["role"] == "editor"
    stale = await http.patch(f"{base}/members/{member}", json={"role": "admin"},
                             headers={**caller.headers, "If-Match": member_etag})
    assert_problem(stale, 412, "precondition-failed")
    role = await s.db.run(lambda db: db.scalar(select(Membership.role).where(
        Membership.org_id == org["id"], Membership.user_id == member)))
    assert role == "editor"
    # The owner is demoted by a transfer only.
    assert_problem(await http.patch(f"{base}/members/{owner}", json={"role": "admin"}, headers=caller.headers),
                   403, "forbidden")
    assert_problem(await http.patch(f"{base}/members/{member}", json={"role": "owner"}, headers=caller.headers),
                   422, "validation-error")


async def test_the_same_idempotency_key_twice_and_ten_times_in_parallel_makes_one_organisation(http, rp, s):
    caller = await integrator(http, rp, ORGS)
    _, owner = await rp.user()
    body = {"name": "Once Oy", "handle": handle(), "owner": owner}
    headers = caller.key()
    first = await http.post(API, json=body, headers=headers)
    second = await http.post(API, json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json() and second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert await count(s, Organisation, Organisation.handle == body["handle"]) == 1

    body = {"name": "Parallel Oy", "handle": handle(), "owner": owner}
    headers = caller.key()
    replies = await asyncio.gather(*(http.post(API, json=body, headers=headers) for _ in range(10)))
    assert {r.status_code for r in replies} == {201}, [r.text for r in replies]
    assert len({r.text for r in replies}) == 1
    assert await count(s, Organisation, Organisation.handle == body["handle"]) == 1
    org_id = replies[0].json()["id"]
    assert await count(s, AuditEvent, AuditEvent.org_id == org_id, AuditEvent.action == "org.created") == 1
    # Without a key, a retry is a new request: the handle is taken now.
    assert_problem(await http.post(API, json=body, headers=caller.headers), 409, "conflict")


async def test_refusals_are_problems_and_change_nothing(http, rp, s):
    caller = await integrator(http, rp, ORGS)
    _, owner = await rp.user()
    assert_problem(await http.post(API, json={"name": "X Oy", "handle": handle(), "owner": "nobody@example.com"},
                                   headers=caller.key()), 400, "invalid-request")
    assert_problem(await http.post(API, json={"name": "X Oy", "handle": "a--b", "owner": owner},
                                   headers=caller.key()), 422, "validation-error")
    assert_problem(await http.post(API, json={"name": "X\x00", "handle": handle(), "owner": owner},
                                   headers=caller.key()), 422, "validation-error")
    assert_problem(await http.get(f"{API}/no-such-org", headers=caller.headers), 404, "not-found")
    org = await create_org(http, caller, owner)
    assert_problem(await http.post(API, json={"name": "Y Oy", "handle": org["handle"], "owner": owner},
                                   headers=caller.key()), 409, "conflict")
    assert_problem(await http.post(f"{API}/{org['id']}/members", json={"user_id": "nobody", "role": "member"},
                                   headers=caller.key()), 400, "invalid-request")
    assert_problem(await http.post(f"{API}/{org['id']}/ownership-offer", json={"to_user_id": owner},
                                   headers=caller.key()), 409, "conflict")
    assert await count(s, Membership, Membership.org_id == org["id"]) == 1


async def test_the_list_pages_and_filters(http, rp):
    caller = await integrator(http, rp, ORGS)
    _, owner = await rp.user()
    tag = secrets.token_hex(3)
    made = [await create_org(http, caller, owner, name=f"Filter {tag} {n}%") for n in range(3)]
    seen, cursor = [], None
    while True:
        params = {"name": f"filter {tag}", "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await http.get(API, params=params, headers=caller.headers)).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [o["id"] for o in made]
    # The name filter is a substring, not a pattern: % and _ are themselves.
    percent = (await http.get(API, params={"name": f"{tag} 1%"}, headers=caller.headers)).json()["items"]
    assert [o["id"] for o in percent] == [made[1]["id"]]
    assert (await http.get(API, params={"name": f"{tag} _"}, headers=caller.headers)).json()["items"] == []
    exact = (await http.get(API, params={"handle": made[1]["handle"]}, headers=caller.headers)).json()
    assert [o["id"] for o in exact["items"]] == [made[1]["id"]]


async def test_one_integrator_builds_a_customer_entirely_through_the_api(http, rp, s, smtp, delivering_app):
    """The issue's scenario in one go, with one client-credentials token: an organisation, a member,
    an invitation accepted by the person, product access, and a contact change confirmed by both
    contacts through their emailed links — every step through /api/v1, every result read back."""
    from tests.api.test_api_contacts import confirm_by_link, link

    caller = await integrator(http, rp, ORGS + ["idp:products:read", "idp:products:write"])
    owner_email, owner = await rp.user()
    member_email, member = await rp.user()
    invitee_email, invitee = await rp.user()
    org = await create_org(http, caller, owner_email)
    base = f"{API}/{org['id']}"

    added = await http.post(f"{base}/members", json={"user_id": member, "role": "member"}, headers=caller.key())
    assert added.status_code == 201, added.text
    invited = await http.post(f"{base}/invitations", json={"email": invitee_email, "role": "admin"},
                              headers=caller.key())
    assert invited.status_code == 201, invited.text
    accepted = await accept_on_page(rp, await link_in_mail(smtp, invitee_email, "invitations"), invitee_email)
    assert accepted.status_code == 200, accepted.text

    product = await http.post("/api/v1/products", headers=caller.key(), json={
        "handle": f"p-{secrets.token_hex(3)}", "name": "Caller", "roles": ["user", "admin"]})
    assert product.status_code == 201, product.text
    granted = await http.put(f"{base}/members/{member}/products/{product.json()['handle']}",
                             json={"role": "user"}, headers=caller.headers)
    assert granted.status_code == 200, granted.text

    asked = await http.post(f"{base}/contact-change-requests", headers=caller.key(),
                            json={"kind": "technical", "to_user_id": invitee})
    assert asked.status_code == 201, asked.text
    for email in (invitee_email, owner_email):
        confirmed = await confirm_by_link(delivering_app, await link(smtp, email))
        assert confirmed.status_code == 200, confirmed.text

    members = (await http.get(f"{base}/members", headers=caller.headers)).json()["items"]
    assert {(m["user_id"], m["role"]) for m in members} == {(owner, "owner"), (member, "member"), (invitee, "admin")}
    access = (await http.get(f"{base}/product-access", headers=caller.headers)).json()["items"]
    assert [(a["user_id"], a["role"]) for a in access] == [(member, "user")]
    contacts = (await http.get(f"{base}/contacts", headers=caller.headers)).json()
    assert (contacts["admin"]["id"], contacts["technical"]["id"], contacts["billing"]["id"]) == (owner, invitee, owner)
    events = await s.db.run(lambda db: db.execute(select(
        AuditEvent.action, AuditEvent.actor_type, AuditEvent.actor_id, AuditEvent.client_id).where(
        AuditEvent.org_id == org["id"], AuditEvent.action.in_(
            ["org.created", "member.added", "invitation.created", "product.access_granted",
             "contact_request.created"]))))
    by_api = ("client", caller.client_id, caller.client_id)
    assert set(events.all()) == {
        ("org.created", *by_api), ("member.added", *by_api), ("invitation.created", *by_api),
        ("product.access_granted", *by_api), ("contact_request.created", *by_api),
        ("member.added", "user", invitee, None)}  # the person accepting the invitation
