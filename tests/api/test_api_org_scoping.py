"""A client bound to one organisation (a business customer's own HR system) sees and changes that
organisation only: every other one is 404 on every route, as if it did not exist, and its list
holds its own alone. A platform client keeps acting on every organisation."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import func, select

from idp.audit.service import Actor
from idp.orgs.errors import Forbidden, OrgNotFound
from idp.orgs.models import Invitation, Membership, Organisation
from tests.api_support import assert_problem, integrator

API = "/api/v1/organisations"
ORGS = ["idp:orgs:read", "idp:orgs:write"]


async def _org(services, owner_id: str, name: str) -> Organisation:
    return await services.db.run(lambda db: services.orgs.create(
        db, Actor.operator("setup"), name=name, handle=f"scope-{secrets.token_hex(4)}", owner_id=owner_id))


@pytest.fixture
async def two_orgs(rp, services):
    """(ours, theirs, {name: user id}): two organisations, each with an owner and a member."""
    people = {name: (await rp.user())[1] for name in ("our_owner", "our_member", "their_owner", "their_member")}
    ours = await _org(services, people["our_owner"], "Ours Oy")
    theirs = await _org(services, people["their_owner"], "Theirs Oy")
    for org, member in ((ours, "our_member"), (theirs, "their_member")):
        await services.db.run(lambda db, org=org, member=member: services.orgs.members.add(
            db, Actor.operator("setup"), org.id, people[member], "member"))
    return ours, theirs, people


async def test_a_bound_client_sees_its_own_organisation_and_lists_only_it(http, rp, two_orgs):
    ours, theirs, people = two_orgs
    caller = await integrator(http, rp, ORGS, org=ours.handle)
    listed = await http.get(API, headers=caller.headers)
    assert listed.status_code == 200
    assert [o["id"] for o in listed.json()["items"]] == [ours.id]
    for params in ({"handle": theirs.handle}, {"name": "Theirs"}):
        assert (await http.get(API, params=params, headers=caller.headers)).json()["items"] == []
    for ref in (ours.id, ours.handle):
        got = await http.get(f"{API}/{ref}", headers=caller.headers)
        assert got.status_code == 200 and got.json()["owner_id"] == people["our_owner"]
    members = (await http.get(f"{API}/{ours.handle}/members", headers=caller.headers)).json()["items"]
    assert {m["user_id"] for m in members} == {people["our_owner"], people["our_member"]}
    # A platform client still sees both.
    platform = await integrator(http, rp, ORGS)
    for org in (ours, theirs):
        assert (await http.get(f"{API}/{org.handle}", headers=platform.headers)).status_code == 200


async def test_a_bound_client_gets_404_for_another_organisation_on_every_route(http, rp, services, two_orgs):
    ours, theirs, people = two_orgs
    caller = await integrator(http, rp, ORGS, org=ours.handle)
    invitation = await services.db.run(lambda db: services.orgs.invitations.invite(
        db, Actor.operator("setup"), theirs.id, "someone@example.com", "member"))
    member = people["their_member"]
    for ref in (theirs.id, theirs.handle):
        base = f"{API}/{ref}"
        calls = [
            ("GET", base, None), ("PATCH", base, {"name": "Taken Over Oy"}),
            ("GET", f"{base}/members", None), ("POST", f"{base}/members", {"user_id": people["our_member"],
                                                                           "role": "admin"}),
            ("GET", f"{base}/members/{member}", None), ("PATCH", f"{base}/members/{member}", {"role": "admin"}),
            ("DELETE", f"{base}/members/{member}", None),
            ("GET", f"{base}/invitations", None),
            ("POST", f"{base}/invitations", {"email": "intruder@example.com", "role": "admin"}),
            ("GET", f"{base}/invitations/{invitation.id}", None),
            ("DELETE", f"{base}/invitations/{invitation.id}", None),
            ("POST", f"{base}/invitations/{invitation.id}/resend", None),
            ("GET", f"{base}/ownership-offer", None), ("POST", f"{base}/ownership-offer", {"to_user_id": member}),
            ("DELETE", f"{base}/ownership-offer", None),
            ("GET", f"{base}/usernames", None),
            ("POST", f"{base}/usernames", {"local_part": "mole", "name": "Mole", "deliver_to": "mole@example.com"}),
            ("GET", f"{base}/policy", None), ("PUT", f"{base}/policy", {"phone_code_sign_in": False}),
        ]
        for method, path, body in calls:
            headers = caller.key() if method == "POST" else caller.headers
            reply = await http.request(method, path, json=body, headers=headers)
            assert_problem(reply, 404, "not-found")
    # Creating organisations is the platform's: 404 too, and nothing was made.
    handle = f"scope-{secrets.token_hex(4)}"
    assert_problem(await http.post(API, json={"name": "New Oy", "handle": handle, "owner": people["our_owner"]},
                                   headers=caller.key()), 404, "not-found")

    # Nothing changed in the other organisation.
    assert (await services.db.run(lambda db: db.get(Organisation, theirs.id))).name == "Theirs Oy"
    roles = await services.db.run(lambda db: db.execute(select(Membership.user_id, Membership.role).where(
        Membership.org_id == theirs.id)))
    assert dict(roles.all()) == {people["their_owner"]: "owner", people["their_member"]: "member"}
    invitations = await services.db.run(lambda db: db.scalar(select(func.count()).select_from(Invitation).where(
        Invitation.org_id == theirs.id)))
    assert invitations == 1
    assert await services.db.run(lambda db: db.scalar(select(func.count()).select_from(Organisation).where(
        Organisation.handle == handle))) == 0


async def test_a_bound_client_manages_its_own_organisation_but_not_its_billing_lock(http, rp, services, two_orgs):
    ours, _, people = two_orgs
    caller = await integrator(http, rp, ORGS, org=ours.id)
    renamed = await http.patch(f"{API}/{ours.handle}", json={"name": "Ours Group Oy"}, headers=caller.headers)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Ours Group Oy"
    invited = await http.post(f"{API}/{ours.handle}/invitations", json={"email": "new.hire@example.com",
                                                                        "role": "editor"}, headers=caller.key())
    assert invited.status_code == 201, invited.text
    body = assert_problem(await http.patch(f"{API}/{ours.handle}", json={"billing_contact_locked": True},
                                           headers=caller.headers), 403, "forbidden")
    assert "operators" in body["detail"]
    assert (await services.db.run(lambda db: db.get(Organisation, ours.id))).billing_contact_locked is False
    # Its audit events carry the client and the organisation.
    events = await services.db.run(lambda db: services.audit.events(db, org_id=ours.id))
    mine = [e for e in events if e.actor_type == "client"]
    assert {e.action for e in mine} == {"org.updated", "invitation.created"}
    assert all((e.actor_id, e.client_id, e.org_id) == (caller.client_id, caller.client_id, ours.id) for e in mine)

    platform = await integrator(http, rp, ORGS)
    locked = await http.patch(f"{API}/{ours.handle}", json={"billing_contact_locked": True}, headers=platform.headers)
    assert locked.status_code == 200 and locked.json()["billing_contact_locked"] is True


async def test_the_services_themselves_refuse_a_bound_client_elsewhere(services, two_orgs):
    """The scoping lives in OrgService.require, so every caller of the services gets it."""
    ours, theirs, people = two_orgs
    bound = Actor.client("idpc_bound", ours.id)
    assert (await services.db.run(lambda db: services.orgs.require(db, bound, ours.handle, "org.update"))).org.id == ours.id
    for method, args in ((services.orgs.require, (theirs.id, "org.view")),
                         (services.orgs.members.list, (theirs.id,)),
                         (services.contacts.contacts, (theirs.id,)),
                         (services.org_policies.view, (theirs.id,))):
        with pytest.raises(OrgNotFound):
            await services.db.run(lambda db, method=method, args=args: method(db, bound, *args))
    listed = await services.db.run(lambda db: services.orgs.list_all(db, bound))
    assert [org.id for org, _, _ in listed] == [ours.id]
    platform = await services.db.run(lambda db: services.orgs.list_all(db, Actor.client("idpc_platform")))
    assert {ours.id, theirs.id} <= {org.id for org, _, _ in platform}


async def test_a_bound_client_cannot_pull_an_existing_account_into_its_organisation(http, rp, services, two_orgs):
    """Adding someone directly would let an organisation's own integration take any account (here
    a member of another organisation only) into its organisation and then read it through
    /users. It invites instead, as the owner's pages do; platform clients still add directly."""
    ours, theirs, people = two_orgs
    victim = people["their_member"]
    caller = await integrator(http, rp, ORGS + ["idp:users:read"], org=ours.handle)
    for ref in (ours.id, ours.handle):
        for role in ("member", "admin"):
            body = assert_problem(await http.post(f"{API}/{ref}/members", json={"user_id": victim, "role": role},
                                                  headers=caller.key()), 403, "forbidden")
            assert body["detail"] == ("an organisation's own integration invites people; "
                                      "it cannot add accounts directly")
    # Nothing was added, nothing audited, and the person stays out of its sight.
    assert await services.db.run(lambda db: services.orgs.membership(db, ours.id, victim)) is None
    assert_problem(await http.get(f"{API}/{ours.handle}/members/{victim}", headers=caller.headers), 404, "not-found")
    assert_problem(await http.get(f"/api/v1/users/{victim}", headers=caller.headers), 404, "not-found")
    events = await services.db.run(lambda db: services.audit.events(db, org_id=ours.id, action="member.added"))
    assert [e for e in events if e.target_id == victim] == []
    # The same refusal in the service, for any caller of it.
    with pytest.raises(Forbidden):
        await services.db.run(lambda db: services.orgs.members.add(
            db, Actor.client(caller.client_id, ours.id), ours.id, victim, "member"))

    # A platform client (and an operator) adds an existing account directly.
    platform = await integrator(http, rp, ORGS)
    added = await http.post(f"{API}/{ours.handle}/members", json={"user_id": victim, "role": "editor"},
                            headers=platform.key())
    assert added.status_code == 201, added.text
    assert added.json()["user_id"] == victim and added.json()["role"] == "editor"
    assert (await services.db.run(lambda db: services.orgs.membership(db, ours.id, victim))).role == "editor"
    newcomer = (await rp.user())[1]
    membership = await services.db.run(lambda db: services.orgs.members.add(
        db, Actor.operator("setup"), ours.id, newcomer, "member"))
    assert membership.role == "member"
