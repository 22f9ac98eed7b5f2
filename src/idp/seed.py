"""`idp seed`: fill a database with realistic accounts, organisations and memberships, in bulk.

For benchmarks and load tests (issue 6): a million accounts in minutes. Rows are made as the
services would make them, so the services accept them (tests/test_seed.py signs in as one):

- account i has a verified email `<given>.<family>.<i>@<prefix>.example.com` (also its primary
  email), a verified phone number as well for 3 in 10, or a verified phone number only for 1 in
  10 (an account registered by phone). Phone numbers are E.164 `+35850xxxxxxx`, allocated after
  the highest such number already stored, so they never collide with existing accounts.
- Every account has the same password: it is checked against the password policy and hashed
  ONCE with the configured argon2 parameters, and that one hash string is stored for every
  account (a million argon2 hashes would take hours and prove nothing).
- Organisation j has the handle `<prefix>-<j>`, exactly one owner (its first member) and distinct
  members: `memberships` rows spread evenly over the organisations, drawn from this run's
  accounts in a scattered order. Roles below the owner: 1 in 10 admin, 1 in 10 editor, the rest
  members.

One transaction for the whole run: it is all there or not at all. A prefix is seeded once: a run
whose prefix is already in the database is refused before it writes anything (seed again with
another prefix to add more; the bench does so to grow 1,000 accounts to 1,000,000).

PostgreSQL gets COPY (asyncpg's `copy_records_to_table`); SQLite, meant for small seeds, gets
executemany in batches.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from idp.accounts.models import Identifier, User
from idp.db import new_id, utcnow
from idp.orgs.models import Membership, Organisation

PREFIX = re.compile(r"[a-z][a-z0-9]{0,19}")  # so that `<prefix>-<j>` is a valid handle
PHONE_BLOCK = "+35850"  # Finnish mobile numbers: the block and seven more digits
PHONE_DIGITS = 7
BATCH = 10_000
GIVEN = ("aino", "eero", "helmi", "juhani", "kaisa", "lauri", "maija", "matti", "noora", "olli",
         "pekka", "riikka", "sanna", "timo", "venla", "ville", "anna", "erik", "ida", "oskar")
FAMILY = ("virtanen", "korhonen", "makinen", "nieminen", "hamalainen", "laine", "heikkinen",
          "koskinen", "jarvinen", "lehtonen", "lindqvist", "nyberg", "salo", "turunen", "karjalainen")
LOCALES = ("fi", "fi", "sv", "en")

Progress = Callable[[str, int, int], None]  # (table, rows written so far, rows in all)


class SeedRefused(Exception):
    """The plan cannot be seeded (bad numbers, or the prefix is in the database already)."""


@dataclass(frozen=True)
class SeedPlan:
    accounts: int
    organisations: int
    memberships: int
    prefix: str = "seed"

    def check(self) -> None:
        if not PREFIX.fullmatch(self.prefix):
            raise SeedRefused("the prefix is 1-20 lower-case letters and digits, a letter first")
        if min(self.accounts, self.organisations, self.memberships) < 0:
            raise SeedRefused("the numbers cannot be negative")
        if self.organisations and not self.accounts:
            raise SeedRefused("organisations need accounts to own them")
        if self.memberships < self.organisations:
            raise SeedRefused("every organisation has an owner: --memberships must be at least "
                              "--organisations")
        if self.organisations == 0 and self.memberships:
            raise SeedRefused("memberships need organisations")
        if self.organisations and math.ceil(self.memberships / self.organisations) > self.accounts:
            raise SeedRefused("too many memberships: an account is in an organisation at most once")


def email_of(prefix: str, i: int) -> str | None:
    """Account i's email (None for the 1 in 10 registered by phone only)."""
    if i % 10 == 9:
        return None
    return f"{GIVEN[i % len(GIVEN)]}.{FAMILY[i % len(FAMILY)]}.{i}@{prefix}.example.com"


def has_phone(i: int) -> bool:
    return i % 10 in (0, 1, 2, 9)


def handle_of(prefix: str, j: int) -> str:
    return f"{prefix}-{j}"


async def seed(connection: AsyncConnection, plan: SeedPlan, password_hash: str,
               progress: Progress = lambda table, done, total: None) -> dict[str, tuple[int, float]]:
    """Write the plan's rows on `connection`, inside the caller's transaction. Returns each
    table's rows and seconds (the password hash is the caller's, made once)."""
    plan.check()
    await _refuse_if_seeded(connection, plan)
    phones = sum(map(has_phone, range(plan.accounts)))
    first_phone = await _next_free_phone(connection)
    if first_phone + phones > 10 ** PHONE_DIGITS:
        raise SeedRefused(f"not enough free phone numbers left in {PHONE_BLOCK}")
    emails = plan.accounts - plan.accounts // 10
    user_ids = [new_id() for _ in range(plan.accounts)]
    org_ids = [new_id() for _ in range(plan.organisations)]
    now = utcnow()
    tables = [
        (User.__table__, _users(plan, user_ids, password_hash, now), plan.accounts),
        (Identifier.__table__, _identifiers(plan, user_ids, first_phone, now), emails + phones),
        (Organisation.__table__, (org for org, _ in _organisations(plan, org_ids, now)), plan.organisations),
        (Membership.__table__, _memberships(plan, user_ids, org_ids, now), plan.memberships),
    ]
    written = {}
    for table, rows, total in tables:
        started = time.perf_counter()
        count = await _write(connection, table, rows, total, progress)
        written[table.name] = (count, time.perf_counter() - started)
    return written


async def _refuse_if_seeded(connection: AsyncConnection, plan: SeedPlan) -> None:
    # A run is all or nothing, so its first account and organisation tell whether it happened.
    taken = await connection.scalar(select(func.count()).select_from(User).where(
        User.email == email_of(plan.prefix, 0)))
    taken += await connection.scalar(select(func.count()).select_from(Organisation).where(
        Organisation.handle == handle_of(plan.prefix, 0)))
    if taken:
        raise SeedRefused(f"the prefix {plan.prefix!r} is seeded in this database already; "
                          "seed more with another --prefix")


async def _next_free_phone(connection: AsyncConnection) -> int:
    """The first number after the highest stored `+35850xxxxxxx` (an index range scan)."""
    highest = await connection.scalar(select(func.max(Identifier.value)).where(
        Identifier.kind == "phone", Identifier.value >= PHONE_BLOCK,
        Identifier.value < PHONE_BLOCK[:-1] + chr(ord(PHONE_BLOCK[-1]) + 1),
        func.length(Identifier.value) == len(PHONE_BLOCK) + PHONE_DIGITS))
    return int(highest[len(PHONE_BLOCK):]) + 1 if highest else 0


def _created(now, i: int, total: int):
    # Spread over the last three years, oldest first: realistic for range scans and paging.
    return now - timedelta(seconds=(total - i) * (3 * 365 * 24 * 3600 // max(total, 1)))


def _users(plan: SeedPlan, user_ids: list[str], password_hash: str, now) -> Iterator[dict]:
    for i, user_id in enumerate(user_ids):
        given, family = GIVEN[i % len(GIVEN)].capitalize(), FAMILY[i % len(FAMILY)].capitalize()
        email = email_of(plan.prefix, i)
        created = _created(now, i, plan.accounts)
        yield {"id": user_id, "email": email, "email_verified": email is not None,
               "name": f"{given} {family}", "given_name": given, "family_name": family,
               "locale": LOCALES[i % len(LOCALES)], "password_hash": password_hash,
               "password_must_change": False, "password_expires_at": None,
               "code_second_factor": None, "disabled_at": None,
               "created_at": created, "updated_at": created}


def _identifiers(plan: SeedPlan, user_ids: list[str], first_phone: int, now) -> Iterator[dict]:
    phone = first_phone
    for i, user_id in enumerate(user_ids):
        created = _created(now, i, plan.accounts)
        values = []
        if (email := email_of(plan.prefix, i)) is not None:
            values.append(("email", email))
        if has_phone(i):
            values.append(("phone", f"{PHONE_BLOCK}{phone:0{PHONE_DIGITS}d}"))
            phone += 1
        for kind, value in values:
            yield {"id": new_id(), "user_id": user_id, "kind": kind, "value": value,
                   "verified": True, "created_at": created, "verified_at": created}


def _organisations(plan: SeedPlan, org_ids: list[str], now) -> Iterator[tuple[dict, int]]:
    """Each organisation and its number of members (the memberships spread evenly)."""
    base, extra = divmod(plan.memberships, plan.organisations) if plan.organisations else (0, 0)
    for j, org_id in enumerate(org_ids):
        yield ({"id": org_id, "name": f"{FAMILY[j % len(FAMILY)].capitalize()} {j} Oy",
                "handle": handle_of(plan.prefix, j), "business_id": f"{j % 10_000_000:07d}-{j % 10}",
                "billing_contact_locked": False, "policy": {},
                "created_at": _created(now, j, plan.organisations)},
               base + (j < extra))


def _memberships(plan: SeedPlan, user_ids: list[str], org_ids: list[str], now) -> Iterator[dict]:
    # Consecutive positions of a permutation of the accounts: an organisation's members are
    # distinct (its size is at most the number of accounts) and scattered, not neighbours.
    step = _coprime_step(len(user_ids))
    position = 0
    for org, size in _organisations(plan, org_ids, now):
        for t in range(size):
            role = "owner" if t == 0 else "admin" if t % 10 == 1 else "editor" if t % 10 == 2 else "member"
            yield {"id": new_id(), "org_id": org["id"], "role": role, "created_at": org["created_at"],
                   "user_id": user_ids[(position + t) * step % len(user_ids)]}
        position += size


def _coprime_step(n: int) -> int:
    step = 7919  # a prime: coprime with n unless n is a multiple of it
    while n and math.gcd(step, n) != 1:
        step += 2
    return step


async def _write(connection: AsyncConnection, table: Table, rows: Iterator[dict], total: int,
                 progress: Progress) -> int:
    columns = [column.name for column in table.columns]
    done = 0
    progress(table.name, 0, total)
    for batch in _batches(rows):
        if connection.dialect.name == "postgresql":
            raw = (await connection.get_raw_connection()).driver_connection
            await raw.copy_records_to_table(table.name, columns=columns, records=[
                tuple(_copy_value(row[c]) for c in columns) for row in batch])
        else:
            await connection.execute(insert(table), batch)
        done += len(batch)
        progress(table.name, done, total)
    return done


def _copy_value(value):
    return json.dumps(value) if isinstance(value, dict) else value  # COPY takes JSON as text


def _batches(rows: Iterator[dict]) -> Iterator[list[dict]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
