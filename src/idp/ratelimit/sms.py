"""`SmsGuard`: every abuse check an SMS send must pass, in one call, before any gateway.

    await guard.check_send(ip=ip, number_e164=number, account_id=account_id)

In order, and counting nothing unless the send is allowed:
1. the destination: valid mobile number in an allowed country (CountryNotAllowed, ...);
2. the global budget breaker: open → SmsBudgetExceeded (SECURITY-CHECKLIST 95);
3. per number, per number prefix, per IP and per account rules (items 92, 93);
4. growing delays between sends to one number: the n-th send after the first waits
   `resend_delays[n-1]` seconds since the previous one (the last delay repeats) (item 92);
then the send is counted everywhere. Call it once per SMS about to be queued.

The budget is a fixed-window counter shared by all nodes. The request that takes it past the
budget trips the breaker: exactly one per window, on whichever node, calls `on_breaker_trip`
(today a warning log line; the audit log hooks in there). Until the window ends every send is
refused, then the breaker closes by itself.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from limits import RateLimitItemPerSecond

from idp.accounts.phones import PhonePolicy
from idp.ratelimit.errors import RateLimited, SmsBudgetExceeded
from idp.ratelimit.limiter import RateLimiter

log = logging.getLogger("idp.ratelimit")

# A number prefix drops this many trailing digits: one prefix covers 1000 consecutive numbers.
PREFIX_DROP_DIGITS = 3


@dataclass(frozen=True)
class BreakerTrip:
    """What the audit event will record when the SMS budget breaker trips."""

    budget: int
    window_seconds: int
    reopens_in_seconds: int


BreakerHook = Callable[[BreakerTrip], Awaitable[None]]


async def log_breaker_trip(trip: BreakerTrip) -> None:
    # The hook point for the audit log (events/): replace with a hook that writes the event.
    log.warning("SMS budget breaker tripped: all SMS paused", extra={"fields": {
        "event": "sms_budget_breaker_tripped", "budget": trip.budget,
        "window_seconds": trip.window_seconds, "reopens_in_seconds": trip.reopens_in_seconds,
    }})


class SmsGuard:
    def __init__(self, limiter: RateLimiter, phones: PhonePolicy, *,
                 resend_delays: Sequence[int], resend_window: int,
                 budget: int, budget_window: int = 3600,
                 on_breaker_trip: BreakerHook = log_breaker_trip) -> None:
        if not resend_delays or any(delay < 1 for delay in resend_delays):
            raise ValueError("resend delays must be whole seconds, at least 1")
        self.limiter = limiter
        self.phones = phones
        self.resend_delays = tuple(resend_delays)
        self.resend_window = resend_window
        self.budget = budget
        self.budget_window = budget_window
        self.on_breaker_trip = on_breaker_trip
        # The resend history needs only enough entries to know which delay applies.
        self._history = RateLimitItemPerSecond(len(self.resend_delays) + 1, resend_window)

    async def check_send(self, *, ip: str, number_e164: str, account_id: str | None = None,
                         scope: str = "") -> None:
        """`scope` gives the per-number limits and resend delays a budget of their own: a second
        factor sent after the right password ("factor") must not be exhausted by strangers typing
        the number on the login page."""
        self.phones.check_sms_destination(number_e164)
        await self._check_budget_open()
        number_key = f"{scope}:{number_e164}" if scope else number_e164

        checks = [("sms_per_number", number_key),
                  ("sms_per_prefix", number_e164[:-PREFIX_DROP_DIGITS]),
                  ("sms_per_ip", ip_key(ip))]
        if account_id is not None:
            checks.append(("sms_per_account", str(account_id)))
        wait, rule = 0.0, ""
        for name, key in checks:
            rule_wait = await self.limiter.retry_after(name, self.limiter.rules[name], key)
            if rule_wait > wait:
                wait, rule = rule_wait, name
        resend_wait, sent = await self._resend_wait(number_key)
        if resend_wait > wait:
            wait, rule = resend_wait, "sms_resend_delay"
        if wait > 0:
            raise RateLimited(math.ceil(wait), rule)

        await self._spend_budget()
        for name, key in checks:
            await self.limiter.acquire_items(name, self.limiter.rules[name], key)
        await self._record_resend(number_key, sent)

    # --- growing delays -------------------------------------------------------------------
    # Three small records per number, all through the limits storage API:
    #   history  a moving window of the sends in `resend_window`: its count picks the delay;
    #   last     the newest send's time in ms (a counter), kept as long as the longest delay;
    #   slot/n   claimed atomically by the send that saw n earlier sends, so of two parallel
    #            sends that both passed the test only one goes out.

    def _resend_keys(self, number_e164: str) -> tuple[str, str, str]:
        digest = self.limiter.digest("sms_resend", number_e164)
        return (f"sms_resend/{digest}/history", f"sms_resend/{digest}/last",
                f"sms_resend/{digest}/slot")

    async def _resend_wait(self, number_e164: str) -> tuple[float, int]:
        """(seconds still to wait, earlier sends in the window) for a send to this number."""
        history, last, _ = self._resend_keys(number_e164)
        storage = self.limiter.storage
        _, sent = await storage.run(lambda s: s.get_moving_window(
            history, self._history.amount, self._history.get_expiry()))
        if sent == 0:
            return 0.0, 0
        delay = self.resend_delays[min(sent, len(self.resend_delays)) - 1]
        last_ms = await storage.run(lambda s: s.get(last))
        if not last_ms:
            return 0.0, sent
        return max(0.0, last_ms / 1000 + delay - time.time()), sent

    async def _record_resend(self, number_e164: str, sent: int) -> None:
        history, last, slot = self._resend_keys(number_e164)
        storage = self.limiter.storage
        delay = self.resend_delays[min(sent, len(self.resend_delays)) - 1] if sent else 1
        if not await storage.run(lambda s: s.acquire_entry(f"{slot}/{sent}", 1, delay)):
            raise RateLimited(delay, "sms_resend_delay")
        # A full history only means "at the longest delay": its refusal is not an error.
        await storage.run(lambda s: s.acquire_entry(
            history, self._history.amount, self._history.get_expiry()))
        now_ms = int(time.time() * 1000)
        await storage.run(lambda s: s.clear(last))
        await storage.run(lambda s: s.incr(last, max(self.resend_delays), now_ms))

    # --- the budget breaker ---------------------------------------------------------------

    _BUDGET_KEY = "sms_budget/global"

    async def _budget_reopens_in(self) -> float:
        expiry = await self.limiter.storage.run(lambda s: s.get_expiry(self._BUDGET_KEY))
        return max(1.0, expiry - time.time())

    async def _check_budget_open(self) -> None:
        spent = await self.limiter.storage.run(lambda s: s.get(self._BUDGET_KEY))
        if spent >= self.budget:
            # Counted, so that the first refusal of the window (on any node) trips the breaker.
            await self._spend_budget()

    async def _spend_budget(self) -> None:
        spent = await self.limiter.storage.run(
            lambda s: s.incr(self._BUDGET_KEY, self.budget_window))
        if spent <= self.budget:
            return
        reopens_in = math.ceil(await self._budget_reopens_in())
        if spent == self.budget + 1:  # incr is atomic: exactly one request sees this value
            try:
                await self.on_breaker_trip(BreakerTrip(self.budget, self.budget_window, reopens_in))
            except Exception:
                # Reporting must not turn a refusal into a 500.
                log.exception("SMS budget breaker hook failed")
        raise SmsBudgetExceeded(reopens_in)


def ip_key(ip: str) -> str:
    """The unit a client controls: an IPv4 address, or an IPv6 /64 (one customer's network)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
