"""The main admin's everyday organisation tasks in real Chromium against a real `idp serve`:
sign in, create an organisation, invite a colleague, see the members list, change a member's role,
grant product access.

What the pages cannot create (a product, a second account and its membership) is made with the
CLI, as an operator would, on the server's own database.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Page, expect
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("the playwright package is not installed (pip install -e '.[test]')", allow_module_level=True)

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "correct horse battery staple"
IDP = Path(sys.executable).with_name("idp")


def cli(server: dict, *args: str) -> str:
    """`idp ...` on the server's database, with the server's settings (see conftest.idp_server)."""
    tmp = Path(server["log"]).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update({"IDP_ISSUER": server["url"], "IDP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/idp.db",
                "IDP_DEV_KEY_DIR": str(tmp / "keys"), "IDP_DEMO": "true", "IDP_LOG_JSON": "true"})
    done = subprocess.run([str(IDP), *args], env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"idp {args[:3]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def sign_in_at(page: Page, url: str, path: str) -> None:
    """Open an organisation page signed out: sign in on the way, land back on it."""
    page.goto(f"{url}{path}")
    expect(page).to_have_url(re.compile(re.escape(f"{url}/login?flow=")))
    page.get_by_label("Email or phone number").fill(DEMO_EMAIL)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{url}{path}")


def test_main_admin_everyday_tasks(page: Page, idp_server):
    url = idp_server["url"]
    handle = f"acme-{secrets.token_hex(3)}"
    product = f"caller-{secrets.token_hex(3)}"
    colleague = f"colleague-{secrets.token_hex(3)}@example.com"
    cli(idp_server, "products", "add", "--handle", product, "--name", "Caller", "--roles", "owner,admin,user,viewer")
    cli(idp_server, "users", "add", "--email", colleague, "--password", secrets.token_urlsafe(18),
        "--name", "Kaisa Kollega")

    # Sign in and create an organisation: its creator is its owner.
    sign_in_at(page, url, "/orgs")
    expect(page.get_by_role("heading", name="Your organisations")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Acme Oy")
    page.get_by_label("Handle").fill(handle)
    page.get_by_label("Business ID (optional)").fill("1234567-8")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(f"{url}/orgs/{handle}?done=created")
    expect(page.get_by_role("heading", name="Acme Oy")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("The organisation was created. You are its owner.")

    # Invite a colleague by email, as an editor; the invitation is pending.
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    invited = f"new-{secrets.token_hex(3)}@example.com"
    invite = page.get_by_role("form", name="Invite a member")
    invite.get_by_label("Email address").fill(invited)
    invite.get_by_label("Role").select_option("editor")
    invite.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_role("status")).to_have_text("The invitation was sent.")
    pending = page.get_by_role("list", name="Pending invitations")
    expect(pending).to_contain_text(invited)
    expect(pending).to_contain_text("Editor")

    # A colleague who already has an account joins (an operator adds them); the list shows them.
    cli(idp_server, "orgs", "members", "add", handle, colleague, "--role", "member")
    page.reload()
    members = page.get_by_role("list", name="Members")
    expect(members.locator("li")).to_have_count(2)
    row = members.locator(f'li[data-member="{colleague}"]')
    expect(row).to_contain_text("Kaisa Kollega")
    expect(row.locator(".role")).to_have_text("Member")
    expect(members.locator(f'li[data-member="{DEMO_EMAIL}"] .role')).to_have_text("Owner")

    # Change the colleague's role to admin.
    row.get_by_label("New role for Kaisa Kollega").select_option("admin")
    row.get_by_role("button", name="Change role").click()
    expect(page.get_by_role("status")).to_have_text("The role was changed.")
    expect(page.locator(f'li[data-member="{colleague}"] .role')).to_have_text("Admin")
    page.screenshot(path="/tmp/orgs_members.png", full_page=True)

    # Grant the colleague access to the product with one of its roles, then change that role.
    page.get_by_role("link", name="Product access").click()
    grant = page.get_by_role("form", name="Grant access to Caller")
    grant.get_by_label("Member").select_option(label=f"Kaisa Kollega ({colleague})")
    grant.get_by_label("Role in Caller").select_option("user")
    grant.get_by_role("button", name="Grant access").click()
    expect(page.get_by_role("status")).to_have_text("Product access was saved.")
    access = page.get_by_role("list", name="Members with access to Caller")
    expect(access.locator(f'li[data-access="{colleague}"]')).to_contain_text("user")
    access.get_by_label("Product role for Kaisa Kollega").select_option("viewer")
    access.get_by_role("button", name="Change").click()
    expect(page.locator(f'li[data-access="{colleague}"] .tag')).to_have_text("viewer")

    # The organisation is on the admin's list with the owner role; its events show the changes.
    page.get_by_role("link", name="Your organisations").click()
    expect(page.get_by_role("list", name="Your organisations")).to_contain_text("Acme Oy")
    page.goto(f"{url}/orgs/{handle}/audit")
    events = page.get_by_role("list", name="Events")
    for action in ("org.created", "member.role_changed", "product.access_granted"):
        expect(events).to_contain_text(action)
