"""Organisation claims in ID tokens, access tokens and userinfo, switching organisation by refresh,
and membership changes reaching the next refresh. Tokens verified with joserfc (tests/rp.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, update

from idp.db import utcnow
from idp.oauth.models import Grant
from idp.orgs.models import Membership
from tests.test_org_sign_in import (  # noqa: F401 (fixtures)
    SCOPE, add_member, browser, client_for, exchange, follow, licence, new_org, new_product, org_claim, person,
    rp, s, set_policy, set_role, sign_in,
)


async def refresh(browser, rp, client, token: str, **extra):
    return await rp.token(browser, client, {"grant_type": "refresh_token", "refresh_token": token, **extra})


async def userinfo(browser, access_token: str) -> dict:
    reply = await browser.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert reply.status_code == 200, reply.text
    return reply.json()


async def two_orgs(s, rp):
    """A person who owns Alpha and is an editor in Beta; a four-level product with a licence in
    Beta; a client of that product."""
    email, user_id = await person(rp)
    alpha = await new_org(s, user_id, "Alpha Oy")
    beta = await new_org(s, (await person(rp))[1], "Beta Ab")
    await add_member(s, beta.id, user_id, "editor")
    product = await new_product(s, ["owner", "admin", "editor", "viewer"])
    await licence(s, beta, product, user_id, "viewer")
    await licence(s, alpha, product, user_id, "owner")
    client = await client_for(rp, product=product)
    return email, user_id, alpha, beta, client


async def test_claims_in_the_id_token_the_access_token_and_userinfo(browser, rp, s):
    email, user_id, alpha, beta, client = await two_orgs(s, rp)
    tokens = await sign_in(browser, rp, client, email, scope=SCOPE + " organization:*", organization=beta.handle)
    expected = {"org": org_claim(beta), "org_role": "editor", "roles": ["viewer"]}
    for claims in (tokens["id"], tokens["at"]):
        assert {k: claims[k] for k in expected} == expected
    assert tokens["at"]["header"]["typ"] == "at+jwt" and tokens["expires_in"] == 300
    info = await userinfo(browser, tokens["access_token"])
    assert {k: info[k] for k in expected} == expected
    assert sorted(info["orgs"], key=lambda o: o["name"]) == [
        {"id": alpha.id, "handle": alpha.handle, "name": "Alpha Oy", "role": "owner"},
        {"id": beta.id, "handle": beta.handle, "name": "Beta Ab", "role": "editor"},
    ]
    # Without organization:* there is no list.
    tokens = await sign_in(browser, rp, client, email, organization=alpha.id)
    info = await userinfo(browser, tokens["access_token"])
    assert "orgs" not in info and info["org"] == org_claim(alpha) and info["roles"] == ["owner"]


async def test_switching_organisation_by_refresh(browser, rp, s):
    email, user_id, alpha, beta, client = await two_orgs(s, rp)
    tokens = await sign_in(browser, rp, client, email, organization=alpha.handle)
    assert tokens["id"]["org"] == org_claim(alpha)

    switched = await refresh(browser, rp, client, tokens["refresh_token"], organization=beta.handle)
    assert switched.status_code == 200, switched.text
    body = switched.json()
    for token in (body["id_token"], body["access_token"]):
        claims = await rp.verify(browser, token)
        assert claims["org"] == org_claim(beta) and claims["org_role"] == "editor" and claims["roles"] == ["viewer"]
    assert (await userinfo(browser, body["access_token"]))["org"] == org_claim(beta)
    # The family now speaks for Beta: a plain refresh stays there.
    again = (await refresh(browser, rp, client, body["refresh_token"])).json()
    assert (await rp.verify(browser, again["access_token"]))["org"]["id"] == beta.id

    # An organisation the person is not in, or none at all: invalid_grant, and nothing changed.
    theirs = await new_org(s, (await person(rp))[1], "Theirs Oy")
    answers = []
    for named in (theirs.id, theirs.handle, "no-such-org"):
        refused = await refresh(browser, rp, client, again["refresh_token"], organization=named)
        assert refused.status_code == 400
        answers.append(refused.json())
    assert answers[0]["error"] == "invalid_grant" and all(a == answers[0] for a in answers)
    still = await refresh(browser, rp, client, again["refresh_token"])
    assert still.status_code == 200
    assert (await rp.verify(browser, still.json()["access_token"]))["org"]["id"] == beta.id


async def test_a_demoted_member_s_next_refresh_carries_the_new_role_and_a_removed_one_s_fails(browser, rp, s):
    email, user_id, alpha, beta, client = await two_orgs(s, rp)
    tokens = await sign_in(browser, rp, client, email, organization=beta.id)
    assert tokens["id"]["org_role"] == "editor"
    await set_role(s, beta.id, user_id, "member")
    body = (await refresh(browser, rp, client, tokens["refresh_token"])).json()
    assert (await rp.verify(browser, body["id_token"]))["org_role"] == "member"
    assert (await userinfo(browser, body["access_token"]))["org_role"] == "member"

    # Removed (the membership and its licences gone): the next refresh fails.
    async def remove(db):
        await db.execute(delete(Membership).where(Membership.org_id == beta.id, Membership.user_id == user_id))
        await s.products.forget_member(db, beta.id, user_id)
    await s.db.run(remove)
    refused = await refresh(browser, rp, client, body["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    info = await userinfo(browser, body["access_token"])  # the old access token no longer says Beta
    assert "org" not in info


async def test_a_revoked_licence_fails_the_next_refresh_at_that_product(browser, rp, s):
    email, user_id, alpha, beta, client = await two_orgs(s, rp)
    tokens = await sign_in(browser, rp, client, email, organization=beta.id)
    from idp.audit.service import Actor
    product_id = (await s.db.run(lambda db: s.clients.get(db, client.client_id))).product_id
    await s.db.run(lambda db: s.products.revoke(db, Actor.operator(), beta.id, product_id, user_id))
    refused = await refresh(browser, rp, client, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # Switching to an organisation where the licence holds works with the same token.
    switched = await refresh(browser, rp, client, tokens["refresh_token"], organization=alpha.id)
    assert switched.status_code == 200
    assert (await rp.verify(browser, switched.json()["access_token"]))["roles"] == ["owner"]


async def test_the_organisation_s_maximum_session_age_ends_refreshes(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    org = await new_org(s, user_id, "Short Oy")
    await set_policy(s, org, max_session_age=300)
    tokens = await sign_in(browser, rp, client, email)
    fresh = await refresh(browser, rp, client, tokens["refresh_token"])
    assert fresh.status_code == 200
    await s.db.run(lambda db: db.execute(update(Grant).where(Grant.user_id == user_id)
                                         .values(auth_time=utcnow() - timedelta(seconds=400))))
    refused = await refresh(browser, rp, client, fresh.json()["refresh_token"])
    assert refused.status_code == 400 and refused.json() == {
        "error": "invalid_grant", "error_description": "the organisation's policy requires a new sign-in"}


async def test_discovery_lists_the_organisation_scopes_and_claims(browser, rp):
    doc = await rp.discovery(browser)
    assert {"organization", "organization:*"} <= set(doc["scopes_supported"])
    assert {"org", "org_role", "roles", "orgs"} <= set(doc["claims_supported"])


# ---- userinfo never says more than a refresh would give ---------------------------------------

async def test_userinfo_leaves_out_organisations_whose_policy_the_session_does_not_satisfy(browser, rp, s):
    """organization:* lists only organisations whose policy this session satisfies, and the chosen
    organisation's claims go when its policy (here: the maximum session age) is no longer met."""
    email, user_id, alpha, beta, client = await two_orgs(s, rp)
    tokens = await sign_in(browser, rp, client, email, scope=SCOPE + " organization:*", organization=beta.handle)
    await set_policy(s, alpha, max_session_age=300)
    await s.db.run(lambda db: db.execute(update(Grant).where(Grant.user_id == user_id)
                                         .values(auth_time=utcnow() - timedelta(seconds=400))))
    info = await userinfo(browser, tokens["access_token"])
    assert [o["id"] for o in info["orgs"]] == [beta.id] and info["org"] == org_claim(beta)
    # Now Beta, the chosen one, wants a younger session too: no claims about it at all.
    await set_policy(s, beta, max_session_age=300)
    info = await userinfo(browser, tokens["access_token"])
    assert info["orgs"] == [] and "org" not in info and "org_role" not in info and "roles" not in info


async def test_userinfo_leaves_out_the_chosen_organisation_after_its_licence_is_revoked(browser, rp, s):
    from idp.audit.service import Actor
    email, user_id, alpha, beta, client = await two_orgs(s, rp)
    tokens = await sign_in(browser, rp, client, email, organization=beta.id)
    assert (await userinfo(browser, tokens["access_token"]))["roles"] == ["viewer"]
    product_id = (await s.db.run(lambda db: s.clients.get(db, client.client_id))).product_id
    await s.db.run(lambda db: s.products.revoke(db, Actor.operator(), beta.id, product_id, user_id))
    info = await userinfo(browser, tokens["access_token"])
    assert "org" not in info and "org_role" not in info and "roles" not in info


async def test_userinfo_leaves_out_an_organisation_that_refuses_a_phone_code_session(browser, rp, s, gateway):
    """A phone-code session chosen for an organisation that allows it; another organisation the
    person (an admin there) belongs to refuses such sessions: userinfo must not list it, let
    alone with the admin role."""
    from tests.test_org_sign_in import phone_person, sms_sign_in
    client = await client_for(rp)
    _, user_id, number = await phone_person(s, rp)
    allows = await new_org(s, (await person(rp))[1], "Phones Oy")
    await add_member(s, allows.id, user_id, "member")
    started = await rp.authorize(browser, client, scope=SCOPE + " organization:*")
    reply = await sms_sign_in(browser, rp, gateway, started.headers["location"], number)
    reply, _ = await follow(browser, rp, reply)
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["amr"] == ["sms"] and tokens["id"]["org"] == org_claim(allows)

    refuses = await new_org(s, (await person(rp))[1], "No Phones Oy")
    await add_member(s, refuses.id, user_id, "admin")
    await set_policy(s, refuses, phone_code_sign_in=False)
    info = await userinfo(browser, tokens["access_token"])
    assert [o["id"] for o in info["orgs"]] == [allows.id]
