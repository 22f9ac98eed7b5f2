"""Naming an organisation: the exact id first, then the handle, so that a handle never shadows
another organisation's id (on PostgreSQL one `id = ref OR handle = lower(ref)` query could return
either row); `get` takes stored ids and never looks at handles."""

from __future__ import annotations

import secrets

import pytest

from idp.audit.service import Actor
from idp.orgs.models import Organisation
from tests.org_support import person


@pytest.fixture
def s(services):
    return services


async def _org_with_id(s, org_id: str, name: str) -> Organisation:
    async def work(db):
        org = Organisation(id=org_id, name=name, handle=f"h-{secrets.token_hex(6)}", policy={})
        db.add(org)
        await db.flush()
        return org
    return await s.db.run(work)


async def _create(s, handle: str, name: str) -> Organisation:
    _, owner = await person(s)
    return await s.db.run(lambda db: s.orgs.create(db, Actor.user(owner), name=name, handle=handle, owner_id=owner))


@pytest.mark.parametrize("lock", [False, True])
async def test_an_id_is_never_shadowed_by_a_handle(s, lock):
    suffix = secrets.token_hex(4)
    # The lookalikes first, so that a query returning "the first row" would return them.
    lookalike = await _create(s, f"victim-org-id-{suffix}", "Lookalike Oy")    # = lower(mixed.id)
    same = await _create(s, f"victim-lower-{suffix}", "Same Oy")               # = lower.id exactly
    mixed = await _org_with_id(s, f"Victim-Org-Id-{suffix}", "Victim Oy")      # a case-sensitive id
    lower = await _org_with_id(s, f"victim-lower-{suffix}", "Lower Oy")         # an id a handle could equal

    async def find(ref):
        return await s.db.run(lambda db: s.orgs.find(db, ref, lock=lock))

    assert (await find(mixed.id)).id == mixed.id
    assert (await find(lookalike.handle)).id == lookalike.id
    assert (await find(lower.id)).id == lower.id  # the id wins over an identical handle
    assert (await find(same.id)).id == same.id  # which still has its own id
    assert (await find(mixed.handle.upper())).id == mixed.id  # handles are case-insensitive
    # Stored ids: never a handle.
    assert await s.db.run(lambda db: s.orgs.get(db, lookalike.handle, lock=lock)) is None
    assert (await s.db.run(lambda db: s.orgs.get(db, mixed.id, lock=lock))).id == mixed.id
    for bad in (None, "", "x" * 65, "a\x00b", "no such org"):
        assert await find(bad) is None
        assert await s.db.run(lambda db: s.orgs.get(db, bad)) is None
