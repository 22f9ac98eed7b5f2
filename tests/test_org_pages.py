"""Organisation pages (ui/orgs/) through real HTTP: the sign-in gate, each section allowed and
refused per role, CSRF on every form, strangers told nothing, and no 500 on junk input.

The rules themselves are the services' (tested in their own files); here the pages must call them,
show what each role may do, and map every refusal to the right page.
"""

from __future__ import annotations

import re
import secrets

import httpx
import pytest

from idp.audit.service import Actor
from idp.orgs.members import OWNER_STAYS
from idp.orgs.models import Membership
from tests.conftest import ISSUER
from tests.rp import PASSWORD


def new_browser(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)


def csrf_for(html: str, action: str) -> str:
    match = re.search(rf'action="{re.escape(action)}"[^>]*>\s*<input type="hidden" name="csrf_token" '
                      rf'value="([^"]+)"', html)
    assert match, f"no form posting to {action}"
    return match.group(1)


def has_form(html: str, action: str) -> bool:
    return f'action="{action}"' in html


async def submit(browser, page: str, action: str, **fields) -> httpx.Response:
    """GET `page`, then POST the form whose action is `action` with its CSRF token and `fields`."""
    shown = await browser.get(page)
    assert shown.status_code == 200, shown.text
    return await browser.post(action, data={"csrf_token": csrf_for(shown.text, action), **fields})


async def sign_in(rp, browser, email: str, page: str = "/orgs") -> None:
    gate = await browser.get(page)
    assert gate.status_code == 303 and gate.headers["location"].startswith("/login?flow="), gate.text
    back = await rp.login(browser, gate.headers["location"], email, PASSWORD)
    assert back.status_code == 303 and back.headers["location"] == page, back.text


def handle() -> str:
    return f"org-{secrets.token_hex(4)}"


class Person:
    def __init__(self, email: str, user_id: str, browser: httpx.AsyncClient) -> None:
        self.email, self.id, self.browser = email, user_id, browser


@pytest.fixture
async def people(app, rp):
    """Make signed-in people on demand; closes their browsers."""
    browsers = []

    async def make(*, signed_in: bool = True) -> Person:
        email, user_id = await rp.user()
        browser = new_browser(app)
        browsers.append(browser)
        if signed_in:
            await sign_in(rp, browser, email)
        return Person(email, user_id, browser)
    yield make
    for browser in browsers:
        await browser.aclose()


async def create_org(person: Person, name: str = "Acme Oy") -> str:
    h = handle()
    reply = await submit(person.browser, "/orgs", "/orgs", name=name, handle=h, business_id="1234567-8")
    assert reply.status_code == 303 and reply.headers["location"] == f"/orgs/{h}?done=created", reply.text
    return h


async def add_member(services, org_handle: str, person: Person, role: str) -> None:
    """As an operator would (the CLI): a person joins with a role."""
    async def work(db):
        org = await services.orgs.find(db, org_handle)
        db.add(Membership(org_id=org.id, user_id=person.id, role=role))
    await services.db.run(work)


async def role_of(services, org_handle: str, person: Person) -> str | None:
    async def work(db):
        org = await services.orgs.find(db, org_handle)
        m = await services.orgs.membership(db, org.id, person.id)
        return m.role if m else None
    return await services.db.run(work)


@pytest.fixture
async def org(people, services):
    """An organisation with an owner, an admin, an editor and a member, and an outsider."""
    owner = await people()
    h = await create_org(owner)
    team = {"owner": owner}
    for role in ("admin", "editor", "member"):
        team[role] = await people()
        await add_member(services, h, team[role], role)
    team["outsider"] = await people()
    return h, team


# ---- the shell -----------------------------------------------------------------------------------

async def test_signed_out_is_sent_to_sign_in_and_back(app, rp):
    email, _ = await rp.user()
    async with new_browser(app) as browser:
        await sign_in(rp, browser, email, "/orgs")
        page = await browser.get("/orgs")
        assert page.status_code == 200 and "You are not a member of any organisation." in page.text


async def test_signed_out_on_an_org_page_returns_there(app, rp, org):
    h, team = org
    async with new_browser(app) as browser:
        await sign_in(rp, browser, team["admin"].email, f"/orgs/{h}/members")


async def test_create_makes_me_owner_and_lists_it(people, services):
    owner = await people()
    h = await create_org(owner, "Kauppa & Co")
    page = await owner.browser.get("/orgs")
    assert f'href="/orgs/{h}"' in page.text and "Kauppa &amp; Co" in page.text and "Owner" in page.text
    assert await role_of(services, h, owner) == "owner"
    overview = await owner.browser.get(f"/orgs/{h}")
    assert overview.status_code == 200 and "1234567-8" in overview.text
    events = await services.db.run(lambda db: services.audit.events(db, action="org.created", limit=500))
    assert any(e.after and e.after.get("handle") == h for e in events)


async def test_create_refusals_show_the_form_again(people):
    owner = await people()
    taken = await create_org(owner)
    reply = await submit(owner.browser, "/orgs", "/orgs", name="Other", handle=taken)
    assert reply.status_code == 409 and 'role="alert"' in reply.text and f'value="{taken}"' in reply.text
    reply = await submit(owner.browser, "/orgs", "/orgs", name="Other", handle="Not A Handle!")
    assert reply.status_code == 400 and 'value="Other"' in reply.text
    for junk in ({"name": "x\x00y", "handle": handle()}, {"name": "n" * 5000, "handle": handle()},
                 {"name": "ok", "handle": "h" * 5000}, {"name": "ok", "handle": handle(), "business_id": "b" * 500},
                 {}):
        reply = await submit(owner.browser, "/orgs", "/orgs", **junk)
        assert reply.status_code == 400, (junk, reply.status_code)


async def test_csrf_is_required_and_bound_to_the_session(people):
    alice, bob = await people(), await people()
    page = await alice.browser.get("/orgs")
    token = csrf_for(page.text, "/orgs")
    assert (await alice.browser.post("/orgs", data={"name": "X", "handle": handle()})).status_code == 403
    assert (await alice.browser.post("/orgs", data={"csrf_token": "forged", "name": "X",
                                                    "handle": handle()})).status_code == 403
    # Another person's token is worthless here.
    assert (await bob.browser.post("/orgs", data={"csrf_token": token, "name": "X",
                                                  "handle": handle()})).status_code == 403
    # A file part under the token's name is no token.
    reply = await alice.browser.post("/orgs", data={"name": "X", "handle": handle()},
                                     files={"csrf_token": ("t", token.encode())})
    assert reply.status_code == 403


async def test_stranger_gets_the_same_404_for_real_and_unknown_orgs(org, people):
    h, team = org
    stranger = team["outsider"].browser
    for path in ("", "/members", "/ownership", "/products", "/contacts", "/policies", "/audit"):
        real, unknown = await stranger.get(f"/orgs/{h}{path}"), await stranger.get(f"/orgs/nope-{handle()}{path}")
        assert real.status_code == unknown.status_code == 404, path
        assert real.text == unknown.text
        assert h not in real.text
    for junk in ("%00", "x" * 300, "a%20b", "..", "%2e%2e"):
        assert (await stranger.get(f"/orgs/{junk}")).status_code in (404, 307, 308), junk


async def test_member_sees_overview_only_and_can_leave(org, services):
    h, team = org
    member = team["member"]
    overview = await member.browser.get(f"/orgs/{h}")
    assert overview.status_code == 200 and "Member" in overview.text
    assert f'/orgs/{h}/members"' not in overview.text and f'/orgs/{h}/audit"' not in overview.text
    for path in ("/members", "/products", "/contacts", "/policies", "/audit"):
        assert (await member.browser.get(f"/orgs/{h}{path}")).status_code == 403, path
    reply = await submit(member.browser, "/orgs", f"/orgs/{h}/leave")
    assert reply.status_code == 303 and reply.headers["location"] == "/orgs?done=left"
    assert await role_of(services, h, member) is None
    assert (await member.browser.get(f"/orgs/{h}")).status_code == 404


async def test_owner_cannot_leave(org, people, services):
    h, team = org
    owner = team["owner"]
    overview = await owner.browser.get(f"/orgs/{h}")
    assert not has_form(overview.text, f"/orgs/{h}/leave")
    # The control is hidden, but the service decides: the owner is also a plain member elsewhere,
    # and that page's leave token (bound to the session and the form name) is posted here.
    other_owner = await people()
    other = await create_org(other_owner)
    await add_member(services, other, owner, "member")
    listing = await owner.browser.get("/orgs")
    assert not has_form(listing.text, f"/orgs/{h}/leave")
    token = csrf_for(listing.text, f"/orgs/{other}/leave")
    reply = await owner.browser.post(f"/orgs/{h}/leave", data={"csrf_token": token})
    assert reply.status_code == 403 and OWNER_STAYS in reply.text, reply.status_code
    assert await role_of(services, h, owner) == "owner"


async def test_audit_for_managers_only(org):
    h, team = org
    page = await team["owner"].browser.get(f"/orgs/{h}/audit")
    assert page.status_code == 200 and "org.created" in page.text
    assert (await team["admin"].browser.get(f"/orgs/{h}/audit")).status_code == 200
    assert (await team["editor"].browser.get(f"/orgs/{h}/audit")).status_code == 403


# ---- members -------------------------------------------------------------------------------------

async def test_members_list_and_controls_per_role(org):
    h, team = org
    page = await team["owner"].browser.get(f"/orgs/{h}/members")
    assert page.status_code == 200
    for role in ("owner", "admin", "editor", "member"):
        assert team[role].email in page.text
    # The owner may change and remove everyone but themselves.
    assert page.text.count(f'action="/orgs/{h}/members/remove"') == 3
    admin_page = await team["admin"].browser.get(f"/orgs/{h}/members")
    # An admin never touches the owner, and may not make anyone owner.
    assert admin_page.text.count(f'action="/orgs/{h}/members/remove"') == 2
    assert '<option value="owner"' not in admin_page.text
    assert has_form(admin_page.text, f"/orgs/{h}/invitations")
    for role in ("editor", "member"):
        assert (await team[role].browser.get(f"/orgs/{h}/members")).status_code == 403


async def test_change_role_and_remove(org, services):
    h, team = org
    admin, owner = team["admin"].browser, team["owner"].browser
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/members/role", user=team["member"].id, role="editor")
    assert reply.status_code == 303 and reply.headers["location"] == f"/orgs/{h}/members?done=role"
    assert await role_of(services, h, team["member"]) == "editor"
    assert "The role was changed." in (await admin.get(reply.headers["location"])).text
    # Refusals by the service, whatever the page showed: an admin making an owner, touching the owner.
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/members/role", user=team["member"].id, role="owner")
    assert reply.status_code == 403
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/members/role", user=team["owner"].id, role="member")
    assert reply.status_code == 403
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/members/remove", user=team["owner"].id)
    assert reply.status_code == 403 and await role_of(services, h, team["owner"]) == "owner"
    # Junk: an unknown member, a bad role, a NUL, an overlong value; never a 500.
    for fields in ({"user": "nobody", "role": "member"}, {"user": team["member"].id, "role": "king"},
                   {"user": "x\x00", "role": "member"}, {"user": "u" * 5000, "role": "r" * 5000}, {}):
        reply = await submit(owner, f"/orgs/{h}/members", f"/orgs/{h}/members/role", **fields)
        assert reply.status_code in (400, 403, 404), (fields, reply.status_code)
    reply = await submit(owner, f"/orgs/{h}/members", f"/orgs/{h}/members/remove", user=team["editor"].id)
    assert reply.status_code == 303 and await role_of(services, h, team["editor"]) is None
    # An editor cannot act even with a valid token of their own session for that form name.
    assert (await team["editor"].browser.post(f"/orgs/{h}/members/remove", data={"user": team["member"].id})).status_code == 403


async def test_outsider_posts_get_404(org, people, services):
    h, team = org
    outsider = team["outsider"]
    # The outsider's own organisation gives them real tokens for every form name.
    mine = await create_org(outsider)
    await add_member(services, mine, await people(signed_in=False), "member")
    page = (await outsider.browser.get(f"/orgs/{mine}/members")).text
    for action, fields in ((f"/orgs/{h}/members/role", {"user": team["member"].id, "role": "admin"}),
                           (f"/orgs/{h}/members/remove", {"user": team["member"].id}),
                           (f"/orgs/{h}/invitations", {"email": "x@example.com", "role": "member"})):
        suffix = action.removeprefix(f"/orgs/{h}")
        token = csrf_for(page, f"/orgs/{mine}{suffix}")
        reply = await outsider.browser.post(action, data={"csrf_token": token, **fields})
        unknown = await outsider.browser.post(f"/orgs/nope-{handle()}{suffix}", data={"csrf_token": token, **fields})
        assert reply.status_code == unknown.status_code == 404, action
        assert reply.text == unknown.text
    assert await role_of(services, h, team["member"]) == "member"


async def test_invitations_invite_resend_revoke(org):
    h, team = org
    admin = team["admin"].browser
    email = f"new-{secrets.token_hex(4)}@example.com"
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/invitations", email=email, role="editor")
    assert reply.status_code == 303 and reply.headers["location"].endswith("done=invited"), reply.text
    page = (await admin.get(f"/orgs/{h}/members")).text
    assert email in page
    invitation = re.search(r'name="invitation" value="([^"]+)"', page).group(1)
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/invitations/resend", invitation=invitation)
    assert reply.status_code == 303 and reply.headers["location"].endswith("done=resent")
    tokens = {a: csrf_for(page, f"/orgs/{h}{a}") for a in ("/invitations/resend", "/invitations/revoke")}
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/invitations/revoke", invitation=invitation)
    assert reply.status_code == 303
    assert email not in (await admin.get(f"/orgs/{h}/members")).text
    # An admin cannot invite an owner; bad addresses are shown again with the message.
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/invitations", email=email, role="owner")
    assert reply.status_code == 403
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/invitations", email="not an address", role="member")
    assert reply.status_code == 400 and 'value="not an address"' in reply.text and 'role="alert"' in reply.text
    for fields in ({"email": "a\x00@example.com", "role": "member"}, {"email": "a" * 5000, "role": "member"},
                   {"email": email, "role": ""}, {}):
        assert (await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/invitations", **fields)).status_code == 400
    for action, token in tokens.items():
        for junk in ("nope", invitation, "\x00", "i" * 5000):
            reply = await admin.post(f"/orgs/{h}{action}", data={"csrf_token": token, "invitation": junk})
            assert reply.status_code in (400, 404, 409), (action, junk, reply.status_code)


async def test_org_username_created_from_the_page(org, services):
    h, team = org
    admin = team["admin"].browser
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/usernames", username="maija",
                         display_name="Maija Meikäläinen", role="member", deliver_to="maija@example.com")
    assert reply.status_code == 303 and reply.headers["location"].endswith("done=username"), reply.text
    assert "Maija Meikäläinen" in (await admin.get(f"/orgs/{h}/members")).text
    again = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/usernames", username="maija",
                         display_name="Another", role="member", deliver_to="other@example.com")
    assert again.status_code == 409 and 'value="Another"' in again.text
    for fields in ({"username": "bad name!", "display_name": "X", "role": "member", "deliver_to": "x@example.com"},
                   {"username": "ok", "display_name": "X", "role": "member", "deliver_to": ""},
                   {"username": "u" * 5000, "display_name": "X", "role": "member", "deliver_to": "x@example.com"}):
        assert (await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/usernames", **fields)).status_code == 400
    reply = await submit(admin, f"/orgs/{h}/members", f"/orgs/{h}/usernames", username="boss",
                         display_name="Boss", role="owner", deliver_to="boss@example.com")
    assert reply.status_code == 403


# ---- ownership -----------------------------------------------------------------------------------

async def test_ownership_offer_withdraw_and_accept_in_the_ui(org, people, services):
    h, team = org
    owner, admin = team["owner"], team["admin"]
    assert (await admin.browser.get(f"/orgs/{h}/ownership")).status_code == 403
    assert f'/orgs/{h}/ownership"' not in (await admin.browser.get(f"/orgs/{h}")).text
    reply = await submit(owner.browser, f"/orgs/{h}/ownership", f"/orgs/{h}/ownership/offer", user=admin.id)
    assert reply.status_code == 303 and reply.headers["location"].endswith("done=offered")
    assert 'id="pending-offer"' in (await owner.browser.get(f"/orgs/{h}/ownership")).text
    withdraw_token = csrf_for((await owner.browser.get(f"/orgs/{h}/ownership")).text, f"/orgs/{h}/ownership/withdraw")
    reply = await owner.browser.post(f"/orgs/{h}/ownership/withdraw", data={"csrf_token": withdraw_token})
    assert reply.status_code == 303
    assert 'id="pending-offer"' not in (await owner.browser.get(f"/orgs/{h}/ownership")).text
    assert not has_form((await admin.browser.get(f"/orgs/{h}")).text, f"/orgs/{h}/ownership/accept")
    # Withdrawing again: nothing pending.
    reply = await owner.browser.post(f"/orgs/{h}/ownership/withdraw", data={"csrf_token": withdraw_token})
    assert reply.status_code == 409

    await submit(owner.browser, f"/orgs/{h}/ownership", f"/orgs/{h}/ownership/offer", user=admin.id)
    listing = (await admin.browser.get("/orgs")).text
    assert has_form(listing, f"/orgs/{h}/ownership/accept")
    offer = re.search(r'name="offer" value="([^"]+)"', listing).group(1)
    # Someone else cannot accept it: the editor, with their own token for the form name (from an
    # offer of another organisation made to them) and the admin's offer id, is told "not found".
    editor, other_owner = team["editor"], await people()
    other = await create_org(other_owner)
    await add_member(services, other, editor, "member")
    await submit(other_owner.browser, f"/orgs/{other}/ownership", f"/orgs/{other}/ownership/offer", user=editor.id)
    token = csrf_for((await editor.browser.get("/orgs")).text, f"/orgs/{other}/ownership/accept")
    reply = await editor.browser.post(f"/orgs/{h}/ownership/accept", data={"csrf_token": token, "offer": offer})
    assert reply.status_code == 404
    assert await role_of(services, h, editor) == "editor" and await role_of(services, h, owner) == "owner"
    reply = await submit(admin.browser, f"/orgs/{h}", f"/orgs/{h}/ownership/accept", offer=offer)
    assert reply.status_code == 303 and reply.headers["location"] == f"/orgs/{h}?done=accepted"
    assert await role_of(services, h, admin) == "owner" and await role_of(services, h, owner) == "admin"
    for fields in ({"user": "nobody"}, {"user": "x" * 5000}, {}, {"user": admin.id}):
        reply = await submit(admin.browser, f"/orgs/{h}/ownership", f"/orgs/{h}/ownership/offer", **fields)
        assert reply.status_code in (400, 409), (fields, reply.status_code)


# ---- product access ------------------------------------------------------------------------------

async def make_product(services, roles=("owner", "admin", "user", "viewer")) -> str:
    ph = f"prod-{secrets.token_hex(4)}"
    await services.db.run(lambda db: services.products.create(db, Actor.operator(), ph, f"Product {ph}", list(roles)))
    return ph


async def test_product_access_grant_change_revoke(org, services):
    h, team = org
    ph = await make_product(services)
    admin = team["admin"].browser
    page = await admin.get(f"/orgs/{h}/products")
    assert page.status_code == 200 and f"Product {ph}" in page.text
    reply = await submit(admin, f"/orgs/{h}/products", f"/orgs/{h}/products/grant", product=ph,
                         user=team["member"].id, role="viewer")
    assert reply.status_code == 303 and reply.headers["location"].endswith("done=granted")
    page = (await admin.get(f"/orgs/{h}/products")).text
    assert f'data-access="{team["member"].email}"' in page
    reply = await submit(admin, f"/orgs/{h}/products", f"/orgs/{h}/products/grant", product=ph,
                         user=team["member"].id, role="admin")
    assert reply.status_code == 303

    async def licence():
        async def work(db):
            org = await services.orgs.find(db, h)
            product = await services.products.find(db, ph)
            return await services.products.access_of(db, org.id, team["member"].id, product.id)
        return await services.db.run(work)
    assert await licence() == "admin"
    for fields in ({"product": ph, "user": team["member"].id, "role": "emperor"},
                   {"product": ph, "user": team["outsider"].id, "role": "user"},
                   {"product": "nope", "user": team["member"].id, "role": "user"},
                   {"product": "p" * 5000, "user": "\x00", "role": "r" * 5000}, {}):
        reply = await submit(admin, f"/orgs/{h}/products", f"/orgs/{h}/products/grant", **fields)
        assert reply.status_code in (400, 404), (fields, reply.status_code)
    revoke_token = csrf_for((await admin.get(f"/orgs/{h}/products")).text, f"/orgs/{h}/products/revoke")
    revoke = {"csrf_token": revoke_token, "product": ph, "user": team["member"].id}
    reply = await admin.post(f"/orgs/{h}/products/revoke", data=revoke)
    assert reply.status_code == 303 and await licence() is None
    assert (await admin.post(f"/orgs/{h}/products/revoke", data=revoke)).status_code == 404
    for role in ("editor", "member"):
        assert (await team[role].browser.get(f"/orgs/{h}/products")).status_code == 403


# ---- contacts ------------------------------------------------------------------------------------

async def test_contacts_request_withdraw_resend(org, services):
    h, team = org
    owner, admin = team["owner"], team["admin"]

    async def initial(db):
        org_row = await services.orgs.find(db, h)
        await services.contacts.assign_initial(db, org_row.id, owner.id)
    await services.db.run(initial)
    page = await admin.browser.get(f"/orgs/{h}/contacts")
    assert page.status_code == 200 and owner.email in page.text
    reply = await submit(admin.browser, f"/orgs/{h}/contacts", f"/orgs/{h}/contacts/request",
                         kind="technical", user=team["editor"].id)
    assert reply.status_code == 303 and reply.headers["location"].endswith("done=requested"), reply.text
    page = (await admin.browser.get(f"/orgs/{h}/contacts")).text
    request_id = re.search(r'name="request" value="([^"]+)"', page).group(1)
    reply = await submit(admin.browser, f"/orgs/{h}/contacts", f"/orgs/{h}/contacts/resend", request=request_id)
    assert reply.status_code == 303 and reply.headers["location"].endswith("done=request_resent")
    withdraw = {"csrf_token": csrf_for((await admin.browser.get(f"/orgs/{h}/contacts")).text,
                                       f"/orgs/{h}/contacts/withdraw"), "request": request_id}
    reply = await admin.browser.post(f"/orgs/{h}/contacts/withdraw", data=withdraw)
    assert reply.status_code == 303
    assert request_id not in (await admin.browser.get(f"/orgs/{h}/contacts")).text
    assert (await admin.browser.post(f"/orgs/{h}/contacts/withdraw", data=withdraw)).status_code == 409
    for junk in ("nope", "\x00", "r" * 5000):
        reply = await admin.browser.post(f"/orgs/{h}/contacts/withdraw", data={**withdraw, "request": junk})
        assert reply.status_code == 404, junk
    for fields in ({"kind": "boss", "user": team["editor"].id}, {"kind": "technical", "user": team["outsider"].id},
                   {"kind": "technical", "user": owner.id}, {"kind": "k" * 5000, "user": "\x00"}, {}):
        reply = await submit(admin.browser, f"/orgs/{h}/contacts", f"/orgs/{h}/contacts/request", **fields)
        assert reply.status_code == 400, (fields, reply.status_code)
    # A plain member who holds no contact sees nothing.
    assert (await team["member"].browser.get(f"/orgs/{h}/contacts")).status_code == 403


async def test_blocked_billing_contact_is_shown_and_refused(org, services):
    h, team = org

    async def lock(db):
        org_row = await services.orgs.find(db, h)
        await services.contacts.assign_initial(db, org_row.id, team["owner"].id)
        await services.contacts.set_billing_lock(db, Actor.operator(), h, True)
    await services.db.run(lock)
    page = await team["admin"].browser.get(f"/orgs/{h}/contacts")
    assert "The billing contact cannot be changed at the moment." in page.text
    reply = await submit(team["admin"].browser, f"/orgs/{h}/contacts", f"/orgs/{h}/contacts/request",
                         kind="billing", user=team["editor"].id)
    assert reply.status_code == 409 and 'role="alert"' in reply.text


# ---- policies ------------------------------------------------------------------------------------

async def test_policies_view_update_and_field_errors(org, services):
    h, team = org
    admin = team["admin"].browser
    page = await admin.get(f"/orgs/{h}/policies")
    assert page.status_code == 200 and has_form(page.text, f"/orgs/{h}/policies")
    reply = await admin.post(f"/orgs/{h}/policies", data={
        "csrf_token": csrf_for(page.text, f"/orgs/{h}/policies"), "require_second_factor": "yes",
        "allowed_factors": ["totp", "sms"], "phone_code_sign_in": "yes", "phone_code_max_role": "editor",
        "max_session_age": "3600"})
    assert reply.status_code == 303 and reply.headers["location"].endswith("done=policies"), reply.text
    view = await services.db.run(lambda db: services.org_policies.view(db, Actor.operator(), h))
    assert view.policy.require_second_factor and view.policy.allowed_factors == ["totp", "sms"]
    assert view.policy.phone_code_max_role == "editor" and view.policy.max_session_age == 3600
    # The policy holds for the pages too: the admin (a password session, no app, no phone) now
    # lacks the second factor it requires and is told so; an operator takes the requirement back.
    held = await admin.get(f"/orgs/{h}/policies")
    assert held.status_code == 403 and "second sign-in step" in held.text
    await services.db.run(lambda db: services.org_policies.update(db, Actor.operator(), h,
                                                                  {"require_second_factor": False}))
    page = await admin.get(f"/orgs/{h}/policies")
    token = csrf_for(page.text, f"/orgs/{h}/policies")
    reply = await admin.post(f"/orgs/{h}/policies", data={"csrf_token": token, "max_session_age": "soon",
                                                          "allowed_factors": ["totp"], "phone_code_max_role": "member"})
    assert reply.status_code == 400 and 'id="err-age"' in reply.text and 'value="soon"' in reply.text
    reply = await admin.post(f"/orgs/{h}/policies", data={"csrf_token": token, "require_second_factor": "yes",
                                                          "phone_code_max_role": "member"})
    assert reply.status_code == 400 and 'id="err-factors"' in reply.text
    for junk in ({"allowed_factors": ["x" * 5000] * 50}, {"phone_code_max_role": "\x00"},
                 {"max_session_age": "9" * 100}, {"max_session_age": "-1"}):
        reply = await admin.post(f"/orgs/{h}/policies", data={"csrf_token": token, **junk})
        assert reply.status_code == 400, junk
    for role in ("editor", "member"):
        assert (await team[role].browser.get(f"/orgs/{h}/policies")).status_code == 403
