"""Recovery codes: a set shown once, stored as keyed hashes, each usable once.

A code is 12 characters of Crockford's base32 (60 bits) shown as `xxxx-xxxx-xxxx`; input is
forgiving (case, dashes, spaces, and the letters o/i/l read as 0/1/1 are all accepted).
"""

from __future__ import annotations

import secrets

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.db import utcnow
from idp.mfa.models import RecoveryCode
from idp.security import keyed_hash

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32: no i, l, o, u
GROUPS, GROUP_SIZE = 3, 4  # 12 characters × 5 bits = 60 bits
_READS_AS = str.maketrans({"o": "0", "i": "1", "l": "1"})


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch not in "- \t").translate(_READS_AS)


class RecoveryCodeService:
    def __init__(self, key: bytes, *, count: int = 10) -> None:
        self._key = key  # derive_key(kek, "recovery-code")
        self.count = count

    def _hash(self, user_id: str, code: str) -> str:
        # The user id is part of the MAC input, so a code only ever works for its own account.
        return keyed_hash(self._key, f"{user_id}:{normalise_code(code)}")

    async def generate(self, db: AsyncSession, user_id: str) -> list[str]:
        """A new set, replacing every earlier code (used or not). Show it once; it is not kept."""
        await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = ["-".join("".join(secrets.choice(ALPHABET) for _ in range(GROUP_SIZE))
                          for _ in range(GROUPS)) for _ in range(self.count)]
        db.add_all(RecoveryCode(user_id=user_id, code_hash=self._hash(user_id, code)) for code in codes)
        await db.flush()
        return codes

    async def consume(self, db: AsyncSession, user_id: str, code: str) -> bool:
        """True for exactly one use of a valid code: one conditional UPDATE, safe under races."""
        if len(normalise_code(code)) != GROUPS * GROUP_SIZE:
            return False
        result = await db.execute(
            update(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.code_hash == self._hash(user_id, code),
                   RecoveryCode.used_at.is_(None))
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False))
        return result.rowcount == 1

    async def remaining(self, db: AsyncSession, user_id: str) -> int:
        query = select(func.count()).select_from(RecoveryCode).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        return (await db.execute(query)).scalar_one()

    async def remove_all(self, db: AsyncSession, user_id: str) -> None:
        await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
