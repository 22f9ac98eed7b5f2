"""Counter storage: Redis when configured, process memory otherwise or while Redis is down.

Sign-in must not fail because Redis is down. When a Redis call fails the counters move to this
process's memory and one warning is logged; Redis is probed again every `retry_seconds`, by
one request at a time, and used again as soon as it answers. Counters kept in memory meanwhile
are per process, so limits are looser by the number of processes for as long as the outage lasts:
degraded, never open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from limits.aio.storage import MemoryStorage, RedisStorage
from limits.errors import StorageError

log = logging.getLogger("idp.ratelimit")
T = TypeVar("T")


def _limits_uri(url: str) -> str:
    # IDP_REDIS_URL is an ordinary redis:// or rediss:// URL; limits names its async scheme.
    return url if url.startswith("async+") else f"async+{url}"


class FailoverStorage:
    def __init__(self, redis_url: str | None, *, timeout: float = 0.5,
                 retry_seconds: float = 30.0, key_prefix: str = "idp-rl") -> None:
        self.memory = MemoryStorage()
        self.redis: RedisStorage | None = None
        if redis_url:
            self.redis = RedisStorage(
                _limits_uri(redis_url), implementation="redispy", wrap_exceptions=True,
                key_prefix=key_prefix,
                # Bounded: a blackholed Redis must cost a request half a second, not a minute.
                socket_connect_timeout=timeout, socket_timeout=timeout,
            )
        self.retry_seconds = retry_seconds
        self.degraded = False
        self._next_probe = 0.0
        self._probing = False

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None and not self.degraded else "memory"

    async def run(self, operation: Callable[[object], Awaitable[T]]) -> T:
        """Run one storage operation on Redis if it is usable, else on memory."""
        if self.redis is not None and self._redis_usable():
            probing = self.degraded
            if probing:
                self._probing = True
            try:
                result = await operation(self.redis)
            except (StorageError, OSError, TimeoutError) as exc:
                self._next_probe = time.monotonic() + self.retry_seconds
                if not self.degraded:
                    self.degraded = True
                    log.warning("rate-limit storage: Redis unreachable (%s); counting in process "
                                "memory until it answers again", type(exc).__name__)
            else:
                if self.degraded:
                    self.degraded = False
                    log.warning("rate-limit storage: Redis answers again; counting in Redis")
                return result
            finally:
                if probing:
                    self._probing = False
        return await operation(self.memory)

    def _redis_usable(self) -> bool:
        if not self.degraded:
            return True
        return not self._probing and time.monotonic() >= self._next_probe

    async def close(self) -> None:
        if self.memory.timer is not None:
            self.memory.timer.cancel()
        if self.redis is not None:
            await self.redis.bridge.storage.aclose()
