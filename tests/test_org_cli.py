"""`idp orgs` and `idp products` as an operator runs them: the real console script in a subprocess
on a fresh SQLite file, every refusal one line on stderr with exit code 1 and never a traceback.
A username's temporary password is delivered for real (SMTP on 127.0.0.1) and then signs in."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest

from idp.accounts.temporary import CROCKFORD
from idp.services import Services
from idp.settings import Settings
from tests import secrets_registry
from tests.conftest import ISSUER
from tests.mail_sms import mail_to
from tests.rp import PASSWORD
from tests.test_cli import _env, failed, idp, ok
from tests.test_temporary_password import _deliver
from tests.password_support import password_owner

TEMPORARY = re.compile(rf"[{CROCKFORD}]{{4}}(?:-[{CROCKFORD}]{{4}}){{3}}")


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("org-cli")
    env = _env(root)
    ok(idp(env, "migrate"))
    return env


def as_json(result) -> dict | list:
    return json.loads(ok(result).stdout)


def person(cli) -> tuple[str, str]:
    email = f"cli-org-{secrets.token_hex(4)}@example.com"
    return email, as_json(idp(cli, "users", "add", "--email", email, "--password", PASSWORD, "--json"))["sub"]


def organisation(cli, owner_email: str) -> str:
    handle = f"acme-{secrets.token_hex(3)}"
    ok(idp(cli, "orgs", "add", "--name", "Acme Oy", "--handle", handle, "--owner", owner_email))
    return handle


def listed(cli, handle: str) -> dict:
    return next(o for o in as_json(idp(cli, "orgs", "list", "--json")) if o["handle"] == handle)


async def _on_cli_database(cli, work):
    settings = Settings(issuer=ISSUER, database_url=cli["IDP_DATABASE_URL"],
                        dev_key_dir=Path(cli["IDP_DEV_KEY_DIR"]), argon2_memory_kib=1024, argon2_time_cost=1)
    services = Services(settings)
    try:
        return await services.db.run(lambda db: work(services, db))
    finally:
        await services.close()


# ---- organisations -------------------------------------------------------------------------------

def test_operators_create_and_list_organisations(cli):
    email, sub = person(cli)
    handle = f"acme-{secrets.token_hex(3)}"
    created = as_json(idp(cli, "orgs", "add", "--name", "  Acme   Oy ", "--handle", handle.upper(),
                          "--business-id", "1234567-8", "--owner", email.upper(), "--json"))
    assert created == {"id": created["id"], "handle": handle, "name": "Acme Oy", "business_id": "1234567-8",
                       "owner": sub}
    row = listed(cli, handle)
    assert (row["id"], row["owner"], row["members"], row["billing_contact_locked"]) == (created["id"], sub, 1, False)
    table = ok(idp(cli, "orgs", "list")).stdout
    assert handle in table and "Acme Oy" in table and "1234567-8" in table

    failed(idp(cli, "orgs", "add", "--name", "Other", "--handle", handle, "--owner", email), "this handle is taken")
    failed(idp(cli, "orgs", "add", "--name", "Other", "--handle", "Not A Handle", "--owner", email), "the handle must be")
    failed(idp(cli, "orgs", "add", "--name", "", "--handle", f"x-{secrets.token_hex(3)}", "--owner", email), "name")
    failed(idp(cli, "orgs", "add", "--name", "Other", "--handle", f"x-{secrets.token_hex(3)}",
               "--owner", "nobody@example.com"), "no account signs in with 'nobody@example.com'")


def test_a_database_that_is_not_migrated_is_one_line(tmp_path):
    env = _env(tmp_path)
    (tmp_path / "keys").mkdir()
    failed(idp(env, "orgs", "list"), "idp migrate")


# ---- usernames -----------------------------------------------------------------------------------

async def test_a_username_gets_a_temporary_password_by_email_that_signs_in_once(cli, smtp, gateway):
    owner, _ = person(cli)
    handle = organisation(cli, owner)
    address = f"maija-{secrets.token_hex(4)}@example.com"
    shown = idp(cli, "orgs", "usernames", "add", handle, "Maija", "--name", "Maija Meikäläinen",
                "--deliver-to", address, "--role", "admin", "--locale", "fi", "--json")
    created = as_json(shown)
    assert created == {"username": f"maija@{handle}", "sub": created["sub"], "role": "admin",
                       "temporary_password_sent_to": "m***@example.com"}
    assert listed(cli, handle)["members"] == 2

    await _deliver(cli, smtp, gateway)
    mail = (await mail_to(smtp, address))[0]
    body = smtp.body(mail)
    assert mail["Subject"] == "Uusi käyttäjätunnuksesi ja väliaikainen salasana" and f"maija@{handle}" in body
    temporary = TEMPORARY.search(body).group(0)
    secrets_registry.remember(temporary)
    assert temporary not in shown.stdout + shown.stderr  # the operator never sees it

    async def sign_in(s, db):
        user = await password_owner(s, db, f"MAIJA@{handle}", temporary)
        return user and (user.id, user.password_must_change, user.email)
    assert await _on_cli_database(cli, sign_in) == (created["sub"], True, None)

    # Refusals, one line each.
    failed(idp(cli, "orgs", "usernames", "add", handle, "maija", "--name", "M", "--deliver-to", address),
           "this username is taken")
    failed(idp(cli, "orgs", "usernames", "add", handle, "pekka", "--name", "P", "--deliver-to", address,
               "--role", "owner"), "ownership is only ever transferred")
    failed(idp(cli, "orgs", "usernames", "add", handle, "pekka-", "--name", "P", "--deliver-to", address),
           "lower-case letters")
    failed(idp(cli, "orgs", "usernames", "add", handle, "pekka", "--name", "P", "--deliver-to", "fax 123"),
           "email address or a mobile phone number")
    failed(idp(cli, "orgs", "usernames", "add", handle, "pekka", "--name", "P", "--deliver-to", address,
               "--role", "boss"), "the role must be one of admin, editor, member")
    failed(idp(cli, "orgs", "usernames", "add", "no-such-org", "pekka", "--name", "P", "--deliver-to", address),
           "not found: no such organisation")
    assert listed(cli, handle)["members"] == 2


async def test_a_username_can_get_its_password_by_sms(cli, smtp, gateway):
    owner, _ = person(cli)
    handle = organisation(cli, owner)
    national = f"050{secrets.randbelow(10**7):07d}"
    shown = ok(idp(cli, "orgs", "usernames", "add", handle, "pekka.p", "--name", "Pekka", "--deliver-to", national))
    assert f"username: pekka.p@{handle}" in shown.stdout
    assert f"temporary_password_sent_to: +358 50 *** **{national[-2:]}" in shown.stdout
    await _deliver(cli, smtp, gateway)
    number = "+358" + national[1:]
    text = gateway.to(number)[0]["text"]
    assert f"pekka.p@{handle}" in text and TEMPORARY.search(text)


# ---- members -------------------------------------------------------------------------------------

def test_operators_add_members_by_email_phone_or_username(cli):
    owner, _ = person(cli)
    handle = organisation(cli, owner)
    email, sub = person(cli)
    added = as_json(idp(cli, "orgs", "members", "add", handle, email, "--role", "editor", "--json"))
    assert added == {"org": handle, "sub": sub, "role": "editor"}
    assert listed(cli, handle)["members"] == 2

    failed(idp(cli, "orgs", "members", "add", handle, email, "--role", "member"), "already a member")
    other, _ = person(cli)
    failed(idp(cli, "orgs", "members", "add", handle, other, "--role", "owner"), "transfer")
    failed(idp(cli, "orgs", "members", "add", handle, other, "--role", "boss"), "roles")
    failed(idp(cli, "orgs", "members", "add", handle, "nobody@example.com", "--role", "member"),
           "no account signs in with")
    failed(idp(cli, "orgs", "members", "add", "no-such-org", other, "--role", "member"), "not found")

    # A username of one organisation can be made a member of another.
    ok(idp(cli, "orgs", "usernames", "add", handle, "liisa", "--name", "Liisa",
           "--deliver-to", f"liisa-{secrets.token_hex(3)}@example.com"))
    second = organisation(cli, owner)
    assert as_json(idp(cli, "orgs", "members", "add", second, f"liisa@{handle}", "--role", "admin",
                       "--json"))["role"] == "admin"
    assert listed(cli, handle)["members"] == 3 and listed(cli, second)["members"] == 2


# ---- products and the billing lock ---------------------------------------------------------------

def test_operators_add_products_with_their_roles_and_clients(cli):
    client_id = as_json(idp(cli, "clients", "add", "--name", "Caller web", "--redirect-uri",
                            "https://caller.example/cb", "--json"))["client_id"]
    handle = f"caller-{secrets.token_hex(3)}"
    product = as_json(idp(cli, "products", "add", "--handle", handle, "--name", "Caller",
                          "--roles", "owner, admin,user,viewer", "--client", client_id, "--json"))
    assert (product["handle"], product["roles"], product["clients"]) == (
        handle, ["owner", "admin", "user", "viewer"], [client_id])
    row = next(p for p in as_json(idp(cli, "products", "list", "--json")) if p["handle"] == handle)
    assert row == {"id": product["id"], "handle": handle, "name": "Caller",
                   "roles": ["owner", "admin", "user", "viewer"], "clients": [client_id]}
    assert handle in ok(idp(cli, "products", "list")).stdout

    failed(idp(cli, "products", "add", "--handle", handle, "--name", "Again", "--roles", "owner"), "taken")
    failed(idp(cli, "products", "add", "--handle", f"p-{secrets.token_hex(3)}", "--name", "Bad",
               "--roles", "Owner!!"), "a role is")
    failed(idp(cli, "products", "add", "--handle", f"p-{secrets.token_hex(3)}", "--name", "Bad",
               "--roles", ","), "roles")
    failed(idp(cli, "products", "add", "--handle", f"p-{secrets.token_hex(3)}", "--name", "Bad",
               "--roles", "owner", "--client", "no-such-client"), "no such client")


def test_operators_lock_and_unlock_billing_contact_changes(cli):
    owner, _ = person(cli)
    handle = organisation(cli, owner)
    assert ok(idp(cli, "orgs", "billing-lock", handle, "--on")).stdout.strip() == \
        f"billing-contact changes of {handle} are locked"
    assert listed(cli, handle)["billing_contact_locked"] is True
    ok(idp(cli, "orgs", "billing-lock", handle, "--off"))
    assert listed(cli, handle)["billing_contact_locked"] is False
    failed(idp(cli, "orgs", "billing-lock", handle), "say --on")
    failed(idp(cli, "orgs", "billing-lock", "no-such-org", "--on"), "not found")
