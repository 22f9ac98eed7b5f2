"""Scale-out: two server processes on different ports share one PostgreSQL database and one Redis,
as N stateless nodes behind a load balancer would.

The issuer. In production the nodes sit behind one load balancer, and every node must say the
same issuer (OIDC Discovery §4.3: identical everywhere). So both nodes get one IDP_ISSUER, the
load balancer's name (`http://login.idp.test`), which neither listens on. The test plays the load
balancer: it sends each request to the node it chooses, at that node's own port, by the path the
issuer's URLs name. Redirects the nodes send are relative paths (or the client's redirect URI),
and cookies belong to the host 127.0.0.1 whatever the port (RFC 6265 §8.5), so one cookie jar
serves both nodes exactly as a browser behind a load balancer would. Both nodes get the same
IDP_KEK (the keys of cookies, CSRF tokens, rate-limit counters and sealed signing keys derive from
it) and nothing else in common but the database and Redis.

It checks: a whole authorization-code flow with PKCE whose every step goes to the other node than
the previous one (authorize, login form, login, consent form, consent, code exchange, userinfo,
refresh), tokens verified with joserfc against the JWKS of the other node; a key rotation made on
node A (`idp keys rotate`) reaching node B within IDP_KEY_CACHE_SECONDS; and a rate limit counted
across both nodes through Redis.

It needs PostgreSQL (IDP_TEST_DATABASE_URL=postgresql+asyncpg://...), where it creates a database
of its own (dropped at the end), and Redis (IDP_TEST_REDIS_URL), whose keys it adds it removes
again. The SQLite run of `make test` skips it (the PostgreSQL run, which CI always has, runs it);
on CI without any PostgreSQL URL it fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.db.migrate import upgrade
from idp.oauth.clients import ClientSpec
from idp.services import Services
from idp.settings import Settings
from tests.rp import PASSWORD, form_field, pkce_pair, query_of
from tests.server_process import ServerProcess, scratch_database
from tests.token_support import assert_error

ISSUER = "http://login.idp.test"  # the load balancer's name; neither node listens on it
DATABASE_URL = os.environ.get("IDP_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
KEY_CACHE_SECONDS = 1.0
LOGIN_LIMIT = 6  # per minute and client address, counted in Redis for both nodes
REDIRECT_URI = "https://rp.example/cb"
ALGS = ["RS256", "ES256", "EdDSA", "Ed25519"]


def _needs_postgres() -> None:
    if DATABASE_URL.startswith("postgresql"):
        return
    if os.environ.get("CI") == "true" and not os.environ.get("PG_URL"):
        pytest.fail("the two-node test needs PostgreSQL, and CI has none configured", pytrace=False)
    pytest.skip("two nodes share a PostgreSQL database: runs in the PostgreSQL run of make test")


def _redis() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except (redis.RedisError, OSError):
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} unreachable: the two-node test cannot skip on CI")
        pytest.skip(f"Redis at {REDIS_URL} unreachable (set IDP_TEST_REDIS_URL)")
    return client


class Node:
    """One server process, addressed as the load balancer would address it."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server

    def url(self, issuer_url_or_path: str) -> str:
        return self.server.url + issuer_url_or_path.removeprefix(ISSUER)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Node A and node B, and the client and account the flows use (made in process before the
    nodes start, like `idp migrate`, `idp clients add` and `idp users add` would: each `idp`
    subprocess costs seconds of start-up)."""
    _needs_postgres()
    store = _redis()
    keys_before = set(store.scan_iter())
    with scratch_database(DATABASE_URL, "idp_two_nodes") as database_url:
        env = {
            "IDP_ISSUER": ISSUER, "IDP_DATABASE_URL": database_url, "IDP_REDIS_URL": REDIS_URL,
            "IDP_KEK": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "IDP_KEY_CACHE_SECONDS": str(KEY_CACHE_SECONDS),
            "IDP_RATE_LIMITS": json.dumps({"login_per_ip": f"{LOGIN_LIMIT}/minute"}),
            "IDP_COURIER_IN_PROCESS": "false", "IDP_WEBHOOKS_IN_PROCESS": "false",
        }
        upgrade(database_url)
        made = asyncio.run(_client_and_account(Settings(
            issuer=ISSUER, database_url=database_url, kek=env["IDP_KEK"],
            argon2_memory_kib=1024, argon2_time_cost=1)))
        a = ServerProcess(tmp_path_factory.mktemp("node-a"), env)
        b = ServerProcess(tmp_path_factory.mktemp("node-b"), env)
        try:
            with ThreadPoolExecutor(2) as starting:  # side by side: each start-up takes seconds
                list(starting.map(lambda node: node.start(migrate=False), (a, b)))
            yield Node(a), Node(b), *made
        finally:
            a.stop()
            b.stop()
            added = set(store.scan_iter()) - keys_before
            if added:
                store.delete(*added)
            store.close()


async def _client_and_account(settings: Settings):
    s = Services(settings)
    email = f"two-nodes-{secrets.token_hex(4)}@example.com"

    async def make(db):
        await s.keyring.ensure_keys(db)
        client, secret = await s.clients.create(db, ClientSpec(
            name="Two nodes RP", redirect_uris=[REDIRECT_URI], first_party=False))
        await s.accounts.create_user(db, email=email, password=PASSWORD, name="Maija Meikäläinen")
        return (client.client_id, secret), email

    try:
        return await s.db.run(make)
    finally:
        await s.close()


def _keys(node: Node, http: httpx.Client) -> KeySet:
    discovery = http.get(node.url("/.well-known/openid-configuration")).json()
    return KeySet.import_key_set(http.get(node.url(discovery["jwks_uri"])).json())


def _verify(token: str, keys: KeySet) -> tuple[dict, dict]:
    decoded = jwt.decode(token, keys, algorithms=ALGS)
    return decoded.header, decoded.claims


def _form_across(browser: httpx.Client, shown_by: Node, page: str, posted_to: Node, action: str,
                 **fields: str) -> httpx.Response:
    """GET a flow's page from one node and POST its form (flow id, CSRF token, `fields`) to another."""
    shown = browser.get(shown_by.url(page))
    assert shown.status_code == 200, shown.text
    return browser.post(posted_to.url(action), data={
        "flow": form_field(shown.text, "flow"), "csrf_token": form_field(shown.text, "csrf_token"), **fields})


def _token(node: Node, http: httpx.Client, client, data: dict) -> httpx.Response:
    return http.post(node.url("/token"), data=data, auth=client)


def test_a_code_flow_whose_steps_alternate_between_the_nodes(nodes):
    a, b, client, account = nodes
    # Its own client address, so that the rate-limit test's counting starts from zero.
    with httpx.Client(headers={"X-Forwarded-For": "203.0.113.10"}, timeout=10) as browser:
        meta_a = browser.get(a.url("/.well-known/openid-configuration")).json()
        assert browser.get(b.url("/.well-known/openid-configuration")).json() == meta_a
        assert meta_a["issuer"] == ISSUER

        verifier, challenge = pkce_pair()
        nonce, state = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        start = browser.get(a.url("/authorize"), params={
            "response_type": "code", "client_id": client[0], "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email offline_access", "state": state, "nonce": nonce,
            "code_challenge": challenge, "code_challenge_method": "S256"})
        assert start.status_code == 303, start.text
        assert start.headers["location"].startswith("/login")

        # The CSRF cookie came from A; the login page is B's, its form is posted to A.
        login = _form_across(browser, b, start.headers["location"], a, "/login",
                             username=account, password=PASSWORD)
        assert login.status_code == 303, login.text
        assert login.headers["location"].startswith("/consent")

        # The session cookie came from A; the consent page is B's, its answer goes to A.
        consent = _form_across(browser, b, login.headers["location"], a, "/consent", decision="allow")
        assert consent.status_code == 303, consent.text
        assert consent.headers["location"].startswith(REDIRECT_URI)
        back = query_of(consent.headers["location"])
        assert back["state"] == state and back["iss"] == ISSUER

        exchanged = _token(b, browser, client, {
            "grant_type": "authorization_code", "code": back["code"], "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier})
        assert exchanged.status_code == 200, exchanged.text
        tokens = exchanged.json()
        # Issued by B, verified with A's published keys.
        _, id_claims = _verify(tokens["id_token"], _keys(a, browser))
        assert id_claims["iss"] == ISSUER and id_claims["aud"] == client[0] and id_claims["nonce"] == nonce
        _, access_claims = _verify(tokens["access_token"], _keys(a, browser))
        assert access_claims["sub"] == id_claims["sub"] and access_claims["iss"] == ISSUER

        info = browser.get(a.url("/userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert info.status_code == 200, info.text
        assert info.json()["sub"] == id_claims["sub"] and info.json()["email"] == account

        refreshed = _token(b, browser, client, {"grant_type": "refresh_token",
                                                 "refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        _, claims = _verify(refreshed.json()["access_token"], _keys(a, browser))
        assert claims["sub"] == id_claims["sub"]
        # The rotated-out token is spent for both nodes: A refuses what B consumed.
        replay = _token(a, browser, client, {"grant_type": "refresh_token",
                                              "refresh_token": tokens["refresh_token"]})
        assert_error(replay, 400, "invalid_grant")


def test_a_key_rotation_on_node_a_is_seen_by_node_b(nodes):
    a, b, client, account = nodes
    with httpx.Client(headers={"X-Forwarded-For": "203.0.113.11"}, timeout=10) as browser:
        refresh_token = _signed_in(a, b, browser, client, account)
        published_before = {key.kid for key in _keys(b, browser)}

        # The operator's command, with node A's configuration.
        rotated = a.server.idp("keys", "rotate").stdout
        promoted = set(re.findall(r"now signing with (\S+)", rotated))
        assert promoted and promoted <= published_before  # the next keys were published beforehand

        # Within the key cache time both nodes sign with the promoted keys, and B publishes the
        # new next keys that the rotation made.
        deadline = time.monotonic() + KEY_CACHE_SECONDS + 4
        signed_by = {}
        while time.monotonic() < deadline:
            for name, node in (("a", a), ("b", b)):
                reply = _token(node, browser, client, {"grant_type": "refresh_token",
                                                        "refresh_token": refresh_token})
                assert reply.status_code == 200, reply.text
                refresh_token = reply.json()["refresh_token"]
                signed_by[name] = reply.json()
            kids = {name: {_header(t["access_token"])["kid"], _header(t["id_token"])["kid"]}
                    for name, t in signed_by.items()}
            # The rotation made a new next key per algorithm: B publishes them too.
            new_next = {key.kid for key in _keys(b, browser)} - published_before
            if kids["a"] <= promoted and kids["b"] <= promoted and len(new_next) == len(promoted):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"node B did not follow the rotation within {KEY_CACHE_SECONDS + 4} s: {kids}")
        # A token that A signed with a new key verifies against B's JWKS.
        header, claims = _verify(signed_by["a"]["access_token"], _keys(b, browser))
        assert header["kid"] in promoted and claims["iss"] == ISSUER


def test_rate_limits_are_counted_across_the_nodes(nodes):
    a, b, client, account = nodes
    with httpx.Client(headers={"X-Forwarded-For": "203.0.113.12"}, timeout=10) as browser:
        start = browser.get(a.url("/authorize"), params={
            "response_type": "code", "client_id": client[0], "redirect_uri": REDIRECT_URI,
            "scope": "openid", "code_challenge": pkce_pair()[1], "code_challenge_method": "S256"})
        page = browser.get(a.url(start.headers["location"]))
        form = {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
                "username": account, "password": "not the password at all"}
        # Half of the limit on each node: with counters per process neither would be near it.
        for attempt in range(LOGIN_LIMIT):
            node = (a, b)[attempt % 2]
            reply = browser.post(node.url("/login"), data=form)
            assert reply.status_code == 401, (attempt, reply.status_code)  # the form again, with an error
        for node in (a, b):
            refused = browser.post(node.url("/login"), data=form)
            assert refused.status_code == 429
            assert 0 < int(refused.headers["Retry-After"]) <= 60


def _signed_in(a: Node, b: Node, browser: httpx.Client, client, account: str) -> str:
    """A refresh token from a flow (consent is remembered after the first test's)."""
    verifier, challenge = pkce_pair()
    reply = browser.get(a.url("/authorize"), params={
        "response_type": "code", "client_id": client[0], "redirect_uri": REDIRECT_URI,
        "scope": "openid offline_access", "code_challenge": challenge, "code_challenge_method": "S256"})
    for _ in range(4):
        location = reply.headers["location"]
        if location.startswith("/login"):
            page = browser.get(b.url(location))
            reply = browser.post(a.url("/login"), data={
                "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
                "username": account, "password": PASSWORD})
        elif location.startswith("/consent"):
            page = browser.get(b.url(location))
            reply = browser.post(a.url("/consent"), data={
                "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
                "decision": "allow"})
        else:
            break
    code = query_of(reply.headers["location"])["code"]
    exchanged = _token(b, browser, client, {"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": REDIRECT_URI, "code_verifier": verifier})
    assert exchanged.status_code == 200, exchanged.text
    return exchanged.json()["refresh_token"]


def _header(token: str) -> dict:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
