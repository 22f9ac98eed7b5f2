"""/api/v1/users over HTTP with client-credentials tokens: create, read with ETags, PATCH with
If-Match, filters and pagination, identifiers, disable/enable, temporary passwords, idempotent
creation under races, organisation-bound clients, and no hash or secret in any reply."""

from __future__ import annotations

import asyncio
import secrets

import pyotp
from sqlalchemy import func, select

from idp.accounts.models import Identifier, User
from idp.audit.models import AuditEvent
from idp.audit.service import Actor
from idp.oauth.models import Grant
from idp.sessions.models import BrowserSession
from tests import secrets_registry
from tests.api_support import assert_problem, integrator
from tests.org_support import person, queued, team
from tests.token_support import assert_error, grant_id_of, refresh, signed_in

USERS = "/api/v1/users"
NEW_USER_PASSWORD = "a long enough password"  # remembered: the log-hygiene test looks for it
SECRET_KEYS = {"password_hash", "secret", "hash", "password", "token_hash", "code_hash", "secret_sealed"}


def no_secrets(value) -> None:
    """No key anywhere in the JSON names a hash or secret."""
    if isinstance(value, dict):
        leaked = {key for key in value if key in SECRET_KEYS or key.endswith("_hash")}
        assert not leaked, leaked
        for item in value.values():
            no_secrets(item)
    elif isinstance(value, list):
        for item in value:
            no_secrets(item)


def new_email() -> str:
    return f"api-{secrets.token_hex(6)}@example.com"


def new_phone() -> str:
    return "040" + str(secrets.randbelow(10**7)).zfill(7)  # a Finnish mobile number, national form


async def db_user(services, user_id: str) -> User | None:
    return await services.db.run(lambda db: db.get(User, user_id, populate_existing=True))


async def events(services, action: str, target_id: str) -> list[AuditEvent]:
    async def work(db):
        return list((await db.execute(select(AuditEvent).where(
            AuditEvent.action == action, AuditEvent.target_id == target_id).order_by(AuditEvent.at))).scalars())
    return await services.db.run(work)


async def count_users(services, email: str) -> int:
    return await services.db.run(lambda db: _scalar(db, select(func.count()).select_from(User).where(
        User.email == email)))


async def _scalar(db, query):
    return (await db.execute(query)).scalar_one()


async def create(http, caller, **body):
    reply = await http.post(USERS, json=body, headers=caller.key())
    assert reply.status_code == 201, reply.text
    return reply.json()


# ---- create, read, patch -----------------------------------------------------------------------

async def test_create_read_and_patch_with_etags(http, rp, services):
    caller = await integrator(http, rp)
    email = new_email()
    reply = await http.post(USERS, headers=caller.key(), json={
        "email": email.upper(), "email_verified": True, "phone": "0401234567", "phone_verified": False,
        "given_name": "Maija", "family_name": "Meikäläinen", "locale": "fi", "password": NEW_USER_PASSWORD})
    assert reply.status_code == 201, reply.text
    created = reply.json()
    no_secrets(created)
    user_id = created["id"]
    assert reply.headers["location"] == f"{USERS}/{user_id}"
    assert created["email"] == email and created["email_verified"] is True
    assert created["name"] == "Maija Meikäläinen" and created["given_name"] == "Maija"
    assert created["family_name"] == "Meikäläinen" and created["locale"] == "fi"
    assert created["status"] == "active" and created["disabled_at"] is None
    assert created["password_set"] is True and created["password_must_change"] is False
    assert created["second_factors"] == {"totp": False, "recovery_codes": 0, "code": None}
    assert created["memberships"] == []
    assert [(i["kind"], i["value"], i["verified"]) for i in created["identifiers"]] == [
        ("email", email, True), ("phone", "+358401234567", False)]
    [event] = await events(services, "user.created", user_id)
    assert event.actor_type == "client" and event.client_id == caller.client_id
    assert "password" not in str(event.after).replace("password_set", "")

    read = await http.get(f"{USERS}/{user_id}", headers=caller.headers)
    assert read.status_code == 200 and read.json() == created
    etag = read.headers["etag"]
    assert etag == reply.headers["etag"]

    # Somebody else changes the account: our ETag is stale, and our write changes nothing.
    changed = await http.patch(f"{USERS}/{user_id}", json={"locale": "sv"}, headers=caller.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["locale"] == "sv" and changed.json()["given_name"] == "Maija"
    stale = await http.patch(f"{USERS}/{user_id}", json={"family_name": "Virtanen"},
                             headers={**caller.headers, "If-Match": etag})
    assert_problem(stale, 412, "precondition-failed")
    row = await db_user(services, user_id)
    assert row.family_name == "Meikäläinen" and row.locale == "sv"

    fresh = (await http.get(f"{USERS}/{user_id}", headers=caller.headers)).headers["etag"]
    assert fresh == changed.headers["etag"]
    patched = await http.patch(f"{USERS}/{user_id}", json={"family_name": "Virtanen", "name": None},
                               headers={**caller.headers, "If-Match": fresh})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["family_name"] == "Virtanen" and body["name"] is None
    assert body["given_name"] == "Maija" and body["locale"] == "sv"
    assert patched.headers["etag"] != fresh
    row = await db_user(services, user_id)
    assert (row.family_name, row.name, row.given_name) == ("Virtanen", None, "Maija")
    updates = await events(services, "user.updated", user_id)
    assert updates[-1].before == {"family_name": "Meikäläinen", "name": "Maija Meikäläinen"}
    assert updates[-1].after == {"family_name": "Virtanen", "name": None}


async def test_a_phone_only_account_and_refusals_change_nothing(http, rp, services):
    caller = await integrator(http, rp)
    phone = new_phone()
    created = await create(http, caller, phone=phone, phone_verified=True, name="Pekka Puhelin")
    assert created["email"] is None and created["password_set"] is False
    assert created["identifiers"][0]["kind"] == "phone" and created["identifiers"][0]["verified"] is True

    # The same verified number again, an email another account has, a weak password.
    assert_problem(await http.post(USERS, json={"phone": phone, "phone_verified": True}, headers=caller.key()),
                   409, "identifier-taken")
    taken, _ = await person(services)
    assert_problem(await http.post(USERS, json={"email": taken}, headers=caller.key()), 409, "identifier-taken")
    email = new_email()
    assert_problem(await http.post(USERS, json={"email": email, "password": "short"}, headers=caller.key()),
                   422, "password-rejected")
    assert await count_users(services, email) == 0

    # Malformed bodies: nothing at all, an unknown field, a control character, a bad number.
    for body in ({}, {"email": email, "admin": True}, {"email": email, "name": "Bad\x00name"},
                 {"email": email, "locale": "not a locale"}, {"email": "no-at-sign"}):
        assert_problem(await http.post(USERS, json=body, headers=caller.key()), 422, "validation-error")
    assert_problem(await http.post(USERS, json={"phone": "12345"}, headers=caller.key()),
                   422, "invalid-phone-number")
    assert await count_users(services, email) == 0

    assert_problem(await http.get(f"{USERS}/no-such-user", headers=caller.headers), 404, "not-found")
    assert_problem(await http.patch(f"{USERS}/no-such-user", json={"name": "X"}, headers=caller.headers),
                   404, "not-found")
    assert_problem(await http.patch(f"{USERS}/{created['id']}", json={"email": email}, headers=caller.headers),
                   422, "validation-error")


async def test_scopes_are_checked(http, rp):
    reader = await integrator(http, rp, scopes=["idp:users:read"])
    body = assert_problem(await http.post(USERS, json={"email": new_email()}, headers=reader.key()),
                          403, "insufficient-scope")
    assert body["missing_scope"] == "idp:users:write"
    body = assert_problem(await http.get(f"{USERS}/x/sessions", headers=reader.headers), 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:sessions:read"


# ---- filters and pages ---------------------------------------------------------------------------

async def test_filters_by_email_phone_username_and_status(http, rp, services):
    caller = await integrator(http, rp)
    email, phone = new_email(), new_phone()
    user = await create(http, caller, email=email, email_verified=True, phone=phone, phone_verified=True)
    other = await create(http, caller, email=new_email(), phone=phone)  # the same number, unverified
    username = f"maija@acme{secrets.token_hex(3)}"
    account = await db_user(services, user["id"])
    await services.db.run(lambda db: services.accounts.add_identifier(db, account, "username", username,
                                                                      verified=True))

    async def found(**params) -> list[str]:
        reply = await http.get(USERS, params=params, headers=caller.headers)
        assert reply.status_code == 200, reply.text
        no_secrets(reply.json())
        return [item["id"] for item in reply.json()["items"]]

    assert await found(email=email.upper()) == [user["id"]]
    assert await found(phone=phone) == [user["id"]]  # national form, stored as +358…
    assert await found(phone="+358" + phone[1:]) == [user["id"]]
    assert await found(username=username.upper()) == [user["id"]]
    assert await found(email=new_email()) == []
    # An unverified primary email is found by its email too.
    unverified = await create(http, caller, email=new_email())
    assert await found(email=unverified["email"]) == [unverified["id"]]
    assert other["id"] not in await found(phone=phone)

    assert (await http.post(f"{USERS}/{user['id']}/disable", headers=caller.key())).status_code == 200
    assert await found(email=email, status="disabled") == [user["id"]]
    assert await found(email=email, status="active") == []
    assert_problem(await http.get(USERS, params={"status": "gone"}, headers=caller.headers), 422, "validation-error")
    assert_problem(await http.get(USERS, params={"phone": "123"}, headers=caller.headers), 422, "invalid-phone-number")
    assert_problem(await http.get(USERS, params={"email": "nobody"}, headers=caller.headers), 422, "validation-error")
    assert_problem(await http.get(USERS, params={"cursor": "junk"}, headers=caller.headers), 400, "invalid-cursor")


async def test_an_org_bound_client_pages_through_its_members_and_sees_nobody_else(http, rp, services):
    org, ids, _ = await team(services)
    await services.db.run(lambda db: services.orgs.members.add(db, Actor.operator(), org.id, ids["outsider"],
                                                               "member"))
    _, stranger = await person(services)
    caller = await integrator(http, rp, org=org.id)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        reply = await http.get(USERS, params=params, headers=caller.headers)
        assert reply.status_code == 200, reply.text
        page = reply.json()
        pages += 1
        assert len(page["items"]) == (2 if page["next_cursor"] else 1)
        seen += [item["id"] for item in page["items"]]
        assert all(org.id in [m["org_id"] for m in item["memberships"]] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and sorted(seen) == sorted(ids.values()) and len(set(seen)) == 5

    member = await http.get(f"{USERS}/{ids['member']}", headers=caller.headers)
    assert member.status_code == 200 and member.json()["memberships"] == [{"org_id": org.id, "role": "member"}]
    assert_problem(await http.get(f"{USERS}/{stranger}", headers=caller.headers), 404, "not-found")
    # Writes and sessions are the platform's: 404, and nothing is created.
    email = new_email()
    assert_problem(await http.post(USERS, json={"email": email}, headers=caller.key()), 404, "not-found")
    assert await count_users(services, email) == 0
    assert_problem(await http.patch(f"{USERS}/{ids['member']}", json={"name": "X"}, headers=caller.headers),
                   404, "not-found")
    assert_problem(await http.post(f"{USERS}/{ids['member']}/disable", headers=caller.key()), 404, "not-found")
    assert_problem(await http.get(f"{USERS}/{ids['member']}/sessions", headers=caller.headers), 404, "not-found")
    assert (await db_user(services, ids["member"])).disabled_at is None


# ---- idempotency ---------------------------------------------------------------------------------

async def test_the_same_key_twice_creates_one_account(http, rp, services):
    caller = await integrator(http, rp)
    email = new_email()
    headers = caller.key()
    first = await http.post(USERS, json={"email": email, "email_verified": True}, headers=headers)
    second = await http.post(USERS, json={"email": email, "email_verified": True}, headers=headers)
    assert first.status_code == second.status_code == 201, second.text
    assert second.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert second.json() == first.json() and second.headers["location"] == first.headers["location"]
    assert await count_users(services, email) == 1
    assert len(await events(services, "user.created", first.json()["id"])) == 1

    reused = await http.post(USERS, json={"email": new_email()}, headers=headers)
    assert_problem(reused, 422, "idempotency-key-reused")


async def test_ten_parallel_posts_with_one_key_create_one_account(http, rp, services):
    caller = await integrator(http, rp)
    email = new_email()
    headers = caller.key()
    replies = await asyncio.gather(*[http.post(USERS, json={"email": email},
                                               headers=headers) for _ in range(10)])
    assert [reply.status_code for reply in replies] == [201] * 10, [r.text for r in replies]
    assert len({reply.json()["id"] for reply in replies}) == 1
    assert sum(reply.headers.get("idempotent-replayed") == "true" for reply in replies) == 9
    assert await count_users(services, email) == 1


async def test_ten_parallel_creations_of_one_email_without_a_key_make_one_account(http, rp, services):
    caller = await integrator(http, rp)
    email = new_email()
    replies = await asyncio.gather(*[http.post(USERS, json={"email": email, "email_verified": True},
                                               headers=caller.headers) for _ in range(10)])
    assert sorted(reply.status_code for reply in replies) == [201] + [409] * 9
    for reply in replies:
        if reply.status_code == 409:
            assert_problem(reply, 409, "identifier-taken")
    assert await count_users(services, email) == 1


# ---- identifiers ---------------------------------------------------------------------------------

async def test_identifiers_are_added_and_removed_but_never_the_last_way_to_sign_in(http, rp, services):
    caller = await integrator(http, rp)
    email = new_email()
    user = await create(http, caller, email=email, email_verified=True)
    base = f"{USERS}/{user['id']}/identifiers"
    [primary] = user["identifiers"]

    assert_problem(await http.delete(f"{base}/{primary['id']}", headers=caller.headers), 409, "conflict")
    phone = await http.post(base, json={"kind": "phone", "value": new_phone(), "verified": True}, headers=caller.key())
    assert phone.status_code == 201, phone.text
    phone_id = phone.json()["id"]
    assert phone.headers["location"] == f"{base}/{phone_id}" and phone.json()["value"].startswith("+358")
    # The primary email needs another verified email to take its place.
    assert_problem(await http.delete(f"{base}/{primary['id']}", headers=caller.headers), 409, "conflict")
    second_email = new_email()
    added = await http.post(base, json={"kind": "email", "value": second_email, "verified": True},
                            headers=caller.key())
    assert added.status_code == 201, added.text
    assert (await http.delete(f"{base}/{primary['id']}", headers=caller.headers)).status_code == 204
    assert (await db_user(services, user["id"])).email == second_email
    assert_problem(await http.delete(f"{base}/{phone_id}", headers={**caller.headers, "If-Match": '"stale"'}),
                   412, "precondition-failed")
    assert (await http.delete(f"{base}/{phone_id}", headers={**caller.headers, "If-Match": phone.headers["etag"]})
            ).status_code == 204
    assert_problem(await http.delete(f"{base}/{added.json()['id']}", headers=caller.headers), 409, "conflict")

    after = (await http.get(f"{USERS}/{user['id']}", headers=caller.headers)).json()
    assert after["email"] == second_email
    assert [(i["kind"], i["value"]) for i in after["identifiers"]] == [("email", second_email)]
    assert [e.after["kind"] for e in await events(services, "identifier.added", user["id"])] == ["phone", "email"]
    assert [e.before["value"] for e in await events(services, "identifier.removed", user["id"])][0] == email

    # Refusals: taken elsewhere, already there, not a number, unknown identifier or account.
    taken, _ = await person(services)
    assert_problem(await http.post(base, json={"kind": "email", "value": taken, "verified": True},
                                   headers=caller.key()), 409, "identifier-taken")
    assert_problem(await http.post(base, json={"kind": "email", "value": second_email}, headers=caller.key()),
                   409, "conflict")
    assert_problem(await http.post(base, json={"kind": "phone", "value": "12345"}, headers=caller.key()),
                   422, "invalid-phone-number")
    assert_problem(await http.post(base, json={"kind": "username", "value": "a@b"}, headers=caller.key()),
                   422, "validation-error")
    assert_problem(await http.delete(f"{base}/nope", headers=caller.headers), 404, "not-found")
    assert_problem(await http.post(f"{USERS}/nope/identifiers", json={"kind": "email", "value": new_email()},
                                   headers=caller.key()), 404, "not-found")
    count = await services.db.run(lambda db: _scalar(db, select(func.count()).select_from(Identifier).where(
        Identifier.user_id == user["id"])))
    assert count == 1


# ---- status and temporary passwords --------------------------------------------------------------

async def test_disabling_ends_sessions_and_token_families(http, rp, services):
    caller = await integrator(http, rp)
    session = await signed_in(http, rp)
    grant_id = grant_id_of(session.access_token)
    live = await http.get(f"{USERS}/{session.sub}/sessions", headers=caller.headers)
    assert len(live.json()["items"]) == 1

    reply = await http.post(f"{USERS}/{session.sub}/disable", headers=caller.key())
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "disabled" and reply.json()["disabled_at"] is not None
    assert (await db_user(services, session.sub)).disabled_at is not None
    assert (await http.get(f"{USERS}/{session.sub}/sessions", headers=caller.headers)).json()["items"] == []
    grant = await services.db.run(lambda db: db.get(Grant, grant_id))
    assert grant.revoked_at is not None
    ended = await services.db.run(lambda db: _scalar(db, select(func.count()).select_from(BrowserSession).where(
        BrowserSession.user_id == session.sub, BrowserSession.ended_at.is_(None))))
    assert ended == 0
    assert_error(await refresh(http, rp, session.client, session.refresh_token), 400, "invalid_grant")
    [event] = await events(services, "user.disabled", session.sub)
    assert event.client_id == caller.client_id and event.before == {"disabled_at": None}

    again = await http.post(f"{USERS}/{session.sub}/disable", headers=caller.key())
    assert again.status_code == 200 and again.json()["disabled_at"] == reply.json()["disabled_at"]
    assert len(await events(services, "user.disabled", session.sub)) == 1

    enabled = await http.post(f"{USERS}/{session.sub}/enable", headers=caller.key())
    assert enabled.status_code == 200 and enabled.json()["status"] == "active"
    assert (await db_user(services, session.sub)).disabled_at is None
    assert len(await events(services, "user.enabled", session.sub)) == 1
    assert_problem(await http.post(f"{USERS}/nope/disable", headers=caller.key()), 404, "not-found")


async def test_a_temporary_password_is_sent_never_returned(http, rp, services):
    caller = await integrator(http, rp)
    email = new_email()
    user = await create(http, caller, email=email, email_verified=True)
    reply = await http.post(f"{USERS}/{user['id']}/temporary-password", json={"via": "email"}, headers=caller.key())
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert set(body) == {"sent_to", "expires_at"}
    assert body["sent_to"] == email[0] + "***@example.com"
    [sent] = await queued(services, email, "temporary_password")
    secrets_registry.remember(sent["password"])
    assert sent["password"] not in reply.text
    after = (await http.get(f"{USERS}/{user['id']}", headers=caller.headers)).json()
    assert after["password_set"] is True and after["password_must_change"] is True
    assert (await events(services, "password.temporary_set", user["id"]))[-1].client_id == caller.client_id

    assert_problem(await http.post(f"{USERS}/{user['id']}/temporary-password", json={"via": "sms"},
                                   headers=caller.key()), 409, "conflict")
    assert_problem(await http.post(f"{USERS}/{user['id']}/temporary-password", json={"via": "pigeon"},
                                   headers=caller.key()), 422, "validation-error")
    assert len(await queued(services, email, "temporary_password")) == 1


async def test_second_factors_are_a_summary_and_no_reply_holds_a_hash_or_secret(http, rp, services):
    caller = await integrator(http, rp)
    user = await create(http, caller, email=new_email(), email_verified=True, password=NEW_USER_PASSWORD)
    uid = user["id"]

    async def enrol(db):
        enrolment = await services.factors.totp.enrol(db, user_id=uid, account_name=user["email"])
        assert await services.factors.totp.confirm(db, user_id=uid, factor_id=enrolment.factor_id,
                                                   code=pyotp.TOTP(enrolment.secret).now())
        return enrolment.secret, await services.factors.recovery.generate(db, uid)

    secret, codes = await services.db.run(enrol)
    secrets_registry.remember(secret)
    replies = [
        await http.get(f"{USERS}/{uid}", headers=caller.headers),
        await http.get(USERS, params={"email": user["email"]}, headers=caller.headers),
        await http.patch(f"{USERS}/{uid}", json={"locale": "en"}, headers=caller.headers),
        await http.post(f"{USERS}/{uid}/identifiers", json={"kind": "phone", "value": new_phone()},
                        headers=caller.key()),
        await http.post(f"{USERS}/{uid}/disable", headers=caller.key()),
        await http.post(f"{USERS}/{uid}/enable", headers=caller.key()),
        await http.post(f"{USERS}/{uid}/temporary-password", json={"via": "email"}, headers=caller.key()),
        await http.get(f"{USERS}/{uid}/sessions", headers=caller.headers),
    ]
    for reply in replies:
        assert reply.status_code < 300, reply.text
        no_secrets(reply.json())
        for value in (secret, *codes, NEW_USER_PASSWORD, "$argon2"):
            assert value not in reply.text
    assert replies[0].json()["second_factors"] == {"totp": True, "recovery_codes": len(codes), "code": None}


async def test_an_org_bound_client_sees_nothing_of_the_persons_other_organisations(http, rp, services):
    """A person in our organisation and in a competitor's: our integration sees our membership and
    our username only, and neither their second factors nor their password state."""
    ours, ids, _ = await team(services, "Ours Oy")
    theirs, _, _ = await team(services, "Competitor Oy")
    their_username = f"maija@{theirs.handle}"
    our_username = f"maija.m@{ours.handle}"

    async def setup(db):
        user, username = await services.org_usernames.create(
            db, Actor.operator(), theirs.id, "maija", name="Maija M", deliver_to=new_email(), role="admin")
        assert username == their_username
        await services.orgs.members.add(db, Actor.operator(), ours.id, user.id, "member")
        db.add(Identifier(user_id=user.id, kind="username", value=our_username, verified=True))
        enrolment = await services.factors.totp.enrol(db, user_id=user.id, account_name=their_username)
        assert await services.factors.totp.confirm(db, user_id=user.id, factor_id=enrolment.factor_id,
                                                   code=pyotp.TOTP(enrolment.secret).now())
        secrets_registry.remember(enrolment.secret)
        return user.id

    uid = await services.db.run(setup)
    bound = await integrator(http, rp, org=ours.id)
    got = await http.get(f"{USERS}/{uid}", headers=bound.headers)
    listed = await http.get(USERS, params={"username": our_username}, headers=bound.headers)
    everyone = await http.get(USERS, params={"limit": 200}, headers=bound.headers)
    assert got.status_code == listed.status_code == everyone.status_code == 200
    [in_list] = [item for item in everyone.json()["items"] if item["id"] == uid]
    assert listed.json()["items"] == [got.json()] and in_list == got.json()
    seen = got.json()
    assert seen["memberships"] == [{"org_id": ours.id, "role": "member"}]
    assert [(i["kind"], i["value"]) for i in seen["identifiers"] if i["kind"] == "username"] == [
        ("username", our_username)]
    assert seen["second_factors"] is None and seen["password_set"] is None
    assert seen["password_must_change"] is None
    for text in (got.text, listed.text, everyone.text):
        assert theirs.id not in text and theirs.handle not in text
    # Another organisation's username finds nobody, though its holder is our member.
    by_their_username = await http.get(USERS, params={"username": their_username}, headers=bound.headers)
    assert by_their_username.status_code == 200 and by_their_username.json()["items"] == []
    # Another member's view is cut the same way.
    member = (await http.get(f"{USERS}/{ids['member']}", headers=bound.headers)).json()
    assert member["memberships"] == [{"org_id": ours.id, "role": "member"}] and member["second_factors"] is None

    # A platform client sees all of it.
    platform = await integrator(http, rp)
    full = (await http.get(f"{USERS}/{uid}", headers=platform.headers)).json()
    assert {(m["org_id"], m["role"]) for m in full["memberships"]} == {(theirs.id, "admin"), (ours.id, "member")}
    assert {i["value"] for i in full["identifiers"] if i["kind"] == "username"} == {their_username, our_username}
    assert full["second_factors"] == {"totp": True, "recovery_codes": 0, "code": None}
    assert full["password_set"] is True and full["password_must_change"] is True
    assert [i["id"] for i in (await http.get(USERS, params={"username": their_username},
                                             headers=platform.headers)).json()["items"]] == [uid]


async def test_a_disabled_account_gets_no_temporary_password(http, rp, services):
    caller = await integrator(http, rp)
    email = new_email()
    user = await create(http, caller, email=email, email_verified=True, password=NEW_USER_PASSWORD)
    assert (await http.post(f"{USERS}/{user['id']}/disable", headers=caller.key())).status_code == 200
    before = await db_user(services, user["id"])
    for via in ("email", "sms"):
        body = assert_problem(await http.post(f"{USERS}/{user['id']}/temporary-password", json={"via": via},
                                              headers=caller.key()), 409, "conflict")
        assert body["detail"] == "the account is disabled"
    after = await db_user(services, user["id"])
    assert after.password_hash == before.password_hash and not after.password_must_change
    assert await queued(services, email, "temporary_password") == []
    assert await events(services, "password.temporary_set", user["id"]) == []
    # Enabled again, it gets one.
    assert (await http.post(f"{USERS}/{user['id']}/enable", headers=caller.key())).status_code == 200
    sent = await http.post(f"{USERS}/{user['id']}/temporary-password", json={"via": "email"}, headers=caller.key())
    assert sent.status_code == 202, sent.text
    [message] = await queued(services, email, "temporary_password")
    secrets_registry.remember(message["password"])
