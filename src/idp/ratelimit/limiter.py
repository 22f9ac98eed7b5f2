"""`RateLimiter`: named rules from `rules.py`, moving windows from `limits`, typed refusals.

    await limiter.hit("login_per_ip", ip)     # counts one, or raises RateLimited(retry_after)
    await limiter.test("login_per_ip", ip)    # raises the same way, counts nothing

A hit first tests every limit of the rule and counts nothing if one is full: a refused attempt
does not extend the caller's wait, so an attacker cannot keep someone else's number or account
locked by hammering it. Counting then takes one atomic step per limit (a Lua script in Redis,
a lock in memory), so N parallel hits of an n/minute rule let exactly n through.

Keys never reach the storage in the clear: each is an HMAC under a key derived from the KEK, so
Redis holds no list of phone numbers, addresses or account ids.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Mapping

from limits import RateLimitItem

from idp.ratelimit.errors import RateLimited
from idp.ratelimit.rules import compile_rules
from idp.ratelimit.storage import FailoverStorage


class RateLimiter:
    def __init__(self, storage: FailoverStorage, key_secret: bytes,
                 rules: Mapping[str, str] | None = None) -> None:
        self.storage = storage
        self.rules = compile_rules(rules)
        self._key_secret = key_secret

    # --- the callers' API -------------------------------------------------------------------

    async def hit(self, rule: str, key: str) -> None:
        """Count one event for `key` under `rule`, or raise RateLimited without counting."""
        items = self._items(rule)
        await self.check_items(rule, items, key)
        await self.acquire_items(rule, items, key)

    async def test(self, rule: str, key: str) -> None:
        """Raise RateLimited if a hit would be refused now; counts nothing."""
        await self.check_items(rule, self._items(rule), key)

    async def clear(self, rule: str, key: str) -> None:
        """Forget `key`'s counters under `rule` (e.g. failed logins after a successful one)."""
        digest = self.digest(rule, key)
        for item in self._items(rule):
            await self.storage.run(lambda s, item=item: s.clear(item.key_for(rule, digest)))

    # --- building blocks for guards that combine several rules --------------------------------

    def digest(self, scope: str, key: str) -> str:
        mac = hmac.new(self._key_secret, f"{scope}\0{key}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def _items(self, rule: str) -> list[RateLimitItem]:
        try:
            return self.rules[rule]
        except KeyError:
            raise ValueError(f"unknown rate-limit rule {rule!r}") from None

    async def retry_after(self, rule: str, items: list[RateLimitItem], key: str) -> float:
        """Seconds until one more hit fits every limit; 0 when it fits now."""
        digest = self.digest(rule, key)
        wait = 0.0
        for item in items:
            start, count = await self.storage.run(
                lambda s, item=item: s.get_moving_window(
                    item.key_for(rule, digest), item.amount, item.get_expiry()))
            if count >= item.amount:
                # The window holds `amount` entries; the oldest leaves at start + expiry.
                wait = max(wait, start + item.get_expiry() - time.time())
        return wait

    async def check_items(self, rule: str, items: list[RateLimitItem], key: str) -> None:
        wait = await self.retry_after(rule, items, key)
        if wait > 0:
            raise RateLimited(math.ceil(wait), rule)

    async def acquire_items(self, rule: str, items: list[RateLimitItem], key: str) -> None:
        digest = self.digest(rule, key)
        for item in items:
            acquired = await self.storage.run(
                lambda s, item=item: s.acquire_entry(
                    item.key_for(rule, digest), item.amount, item.get_expiry()))
            if not acquired:
                # Lost a race after the test passed: refuse with the wait as it is now.
                wait = await self.retry_after(rule, [item], key)
                raise RateLimited(math.ceil(max(wait, 1)), rule)

    async def close(self) -> None:
        await self.storage.close()
