"""Redirect URIs at the authorization endpoint: exact string matching, black-box.

Checklist (b) items 19–23 and 25. Until the client and its redirect URI are both known good, every
error is an HTML error page with no Location header: never a redirect to an unvalidated URI.
"""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import ISSUER
from tests.rp import query_of


def error_page(reply) -> None:
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    assert "location" not in reply.headers


async def web_client(rp, path: str = "/cb"):
    host = f"rp{secrets.token_hex(4)}.example"
    client = await rp.register(redirect_uri=f"https://{host}{path}")
    return client, host


# Each variant of the registered https://<host>/cb must be refused (RFC 9700 §4.1.3).
VARIANTS = {
    "path appended": "https://{host}/cb/callback/xyz",
    "trailing slash": "https://{host}/cb/",
    "host case": "https://{HOST}/cb",
    "path case": "https://{host}/CB",
    "query added": "https://{host}/cb?foo=bar",
    "empty query": "https://{host}/cb?",
    "fragment": "https://{host}/cb#frag",
    "userinfo": "https://{host}@evil.example/cb",
    "double @": "https://{host}@@evil.example/cb",
    "suffix domain": "https://{host}.evil.example/cb",
    "encoded dots": "https://{host}/cb/%2e%2e/evil",
    "double-encoded dots": "https://{host}/cb/%252e%252e/evil",
    "dot segments": "https://{host}/cb/../evil",
    "tomcat path parameter": "https://{host}/cb/..;/evil",
    "http instead of https": "http://{host}/cb",
    "other port": "https://{host}:8443/cb",
    "default port spelled out": "https://{host}:443/cb",
    "idn look-alike": "https://{lookalike}/cb",
    "encoded slash": "https://{host}%2Fcb",
    "backslash": "https://{host}\\@evil.example/cb",
    "whitespace": " https://{host}/cb",
}


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
async def test_unregistered_redirect_uri_variant_shows_error_page(http, rp, variant):
    client, host = await web_client(rp)
    uri = variant.format(host=host, HOST=host.upper(), lookalike=host.replace("e", "\u0435"))
    error_page(await rp.authorize(http, client, redirect_uri=uri))


async def test_unregistered_redirect_uri_shows_error_page_even_with_a_session(http, rp):
    client, host = await web_client(rp)
    email, _ = await rp.user()
    await rp.sign_in(http, client, email)
    error_page(await rp.authorize(http, client, redirect_uri=f"https://{host}/cb/callback/xyz", prompt="none"))


@pytest.mark.parametrize("extra", [
    {"response_type": "token"}, {"response_type": None}, {"scope": "profile"}, {"scope": "openid admin"},
    {"prompt": "none"}, {"code_challenge": None}, {"request_uri": "https://evil.example/r"},
], ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
async def test_other_errors_with_an_attacker_redirect_uri_show_error_page(http, rp, extra):
    client = await rp.register(public=True)
    error_page(await rp.authorize(http, client, redirect_uri="https://evil.example/cb", **extra))


async def test_unknown_client_with_an_attacker_redirect_uri_shows_error_page(http, rp):
    client = await rp.register()
    error_page(await rp.authorize(http, client, client_id="idpc_unknown", redirect_uri="https://evil.example/cb"))


async def test_redirect_uri_of_another_client_shows_error_page(http, rp):
    client, other = await rp.register(), await rp.register()
    error_page(await rp.authorize(http, client, redirect_uri=other.redirect_uri))


async def test_registered_uri_with_query_is_accepted_and_params_appended_with_ampersand(http, rp):
    host = f"rp{secrets.token_hex(4)}.example"
    client = await rp.register(redirect_uri=f"https://{host}/cb?tenant=a")
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email)
    assert result.location.startswith(f"https://{host}/cb?tenant=a&")
    assert result.params["tenant"] == "a" and result.params["code"] and result.params["iss"] == ISSUER
    token = await rp.exchange(http, client, result)
    assert token.status_code == 200, token.text
    assert (await rp.verify(http, token.json()["id_token"]))["sub"] == sub


async def test_error_redirect_to_a_registered_uri_with_query_keeps_the_query(http, rp):
    host = f"rp{secrets.token_hex(4)}.example"
    client = await rp.register(redirect_uri=f"https://{host}/cb?tenant=a")
    reply = await rp.authorize(http, client, prompt="none")
    assert reply.status_code == 302
    assert reply.headers["location"].startswith(f"https://{host}/cb?tenant=a&")
    params = query_of(reply.headers["location"])
    assert params["error"] == "login_required" and params["tenant"] == "a" and params["iss"] == ISSUER


@pytest.mark.parametrize("sent", ["/cb?tenant=b", "/cb", "/cb?tenant=a&x=1", "/cb?x=1&tenant=a"])
async def test_registered_uri_with_query_sent_with_another_query_shows_error_page(http, rp, sent):
    host = f"rp{secrets.token_hex(4)}.example"
    client = await rp.register(redirect_uri=f"https://{host}/cb?tenant=a")
    error_page(await rp.authorize(http, client, redirect_uri=f"https://{host}{sent}"))


# ---- native clients: loopback, any port (RFC 8252 §7.3) ------------------------------------------


async def native_client(rp):
    return await rp.register(public=True, application_type="native", redirect_uri="http://127.0.0.1/cb")


async def test_native_loopback_redirect_with_any_port_is_accepted(http, rp):
    client = await native_client(rp)
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email, redirect_uri="http://127.0.0.1:53187/cb")
    assert result.location.startswith("http://127.0.0.1:53187/cb?")
    token = await rp.exchange(http, client, result, auth="none")
    assert token.status_code == 200, token.text
    assert (await rp.verify(http, token.json()["id_token"]))["sub"] == sub


async def test_native_loopback_redirect_as_registered_is_accepted(http, rp):
    client = await native_client(rp)
    email, _ = await rp.user()
    result = await rp.sign_in(http, client, email)
    assert result.location.startswith("http://127.0.0.1/cb?") and result.params["code"]


@pytest.mark.parametrize("uri", [
    "http://localhost.evil.com/cb", "http://127.0.0.1.evil.com/cb", "http://127.0.0.1:53187/other",
    "http://127.0.0.1:53187/cb/", "http://127.0.0.1:53187/cb?x=1", "https://127.0.0.1:53187/cb",
    "http://localhost:53187/cb", "http://[::1]:53187/cb", "http://127.0.0.1@evil.com:53187/cb",
    "http://127.0.0.1:53187@evil.com/cb", "http://127.0.0.2:53187/cb",
])
async def test_native_loopback_redirect_other_than_the_port_is_rejected(http, rp, uri):
    client = await native_client(rp)
    error_page(await rp.authorize(http, client, redirect_uri=uri))


async def test_web_client_loopback_redirect_must_match_the_port_exactly(http, rp):
    client = await rp.register(redirect_uri="http://127.0.0.1:8080/cb")
    error_page(await rp.authorize(http, client, redirect_uri="http://127.0.0.1:9090/cb"))


# ---- redirect_uri omitted ----------------------------------------------------------------------


async def test_two_registered_uris_and_none_sent_shows_error_page(http, rp):
    client = await rp.register(redirect_uris=["https://a.example/cb", "https://b.example/cb"],
                               redirect_uri="https://a.example/cb")
    error_page(await rp.authorize(http, client, redirect_uri=None))


async def test_oidc_request_without_redirect_uri_shows_error_page(http, rp):
    client = await rp.register()  # one registered URI, but OIDC Core §3.1.2.1 requires it
    error_page(await rp.authorize(http, client, redirect_uri=None, scope="openid profile"))


async def test_plain_oauth_request_without_redirect_uri_uses_the_only_registered_one(http, rp):
    client = await rp.register()  # RFC 6749 §3.1.2.3
    email, _ = await rp.user()
    await rp.sign_in(http, client, email)
    reply = await rp.authorize(http, client, redirect_uri=None, scope="profile")
    assert reply.status_code == 302
    assert reply.headers["location"].startswith(client.redirect_uri + "?")
    assert query_of(reply.headers["location"])["code"]


async def test_either_of_two_registered_uris_is_accepted(http, rp):
    client = await rp.register(redirect_uris=["https://a.example/cb", "https://b.example/cb"],
                               redirect_uri="https://a.example/cb")
    email, _ = await rp.user()
    result = await rp.sign_in(http, client, email, redirect_uri="https://b.example/cb")
    assert result.location.startswith("https://b.example/cb?") and result.params["code"]
