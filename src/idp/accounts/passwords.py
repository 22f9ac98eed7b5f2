"""argon2id hashing, off the event loop and bounded to one hash in flight per core.

Measured (ARCHITECTURE.md): argon2 releases the GIL, and a semaphore in front of a thread pool
gave more logins/s and a lower tail latency than an unbounded pool.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordHasher:
    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int, concurrency: int) -> None:
        self._argon2 = Argon2Hasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID,
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="argon2")
        self._slots = asyncio.Semaphore(concurrency)
        # Verified against when the account does not exist, so both paths cost one hash.
        self._dummy_hash = self._argon2.hash("not a real password, only spends the same time")

    async def _run(self, fn, *args):
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def hash(self, password: str) -> str:
        return await self._run(self._argon2.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True if `password` matches; spends one hash even when there is no hash to check."""
        return await self._run(self._verify_sync, password_hash or self._dummy_hash,
                               password, password_hash is not None)

    def _verify_sync(self, password_hash: str, password: str, real: bool) -> bool:
        try:
            return self._argon2.verify(password_hash, password) and real
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon2.check_needs_rehash(password_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
