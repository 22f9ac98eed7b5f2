"""Organisation usernames (orgs/usernames.py, seed 004): an admin creates `maija@acme` with a
generated temporary password that really travels by email or SMS (an SMTP server and an SMS
gateway on 127.0.0.1); the person signs in with the username and that password through the pages,
must choose their own first, and the client gets its code. Who may create one, which names are
valid, a taken name, atomicity, and that an unknown username walks exactly like an unknown email.
"""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest
from sqlalchemy import func, select

from idp.accounts.models import Identifier, User
from idp.accounts.temporary import CROCKFORD
from idp.audit.service import Actor
from idp.courier.models import CourierMessage
from idp.courier.templates import render
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.models import Membership
from tests import secrets_registry
from tests.conftest import delivering_fixtures
from tests.mail_sms import mail_to, until
from tests.rp import PASSWORD
from tests.test_login_steps import fields, identify, post_on, start, tokens_of, without_ids
from tests.password_support import password_owner

TEMPORARY = re.compile(rf"[{CROCKFORD}]{{4}}(?:-[{CROCKFORD}]{{4}}){{3}}")
OWN_PASSWORD = "seven foxes in a sunny meadow"
secrets_registry.remember(OWN_PASSWORD)
OPERATOR = Actor.operator()


# s, rp and browser: this module's services, relying party and browser on the delivering app.
s, rp, browser = delivering_fixtures()


# ---- helpers -------------------------------------------------------------------------------------

class Org:
    """An organisation with a person in every role."""

    def __init__(self, handle: str, people: dict[str, str]) -> None:
        self.handle, self.people = handle, people

    def actor(self, role: str) -> Actor:
        return Actor.user(self.people[role])


async def organisation(s, rp) -> Org:
    handle = f"acme-{secrets.token_hex(4)}"
    people = {role: (await rp.user())[1] for role in ("owner", "admin", "editor", "member", "outsider")}

    async def create(db):
        org = await s.orgs.create(db, OPERATOR, name="Acme Oy", handle=handle, owner_id=people["owner"])
        for role in ("admin", "editor", "member"):
            db.add(Membership(org_id=org.id, user_id=people[role], role=role))
        await db.flush()
    await s.db.run(create)
    return Org(handle, people)


async def create(s, actor: Actor, handle: str, local: str, **options):
    options = {"name": "Maija Meikäläinen", "deliver_to": f"maija-{secrets.token_hex(4)}@example.com"} | options
    return await s.db.run(lambda db: s.org_usernames.create(db, actor, handle, local, **options))


async def counts(s) -> tuple[int, int, int, int]:
    """Users, identifiers, memberships and queued messages: what a refusal must not change."""
    async def work(db):
        return tuple([(await db.execute(select(func.count()).select_from(model))).scalar_one()
                      for model in (User, Identifier, Membership, CourierMessage)])
    return await s.db.run(work)


def temporary_in(text: str) -> str:
    password = TEMPORARY.search(text).group(0)
    secrets_registry.remember(password)
    return password


async def role_in(s, handle: str, user_id: str) -> str | None:
    async def work(db):
        org = await s.orgs.find(db, handle)
        membership = await s.orgs.membership(db, org.id, user_id)
        return membership.role if membership else None
    return await s.db.run(work)


async def identifiers_of(s, user_id: str) -> list[tuple[str, str, bool]]:
    rows = await s.db.run(lambda db: db.execute(select(Identifier.kind, Identifier.value, Identifier.verified)
                                                .where(Identifier.user_id == user_id)
                                                .order_by(Identifier.kind)))
    return [tuple(row) for row in rows.all()]


# ---- creation, delivery and the first sign-in ----------------------------------------------------

async def test_an_admin_creates_a_username_and_the_person_signs_in_with_it_and_a_new_password(s, rp, browser, smtp):
    org = await organisation(s, rp)
    address = f"maija-{secrets.token_hex(4)}@example.com"
    user, username = await create(s, org.actor("admin"), org.handle.upper(), "  Maija.M ",
                                  deliver_to=address.upper(), role="editor")
    assert username == f"maija.m@{org.handle}"

    # The username is verified (it is the login); the address the admin typed is not (nobody
    # proved it), so the account claims no email at all.
    assert await identifiers_of(s, user.id) == [("email", address, False), ("username", username, True)]
    stored = await s.db.run(lambda db: db.get(User, user.id))
    assert stored.email is None and not stored.email_verified and stored.password_must_change
    assert (stored.name, stored.given_name, stored.family_name) == ("Maija Meikäläinen", "Maija", "Meikäläinen")
    assert await role_in(s, org.handle, user.id) == "editor"
    events = await s.db.run(lambda db: s.audit.events(db, action="username.created", limit=500))
    event = next(e for e in events if e.target_id == user.id)
    assert (event.actor_type, event.actor_id) == ("user", org.people["admin"])
    assert event.after["username"] == username and event.after["role"] == "editor"
    assert event.after["delivered_to"] == f"m***@example.com" and address not in str(event.after)

    # The mail tells both the username and the temporary password.
    mail = (await mail_to(smtp, address))[0]
    body = smtp.body(mail)
    assert mail["Subject"] == "Your new username and temporary password"
    assert f"Username:  {username}" in body and "Acme Oy" in body and "168 hours" in body
    temporary = temporary_in(body)

    client = await rp.register()
    location, started = await start(browser, rp, client)
    reply = await identify(browser, location, username.upper())
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/password?flow=")
    reply = await post_on(browser, reply.headers["location"], "/login/password", password=temporary)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/new-password?flow=")
    assert "idp_session" not in reply.headers.get("set-cookie", "")
    reply = await post_on(browser, reply.headers["location"], "/login/new-password", password=OWN_PASSWORD)
    assert reply.status_code == 303, reply.text
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["sub"] == user.id and claims["amr"] == ["pwd"]
    assert "email" not in claims and "email_verified" not in claims

    # From now on the username and the person's own password; the temporary one is dead.
    async with rp.browser() as other:
        location, _ = await start(other, rp, client)
        assert (await post_on(other, location, "/login", username=username, password=temporary)).status_code == 401
        ok = await post_on(other, location, "/login", username=username, password=OWN_PASSWORD)
        assert ok.status_code == 303 and not ok.headers["location"].startswith("/login")


async def test_the_temporary_password_can_go_by_sms_in_the_persons_language(s, rp, gateway):
    org = await organisation(s, rp)
    national = f"040{secrets.randbelow(10**7):07d}"
    user, username = await create(s, org.actor("owner"), org.handle, "pekka", name="Pekka",
                                  deliver_to=national, role="admin", locale="fi")
    number = "+358" + national[1:]
    assert await identifiers_of(s, user.id) == [("phone", number, False), ("username", username, True)]
    text = (await until(lambda: gateway.to(number)))[0]["text"]
    assert text.startswith(f"Organisaatio Acme Oy loi sinulle käyttäjätunnuksen {username}.")
    temporary = temporary_in(text)
    found = await s.db.run(lambda db: password_owner(s, db, username, temporary))
    assert found is not None and found.id == user.id
    # An unverified number is no sign-in identifier.
    assert await s.db.run(lambda db: s.accounts.find_by_login(db, number, usernames=True)) is None


def test_the_message_is_written_in_every_language():
    params = {"organisation": "Acme Oy", "username": "maija@acme", "password": "ABCD-EFGH-JKMN-PQRS",
              "hours": 168}
    for locale, words in {"en": "Username", "fi": "Käyttäjätunnus", "sv": "Användarnamn",
                          "hu": "Felhasználónév"}.items():
        email = render("email", "org_username", locale, params)
        sms = render("sms", "org_username", locale, params)
        for text in (email.body, sms.body):
            assert "maija@acme" in text and "ABCD-EFGH-JKMN-PQRS" in text and "Acme Oy" in text
        assert words in email.body and email.subject
    assert "168 órán át" in render("sms", "org_username", "hu", params).body
    with pytest.raises(ValueError):
        render("email", "org_username", "en", {"password": "x", "hours": 1})


# ---- who may, and which names --------------------------------------------------------------------

async def test_owners_admins_and_operators_may_create_editors_members_and_outsiders_may_not(s, rp):
    org = await organisation(s, rp)
    for i, actor in enumerate((org.actor("owner"), org.actor("admin"), OPERATOR)):
        _, username = await create(s, actor, org.handle, f"ok-{i}", role="admin")
        assert username == f"ok-{i}@{org.handle}"

    before = await counts(s)
    for role in ("editor", "member"):
        with pytest.raises(Forbidden):
            await create(s, org.actor(role), org.handle, f"no-{role}")
    # Strangers, and organisations that do not exist, get the same "not found".
    with pytest.raises(OrgNotFound):
        await create(s, org.actor("outsider"), org.handle, "no-outsider")
    with pytest.raises(OrgNotFound):
        await create(s, org.actor("admin"), "no-such-org", "no-org")
    # Nobody is made owner, nor given a role above their own.
    for actor in (org.actor("owner"), org.actor("admin"), OPERATOR):
        with pytest.raises(Forbidden):
            await create(s, actor, org.handle, "no-owner", role="owner")
    assert await counts(s) == before


@pytest.mark.parametrize("local", [
    "", " ", "-maija", "maija-", ".maija", "maija.", "_m", "mai ja", "maija@acme", "äiti", "maija\x00",
    "a" * 65, "m/a", "m+a", None, 42,
])
async def test_bad_local_parts_are_refused_and_nothing_changes(s, rp, local):
    org = await organisation(s, rp)
    before = await counts(s)
    with pytest.raises(OrgError) as refused:
        await create(s, org.actor("admin"), org.handle, local)
    assert type(refused.value) is OrgError and "lower-case letters" in refused.value.message
    assert await counts(s) == before


async def test_the_edges_of_a_local_part_are_accepted(s, rp):
    org = await organisation(s, rp)
    for local in ("m", "7", "a" * 64, "maija.m-k_2"):
        _, username = await create(s, org.actor("admin"), org.handle, local)
        assert username == f"{local}@{org.handle}"


@pytest.mark.parametrize("options, message", [
    ({"name": ""}, "name"), ({"name": "x" * 101}, "name"), ({"name": "Ma\x00ija"}, "name"),
    ({"deliver_to": "somewhere"}, "email address or a mobile"),
    ({"deliver_to": "maija@localhost"}, "email address or a mobile"),
    ({"deliver_to": "+35891234567"}, "mobile"),  # a Helsinki landline cannot read an SMS
    ({"deliver_to": "a@b.example\x00"}, "email address"), ({"deliver_to": "x" * 330 + "@example.com"}, "email"),
    ({"role": "boss"}, "role"), ({"role": None}, "role"), ({"locale": "klingon-language-x"}, "language"),
])
async def test_bad_names_destinations_roles_and_languages_are_refused(s, rp, options, message):
    org = await organisation(s, rp)
    before = await counts(s)
    with pytest.raises(OrgError) as refused:
        await create(s, org.actor("admin"), org.handle, "maija", **options)
    assert message in refused.value.message
    assert await counts(s) == before


# ---- taken names and atomicity -------------------------------------------------------------------

async def test_a_taken_username_is_refused_in_any_case_and_leaves_nothing_behind(s, rp):
    org = await organisation(s, rp)
    first, username = await create(s, org.actor("admin"), org.handle, "maija")
    before = await counts(s)
    for local in ("maija", "MAIJA", " Maija "):
        with pytest.raises(Conflict, match="taken"):
            await create(s, org.actor("owner"), org.handle, local)
    assert await counts(s) == before
    # The same local part in another organisation is another username.
    other = await organisation(s, rp)
    _, elsewhere = await create(s, other.actor("admin"), other.handle, "maija")
    assert elsewhere == f"maija@{other.handle}" != username


async def test_a_verified_dotless_email_of_the_same_value_makes_the_username_taken(s, rp):
    org = await organisation(s, rp)
    # Only an operator can make an account with an address without a dot (`idp users add`).
    holder = await s.db.run(lambda db: s.accounts.create_user(db, email=f"root@{org.handle}", password=PASSWORD))
    with pytest.raises(Conflict):
        await create(s, org.actor("admin"), org.handle, "root")
    # ... and that account still signs in with its address.
    found = await s.db.run(lambda db: s.accounts.find_by_login(db, f"root@{org.handle}", usernames=True))
    assert found.id == holder.id


async def test_ten_parallel_creations_of_one_username_make_exactly_one_account(s, rp):
    org = await organisation(s, rp)
    before = await counts(s)
    results = await asyncio.gather(*(create(s, org.actor("admin"), org.handle, "rush") for _ in range(10)),
                                   return_exceptions=True)
    made = [r for r in results if not isinstance(r, BaseException)]
    assert len(made) == 1, results
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException)), results
    users, identifiers, memberships, messages = await counts(s)
    assert (users, identifiers, memberships, messages) == (before[0] + 1, before[1] + 2, before[2] + 1, before[3] + 1)


async def test_a_failure_after_the_account_is_made_leaves_no_account_identifier_or_membership(s, rp, monkeypatch):
    org = await organisation(s, rp)
    before = await counts(s)

    async def broken(*args, **kwargs):
        raise RuntimeError("the courier is down")
    monkeypatch.setattr(s.temporary_passwords, "set", broken)

    async def work(db):
        try:
            await s.org_usernames.create(db, org.actor("admin"), org.handle, "half", name="Half",
                                         deliver_to="half@example.com")
        except RuntimeError:
            return "refused"  # the caller's transaction goes on and commits
    assert await s.db.run(work) == "refused"
    assert await counts(s) == before
    assert await s.db.run(lambda db: s.accounts.find_by_login(db, f"half@{org.handle}", usernames=True)) is None


# ---- signing in: usernames look like emails to anyone watching -----------------------------------

async def test_an_unknown_username_walks_and_fails_exactly_like_an_unknown_email(s, rp, browser):
    org = await organisation(s, rp)
    known, username = await create(s, org.actor("admin"), org.handle, "known")
    client = await rp.register()
    pages, failures = [], []
    for login in (f"nobody-{secrets.token_hex(3)}@example.com", f"nobody@{org.handle}", f"ghost@no-such-org",
                  username):
        location, _ = await start(browser, rp, client)
        reply = await identify(browser, location, login)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/login/password?flow=")
        page = await browser.get(reply.headers["location"])
        pages.append(without_ids(page).replace(login, "LOGIN"))
        failed = await browser.post("/login/password", data=fields(page, password="wrong password here"))
        failures.append((failed.status_code, without_ids(failed).replace(login, "LOGIN")))
        # The one-form login too.
        location, _ = await start(browser, rp, client)
        one_form = await post_on(browser, location, "/login", username=login, password="wrong password here")
        failures.append((one_form.status_code, without_ids(one_form).replace(login, "LOGIN")))
    assert all(page == pages[0] for page in pages)
    assert all(failure == failures[0] for failure in failures[::2])
    assert all(failure == failures[1] for failure in failures[1::2])
    assert failures[0][0] == 401


async def test_a_code_is_never_sent_to_a_username(s, rp, browser):
    org = await organisation(s, rp)
    _, username = await create(s, org.actor("admin"), org.handle, "coded")
    client = await rp.register()
    location, _ = await start(browser, rp, client)
    reply = await identify(browser, location, username)
    reply = await post_on(browser, reply.headers["location"], "/login/password", action="code")
    assert reply.status_code in (303, 400)
    # Neither a sign-in code nor a reset code goes to `coded@acme...`: it is no address.
    await s.db.run(lambda db: s.recovery.start(db, username, ip="203.0.113.9", locale="en", browser="b"))
    sent = await s.db.run(lambda db: db.execute(select(CourierMessage.kind).where(
        CourierMessage.recipient == username)))
    assert list(sent.scalars()) == []


async def test_find_by_login_reads_usernames_only_when_asked(s, rp):
    org = await organisation(s, rp)
    user, username = await create(s, org.actor("admin"), org.handle, "lookup")
    for typed in (username, username.upper(), f"  {username} "):
        assert (await s.db.run(lambda db: s.accounts.find_by_login(db, typed, usernames=True))).id == user.id
        assert await s.db.run(lambda db: s.accounts.find_by_login(db, typed)) is None
    for typed in (f"lookup@{org.handle}.example", "lookup@", f"-x@{org.handle}", f"lookup@{org.handle}\x00"):
        assert await s.db.run(lambda db: s.accounts.find_by_login(db, typed, usernames=True)) is None
    assert s.accounts.login_kind(username) == "username"
    assert s.accounts.login_kind("maija@example.com") == "email"
    assert s.accounts.login_kind("root@localhost") == "username"
    assert s.accounts.login_kind("0401234567") == "phone"
    assert s.accounts.normalise_identifier("username", f" LOOKUP@{org.handle.upper()} ") == username
