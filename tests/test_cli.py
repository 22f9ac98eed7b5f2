"""The `idp` command as an operator runs it: the real console script in a subprocess, configured
only through IDP_* environment variables, on a fresh SQLite file per test module.

Also: the migration chain goes down to base and up again, and the migrated schema matches the
models (SQLite always; PostgreSQL too when IDP_TEST_DATABASE_URL points at one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from idp.app import create_app
from idp.db.migrate import downgrade, upgrade
from idp.oauth.clients import ClientSpec
from idp.settings import Settings
from tests.conftest import ISSUER
from tests.rp import PASSWORD, RegisteredClient, RelyingParty

IDP = Path(sys.executable).parent / "idp"


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env |= {
        "IDP_DATABASE_URL": f"sqlite+aiosqlite:///{root}/idp.db",
        "IDP_DEV_KEY_DIR": str(root / "keys"),
        "IDP_ARGON2_MEMORY_KIB": "1024",
        "IDP_ARGON2_TIME_COST": "1",
        "IDP_ISSUER": ISSUER,
        "COLUMNS": "200",
    }
    return env | extra


def idp(env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # cwd: a directory of our own, so no `.env` of the developer's is read.
    return subprocess.run([str(IDP), *args], env=env, cwd=cwd or Path(env["IDP_DEV_KEY_DIR"]).parent,
                          capture_output=True, text=True, timeout=120)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def failed(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, "an error must be a message, not a traceback"


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict:
    """A migrated database shared by the tests of this module."""
    root = tmp_path_factory.mktemp("cli")
    env = _env(root)
    ok(idp(env, "migrate"))
    return env


def _keys(env) -> list[dict]:
    return json.loads(ok(idp(env, "keys", "list", "--json")).stdout)


CONFIDENTIAL = [
    "clients", "add", "--name", "X", "--redirect-uri", "https://a.example/cb",
    "--post-logout-redirect-uri", "https://a.example/bye", "--confidential",
    "--grant-type", "authorization_code", "--grant-type", "refresh_token",
    "--scope", "openid", "--scope", "profile", "--auth-method", "client_secret_post",
    "--first-party", "--json",
]


# ---- migrate and keys --------------------------------------------------------------------------

def test_migrate_creates_the_schema_keys_and_a_private_dev_kek(tmp_path):
    env = _env(tmp_path)
    result = ok(idp(env, "migrate"))
    assert "up to date" in result.stdout

    kek = tmp_path / "keys" / "dev-kek"
    assert kek.exists()
    assert stat.S_IMODE(kek.stat().st_mode) == 0o600
    assert len(base64.urlsafe_b64decode(kek.read_text().strip() + "==")) == 32

    keys = _keys(env)
    for family in ("RS256", "ES256", "Ed25519"):
        statuses = sorted(k["status"] for k in keys if k["alg"] == family)
        assert statuses == ["active", "next"], (family, statuses)
    assert all(k["expires_at"] is None for k in keys)
    assert not any("private" in json.dumps(k) or "pem" in json.dumps(k).lower() for k in keys)

    # Migrating again is harmless and never makes new keys (a restart keeps the JWKS).
    ok(idp(env, "migrate"))
    assert _keys(env) == keys


def test_keys_rotate_promotes_next_and_retires_active_with_an_expiry(tmp_path):
    env = _env(tmp_path)
    ok(idp(env, "migrate"))
    before = _keys(env)
    active = {k["alg"]: k["kid"] for k in before if k["status"] == "active"}
    upcoming = {k["alg"]: k["kid"] for k in before if k["status"] == "next"}

    result = ok(idp(env, "keys", "rotate"))
    for family, kid in upcoming.items():
        assert kid in result.stdout and family in result.stdout

    after = {k["kid"]: k for k in _keys(env)}
    for family in ("RS256", "ES256", "Ed25519"):
        old = after[active[family]]
        assert old["status"] == "retired" and old["expires_at"] is not None
        assert after[upcoming[family]]["status"] == "active"
        now_active = [k for k in after.values() if k["alg"] == family and k["status"] == "active"]
        now_next = [k for k in after.values() if k["alg"] == family and k["status"] == "next"]
        assert [k["kid"] for k in now_active] == [upcoming[family]]
        assert len(now_next) == 1 and now_next[0]["kid"] not in (active[family], upcoming[family])


def test_production_without_a_kek_fails_clearly_and_changes_nothing(tmp_path):
    env = _env(tmp_path, IDP_ENV="production")
    failed(idp(env, "migrate"), "IDP_KEK must be set in production")
    assert not (tmp_path / "idp.db").exists(), "nothing may be migrated without a KEK"
    assert not (tmp_path / "keys" / "dev-kek").exists(), "production never generates a KEK file"
    failed(idp(env, "keys", "list"), "IDP_KEK must be set in production")


def test_production_with_a_kek_works_and_writes_no_key_file(tmp_path):
    kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    env = _env(tmp_path, IDP_ENV="production", IDP_KEK=kek)
    ok(idp(env, "migrate"))
    assert len(_keys(env)) == 6
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize("kek, message", [
    (base64.urlsafe_b64encode(b"too short").decode(), "IDP_KEK must be 32 bytes"),
    ("not base64 at all", "error:"),  # the message is binascii's; it names no variable (settings.py)
])
def test_a_malformed_kek_fails_clearly(tmp_path, kek, message):
    env = _env(tmp_path, IDP_KEK=kek)
    failed(idp(env, "migrate"), message)
    assert not (tmp_path / "idp.db").exists()


# ---- clients -----------------------------------------------------------------------------------

def test_confidential_client_shows_its_secret_once(cli):
    shown = json.loads(ok(idp(cli, *CONFIDENTIAL)).stdout)
    assert shown["client_secret"] and len(shown["client_secret"]) >= 32
    assert shown["client_type"] == "confidential"
    assert shown["token_endpoint_auth_method"] == "client_secret_post"
    assert shown["redirect_uris"] == ["https://a.example/cb"]
    assert shown["post_logout_redirect_uris"] == ["https://a.example/bye"]
    assert shown["grant_types"] == ["authorization_code", "refresh_token"]
    assert shown["scopes"] == ["openid", "profile"]
    assert shown["first_party"] is True

    listed = json.loads(ok(idp(cli, "clients", "list", "--json")).stdout)
    mine = [c for c in listed if c["client_id"] == shown["client_id"]]
    assert len(mine) == 1 and mine[0]["name"] == "X"
    assert all("client_secret" not in c and "secret_hash" not in c for c in listed)
    table = ok(idp(cli, "clients", "list")).stdout
    assert shown["client_id"] in table
    for output in (json.dumps(listed), table):
        assert shown["client_secret"] not in output

    # Only a keyed hash is stored: the secret is nowhere in the database files.
    root = Path(cli["IDP_DEV_KEY_DIR"]).parent
    for path in root.glob("idp.db*"):
        assert shown["client_secret"].encode() not in path.read_bytes(), path.name


def test_public_client_has_no_secret(cli):
    shown = json.loads(ok(idp(cli, "clients", "add", "--name", "SPA", "--public",
                              "--redirect-uri", "https://spa.example/cb", "--json")).stdout)
    assert shown["client_secret"] is None
    assert shown["client_type"] == "public" and shown["token_endpoint_auth_method"] == "none"


def test_public_client_cannot_have_a_secret_auth_method(cli):
    failed(idp(cli, "clients", "add", "--name", "P", "--public", "--redirect-uri", "https://p.example/cb",
               "--auth-method", "client_secret_basic"), "public clients use auth method 'none'")


def test_client_id_can_be_chosen_once(cli):
    args = ["clients", "add", "--name", "Fixed", "--redirect-uri", "https://f.example/cb",
            "--client-id", "fixed-client", "--json"]
    assert json.loads(ok(idp(cli, *args)).stdout)["client_id"] == "fixed-client"
    failed(idp(cli, *args), "client_id already taken")


@pytest.mark.parametrize("option, uri", [
    ("--redirect-uri", "https://a.example/cb#fragment"),
    ("--redirect-uri", "javascript:alert(1)"),
    ("--redirect-uri", "JavaScript:alert(1)"),
    ("--redirect-uri", "data:text/html,hi"),
    ("--redirect-uri", "http://a.example/cb"),
    ("--redirect-uri", "https://*.example/cb"),
    ("--redirect-uri", "/relative/cb"),
    ("--redirect-uri", "https://user@a.example/cb"),
    ("--post-logout-redirect-uri", "http://a.example/bye"),
    ("--post-logout-redirect-uri", "javascript:alert(1)"),
])
def test_bad_redirect_uris_are_refused(cli, option, uri):
    args = ["clients", "add", "--name", "Bad", "--json"]
    if option != "--redirect-uri":
        args += ["--redirect-uri", "https://ok.example/cb"]
    result = idp(cli, *args, option, uri)
    failed(result, "redirect URI")
    assert uri in result.stderr
    assert result.stdout.strip() == ""  # nothing on stdout for a script to mistake for a client
    listed = json.loads(ok(idp(cli, "clients", "list", "--json")).stdout)
    assert not any(uri in c["redirect_uris"] + c["post_logout_redirect_uris"] for c in listed)


# ---- users -------------------------------------------------------------------------------------

def test_users_add_prints_the_sub_and_refuses_a_duplicate_email(cli):
    email = f"cli-{secrets.token_hex(4)}@example.com"
    shown = json.loads(ok(idp(cli, "users", "add", "--email", email, "--password", PASSWORD,
                              "--name", "Cli User", "--json")).stdout)
    assert shown["sub"] and "@" not in shown["sub"]
    assert shown["email"] == email and shown["name"] == "Cli User"
    assert PASSWORD not in json.dumps(shown)

    failed(idp(cli, "users", "add", "--email", email.upper(), "--password", PASSWORD, "--json"),
           "exists")


def test_users_add_refuses_a_non_email(cli):
    failed(idp(cli, "users", "add", "--email", "not-an-email", "--password", PASSWORD), "email")


def test_purge_runs_one_housekeeping_round_and_says_what_it_deleted(cli):
    # A database the fixture just made: nothing is a retention past its end yet.
    assert json.loads(ok(idp(cli, "purge", "--json")).stdout) == {}
    assert "nothing to delete" in ok(idp(cli, "purge")).stdout


# ---- what the CLI made works over HTTP ---------------------------------------------------------

async def test_a_client_and_user_made_with_the_cli_can_sign_in(cli):
    shown = json.loads(ok(idp(cli, *CONFIDENTIAL)).stdout)
    email = f"cli-{secrets.token_hex(4)}@example.com"
    ok(idp(cli, "users", "add", "--email", email, "--password", PASSWORD, "--json"))

    settings = Settings(issuer=ISSUER, database_url=cli["IDP_DATABASE_URL"],
                        dev_key_dir=Path(cli["IDP_DEV_KEY_DIR"]), argon2_memory_kib=1024,
                        argon2_time_cost=1, key_cache_seconds=0.0,
                        # No background workers: this test blocks its event loop on `idp keys
                        # list`, and a worker holding SQLite's write lock meanwhile would block it.
                        courier_in_process=False, webhooks_in_process=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        rp = RelyingParty(app, app.state.services)
        client = RegisteredClient(shown["client_id"], shown["client_secret"], "https://a.example/cb",
                                  ClientSpec(name="X"))
        async with rp.browser() as http:
            result = await rp.sign_in(http, client, email, scope="openid profile")
            reply = await rp.exchange(http, client, result, auth="post")
            assert reply.status_code == 200, reply.text
            claims = await rp.verify(http, reply.json()["id_token"])
            assert claims["aud"] == shown["client_id"]
            kids = {k["kid"] for k in _keys(cli) if k["status"] == "active"}
            assert claims["header"]["kid"] in kids
            # Basic auth is not this client's registered method.
            wrong = await rp.exchange(http, client, result, auth="basic")
            assert wrong.status_code in (400, 401)
        services = app.state.services
        events = await services.db.run(lambda db: services.audit.events(db, action="user.created"))
        [created] = [event for event in events if event.target_id == claims["sub"]]
        assert created.actor_type == "operator" and PASSWORD not in json.dumps(created.after)


# ---- the migration chain -----------------------------------------------------------------------

async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def _schema_drift(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from idp.models import metadata

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata))
    finally:
        await engine.dispose()


async def _create_database(admin_url: str, name: str, *, drop: bool = False) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"' if drop else f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_chain_goes_down_to_base_and_up_again(tmp_path, backend):
    if backend == "sqlite":
        url, cleanup = f"sqlite+aiosqlite:///{tmp_path}/chain.db", None
    else:
        admin = os.environ.get("IDP_TEST_DATABASE_URL") or ""
        if not admin.startswith("postgresql"):
            pytest.skip("PostgreSQL runs only when IDP_TEST_DATABASE_URL points at one")
        name = f"idp_chain_{secrets.token_hex(4)}"
        asyncio.run(_create_database(admin, name))
        url = admin.rsplit("/", 1)[0] + "/" + name
        cleanup = (admin, name)
    try:
        upgrade(url)
        tables = asyncio.run(_tables(url))
        assert {"clients", "users", "signing_keys", "alembic_version"} <= tables
        assert asyncio.run(_schema_drift(url)) == [], "migrations and models disagree"

        downgrade(url, "base")
        assert asyncio.run(_tables(url)) <= {"alembic_version"}

        upgrade(url)
        assert asyncio.run(_tables(url)) == tables
        assert asyncio.run(_schema_drift(url)) == []
    finally:
        if cleanup:
            asyncio.run(_create_database(*cleanup, drop=True))


def test_serve_alone_on_a_fresh_sqlite_file_migrates_and_answers(tmp_path):
    """`idp serve` with nothing prepared (development, SQLite) is a working provider."""
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _env(tmp_path, IDP_ISSUER=f"http://127.0.0.1:{port}")
    server = subprocess.Popen([str(IDP), "serve", "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/jwks", timeout=2) as reply:
                    keys = json.load(reply)["keys"]
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert len(keys) == 6  # an active and a next key for RS256, ES256 and Ed25519
    finally:
        server.terminate()
        server.wait(timeout=10)


# ---- integrator clients: bound to an organisation, secret rotation, deletion -------------------

def test_clients_add_binds_to_an_org_rotates_its_secret_and_deletes_it(cli):
    email = f"cli-{secrets.token_hex(4)}@example.com"
    ok(idp(cli, "users", "add", "--email", email, "--password", PASSWORD, "--json"))
    handle = f"acme-{secrets.token_hex(3)}"
    org = json.loads(ok(idp(cli, "orgs", "add", "--name", "Acme Oy", "--handle", handle, "--owner", email,
                            "--json")).stdout)
    machine = ["clients", "add", "--name", "HR sync", "--grant-type", "client_credentials",
               "--scope", "idp:orgs:read", "--scope", "idp:orgs:write", "--json"]
    shown = json.loads(ok(idp(cli, *machine, "--org", handle)).stdout)
    assert shown["org_id"] == org["id"] and shown["scopes"] == ["idp:orgs:read", "idp:orgs:write"]
    assert shown["client_secret"] and "secret_hash" not in shown
    table = ok(idp(cli, "clients", "list")).stdout
    assert "organisation" in table and org["id"] in table

    failed(idp(cli, *machine, "--org", "no-such-org"), "unknown organisation: no-such-org")
    failed(idp(cli, "clients", "add", "--name", "Bad", "--grant-type", "client_credentials",
               "--scope", "idp:everything"), "unknown API scope: idp:everything")

    rotated = json.loads(ok(idp(cli, "clients", "rotate-secret", shown["client_id"], "--json")).stdout)
    assert rotated["client_id"] == shown["client_id"]
    assert rotated["client_secret"] and rotated["client_secret"] != shown["client_secret"]
    assert shown["client_id"] in ok(idp(cli, "clients", "delete", shown["client_id"])).stdout
    listed = json.loads(ok(idp(cli, "clients", "list", "--json")).stdout)
    assert shown["client_id"] not in {c["client_id"] for c in listed}
    failed(idp(cli, "clients", "delete", shown["client_id"]), f"no client {shown['client_id']!r}")
    failed(idp(cli, "clients", "rotate-secret", shown["client_id"]), "no client")


def test_a_public_client_has_no_secret_to_rotate(cli):
    shown = json.loads(ok(idp(cli, "clients", "add", "--name", "SPA", "--public",
                              "--redirect-uri", "https://spa.example/cb", "--json")).stdout)
    failed(idp(cli, "clients", "rotate-secret", shown["client_id"]), "this client has no secret")
