"""The loop every outbox worker runs (courier, webhooks): a round, then a pause, until stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


async def poll(round_: Callable[[], Awaitable[bool]], *, interval: float, stop: asyncio.Event,
               log: logging.Logger, name: str) -> None:
    """Call `round_` until `stop` is set (then return after the round in progress). A round that
    says it was busy (a full batch) is followed at once by the next, so a backlog drains without
    waiting; an exception (a database outage) is logged and the worker goes on."""
    while not stop.is_set():
        busy = False
        try:
            busy = await round_()
        except Exception:  # noqa: BLE001 - an outage must not end the worker
            log.exception("%s round failed", name)
        if busy:
            continue
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass
