"""The organisation pages hold to the organisation's sign-in policy (ui/orgs/common.py), as tokens do:
a session the policy refuses, one too old, one without a second factor the policy accepts, and a
restricted (phone-code) session beyond its capped role are sent to sign in again or to a second
factor, and nothing they post changes anything. Strangers learn nothing.

Sessions are made as the sign-in leaves them (methods by name, amr), so each case is exact."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from idp.audit.service import Actor
from idp.db import utcnow
from idp.orgs.models import Membership, OwnershipOffer
from idp.sessions.models import BrowserSession
from tests import secrets_registry
from tests.conftest import ISSUER
from tests.org_support import queued
from tests.rp import PASSWORD, form_field

AMR = {"pwd": "pwd", "sms": "sms", "email": "otp", "totp": "otp", "recovery": "otp"}


def csrf_for(html: str, action: str) -> str:
    match = re.search(rf'action="{re.escape(action)}"[^>]*>\s*<input type="hidden" name="csrf_token" '
                      rf'value="([^"]+)"', html)
    assert match, f"no form posting to {action}"
    return match.group(1)


@pytest.fixture
async def browser(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as client:
        yield client


async def signed_in(services, browser, user_id: str, *methods: str, age: int = 0) -> str:
    """A session of `user_id` signed in with `methods` (by name) `age` seconds ago, in `browser`."""
    amr = list(dict.fromkeys(AMR[m] for m in methods)) + (["mfa"] if len(methods) > 1 else [])

    async def work(db):
        session, cookie = await services.sessions.start(
            db, user_id=user_id, amr=amr, acr=None, methods=list(methods),
            auth_time=utcnow() - timedelta(seconds=age))
        return session.id, cookie
    session_id, cookie = await services.db.run(work)
    secrets_registry.remember(cookie)
    browser.cookies.set("idp_session", cookie, domain="idp.test")
    return session_id


async def owner_and_org(services, rp, **policy):
    email, owner_id = await rp.user()
    handle = f"org-{secrets.token_hex(4)}"
    org = await services.db.run(lambda db: services.orgs.create(db, Actor.operator(), name="Held Oy", handle=handle,
                                                                owner_id=owner_id))
    _, admin_id = await rp.user()
    await services.db.run(lambda db: services.orgs.members.add(db, Actor.operator(), org.id, admin_id, "admin"))
    if policy:
        await set_policy(services, handle, **policy)
    return email, owner_id, admin_id, handle


async def set_policy(services, handle: str, **changes) -> None:
    await services.db.run(lambda db: services.org_policies.update(db, Actor.operator(), handle, changes))


async def policy_of(services, handle: str) -> dict:
    view = await services.db.run(lambda db: services.org_policies.view(db, Actor.operator(), handle))
    return view.policy.model_dump()


async def state_of(services, handle: str, admin_id: str) -> tuple:
    """What an attacker would change: the policy, offers made, the admin's role."""
    async def work(db):
        org = await services.orgs.find(db, handle)
        offers = (await db.execute(select(func.count()).select_from(OwnershipOffer).where(
            OwnershipOffer.org_id == org.id))).scalar_one()
        role = (await db.execute(select(Membership.role).where(
            Membership.org_id == org.id, Membership.user_id == admin_id))).scalar_one()
        return offers, role
    return (await policy_of(services, handle), *(await services.db.run(work)))


async def forms(browser, handle: str) -> dict[str, str]:
    """The CSRF tokens of the policy, ownership and role forms, read while the pages still load."""
    policies = await browser.get(f"/orgs/{handle}/policies")
    ownership = await browser.get(f"/orgs/{handle}/ownership")
    members = await browser.get(f"/orgs/{handle}/members")
    assert policies.status_code == ownership.status_code == members.status_code == 200
    return {"policies": csrf_for(policies.text, f"/orgs/{handle}/policies"),
            "offer": csrf_for(ownership.text, f"/orgs/{handle}/ownership/offer"),
            "role": csrf_for(members.text, f"/orgs/{handle}/members/role")}


async def attack(browser, handle: str, tokens: dict[str, str], admin_id: str) -> list[httpx.Response]:
    """Loosen the policy, offer ownership, demote the admin: the SIM thief's three posts."""
    return [
        await browser.post(f"/orgs/{handle}/policies", data={
            "csrf_token": tokens["policies"], "phone_code_sign_in": "yes", "phone_code_max_role": "owner",
            "allowed_factors": ["totp", "sms", "email"]}),
        await browser.post(f"/orgs/{handle}/ownership/offer", data={"csrf_token": tokens["offer"], "user": admin_id}),
        await browser.post(f"/orgs/{handle}/members/role", data={"csrf_token": tokens["role"], "user": admin_id,
                                                                 "role": "member"}),
    ]


def to_step_up(reply: httpx.Response) -> bool:
    return reply.status_code == 303 and reply.headers["location"].startswith("/login/factor?flow=")


def to_sign_in(reply: httpx.Response) -> bool:
    return reply.status_code == 303 and reply.headers["location"].startswith("/login?flow=")


# ---- the SIM thief -------------------------------------------------------------------------------

async def test_an_sms_only_session_of_the_owner_cannot_loosen_the_policy_or_take_the_organisation(
        services, rp, browser):
    """Finding A: the owner's SIM alone (amr ["sms"]) in an organisation capping such sessions at
    "member" and requiring a second factor changes nothing; it is asked for a second factor."""
    _, owner_id, admin_id, handle = await owner_and_org(services, rp, phone_code_max_role="owner")
    await signed_in(services, browser, owner_id, "sms")
    tokens = await forms(browser, handle)  # while the policy still let such a session in
    await set_policy(services, handle, phone_code_max_role="member", require_second_factor=True)
    before = await state_of(services, handle, admin_id)
    for reply in await attack(browser, handle, tokens, admin_id):
        assert to_step_up(reply), (reply.status_code, reply.headers.get("location"))
    assert await state_of(services, handle, admin_id) == before
    for page in ("", "/policies", "/ownership", "/members", "/audit"):
        assert to_step_up(await browser.get(f"/orgs/{handle}{page}"))
    # The step-up never offers the SIM's own channel again.
    page = await browser.get((await browser.get(f"/orgs/{handle}/policies")).headers["location"])
    assert page.status_code == 200 and 'value="sms"' not in page.text


async def test_a_restricted_session_acts_with_the_capped_role_only(services, rp, browser):
    """No second factor required, phone-code sessions capped at "member": the owner's SMS-only
    session sees the overview but manages nothing; a second factor lifts the restriction."""
    email, owner_id, admin_id, handle = await owner_and_org(services, rp, phone_code_max_role="owner")
    await signed_in(services, browser, owner_id, "sms")
    tokens = await forms(browser, handle)
    await set_policy(services, handle, phone_code_max_role="member")
    before = await state_of(services, handle, admin_id)
    assert (await browser.get(f"/orgs/{handle}")).status_code == 200  # a member may see the overview
    for reply in await attack(browser, handle, tokens, admin_id):
        assert to_step_up(reply)
    assert await state_of(services, handle, admin_id) == before

    # The second factor (an emailed code: the account has no app) and the page opens.
    step = await browser.get(f"/orgs/{handle}/policies")
    assert to_step_up(step)
    page = await browser.get(step.headers["location"])
    code = (await queued(services, email, "second_factor"))[-1]["code"]
    secrets_registry.remember(code)
    done = await browser.post("/login/factor", data={"flow": form_field(page.text, "flow"),
                                                      "csrf_token": form_field(page.text, "csrf_token"),
                                                      "answer": code})
    assert done.status_code == 303 and done.headers["location"] == f"/orgs/{handle}/policies", done.text
    assert (await browser.get(f"/orgs/{handle}/policies")).status_code == 200
    methods = await services.db.run(lambda db: db.execute(select(BrowserSession.methods).where(
        BrowserSession.user_id == owner_id, BrowserSession.ended_at.is_(None))))
    assert methods.scalars().all() == [["sms", "email"]]


async def test_a_restricted_session_cannot_accept_ownership(services, rp, browser):
    _, owner_id, admin_id, handle = await owner_and_org(services, rp, phone_code_max_role="admin")
    offer = await services.db.run(lambda db: services.orgs.ownership.offer(db, Actor.user(owner_id), handle, admin_id))
    await signed_in(services, browser, admin_id, "sms")
    overview = await browser.get(f"/orgs/{handle}")
    assert overview.status_code == 200
    token = csrf_for(overview.text, f"/orgs/{handle}/ownership/accept")
    reply = await browser.post(f"/orgs/{handle}/ownership/accept", data={"csrf_token": token, "offer": offer.id})
    assert to_step_up(reply)
    assert (await state_of(services, handle, admin_id))[2] == "admin"


async def test_a_full_session_of_the_owner_is_not_held(services, rp, browser):
    _, owner_id, admin_id, handle = await owner_and_org(services, rp, phone_code_max_role="member",
                                                       require_second_factor=True, allowed_factors=["totp"])
    await signed_in(services, browser, owner_id, "pwd", "totp")
    tokens = await forms(browser, handle)
    reply = await browser.post(f"/orgs/{handle}/members/role", data={"csrf_token": tokens["role"], "user": admin_id,
                                                                     "role": "editor"})
    assert reply.status_code == 303 and "done=role" in reply.headers["location"]
    assert (await state_of(services, handle, admin_id))[2] == "editor"


# ---- the other requirements ---------------------------------------------------------------------

async def test_a_session_older_than_the_policy_allows_signs_in_again(services, rp, browser):
    email, owner_id, admin_id, handle = await owner_and_org(services, rp)
    session_id = await signed_in(services, browser, owner_id, "pwd")
    tokens = await forms(browser, handle)
    await set_policy(services, handle, max_session_age=300)
    await services.db.run(lambda db: db.execute(update(BrowserSession).where(BrowserSession.id == session_id)
                                                .values(auth_time=utcnow() - timedelta(seconds=400))))
    before = await state_of(services, handle, admin_id)
    for reply in await attack(browser, handle, tokens, admin_id):
        assert to_sign_in(reply)
    assert await state_of(services, handle, admin_id) == before
    gate = await browser.get(f"/orgs/{handle}/policies")
    assert to_sign_in(gate)
    back = await rp.login(browser, gate.headers["location"], email, PASSWORD)
    assert back.status_code == 303 and back.headers["location"] == f"/orgs/{handle}/policies"
    assert (await browser.get(f"/orgs/{handle}/policies")).status_code == 200


async def test_a_phone_code_session_the_policy_refuses_signs_in_with_the_password(services, rp, browser):
    email, owner_id, _, handle = await owner_and_org(services, rp, phone_code_sign_in=False)
    await signed_in(services, browser, owner_id, "sms")
    gate = await browser.get(f"/orgs/{handle}")
    assert to_sign_in(gate)
    page = await browser.get(gate.headers["location"])
    assert page.status_code == 200 and "/login/code" not in page.text  # no code-only sign-in offered
    back = await rp.login(browser, gate.headers["location"], email, PASSWORD)
    assert back.headers["location"] == f"/orgs/{handle}"
    assert (await browser.get(f"/orgs/{handle}")).status_code == 200


async def test_no_accepted_second_factor_says_so(services, rp, browser):
    """Finding B on the pages: a password and an emailed code are no second factor for a policy
    that accepts only the app; the account has no app, so a page says what to do."""
    _, owner_id, _, handle = await owner_and_org(services, rp, require_second_factor=True, allowed_factors=["totp"])
    await signed_in(services, browser, owner_id, "pwd", "email")
    page = await browser.get(f"/orgs/{handle}/policies")
    assert page.status_code == 403 and "second sign-in step" in page.text


async def test_strangers_are_told_nothing_whatever_their_session(services, rp, browser):
    _, _, _, handle = await owner_and_org(services, rp, phone_code_sign_in=False, max_session_age=300,
                                          require_second_factor=True)
    _, stranger_id = await rp.user()
    await signed_in(services, browser, stranger_id, "sms", age=1000)
    real = await browser.get(f"/orgs/{handle}/policies")
    unknown = await browser.get("/orgs/no-such-org-here/policies")
    assert real.status_code == unknown.status_code == 404
    assert real.text.replace(handle, "X") == unknown.text.replace("no-such-org-here", "X")


async def test_a_cap_at_admin_lets_the_owner_do_what_an_admin_may_and_no_more(services, rp, browser):
    """Capped at "admin", the owner's SMS-only session changes the policy as an admin may; for
    ownership, and for actions whose rules weigh their target (members, licences), it steps up."""
    _, owner_id, admin_id, handle = await owner_and_org(services, rp, phone_code_max_role="admin")
    await signed_in(services, browser, owner_id, "sms")
    saved = await browser.post(f"/orgs/{handle}/policies", data={
        "csrf_token": csrf_for((await browser.get(f"/orgs/{handle}/policies")).text, f"/orgs/{handle}/policies"),
        "phone_code_sign_in": "yes", "phone_code_max_role": "admin", "allowed_factors": ["totp", "sms"]})
    assert saved.status_code == 303 and saved.headers["location"].endswith("done=policies"), saved.text
    assert (await policy_of(services, handle))["allowed_factors"] == ["totp", "sms"]
    assert to_step_up(await browser.get(f"/orgs/{handle}/ownership"))
    members = await browser.get(f"/orgs/{handle}/members")
    assert members.status_code == 200  # seeing members is an admin's
    role = await browser.post(f"/orgs/{handle}/members/role", data={
        "csrf_token": csrf_for(members.text, f"/orgs/{handle}/members/role"), "user": admin_id, "role": "editor"})
    assert to_step_up(role)
    assert (await state_of(services, handle, admin_id))[2] == "admin"
