"""Identifiers: an account's emails and phone numbers, and signing in with any verified one.

Through the real login form: a phone number typed in national or international form signs in; an
unverified one does not (and is answered like an unknown login). Through the service: a verified
value belongs to one account, an unverified one may repeat. Through the migrations: existing
emails became verified identifiers. Through the CLI: `idp users add --phone`.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

import pytest

from idp.accounts.phones import PhonePolicy
from idp.accounts.service import AccountError, AccountService, IdentifierTaken
from idp.db.migrate import downgrade, upgrade
from idp.services import Services
from idp.settings import Settings
from tests.conftest import ISSUER
from tests.rp import PASSWORD, form_field
from tests.test_cli import _env, failed, idp, ok
from tests.password_support import password_owner

GENERIC_LOGIN_ERROR = "Incorrect email, phone number or password."


def fi_mobile() -> tuple[str, str]:
    """A fresh Finnish mobile number: (national digits 040xxxxxxx, E.164)."""
    rest = f"{secrets.randbelow(10**7):07d}"
    return f"040{rest}", f"+35840{rest}"


def spaced_international(e164: str) -> str:
    """+35840xxxxxxx → "+358 40 xxx xxxx", as people write it."""
    digits = e164.removeprefix("+358")
    return f"+358 {digits[:2]} {digits[2:5]} {digits[5:]}"


async def user_with_phone(rp, services, typed: str, *, verified: bool = True) -> tuple[str, str]:
    """A new account (email + password) that also has the phone number `typed`; (email, sub)."""
    email, sub = await rp.user()

    async def work(db):
        user = await services.accounts.get(db, sub)
        await services.accounts.add_identifier(db, user, "phone", typed, verified=verified)

    await services.db.run(work)
    return email, sub


async def signed_in_sub(http, rp, client, login: str) -> str:
    """Sign in through /authorize and the login form with `login`; the ID token's sub."""
    result = await rp.sign_in(http, client, login)
    tokens = await rp.exchange(http, client, result)
    assert tokens.status_code == 200, tokens.text
    return (await rp.verify(http, tokens.json()["id_token"]))["sub"]


async def login_attempt(http, rp, client, login: str):
    reply = await rp.authorize(http, client)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow=")
    return await rp.login(http, reply.headers["location"], login)


# ---- signing in with a phone number ----------------------------------------------------------


@pytest.mark.parametrize("form", ["national", "international spaced", "international no plus",
                                  "international 00"])
async def test_a_verified_finnish_number_signs_in_typed_in_any_form(http, rp, services, form):
    national, e164 = fi_mobile()
    _, sub = await user_with_phone(rp, services, national)
    typed = {
        "national": national,                                  # 0401234567
        "international spaced": spaced_international(e164),    # +358 40 123 4567
        # 358401234567: read against the default region FI, the national reading is not a valid
        # number, so phonenumbers takes the leading 358 as FI's country code. Accepted on purpose:
        # people do leave out the plus.
        "international no plus": e164.removeprefix("+"),
        "international 00": "00" + e164.removeprefix("+"),     # 00358401234567
    }[form]
    client = await rp.register()

    assert await signed_in_sub(http, rp, client, typed) == sub


async def test_the_email_still_signs_in_and_case_does_not_matter(http, rp, services):
    email, sub = await user_with_phone(rp, services, fi_mobile()[0])
    client = await rp.register()

    assert await signed_in_sub(http, rp, client, f"  {email.upper()} ") == sub


async def test_a_hungarian_number_signs_in_in_international_form_and_nationally_with_region_hu(
        http, rp, services):
    rest = f"{secrets.randbelow(10**7):07d}"
    e164 = f"+3630{rest}"
    national_hu = f"06 30 {rest[:3]} {rest[3:]}"
    # The account is given the number as an operator in Finland would type it: internationally.
    _, sub = await user_with_phone(rp, services, f"+36 30 {rest[:3]} {rest[3:]}")
    client = await rp.register()

    assert await signed_in_sub(http, rp, client, e164) == sub
    # With the default region FI, "06 30 …" is not a Hungarian number: it finds nobody.
    async with rp.browser() as other:  # a browser without the session just started
        reply = await login_attempt(other, rp, client, national_hu)
    assert reply.status_code == 401

    # A deployment whose default region is HU reads the national form as the same number.
    hungarian = AccountService(services.hasher, phones=PhonePolicy("HU", [36, 358]))

    async def find(db):
        return await hungarian.find_by_login(db, national_hu)

    found = await services.db.run(find)
    assert found is not None and found.id == sub


async def test_an_unverified_phone_cannot_sign_in_and_is_answered_like_an_unknown_one(http, rp, services):
    national, _ = fi_mobile()
    await user_with_phone(rp, services, national, verified=False)
    unknown, _ = fi_mobile()
    client = await rp.register()

    unverified_reply = await login_attempt(http, rp, client, national)
    unknown_reply = await login_attempt(http, rp, client, unknown)

    assert unverified_reply.status_code == unknown_reply.status_code == 401
    assert GENERIC_LOGIN_ERROR in unverified_reply.text
    # Only the echoed login and the per-flow form values differ.
    def scrub(reply, login):
        text = reply.text.replace(login, "LOGIN")
        for name in ("flow", "csrf_token"):
            text = text.replace(form_field(reply.text, name), name.upper())
        return text
    assert scrub(unverified_reply, national) == scrub(unknown_reply, unknown)


async def test_a_wrong_password_with_a_verified_phone_fails_generically(http, rp, services):
    national, _ = fi_mobile()
    await user_with_phone(rp, services, national)
    client = await rp.register()
    reply = await rp.authorize(http, client)
    reply = await rp.login(http, reply.headers["location"], national, PASSWORD + " but wrong")

    assert reply.status_code == 401 and GENERIC_LOGIN_ERROR in reply.text


@pytest.mark.parametrize("typed", ["", "   ", "not a phone", "1-800-FLOWERS", "+999 123", "12",
                                   "0" * 60, "@", "+358 40 123 4567 ext. 5", "040\x001234567"])
async def test_text_that_is_neither_an_email_nor_a_phone_finds_nobody_and_never_fails(services, typed):
    async def find(db):
        return await services.accounts.find_by_login(db, typed)

    assert await services.db.run(find) is None


# ---- uniqueness ------------------------------------------------------------------------------


async def test_a_verified_phone_belongs_to_one_account_only(rp, services):
    national, e164 = fi_mobile()
    _, first = await user_with_phone(rp, services, national)
    _, second = await rp.user()

    async def verify_on_second(db):
        user = await services.accounts.get(db, second)
        # Typed differently, normalised the same: still the same number.
        await services.accounts.add_identifier(db, user, "phone", spaced_international(e164), verified=True)

    with pytest.raises(IdentifierTaken) as raised:
        await services.db.run(verify_on_second)
    assert isinstance(raised.value, AccountError) and raised.value.kind == "phone"

    async def find(db):
        return await services.accounts.find_by_login(db, national)

    assert (await services.db.run(find)).id == first


async def test_the_same_unverified_phone_may_sit_on_two_accounts(rp, services):
    national, e164 = fi_mobile()
    _, first = await user_with_phone(rp, services, national, verified=False)
    _, second = await user_with_phone(rp, services, e164, verified=False)
    # ...and one of them may then hold it verified: the other copy stays unverified.
    _, third = await user_with_phone(rp, services, national, verified=True)

    async def look(db):
        found = await services.accounts.find_by_login(db, national)
        rows = []
        for sub in (first, second, third):
            rows += [(i.value, i.verified) for i in
                     await services.accounts.identifiers(db, await services.accounts.get(db, sub))
                     if i.kind == "phone"]
        return found, rows

    found, rows = await services.db.run(look)
    assert found.id == third
    assert rows == [(e164, False), (e164, False), (e164, True)]


async def test_the_same_number_twice_on_one_account_is_refused_as_such(rp, services):
    national, e164 = fi_mobile()
    _, sub = await user_with_phone(rp, services, national, verified=False)

    async def again(db):
        await services.accounts.add_identifier(db, await services.accounts.get(db, sub), "phone", e164)

    with pytest.raises(AccountError, match="already has") as raised:
        await services.db.run(again)
    assert not isinstance(raised.value, IdentifierTaken)


async def test_an_email_verified_on_another_account_cannot_be_the_email_of_a_new_one(rp, services):
    _, sub = await rp.user()
    taken = f"second-{secrets.token_hex(4)}@example.com"

    async def add(db):
        await services.accounts.add_identifier(db, await services.accounts.get(db, sub), "email",
                                               taken.upper(), verified=True)

    await services.db.run(add)

    async def create(db):
        return await services.accounts.create_user(db, email=taken, password=PASSWORD)

    with pytest.raises(IdentifierTaken):
        await services.db.run(create)


async def test_invalid_identifiers_are_refused_with_an_account_error(rp, services):
    _, sub = await rp.user()

    for kind, value in [("phone", "not a number"), ("phone", "12"), ("email", "no-at-sign"), ("pager", "1")]:
        async def add(db):
            await services.accounts.add_identifier(db, await services.accounts.get(db, sub), kind, value)

        with pytest.raises(AccountError):
            await services.db.run(add)


async def test_a_new_account_has_its_email_as_an_identifier_verified_as_the_email_is(services):
    email = f"ident-{secrets.token_hex(4)}@example.com"
    unverified = f"unverified-{secrets.token_hex(4)}@example.com"

    async def work(db):
        user = await services.accounts.create_user(db, email=email.title(), password=PASSWORD)
        other = await services.accounts.create_user(db, email=unverified, password=PASSWORD,
                                                    email_verified=False)
        return ([(i.kind, i.value, i.verified) for i in await services.accounts.identifiers(db, user)],
                [(i.kind, i.value, i.verified) for i in await services.accounts.identifiers(db, other)],
                await services.accounts.find_by_login(db, unverified))

    mine, theirs, found = await services.db.run(work)
    assert mine == [("email", email, True)]
    assert theirs == [("email", unverified, False)]
    assert found is None  # an unverified email does not sign in either


# ---- the migration -----------------------------------------------------------------------------


def test_the_migration_copies_every_existing_email_as_a_verified_identifier(tmp_path):
    path = tmp_path / "scratch.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url, "0003")
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO users (id, email, email_verified, password_hash, created_at, updated_at) "
            "VALUES (?, ?, ?, NULL, '2026-01-02 03:04:05.000000', '2026-01-02 03:04:05.000000')",
            [("sub-one", "one@example.com", 1), ("sub-two", "two@example.com", 0)])

    upgrade(url)

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT user_id, kind, value, verified, verified_at IS NOT NULL "
                          "FROM identifiers ORDER BY user_id").fetchall()
    assert rows == [("sub-one", "email", "one@example.com", 1, 1),
                    ("sub-two", "email", "two@example.com", 1, 1)]

    # Reversible: down to 0003 drops the table and keeps the users; up again copies them again.
    downgrade(url, "0003")
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "identifiers" not in tables
        assert db.execute("SELECT count(*) FROM users").fetchone() == (2,)
    upgrade(url)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM identifiers WHERE verified").fetchone() == (2,)
        # The database refuses a second account holding the same verified value.
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO identifiers (id, user_id, kind, value, verified, created_at) "
                       "VALUES ('x', 'sub-two', 'email', 'one@example.com', 1, '2026-01-02')")


# ---- the CLI -----------------------------------------------------------------------------------


async def test_users_add_with_phone_stores_a_verified_normalised_number(tmp_path):
    env = _env(tmp_path)
    ok(idp(env, "migrate"))
    national, e164 = fi_mobile()
    email = f"cli-{secrets.token_hex(4)}@example.com"

    shown = json.loads(ok(idp(env, "users", "add", "--email", email, "--password", PASSWORD,
                              "--phone", spaced_international(e164), "--json")).stdout)
    assert shown["phone_number"] == e164

    failed(idp(env, "users", "add", "--email", f"x-{email}", "--password", PASSWORD,
               "--phone", "12345"), "not a valid phone number")
    failed(idp(env, "users", "add", "--email", f"y-{email}", "--password", PASSWORD,
               "--phone", national), "already in use")

    services = Services(Settings(issuer=ISSUER, database_url=env["IDP_DATABASE_URL"],
                                 dev_key_dir=Path(env["IDP_DEV_KEY_DIR"]), argon2_memory_kib=1024,
                                 argon2_time_cost=1))
    try:
        async def check(db):
            return (await password_owner(services, db, national, PASSWORD),
                    await services.accounts.find_by_email(db, f"x-{email}"))

        user, refused = await services.db.run(check)
        assert user is not None and user.id == shown["sub"]
        assert refused is None  # the failed add left no half-made account
    finally:
        await services.close()
