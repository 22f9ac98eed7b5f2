"""Organisation sign-in policies and the platform floor (orgs/policy.py): the rules a sign-in is
held to (`evaluate`, table-driven), the floor tightening stored policies and refusing looser
updates, validation, and who may see and change a policy (with its audit event)."""

from __future__ import annotations

import asyncio
import secrets
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from idp.audit.models import AuditEvent
from idp.audit.service import Actor
from idp.orgs.errors import Forbidden, OrgError, OrgNotFound
from idp.orgs.models import Membership, Organisation
from idp.orgs.policy import OrgPolicy, OrgPolicyService, Requirements, evaluate, parse, tighten
from idp.settings import Settings


def policy(**fields) -> OrgPolicy:
    return OrgPolicy(**fields)


def floor(**fields) -> OrgPolicy:
    """A floor as the service builds it: the loosest policy allowed, never an SMS step."""
    base = {"require_second_factor": False, "allowed_factors": ["totp", "sms", "email"],
            "phone_code_sign_in": True, "phone_code_max_role": "owner", "max_session_age": None}
    return OrgPolicy.model_construct(**{**base, "sms_after_password": False, **fields})


def needs(*factors: str, max_role: str | None = None, max_age: int | None = None) -> Requirements:
    return Requirements(second_factor=True, allowed_factors=factors, max_role=max_role, max_age=max_age)


NOTHING = Requirements()
REFUSED = Requirements(refused=True)
REQUIRE = {"require_second_factor": True}
SMS_STEP = {"sms_after_password": True}
NO_PHONE = {"phone_code_sign_in": False}

# ---- the rules -----------------------------------------------------------------------------------

RULES = [
    # defaults: nothing asked; a phone-code session is restricted to member
    ({}, ["pwd"], NOTHING),
    ({}, ["otp"], NOTHING),
    ({}, ["sms"], Requirements(max_role="member")),
    ({}, ["pwd", "otp", "mfa"], NOTHING),
    ({}, ["sms", "otp", "mfa"], NOTHING),  # a second factor lifts the restriction
    ({}, ["sms", "pwd", "mfa"], NOTHING),
    ({"phone_code_max_role": "admin"}, ["sms"], Requirements(max_role="admin")),
    ({"phone_code_max_role": "owner"}, ["sms"], Requirements(max_role="owner")),
    # a second factor required
    (REQUIRE, ["pwd"], needs("totp", "sms", "email", "recovery")),
    (REQUIRE, ["otp"], needs("totp", "sms", "pwd", "recovery")),  # never the email code again
    (REQUIRE, ["sms"], needs("totp", "email", "pwd", "recovery", max_role="member")),
    (REQUIRE, [], needs("totp", "sms", "email", "recovery")),
    (REQUIRE, ["pwd", "otp", "mfa"], NOTHING),
    (REQUIRE, ["sms", "otp", "mfa"], NOTHING),
    ({**REQUIRE, "allowed_factors": ["totp"]}, ["pwd"], needs("totp", "recovery")),
    ({**REQUIRE, "allowed_factors": ["totp"]}, ["otp"], needs("totp", "recovery")),
    ({**REQUIRE, "allowed_factors": ["totp"]}, ["sms"], needs("totp", "recovery", max_role="member")),
    ({**REQUIRE, "allowed_factors": ["sms"]}, ["sms"], needs("pwd", "recovery", max_role="member")),
    ({**REQUIRE, "allowed_factors": ["email"]}, ["otp"], needs("pwd", "recovery")),
    ({**REQUIRE, "allowed_factors": ["sms"]}, ["otp"], needs("sms", "recovery")),
    # the SMS step after the password (seed 004)
    (SMS_STEP, ["pwd"], needs("sms")),
    (SMS_STEP, ["otp"], needs("sms")),  # an emailed code does not go round the step
    (SMS_STEP, ["sms"], Requirements(max_role="member")),
    (SMS_STEP, ["pwd", "sms", "mfa"], NOTHING),
    (SMS_STEP, ["pwd", "otp", "mfa"], NOTHING),
    ({**SMS_STEP, **REQUIRE}, ["pwd"], needs("sms", "recovery")),  # one factor satisfies both
    ({**SMS_STEP, **REQUIRE}, ["otp"], needs("sms", "recovery")),
    ({**SMS_STEP, **REQUIRE}, ["sms"], needs("totp", "email", "pwd", "recovery", max_role="member")),
    ({**SMS_STEP, **REQUIRE, "allowed_factors": ["sms"]}, ["sms"],
     needs("pwd", "recovery", max_role="member")),
    ({**SMS_STEP, **REQUIRE}, ["pwd", "sms", "mfa"], NOTHING),
    # phone number and SMS code alone not allowed
    (NO_PHONE, ["sms"], REFUSED),
    ({**NO_PHONE, **REQUIRE}, ["sms"], REFUSED),
    ({**NO_PHONE, **SMS_STEP}, ["sms"], REFUSED),
    (NO_PHONE, ["sms", "otp", "mfa"], NOTHING),
    (NO_PHONE, ["sms", "pwd", "mfa"], NOTHING),
    (NO_PHONE, ["pwd"], NOTHING),
    (NO_PHONE, ["otp"], NOTHING),
    # the maximum session age goes with every answer
    ({"max_session_age": 3600}, ["pwd"], Requirements(max_age=3600)),
    ({"max_session_age": 3600}, ["pwd", "otp", "mfa"], Requirements(max_age=3600)),
    ({"max_session_age": 3600, **NO_PHONE}, ["sms"], Requirements(max_age=3600, refused=True)),
    ({"max_session_age": 3600, **REQUIRE}, ["pwd"], needs("totp", "sms", "email", "recovery", max_age=3600)),
]


@pytest.mark.parametrize(("fields", "amr", "expected"), RULES,
                         ids=[f"{sorted(f)}-{'+'.join(a) or 'none'}" for f, a, _ in RULES])
def test_requirements_follow_the_rules(fields, amr, expected):
    assert evaluate(policy(**fields), amr) == expected


# Two factors ("mfa") judged on the methods by name: only a method after the first factor that the
# policy accepts counts as the second factor. (policy, amr, methods, requirements)
APP_ONLY = {**REQUIRE, "allowed_factors": ["totp"]}
METHOD_RULES = [
    (APP_ONLY, ["pwd", "otp", "mfa"], ["pwd", "email"], needs("totp", "recovery")),
    (APP_ONLY, ["pwd", "otp", "mfa"], ["pwd", "totp"], NOTHING),
    (APP_ONLY, ["pwd", "otp", "mfa"], ["pwd", "recovery"], NOTHING),  # recovery codes always count
    (APP_ONLY, ["pwd", "otp", "mfa"], ["pwd", "email", "totp"], NOTHING),  # stepped up
    (APP_ONLY, ["pwd", "sms", "mfa"], ["pwd", "sms"], needs("totp", "recovery")),
    (APP_ONLY, ["sms", "otp", "mfa"], ["sms", "email"], needs("totp", "recovery")),  # not restricted any more
    # the password after a code the policy allows
    ({**REQUIRE, "allowed_factors": ["sms"]}, ["sms", "pwd", "mfa"], ["sms", "pwd"], NOTHING),
    ({**REQUIRE, "allowed_factors": ["sms"]}, ["sms", "otp", "mfa"], ["sms", "email"], needs("pwd", "recovery")),
    ({**REQUIRE, "allowed_factors": ["email"]}, ["otp", "pwd", "mfa"], ["email", "pwd"], NOTHING),
    ({**REQUIRE, "allowed_factors": ["email"]}, ["otp", "mfa"], ["email", "totp"], needs("pwd", "recovery")),
    ({**SMS_STEP, **REQUIRE}, ["pwd", "otp", "mfa"], ["pwd", "totp"], needs("sms", "recovery")),
    ({**SMS_STEP, **REQUIRE}, ["pwd", "sms", "mfa"], ["pwd", "sms"], NOTHING),
    (SMS_STEP, ["pwd", "otp", "mfa"], ["pwd", "email"], NOTHING),  # no factor required: any two
    ({}, ["pwd", "otp", "mfa"], ["pwd", "email"], NOTHING),
    ({**APP_ONLY, "max_session_age": 600}, ["pwd", "otp", "mfa"], ["pwd", "email"],
     needs("totp", "recovery", max_age=600)),
    # rows from before methods were recorded (None): the amr, a later "otp" failing closed
    (APP_ONLY, ["pwd", "otp", "mfa"], None, needs("totp", "recovery")),
    ({**REQUIRE, "allowed_factors": ["totp", "email"]}, ["pwd", "otp", "mfa"], None, NOTHING),
    ({**REQUIRE, "allowed_factors": ["totp", "sms"]}, ["pwd", "otp", "mfa"], None, needs("totp", "sms", "recovery")),
    ({**REQUIRE, "allowed_factors": ["totp"]}, ["otp", "mfa"], None, needs("totp", "recovery")),  # email + ?
    ({**REQUIRE, "allowed_factors": ["sms"]}, ["pwd", "sms", "mfa"], None, NOTHING),
    (REQUIRE, ["pwd", "otp", "mfa"], None, NOTHING),
]


@pytest.mark.parametrize(("fields", "amr", "methods", "expected"), METHOD_RULES,
                         ids=[f"{sorted(f)}-{'+'.join(m) if m else 'none'}-{i}"
                              for i, (f, _, m, _) in enumerate(METHOD_RULES)])
def test_a_second_factor_counts_only_if_the_policy_accepts_it(fields, amr, methods, expected):
    assert evaluate(policy(**fields), amr, methods) == expected


def test_requirements_say_what_the_session_lacks():
    now = time.time()
    assert NOTHING.problem(now) is None
    assert REFUSED.problem(now) == "refused"
    assert Requirements(max_age=300).problem(now - 299) is None
    assert Requirements(max_age=300).problem(now - 400) == "max_age"
    assert needs("totp").problem(now) == "second_factor"
    assert Requirements(max_role="member").problem(now) is None


def test_defaults_are_documented_and_loose():
    assert OrgPolicy() == OrgPolicy.model_validate({})
    assert OrgPolicy().model_dump() == {
        "require_second_factor": False, "allowed_factors": ["totp", "sms", "email"],
        "sms_after_password": False, "phone_code_sign_in": True, "phone_code_max_role": "member",
        "max_session_age": None}


# ---- the floor -------------------------------------------------------------------------------------

TIGHTEN = [
    # (policy, floor, what changes in the effective policy)
    ({}, {}, {}),
    ({**REQUIRE, "allowed_factors": ["totp"], "max_session_age": 600}, {}, {}),
    ({}, REQUIRE, REQUIRE),
    ({}, {"allowed_factors": ["totp"]}, {"allowed_factors": ["totp"]}),
    ({"allowed_factors": ["totp", "email"]}, {"allowed_factors": ["email", "sms"]}, {"allowed_factors": ["email"]}),
    # nothing the organisation chose is allowed: the platform's factors, never none
    ({**REQUIRE, "allowed_factors": ["sms"]}, {"allowed_factors": ["totp"]}, {"allowed_factors": ["totp"]}),
    # SMS not accepted by the platform: the SMS step becomes a required second factor it accepts
    (SMS_STEP, {"allowed_factors": ["totp", "email"]},
     {"sms_after_password": False, **REQUIRE, "allowed_factors": ["totp", "email"]}),
    (SMS_STEP, {"allowed_factors": ["totp", "sms"]}, {"allowed_factors": ["totp", "sms"]}),
    ({}, NO_PHONE, NO_PHONE),
    ({"phone_code_max_role": "admin"}, {"phone_code_max_role": "editor"}, {"phone_code_max_role": "editor"}),
    ({"phone_code_max_role": "member"}, {"phone_code_max_role": "editor"}, {}),
    ({"phone_code_max_role": "owner"}, {"phone_code_max_role": "owner"}, {}),
    ({}, {"max_session_age": 3600}, {"max_session_age": 3600}),
    ({"max_session_age": 7200}, {"max_session_age": 3600}, {"max_session_age": 3600}),
    ({"max_session_age": 600}, {"max_session_age": 3600}, {}),
    ({"max_session_age": 600}, {}, {}),
]


@pytest.mark.parametrize(("fields", "floor_fields", "changed"), TIGHTEN)
def test_the_floor_tightens_a_policy_and_never_loosens_it(fields, floor_fields, changed):
    original = policy(**fields)
    effective = tighten(original, floor(**floor_fields))
    assert effective == original.model_copy(update=changed)


EFFECTIVE_RULES = [
    # (policy, floor, amr, requirements)
    ({}, REQUIRE, ["pwd"], needs("totp", "sms", "email", "recovery")),
    ({}, {**REQUIRE, "allowed_factors": ["totp"]}, ["pwd"], needs("totp", "recovery")),
    ({"allowed_factors": ["totp"], **SMS_STEP}, REQUIRE, ["pwd"], needs("totp", "recovery")),
    (SMS_STEP, {"allowed_factors": ["totp"]}, ["pwd"], needs("totp", "recovery")),
    (SMS_STEP, {}, ["pwd"], needs("sms")),
    ({"phone_code_max_role": "owner"}, {"phone_code_max_role": "member"}, ["sms"], Requirements(max_role="member")),
    ({}, NO_PHONE, ["sms"], REFUSED),
    ({}, NO_PHONE, ["sms", "otp", "mfa"], NOTHING),
    ({"max_session_age": 86400}, {"max_session_age": 3600}, ["pwd"], Requirements(max_age=3600)),
]


@pytest.mark.parametrize(("fields", "floor_fields", "amr", "expected"), EFFECTIVE_RULES)
def test_requirements_of_an_organisation_apply_the_floor(services, fields, floor_fields, amr, expected):
    org = Organisation(id="o1", name="Acme", handle="acme", policy=policy(**fields).model_dump())
    assert with_floor(services, **floor_fields).requirements(org, amr=amr) == expected


def test_no_organisation_has_no_requirements(services):
    assert services.org_policies.requirements(None, amr=["sms"]) == NOTHING


def test_a_stored_policy_that_no_longer_validates_is_read_as_the_strict_one(services):
    broken = Organisation(id="o1", name="Acme", handle="acme", policy={"max_session_age": "forever"})
    assert services.org_policies.requirements(broken, amr=["sms"]).refused
    assert services.org_policies.requirements(broken, amr=["pwd"]).second_factor
    old_keys = Organisation(id="o2", name="Acme", handle="acme2",
                            policy={"retired_setting": 1, "max_session_age": 900})
    assert services.org_policies.effective(old_keys) == OrgPolicy(max_session_age=900)


def test_the_floor_is_read_from_idp_settings(monkeypatch):
    monkeypatch.setenv("IDP_ORG_POLICY_FLOOR_ALLOWED_FACTORS", '["totp", "email"]')
    monkeypatch.setenv("IDP_ORG_POLICY_FLOOR_MAX_SESSION_AGE", "3600")
    monkeypatch.setenv("IDP_ORG_POLICY_FLOOR_PHONE_CODE_MAX_ROLE", "editor")
    settings = Settings(_env_file=None)
    assert settings.org_policy_floor_allowed_factors == ("totp", "email")
    assert settings.org_policy_floor_max_session_age == 3600
    assert settings.org_policy_floor_phone_code_max_role == "editor"
    for bad in ('["totp", "fax"]', "[]"):
        monkeypatch.setenv("IDP_ORG_POLICY_FLOOR_ALLOWED_FACTORS", bad)
        with pytest.raises(ValueError):
            Settings(_env_file=None)


# ---- validation ------------------------------------------------------------------------------------

BAD = [
    ({"require_second_factor": "perhaps"}, "require_second_factor must be true or false"),
    ({"sms_after_password": None}, "sms_after_password must be true or false"),
    ({"phone_code_sign_in": "\x00"}, "phone_code_sign_in must be true or false"),
    ({"allowed_factors": "totp"}, "allowed_factors must be a list"),
    ({"allowed_factors": ["totp", "fax"]}, "allowed_factors must be a list"),
    ({"allowed_factors": ["totp\x00"]}, "allowed_factors must be a list"),
    ({"allowed_factors": ["totp"] * 1000}, "allowed_factors must be a list"),
    ({"allowed_factors": [["totp"]]}, "allowed_factors must be a list"),
    ({"phone_code_max_role": "superuser"}, "phone_code_max_role must be one of"),
    ({"phone_code_max_role": "x" * 10_000}, "phone_code_max_role must be one of"),
    ({"max_session_age": 10}, "max_session_age must be"),
    ({"max_session_age": -1}, "max_session_age must be"),
    ({"max_session_age": 10**40}, "max_session_age must be"),
    ({"max_session_age": "9" * 5000}, "max_session_age must be"),
    ({"max_session_age": "an hour"}, "max_session_age must be"),
    ({"max_session_age": True}, "max_session_age must be"),
    ({"max_session_age": 3600.5}, "max_session_age must be"),
    ({**REQUIRE, "allowed_factors": []}, "allowed_factors: choose at least one"),
    ({**REQUIRE, **SMS_STEP, "allowed_factors": ["totp"]}, "allowed_factors: the SMS step"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_values_are_refused_naming_the_field(data, message):
    with pytest.raises(OrgError) as refused:
        parse(data)
    assert message in refused.value.message


def test_values_are_normalised():
    parsed = parse({"allowed_factors": ["email", "totp", "email"], "max_session_age": "",
                    "phone_code_sign_in": "false", "require_second_factor": 1})
    assert parsed.allowed_factors == ["totp", "email"]
    assert parsed.max_session_age is None
    assert parsed.phone_code_sign_in is False and parsed.require_second_factor is True
    assert parse({"max_session_age": "3600"}).max_session_age == 3600


# ---- the service: who may see and change it, and the audit trail --------------------------------------


def with_floor(services, **floor_fields) -> OrgPolicyService:
    """The service over the same database, under a floor of its own."""
    settings = services.settings.model_copy(
        update={f"org_policy_floor_{name}": value for name, value in floor_fields.items()})
    return OrgPolicyService(SimpleNamespace(settings=settings, orgs=services.orgs, audit=services.audit))


async def _org(services) -> tuple[Organisation, dict[str, str]]:
    """An organisation with one person in each role, and an outsider: {role: user id}."""
    people = {}

    async def work(db):
        for role in ("owner", "admin", "editor", "member", "outsider"):
            user = await services.accounts.create_user(
                db, email=f"{role}-{secrets.token_hex(4)}@example.com", password=None)
            people[role] = user.id
        org = await services.orgs.create(db, Actor.operator(), name="Acme Oy",
                                         handle=f"acme-{secrets.token_hex(4)}", owner_id=people["owner"])
        for role in ("admin", "editor", "member"):
            db.add(Membership(org_id=org.id, user_id=people[role], role=role))
        await db.flush()
        return org
    return await services.db.run(work), people


async def _stored(services, org_id: str) -> dict:
    return await services.db.run(lambda db: _policy_column(db, org_id))


async def _policy_column(db, org_id):
    return (await db.execute(select(Organisation.policy).where(Organisation.id == org_id))).scalar_one()


async def _events(services, org_id: str) -> list[AuditEvent]:
    return await services.db.run(lambda db: services.audit.events(db, org_id=org_id, action="policy.updated"))


ACCESS = [
    ("owner", None), ("admin", None), ("editor", Forbidden), ("member", Forbidden),
    ("outsider", OrgNotFound),
]


@pytest.mark.parametrize(("role", "refusal"), ACCESS)
async def test_owners_and_admins_see_and_change_the_policy(services, role, refusal):
    org, people = await _org(services)
    actor = Actor.user(people[role])
    view = services.db.run(lambda db: services.org_policies.view(db, actor, org.handle))
    change = services.db.run(lambda db: services.org_policies.update(
        db, actor, org.id, {"require_second_factor": True, "allowed_factors": ["totp"]}))
    if refusal is not None:
        with pytest.raises(refusal):
            await view
        with pytest.raises(refusal):
            await change
        assert await _stored(services, org.id) == {}
        assert await _events(services, org.id) == []
        return
    seen = await view
    assert seen.policy == seen.effective == OrgPolicy()
    assert seen.floor.allowed_factors == ["totp", "sms", "email"]
    updated = await change
    assert updated == OrgPolicy(require_second_factor=True, allowed_factors=["totp"])
    assert await _stored(services, org.id) == updated.model_dump(mode="json")
    [event] = await _events(services, org.id)
    assert (event.actor_type, event.actor_id, event.target_type, event.target_id) == \
        ("user", people[role], "org", org.id)
    assert event.before == {"require_second_factor": False, "allowed_factors": ["totp", "sms", "email"]}
    assert event.after == {"require_second_factor": True, "allowed_factors": ["totp"]}


async def test_an_unknown_organisation_is_not_found(services):
    with pytest.raises(OrgNotFound):
        await services.db.run(lambda db: services.org_policies.view(db, Actor.operator(), "no-such-org"))


async def test_an_operator_changes_a_policy_and_the_sign_in_rules_follow(services):
    org, _ = await _org(services)
    operator = Actor.operator("ops")
    await services.db.run(lambda db: services.org_policies.update(
        db, operator, org.handle, {"sms_after_password": True, "phone_code_sign_in": False,
                                   "max_session_age": 1800}))
    loaded = await services.db.run(lambda db: services.orgs.find(db, org.id))
    assert services.org_policies.requirements(loaded, amr=["pwd"]) == needs("sms", max_age=1800)
    assert services.org_policies.requirements(loaded, amr=["sms"]).refused
    # switched off again by an admin (seed 004): the password alone signs in
    await services.db.run(lambda db: services.org_policies.update(
        db, operator, org.id, {"sms_after_password": False}))
    loaded = await services.db.run(lambda db: services.orgs.find(db, org.id))
    assert services.org_policies.requirements(loaded, amr=["pwd"]) == Requirements(max_age=1800)
    events = await _events(services, org.id)
    assert len(events) == 2 and {e.actor_type for e in events} == {"operator"}


BAD_CHANGES = [
    ({"max_session_age": 5}, "max_session_age must be"),
    ({"allowed_factors": ["fax"]}, "allowed_factors must be"),
    ({"require_second_factor": True, "allowed_factors": []}, "allowed_factors: choose at least one"),
    ({"no_such_setting": True}, "unknown policy setting"),
    ({"max_session_age\x00": 600}, "unknown policy setting"),
    ({}, "nothing to change"),
    (["require_second_factor"], "nothing to change"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_CHANGES)
async def test_a_bad_change_is_refused_and_changes_nothing(services, changes, message):
    org, people = await _org(services)
    with pytest.raises(OrgError) as refused:
        await services.db.run(lambda db: services.org_policies.update(
            db, Actor.user(people["admin"]), org.id, changes))
    assert message in refused.value.message
    assert await _stored(services, org.id) == {}
    assert await _events(services, org.id) == []


LOOSER = [
    # (floor, a change made before (under the default floor), the change refused)
    (REQUIRE, {"require_second_factor": True}, {"require_second_factor": False}),
    ({"allowed_factors": ("totp",)}, {}, {"allowed_factors": ["totp", "sms"]}),
    ({"allowed_factors": ("totp", "email")}, {}, {"sms_after_password": True}),
    ({"phone_code_sign_in": False}, NO_PHONE, {"phone_code_sign_in": True}),
    ({"phone_code_max_role": "editor"}, {}, {"phone_code_max_role": "admin"}),
    ({"max_session_age": 3600}, {}, {"max_session_age": 7200}),
    ({"max_session_age": 3600}, {"max_session_age": 600}, {"max_session_age": ""}),
]


@pytest.mark.parametrize(("floor_fields", "first", "changes"), LOOSER)
async def test_a_change_looser_than_the_floor_is_refused(services, floor_fields, first, changes):
    org, people = await _org(services)
    owner = Actor.user(people["owner"])
    if first:
        await services.db.run(lambda db: services.org_policies.update(db, owner, org.id, first))
    before = await _stored(services, org.id)
    policies = with_floor(services, **floor_fields)
    with pytest.raises(OrgError) as refused:
        await services.db.run(lambda db: policies.update(db, owner, org.id, changes))
    assert refused.value.message.startswith("the platform")
    assert await _stored(services, org.id) == before


async def test_settings_the_floor_has_overtaken_are_kept_but_not_in_force(services):
    """An operator raised the floor after the organisation chose: saving the whole form unchanged,
    or changing another setting, still works; what is in force is the tightened policy."""
    org, people = await _org(services)
    owner = Actor.user(people["owner"])
    await services.db.run(lambda db: services.org_policies.update(
        db, owner, org.id, {"phone_code_max_role": "admin", "max_session_age": 86400}))
    policies = with_floor(services, phone_code_max_role="member", max_session_age=3600,
                          phone_code_sign_in=True)
    whole_form = {**OrgPolicy(phone_code_max_role="admin", max_session_age=86400).model_dump(),
                  "require_second_factor": True}
    saved = await services.db.run(lambda db: policies.update(db, owner, org.id, whole_form))
    assert saved.phone_code_max_role == "admin" and saved.require_second_factor
    seen = await services.db.run(lambda db: policies.view(db, owner, org.id))
    assert seen.policy == saved
    assert (seen.effective.phone_code_max_role, seen.effective.max_session_age) == ("member", 3600)
    assert seen.floor.max_session_age == 3600


async def test_saving_the_same_values_writes_no_audit_event(services):
    org, people = await _org(services)
    admin = Actor.user(people["admin"])
    await services.db.run(lambda db: services.org_policies.update(db, admin, org.id, {"max_session_age": 900}))
    await services.db.run(lambda db: services.org_policies.update(
        db, admin, org.id, OrgPolicy(max_session_age=900).model_dump()))
    assert len(await _events(services, org.id)) == 1


async def test_parallel_updates_all_succeed_and_the_last_write_wins(services):
    org, people = await _org(services)
    admin = Actor.user(people["admin"])
    ages = [600 + 60 * i for i in range(10)]
    await asyncio.gather(*(services.db.run(
        lambda db, age=age: services.org_policies.update(db, admin, org.id, {"max_session_age": age}))
        for age in ages))
    stored = await _stored(services, org.id)
    assert stored["max_session_age"] in ages
    assert OrgPolicy.model_validate(stored).max_session_age == stored["max_session_age"]
