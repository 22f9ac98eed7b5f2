"""argon2id hashing, off the event loop and bounded to one hash in flight per core.

Measured (ARCHITECTURE.md): argon2 releases the GIL, and a semaphore in front of a thread pool
gave more logins/s and a lower tail latency than an unbounded pool.

The hashing threads run at a lower scheduling priority (nice 10, Linux only: there a thread has
a priority of its own) so that, when logins saturate the CPU, the event loop still wins it: a
token request must not queue behind a hash (issue 6's latency row: client_credentials p99 during
password logins fell from 200-460 ms to 8-20 ms, SQLite and PostgreSQL alike). The price, by
design: while requests keep the event loop busy, hashes get the rest, so logins slow down beside
a flood of token requests (5-10 logins/s instead of 10-20 in that row, on one core).
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordHasher:
    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int, concurrency: int) -> None:
        self._argon2 = Argon2Hasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID,
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="argon2",
                                        initializer=_lower_priority)
        self._slots = asyncio.Semaphore(concurrency)
        self.in_flight = 0  # hashes being computed now (not those waiting for a slot)
        self._rehash_by_shape: dict[tuple[str, int, int], bool] = {}
        # Verified against when the account does not exist, so both paths cost one hash.
        self._dummy_hash = self._argon2.hash("not a real password, only spends the same time")

    async def _run(self, fn, *args):
        async with self._slots:
            self.in_flight += 1
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
            finally:
                self.in_flight -= 1

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
        # Parsing the parameters again at every sign-in cost a few percent of a login; accounts
        # share a handful of them: the prefix up to the salt, and the salt's and digest's lengths.
        prefix, salt, digest = (password_hash.rsplit("$", 2) + ["", ""])[:3]
        key = (prefix, len(salt), len(digest))
        known = self._rehash_by_shape.get(key)
        if known is None:
            if len(self._rehash_by_shape) >= 256:  # hashes from elsewhere: keep it bounded
                self._rehash_by_shape.clear()
            known = self._rehash_by_shape[key] = self._argon2.check_needs_rehash(password_hash)
        return known

    def close(self) -> None:
        self._pool.shutdown(wait=False)


HASH_THREAD_NICENESS = 10


def _lower_priority() -> None:
    """Run this hashing thread at nice 10 (PRIO_PROCESS with a thread id sets that thread only on
    Linux). Elsewhere, or where it is not allowed, the thread keeps the process's priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)
    except (AttributeError, OSError):
        pass

