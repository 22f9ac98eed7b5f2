"""A person signs in to the demo app with a real browser, against a real server (`make run`)."""

from __future__ import annotations

import os
import re

import pytest

try:
    from playwright.sync_api import Page, expect
except ImportError:
    if os.environ.get("CI") == "true":
        raise  # CI must run the browser tests: a missing package is a failure, not a skip
    pytest.skip("the playwright package is not installed (pip install -e '.[test]')", allow_module_level=True)

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "correct horse battery staple"
DEMO_NAME = "Demo User"


def _open_login_page(page: Page, url: str):
    """Open the demo app, click its sign-in link; return the login page's HTTP response."""
    page.goto(f"{url}/_demo")
    with page.expect_response(lambda r: r.url.startswith(f"{url}/login?") and r.request.method == "GET") as info:
        page.get_by_role("link", name="Sign in with idp").click()
    expect(page).to_have_url(re.compile(re.escape(f"{url}/login?flow=")))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    return info.value


def test_demo_output_names_client_and_user(idp_server):
    output = re.sub(r"\x1b\[[0-9;]*m", "", idp_server["demo_output"])  # in case rich forces styles
    assert re.search(r"client_id\s+demo\b", output), output
    assert DEMO_EMAIL in output, output


def _enter_identifier(page: Page, login: str) -> None:
    """Identifier first: one field, then the password page names the account."""
    page.get_by_label("Email or phone number").fill(login)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Enter your password")).to_be_visible()
    expect(page.get_by_text(f"Signing in as {login}")).to_be_visible()


def test_sign_in_and_sign_out(page: Page, idp_server):
    url = idp_server["url"]
    _open_login_page(page, url)
    _enter_identifier(page, DEMO_EMAIL)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()

    # First-party client: no consent page; straight back to the app, which redeemed the code.
    expect(page).to_have_url(re.compile(re.escape(f"{url}/_demo/callback?")))
    expect(page.get_by_role("heading", name="Signed in")).to_be_visible()
    expect(page.get_by_text(f"Hello, {DEMO_NAME}.")).to_be_visible()
    expect(page.locator("pre")).to_contain_text(f'"email": "{DEMO_EMAIL}"')

    session_cookies = [c for c in page.context.cookies() if c["name"] == "idp_session"]
    assert session_cookies, page.context.cookies()

    # RP-initiated logout with a valid id_token_hint for this session: no confirmation page.
    page.get_by_role("link", name="Sign out").click()
    expect(page).to_have_url(f"{url}/_demo")
    expect(page.get_by_role("link", name="Sign in with idp")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "idp_session"]

    # The session really ended, on the server too: even with the old session cookie put back,
    # signing in again asks for the password (without logout it would go straight to the app).
    page.context.add_cookies(session_cookies)
    _open_login_page(page, url)
    expect(page.get_by_label("Email or phone number")).to_be_empty()


def test_wrong_password_stays_on_login_page(page: Page, idp_server):
    url = idp_server["url"]
    response = _open_login_page(page, url)
    csp = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, csp

    expect(page.get_by_label("Email or phone number")).to_have_attribute("autocomplete", "username")
    _enter_identifier(page, DEMO_EMAIL)
    password = page.get_by_label("Password")
    expect(password).to_have_attribute("autocomplete", "current-password")
    expect(password).to_have_attribute("type", "password")

    password.fill("not the password")
    with page.expect_response(lambda r: r.url == f"{url}/login/password" and r.request.method == "POST") as info:
        page.get_by_role("button", name="Sign in", exact=True).click()
    assert info.value.status == 401
    assert "frame-ancestors 'none'" in info.value.headers.get("content-security-policy", "")

    expect(page.get_by_role("alert")).to_have_text("Incorrect email, phone number or password.")
    expect(page).to_have_url(f"{url}/login/password")
    expect(page.get_by_role("heading", name="Enter your password")).to_be_visible()
    expect(page.get_by_text(f"Signing in as {DEMO_EMAIL}")).to_be_visible()  # only the password again
    expect(password).to_be_empty()
    expect(password).to_have_attribute("aria-describedby", "login-error")
    page.screenshot(path="/tmp/login.png", full_page=True)

    # Still usable: the right password now signs in.
    password.fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Signed in")).to_be_visible()
