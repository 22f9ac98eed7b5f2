"""A sign-in password is checked between two transactions, never inside one.

argon2id costs tens of milliseconds of CPU, and under load a wait for a hash slot on top. Inside a
flow step's transaction that time held a database connection and, on SQLite, the write lock
(BEGIN IMMEDIATE) that every other request needs: token requests queued behind sign-ins, and on
PostgreSQL a crowd of logins held the whole pool (issue 6's latency row).

So a step that needs a hash does its reading, returns a `PasswordCheck` and its transaction
commits. The route (ui/login.py) then runs `PasswordCheck.run` with no connection held, and
`resume` in a second transaction. `resume` (FlowService._password_check) loads the flow and the
account again under the flow's row lock, and applies the verdict only when what it was computed
against is still there: the flow in the same state with the same data (no other step ran in
between) and the account with the same password hash. A changed hash (a reset, a new temporary
password, another node's rehash) is checked again, once; a verdict is never applied to a hash it
was not computed against.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from idp.accounts.passwords import PasswordHasher
    from idp.db import Database


@dataclass(frozen=True)
class Verdict:
    ok: bool
    # The password hashed (at the current argon2 parameters): for a first factor that passed
    # against a hash made with older ones (`rehash`), or for a new password that is not the
    # temporary one it replaces (`replace`).
    new_hash: str | None = None


@dataclass
class PasswordCheck:
    """A step paused before its hash: check `password` against `password_hash` (None: no
    account, and the dummy hash spends the same time), then `resume(db, verdict)` in a new
    transaction; it returns what the step returns (or another PasswordCheck, to check again).

    A change of password (`new_password`, NFKC form) hashes it when `password` passes; there a
    `password_hash` of None is an account with no password yet, and nothing is checked."""

    password_hash: str | None
    password: str  # NFKC form (password_policy.normalise_password), as hashes are made of
    resume: Callable[[AsyncSession, Verdict], Awaitable[object]]
    rehash: bool = False
    replace: bool = False
    new_password: str | None = None

    def then(self, answer: object) -> PasswordCheck:
        """This check, answering `answer` (a page) once its `resume` has done its work."""
        async def resume(db: AsyncSession, verdict: Verdict) -> object:
            result = await self.resume(db, verdict)
            return result.then(answer) if isinstance(result, PasswordCheck) else answer
        return dataclasses.replace(self, resume=resume)

    async def run(self, hasher: PasswordHasher) -> Verdict:
        if self.new_password is not None:
            ok = self.password_hash is None or await hasher.verify(self.password_hash, self.password)
            return Verdict(ok, await hasher.hash(self.new_password) if ok else None)
        ok = await hasher.verify(self.password_hash, self.password)
        outdated = ok and self.rehash and self.password_hash and hasher.needs_rehash(self.password_hash)
        if outdated or (self.replace and not ok):
            return Verdict(ok, await hasher.hash(self.password))
        return Verdict(ok)


async def run_pausing_for_hashes(database: Database, hasher: PasswordHasher,
                                 work: Callable[[AsyncSession], Awaitable[object]]) -> object:
    """Run `work` in a transaction; while what it returns is a PasswordCheck, hash with no
    transaction open and resume in a new one. What the last transaction returns."""
    result = await database.run(work)
    while isinstance(result, PasswordCheck):
        verdict = await result.run(hasher)
        result = await database.run(lambda db, resume=result.resume: resume(db, verdict))
    return result
