"""`idp seed`: bulk rows that the services accept as their own.

The command runs as an operator runs it (a subprocess on a SQLite file of its own). The rows are
then checked by the services themselves on the run's database kind: on PostgreSQL (COPY) in a
database of this module's own, since a thousand extra accounts would change what other tests
count; on SQLite (executemany) in a file of its own.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select, text

from idp.accounts.models import Identifier, User
from idp.app import create_app
from idp.audit.service import Actor
from idp.db.migrate import upgrade
from idp.orgs.models import Membership, Organisation
from idp.seed import SeedPlan, SeedRefused, email_of, handle_of, has_phone, seed
from tests.rp import PASSWORD
from tests.server_process import migrated_database_of_its_own
from tests.test_cli import _env, idp, ok
from tests.password_support import password_owner

SEED_PASSWORD = "one password for every seeded account"
PLAN = SeedPlan(accounts=60, organisations=6, memberships=45, prefix="t")


def test_the_command_seeds_each_table_and_refuses_the_same_prefix_again(tmp_path):
    env = _env(tmp_path, IDP_SEED_PASSWORD=SEED_PASSWORD)
    upgrade(env["IDP_DATABASE_URL"])  # in process: every `idp` run costs a second of start-up
    done = ok(idp(env, "seed", "--accounts", "50", "--organisations", "5", "--memberships", "70"))
    timed = dict(re.findall(r"│ (\w+)\s+│ (\d+)\s+│ [\d.]+", done.stdout))
    # 50 accounts: 45 with an email, 20 with a phone number (5 of them phone only).
    assert timed == {"users": "50", "identifiers": "65", "organisations": "5", "memberships": "70"}

    again = idp(env, "seed", "--accounts", "10")
    assert again.returncode == 1
    assert "the prefix 'seed' is seeded in this database already" in again.stderr


@pytest.mark.parametrize("plan, message", [
    (SeedPlan(10, 2, 1), "--memberships must be at least --organisations"),
    (SeedPlan(3, 1, 4), "an account is in an organisation at most once"),
    (SeedPlan(0, 1, 1), "organisations need accounts"),
    (SeedPlan(10, 1, 1, prefix="Bad-Prefix"), "the prefix is 1-20 lower-case letters"),
])
def test_impossible_plans_are_refused_before_anything_is_written(plan, message):
    with pytest.raises(SeedRefused, match=message):
        plan.check()


@pytest.fixture(scope="module")
def seed_database_url(settings, tmp_path_factory):
    with migrated_database_of_its_own(settings.database_url, "idp_seed", tmp_path_factory.mktemp("seed")) as url:
        yield url


@pytest.fixture(scope="module")
async def seeded(settings, seed_database_url):
    """An app on the seeded database, and what the seed wrote."""
    application = create_app(settings.model_copy(update={"database_url": seed_database_url}))
    async with application.router.lifespan_context(application):
        s = application.state.services
        password_hash = await s.hasher.hash(SEED_PASSWORD)
        async with s.db.engine.begin() as connection:
            written = await seed(connection, PLAN, password_hash)
        yield application, written


async def test_seeded_rows_are_what_the_plan_says(seeded):
    application, written = seeded
    assert {name: rows for name, (rows, _) in written.items()} == {
        "users": 60, "identifiers": 54 + 24, "organisations": 6, "memberships": 45}
    s = application.state.services

    async def check(db):
        owners = (await db.execute(select(Membership.org_id, func.count()).where(
            Membership.role == "owner").group_by(Membership.org_id))).all()
        assert len(owners) == 6 and {count for _, count in owners} == {1}
        sizes = (await db.execute(select(func.count()).select_from(Membership).group_by(Membership.org_id))).scalars()
        assert sorted(sizes) == [7, 7, 7, 8, 8, 8]  # 45 spread evenly
        phones = (await db.execute(select(Identifier.value).where(Identifier.kind == "phone"))).scalars().all()
        assert len(phones) == len(set(phones)) == 24
        # Stored as the accounts service stores what a person types.
        assert all(s.accounts.normalise_identifier("phone", p) == p for p in phones)
        emails = (await db.execute(select(Identifier.value).where(Identifier.kind == "email"))).scalars().all()
        assert all(s.accounts.normalise_identifier("email", e) == e for e in emails)
        assert await db.scalar(select(func.count()).select_from(User).where(User.email.is_(None))) == 6

    await s.db.run(check)


async def test_a_seeded_account_signs_in_with_the_seed_password(seeded):
    application, _ = seeded
    from tests.rp import RelyingParty

    rp = RelyingParty(application, application.state.services)
    client = await rp.register()
    async with rp.browser() as browser:
        result = await rp.sign_in(browser, client, email_of("t", 3), password=SEED_PASSWORD)
        exchanged = await rp.exchange(browser, client, result)
        assert exchanged.status_code == 200, exchanged.text
        claims = await rp.verify(browser, exchanged.json()["id_token"])
    s = application.state.services
    user = await s.db.run(lambda db: s.accounts.find_by_login(db, email_of("t", 3)))
    assert claims["sub"] == user.id


async def test_an_account_seeded_with_a_phone_only_signs_in_with_its_number(seeded):
    application, _ = seeded
    s = application.state.services
    assert email_of("t", 9) is None and has_phone(9)

    async def number_of_account_9(db):
        # Numbers are handed out in account order: account 9 has the fourth.
        return sorted((await db.execute(select(Identifier.value).where(Identifier.kind == "phone"))).scalars())[3]

    number = await s.db.run(number_of_account_9)
    user = await s.db.run(lambda db: password_owner(s, db, number, SEED_PASSWORD))
    assert user is not None and user.email is None
    assert await s.db.run(lambda db: password_owner(s, db, number, PASSWORD)) is None


async def test_an_organisations_members_are_listed_by_the_service(seeded):
    application, _ = seeded
    s = application.state.services
    members = await s.db.run(lambda db: s.orgs.members.list(db, Actor.operator(), handle_of("t", 0)))
    assert len(members) == 8 and len({m.user_id for m in members}) == 8
    assert [m.role for m in members][0] == "owner"
    assert sorted(m.role for m in members[1:]) == ["admin", "editor", "member", "member", "member",
                                                  "member", "member"]
    org = await s.db.run(lambda db: db.scalar(select(Organisation).where(Organisation.handle == "t-0")))
    assert org is not None and org.policy == {}


async def test_seeding_the_same_prefix_again_is_refused_and_writes_nothing(seeded):
    application, _ = seeded
    s = application.state.services
    count = await s.db.run(lambda db: s.accounts.count(db))
    with pytest.raises(SeedRefused, match="seeded in this database already"):
        async with s.db.engine.begin() as connection:
            await seed(connection, PLAN, "unused")
    assert await s.db.run(lambda db: s.accounts.count(db)) == count
    async with s.db.engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM organisations")) == 6


async def test_another_prefix_adds_accounts_whose_numbers_follow_the_stored_ones(seeded):
    application, _ = seeded
    s = application.state.services
    async with s.db.engine.begin() as connection:
        await seed(connection, SeedPlan(accounts=10, organisations=1, memberships=3, prefix="u"),
                   await s.hasher.hash(SEED_PASSWORD))
    phones = await s.db.run(lambda db: db.scalars(select(Identifier.value).where(
        Identifier.kind == "phone").order_by(Identifier.value)))
    assert [p[-3:] for p in phones] == [f"{n:03d}" for n in range(24 + 4)]
