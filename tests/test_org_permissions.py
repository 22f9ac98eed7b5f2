"""The role-by-action matrix: every management action in orgs/permissions.PERMISSIONS for an
owner, an admin, an editor, a member and an outsider, against a table written out here (not
computed from PERMISSIONS), through the real services where they exist and `OrgService.require`
for the rest. Outsiders always get OrgNotFound, the same for a real organisation and a made-up id."""

from __future__ import annotations

import secrets

import pytest

from idp.audit.service import Actor
from idp.orgs.errors import Forbidden, OrgNotFound
from idp.orgs.permissions import PERMISSIONS
from tests.org_support import organisation, person, roles_of, team

Y, N = True, False
#                          owner admin editor member
EXPECTED = {
    "org.view":               (Y, Y, Y, Y),
    "org.leave":              (N, Y, Y, Y),
    "org.update":             (Y, Y, N, N),
    "org.delete":             (Y, N, N, N),
    "members.view":           (Y, Y, N, N),
    "members.invite":         (Y, Y, N, N),
    "members.change_role":    (Y, Y, N, N),
    "members.remove":         (Y, Y, N, N),
    "ownership.transfer":     (Y, N, N, N),
    "products.view":          (Y, Y, N, N),
    "products.manage_access": (Y, Y, N, N),
    "contacts.view":          (Y, Y, N, N),
    "contacts.manage":        (Y, Y, N, N),
    "policies.view":          (Y, Y, N, N),
    "policies.manage":        (Y, Y, N, N),
    "usernames.create":       (Y, Y, N, N),
    "audit.view":             (Y, Y, N, N),
}
MEMBER_ROLES = ("owner", "admin", "editor", "member")


@pytest.fixture
def s(services):
    return services


def test_the_table_covers_every_action():
    assert set(EXPECTED) == set(PERMISSIONS)


async def _team_with_target(s):
    org, ids, emails = await team(s)
    _, ids["target"] = await person(s, name="Target Person")
    await s.db.run(lambda db: s.orgs.members.add(db, Actor.operator(), org.id, ids["target"], "member"))
    return org, ids


def _attempt(s, action: str, actor: Actor, org_ref: str, ids: dict):
    """The real service call for `action` where one exists, else the single way in."""
    services = {
        "members.view": lambda db: s.orgs.members.list(db, actor, org_ref),
        "members.invite": lambda db: s.orgs.invitations.invite(
            db, actor, org_ref, f"new-{secrets.token_hex(4)}@example.com", "member"),
        "members.change_role": lambda db: s.orgs.members.change_role(db, actor, org_ref, ids["target"], "editor"),
        "members.remove": lambda db: s.orgs.members.remove(db, actor, org_ref, ids["target"]),
        "org.leave": lambda db: s.orgs.members.leave(db, actor, org_ref),
        "ownership.transfer": lambda db: s.orgs.ownership.offer(db, actor, org_ref, ids["target"]),
    }
    work = services.get(action, lambda db: s.orgs.require(db, actor, org_ref, action))
    return s.db.run(work)


@pytest.mark.parametrize("action", sorted(EXPECTED))
async def test_every_role_against_every_action(s, action):
    for index, role in enumerate(MEMBER_ROLES):
        org, ids = await _team_with_target(s)  # a fresh team: allowed actions change things
        actor = Actor.user(ids[role])
        if EXPECTED[action][index]:
            await _attempt(s, action, actor, org.id, ids)
        else:
            with pytest.raises(Forbidden):
                await _attempt(s, action, actor, org.id, ids)
    # An outsider: OrgNotFound, the same answer for a real organisation and a made-up one.
    org, ids = await _team_with_target(s)
    before = await roles_of(s, org.id)
    outsider = Actor.user(ids["outsider"])
    with pytest.raises(OrgNotFound) as real:
        await _attempt(s, action, outsider, org.id, ids)
    with pytest.raises(OrgNotFound) as made_up:
        await _attempt(s, action, outsider, "made-up-org", ids)
    assert (type(real.value), real.value.message, real.value.status) == (
        type(made_up.value), made_up.value.message, made_up.value.status)
    assert await roles_of(s, org.id) == before


async def test_an_admin_cannot_invite_an_owner_or_change_the_owner(s):
    org, ids = await _team_with_target(s)
    admin = Actor.user(ids["admin"])
    attempts = [
        lambda db: s.orgs.invitations.invite(db, admin, org.id, "boss@example.com", "owner"),
        lambda db: s.orgs.members.change_role(db, admin, org.id, ids["owner"], "admin"),
        lambda db: s.orgs.members.change_role(db, admin, org.id, ids["target"], "owner"),
        lambda db: s.orgs.members.remove(db, admin, org.id, ids["owner"]),
        lambda db: s.orgs.ownership.offer(db, admin, org.id, ids["admin"]),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            await s.db.run(attempt)
    assert (await roles_of(s, org.id))[ids["owner"]] == "owner"


async def test_an_outsider_cannot_tell_another_organisations_objects_from_made_up_ones(s):
    """A member of organisation B, acting on A's members and invitations, through A or through B:
    always OrgNotFound with the same message as for ids that never existed."""
    org, ids = await _team_with_target(s)
    _, stranger = await person(s)
    other = await organisation(s, stranger, name="Other Oy")
    invitation = await s.db.run(lambda db: s.orgs.invitations.invite(
        db, Actor.user(ids["owner"]), org.id, "someone@example.com", "member"))
    offer = await s.db.run(lambda db: s.orgs.ownership.offer(db, Actor.user(ids["owner"]), org.id, ids["admin"]))
    me = Actor.user(stranger)
    answers = []
    for ref in (org.id, org.handle, other.id, "made-up-org"):
        for target in (ids["target"], "made-up-user"):
            for work in (lambda db: s.orgs.members.change_role(db, me, ref, target, "member"),
                         lambda db: s.orgs.members.remove(db, me, ref, target)):
                with pytest.raises(OrgNotFound) as refused:
                    await s.db.run(work)
                answers.append(refused.value.message)
        for invitation_id in (invitation.id, "made-up-invitation"):
            for work in (lambda db: s.orgs.invitations.revoke(db, me, ref, invitation_id),
                         lambda db: s.orgs.invitations.resend(db, me, ref, invitation_id)):
                with pytest.raises(OrgNotFound) as refused:
                    await s.db.run(work)
                answers.append(refused.value.message)
    for offer_id in (offer.id, "made-up-offer"):
        with pytest.raises(OrgNotFound) as refused:
            await s.db.run(lambda db: s.orgs.ownership.accept(db, me, offer_id=offer_id))
        answers.append(refused.value.message)
    assert len(set(answers)) == 1
    assert len(await roles_of(s, org.id)) == 5


def test_licences_follow_the_rank_of_the_member_they_belong_to():
    from idp.orgs.permissions import allowed, may_give_product_role, product_role_level
    action = "products.manage_access"
    assert allowed("owner", action, target_role="owner") and allowed("admin", action, target_role="admin")
    assert not allowed("admin", action, target_role="owner")
    assert allowed("admin", action, target_role="member") and not allowed("editor", action, target_role="member")
    four = ["owner", "admin", "editor", "viewer"]
    assert [product_role_level(four, r) for r in four] == [3, 2, 1, 0]
    assert [product_role_level(["chief", "lead", "staff", "helper", "guest"], r)
            for r in ("chief", "lead", "staff", "guest")] == [4, 3, 2, 0]
    assert product_role_level(four, "unknown") == 4
    assert may_give_product_role("owner", four, "owner") and not may_give_product_role("admin", four, "owner")
    assert may_give_product_role("admin", four, "admin") and may_give_product_role("owner", ["x"] * 1, "x")
