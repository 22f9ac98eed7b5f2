"""Recovery codes (63B-4 §3.1.2 look-up secrets; ASVS 6.4, 6.5): shown once, stored as keyed
hashes, each usable once even by parallel requests, and a new set voids the old one."""

from __future__ import annotations

import asyncio
import math
import re

from sqlalchemy import text

from idp.mfa.recovery import ALPHABET, GROUP_SIZE, GROUPS


async def _generate(services, user_id: str) -> list[str]:
    async with services.db.transaction() as db:
        return await services.factors.recovery.generate(db, user_id)


async def _consume(services, user_id: str, code: str) -> bool:
    async with services.db.transaction() as db:
        return await services.factors.recovery.consume(db, user_id, code)


async def _remaining(services, user_id: str) -> int:
    async with services.db.transaction() as db:
        return await services.factors.recovery.remaining(db, user_id)


async def test_ten_distinct_high_entropy_codes(services, rp):
    _, user_id = await rp.user()
    codes = await _generate(services, user_id)
    assert len(codes) == services.settings.recovery_code_count == 10
    assert len(set(codes)) == 10
    shape = re.compile(rf"^[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}$")
    assert all(shape.match(code) for code in codes), codes
    assert len(set(ALPHABET)) == 32 and GROUPS * GROUP_SIZE * math.log2(len(ALPHABET)) >= 60
    assert await _remaining(services, user_id) == 10


async def test_codes_are_stored_only_as_keyed_hashes(services, rp):
    _, user_id = await rp.user()
    codes = await _generate(services, user_id)
    async with services.db.transaction() as db:
        rows = (await db.execute(text("SELECT * FROM recovery_codes WHERE user_id = :u"),
                                 {"u": user_id})).mappings().all()
    dump = " ".join(str(dict(row)) for row in rows)
    for code in codes:
        assert code not in dump and code.replace("-", "") not in dump
    assert len(rows) == 10 and all(len(row["code_hash"]) == 64 for row in rows)


async def test_each_code_works_once(services, rp):
    _, user_id = await rp.user()
    codes = await _generate(services, user_id)
    assert await _consume(services, user_id, codes[0])
    assert not await _consume(services, user_id, codes[0])
    # Typed forgivingly: upper case, no dashes, spaces.
    assert await _consume(services, user_id, codes[1].upper().replace("-", " "))
    assert not await _consume(services, user_id, codes[1])
    assert await _remaining(services, user_id) == 8


async def test_ambiguous_letters_read_as_digits(services, rp):
    _, user_id = await rp.user()
    codes = await _generate(services, user_id)
    with_digits = next((c for c in codes if "0" in c or "1" in c), None)
    if with_digits is None:  # rare: no 0 or 1 in any code
        return
    typed = with_digits.replace("0", "O").replace("1", "l")
    assert await _consume(services, user_id, typed)


async def test_wrong_and_foreign_codes_are_refused(services, rp):
    _, user_id = await rp.user()
    _, other = await rp.user()
    codes = await _generate(services, user_id)
    await _generate(services, other)
    assert not await _consume(services, other, codes[0]), "a code works only for its own account"
    for junk in ("", "abcd-efgh-jkmn", codes[0][:-1], codes[0] + "x"):
        assert not await _consume(services, user_id, junk)
    assert await _consume(services, user_id, codes[0])


async def test_a_new_set_voids_the_old_one(services, rp):
    _, user_id = await rp.user()
    old = await _generate(services, user_id)
    assert await _consume(services, user_id, old[0])
    new = await _generate(services, user_id)
    assert not set(old) & set(new)
    assert not await _consume(services, user_id, old[1])
    assert await _remaining(services, user_id) == 10
    assert await _consume(services, user_id, new[0])


async def test_ten_parallel_uses_of_one_code_succeed_once(services, rp):
    _, user_id = await rp.user()
    codes = await _generate(services, user_id)
    results = await asyncio.gather(*(_consume(services, user_id, codes[3]) for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]
    assert await _remaining(services, user_id) == 9
