"""Rate limits and SMS abuse limits (SECURITY-CHECKLIST 92-95), on memory and on a real Redis.

Redis comes from IDP_TEST_REDIS_URL (default redis://127.0.0.1:6379/14); each test empties
that one database. Unreachable Redis skips its cases, except on CI (CI=true) where it fails.
Time is the outside world here: `clock` moves `time.time` forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
import redis.asyncio

from idp.accounts.phones import CountryNotAllowed, PhonePolicy
from idp.ratelimit import (
    BreakerTrip,
    FailoverStorage,
    RateLimited,
    RateLimiter,
    SmsBudgetExceeded,
    SmsGuard,
    ip_key,
)
from idp.ratelimit.rules import compile_rules
from idp.settings import Settings

REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
EU_EEA = Settings.model_fields["sms_allowed_country_codes"].default
SECRET = b"k" * 32


class Clock:
    def __init__(self, monkeypatch) -> None:
        self.offset = 0.0
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return Clock(monkeypatch)


async def _redis_or_none() -> redis.asyncio.Redis | None:
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except (redis.RedisError, OSError):
        await client.aclose()
        return None
    return client


async def _redis_storage() -> FailoverStorage:
    client = await _redis_or_none()
    if client is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} unreachable: Redis tests cannot be skipped on CI")
        pytest.skip(f"Redis at {REDIS_URL} unreachable (set IDP_TEST_REDIS_URL; CI fails here)")
    await client.flushdb()  # only the test database
    await client.aclose()
    return FailoverStorage(REDIS_URL)


@pytest.fixture(params=["memory", "redis"])
async def storage(request):
    store = FailoverStorage(None) if request.param == "memory" else await _redis_storage()
    yield store
    assert not store.degraded, "the Redis cases must really run on Redis"
    await store.close()


@pytest.fixture
async def redis_storage():
    store = await _redis_storage()
    yield store
    await store.close()


def make_limiter(storage, **rules) -> RateLimiter:
    return RateLimiter(storage, SECRET, rules)


def make_guard(storage, *, rules=None, delays=(30, 60, 120, 300, 600), budget=1000,
               budget_window=3600, hook=None) -> SmsGuard:
    limiter = make_limiter(storage, **(rules or {}))
    extra = {"on_breaker_trip": hook} if hook else {}
    return SmsGuard(limiter, PhonePolicy("FI", EU_EEA), resend_delays=delays,
                    resend_window=3600, budget=budget, budget_window=budget_window, **extra)


async def sends(guard, attempts) -> list[object]:
    """Each attempt's outcome: None when allowed, else the exception."""
    outcomes = []
    for ip, number in attempts:
        try:
            await guard.check_send(ip=ip, number_e164=number)
            outcomes.append(None)
        except RateLimited as exc:
            outcomes.append(exc)
    return outcomes


# --- RateLimiter ---------------------------------------------------------------------------

async def test_hits_up_to_the_limit_then_refuses_with_retry_after(storage):
    limiter = make_limiter(storage, login_per_ip="10/minute")
    for _ in range(10):
        await limiter.hit("login_per_ip", "198.51.100.7")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit("login_per_ip", "198.51.100.7")
    assert 0 < caught.value.retry_after <= 60
    assert caught.value.rule == "login_per_ip"
    await limiter.hit("login_per_ip", "198.51.100.8")  # another key has its own counter


async def test_test_counts_nothing_and_refusals_do_not_extend_the_wait(storage, clock):
    limiter = make_limiter(storage, login_per_account="2/minute")
    for _ in range(5):
        await limiter.test("login_per_account", "acct-1")
    await limiter.hit("login_per_account", "acct-1")
    await limiter.hit("login_per_account", "acct-1")
    clock.advance(40)
    for _ in range(20):  # hammering a full window does not push it further out
        with pytest.raises(RateLimited) as caught:
            await limiter.hit("login_per_account", "acct-1")
    assert caught.value.retry_after <= 20
    with pytest.raises(RateLimited):
        await limiter.test("login_per_account", "acct-1")
    clock.advance(21)
    await limiter.hit("login_per_account", "acct-1")


async def test_every_limit_of_a_rule_holds(storage, clock):
    limiter = make_limiter(storage, sms_per_number="3/minute;5/hour")
    for _ in range(3):
        await limiter.hit("sms_per_number", "+358401234567")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit("sms_per_number", "+358401234567")
    assert caught.value.retry_after <= 60
    clock.advance(61)
    await limiter.hit("sms_per_number", "+358401234567")
    await limiter.hit("sms_per_number", "+358401234567")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit("sms_per_number", "+358401234567")
    assert 60 < caught.value.retry_after <= 3600 - 61


async def test_parallel_hits_let_exactly_the_limit_through(storage):
    limiter = make_limiter(storage, login_per_ip="10/minute")

    async def one() -> bool:
        try:
            await limiter.hit("login_per_ip", "203.0.113.9")
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert results.count(True) == 10


async def test_clear_forgets_a_key(storage):
    limiter = make_limiter(storage, login_per_account="1/hour")
    await limiter.hit("login_per_account", "acct-2")
    with pytest.raises(RateLimited):
        await limiter.hit("login_per_account", "acct-2")
    await limiter.clear("login_per_account", "acct-2")
    await limiter.hit("login_per_account", "acct-2")


async def test_redis_holds_no_numbers_or_addresses(redis_storage):
    guard = make_guard(redis_storage)
    await guard.check_send(ip="198.51.100.23", number_e164="+358401234567", account_id="acct-77")
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    keys = [key.decode() for key in await client.keys("*")]
    await client.aclose()
    assert keys
    for key in keys:
        for secret in ("358401234567", "40123", "198.51.100", "acct-77"):
            assert secret not in key, key


def test_rules_table_rejects_unknown_names_and_bad_strings():
    assert set(compile_rules()) >= {"sms_per_number", "sms_per_prefix", "sms_per_ip",
                                    "sms_per_account", "login_per_ip", "login_per_account",
                                    "otp_verify_per_destination"}
    with pytest.raises(ValueError, match="unknown"):
        compile_rules({"sms_per_planet": "1/minute"})
    with pytest.raises(ValueError, match="cannot parse"):
        compile_rules({"sms_per_ip": "lots"})


async def test_unknown_rule_is_a_programming_error():
    limiter = make_limiter(FailoverStorage(None))
    with pytest.raises(ValueError):
        await limiter.hit("no_such_rule", "x")


# --- Redis down ------------------------------------------------------------------------------

async def test_redis_down_degrades_to_memory_with_one_warning(caplog):
    store = FailoverStorage("redis://127.0.0.1:1/14", timeout=0.5)
    limiter = make_limiter(store, login_per_ip="3/minute")
    with caplog.at_level(logging.WARNING, logger="idp.ratelimit"):
        for _ in range(3):
            await limiter.hit("login_per_ip", "192.0.2.1")
        with pytest.raises(RateLimited):
            await limiter.hit("login_per_ip", "192.0.2.1")
        guard = SmsGuard(limiter, PhonePolicy("FI", EU_EEA), resend_delays=(30,),
                         resend_window=3600, budget=10)
        await guard.check_send(ip="192.0.2.2", number_e164="+358401234567")
    assert store.degraded and store.backend == "memory"
    warnings = [r for r in caplog.records if r.name == "idp.ratelimit"]
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()
    await store.close()


async def test_redis_is_used_again_when_it_answers(redis_storage, caplog):
    storage = redis_storage
    storage.degraded, storage._next_probe = True, 0.0  # as after an outage
    limiter = make_limiter(storage, login_per_ip="1/minute")
    with caplog.at_level(logging.WARNING, logger="idp.ratelimit"):
        await limiter.hit("login_per_ip", "192.0.2.9")
    assert storage.backend == "redis"
    assert "answers again" in caplog.records[-1].getMessage()


# --- SmsGuard --------------------------------------------------------------------------------

async def test_eleventh_sms_to_one_number_within_the_window_is_refused(storage, clock):
    guard = make_guard(storage, rules={"sms_per_number": "10/hour"}, delays=(1,))
    for n in range(10):
        await guard.check_send(ip=f"198.51.100.{n}", number_e164="+358401234567")
        clock.advance(13)  # apart enough for the per-prefix 5/minute
    with pytest.raises(RateLimited) as caught:
        await guard.check_send(ip="198.51.100.99", number_e164="+358401234567")
    assert caught.value.rule == "sms_per_number"
    assert 3600 - 140 < caught.value.retry_after <= 3600


async def test_ten_requests_in_a_minute_with_the_default_rules(storage, clock):
    guard = make_guard(storage)
    outcomes = []
    for _ in range(10):
        outcomes += await sends(guard, [("198.51.100.5", "+358401234567")])
        clock.advance(6)
    assert outcomes.count(None) == 2  # at 0 s and, after the 30 s delay, at 30 s
    assert all(isinstance(o, RateLimited) and o.retry_after > 0 for o in outcomes if o)


async def test_resends_to_one_number_wait_growing_delays(storage, clock):
    guard = make_guard(storage, delays=(30, 60, 120, 300, 600))
    number, waits = "+358401234567", []
    await guard.check_send(ip="198.51.100.5", number_e164=number)
    for _ in range(6):
        with pytest.raises(RateLimited) as caught:
            await guard.check_send(ip="198.51.100.5", number_e164=number)
        waits.append(caught.value.retry_after)
        clock.advance(caught.value.retry_after - 1)
        with pytest.raises(RateLimited):  # a second early is still early
            await guard.check_send(ip="198.51.100.5", number_e164=number)
        clock.advance(1)
        await guard.check_send(ip="198.51.100.5", number_e164=number)
    assert waits == [30, 60, 120, 300, 600, 600]


async def test_parallel_sends_to_one_number_send_once(storage):
    guard = make_guard(storage)
    outcomes = await asyncio.gather(*(
        sends(guard, [(f"198.51.100.{n}", "+358401234567")]) for n in range(10)))
    assert [o for [o] in outcomes].count(None) == 1


async def test_sequential_numbers_are_throttled_per_prefix(storage):
    guard = make_guard(storage)  # sms_per_prefix 5/minute
    outcomes = await sends(guard, [(f"203.0.113.{n}", f"+35840123450{n}") for n in range(8)])
    assert outcomes[:5] == [None] * 5
    assert all(o.rule == "sms_per_prefix" for o in outcomes[5:])
    await guard.check_send(ip="203.0.113.50", number_e164="+358409876543")  # another prefix


async def test_one_ip_cycling_100_numbers_is_throttled(storage):
    guard = make_guard(storage)  # sms_per_ip 5/minute
    numbers = [f"+358401{n:03d}{n:03d}" for n in range(100)]  # 100 prefixes
    outcomes = await sends(guard, [("198.51.100.77", number) for number in numbers])
    assert outcomes.count(None) == 5
    assert {o.rule for o in outcomes if o} == {"sms_per_ip"}


async def test_an_ipv6_client_is_one_slash_64(storage):
    guard = make_guard(storage)
    numbers = [f"+35850{n}123456" for n in range(8)]
    outcomes = await sends(guard, [(f"2001:db8:1:2::{n:x}", number)
                                   for n, number in enumerate(numbers)])
    assert outcomes.count(None) == 5
    assert ip_key("2001:db8:1:2:aaaa::1") == ip_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert ip_key("::ffff:198.51.100.1") == "198.51.100.1"


async def test_per_account_limit(storage, clock):
    guard = make_guard(storage, rules={"sms_per_account": "2/hour"})
    for n in range(2):
        await guard.check_send(ip=f"198.51.100.{n}", number_e164=f"+35840{n}234567",
                               account_id="acct-5")
    with pytest.raises(RateLimited) as caught:
        await guard.check_send(ip="198.51.100.9", number_e164="+358409234567", account_id="acct-5")
    assert caught.value.rule == "sms_per_account"


async def test_destination_outside_the_allow_list_is_refused_before_anything_counts(storage):
    guard = make_guard(storage, budget=1)
    for number in ("+23276123456", "+8801712345678"):
        with pytest.raises(CountryNotAllowed):
            await guard.check_send(ip="198.51.100.1", number_e164=number)
    await guard.check_send(ip="198.51.100.1", number_e164="+36301234567")  # budget untouched


async def test_budget_breaker_trips_once_reports_and_closes_after_the_window(storage):
    trips: list[BreakerTrip] = []

    async def hook(trip: BreakerTrip) -> None:
        trips.append(trip)

    guard = make_guard(storage, budget=3, budget_window=1, hook=hook)
    attempts = [(f"198.51.100.{n}", f"+35845{n}234567") for n in range(6)]
    outcomes = await sends(guard, attempts)
    assert outcomes[:3] == [None] * 3
    assert all(isinstance(o, SmsBudgetExceeded) and o.retry_after >= 1 for o in outcomes[3:])
    assert len(trips) == 1 and trips[0].budget == 3 and trips[0].window_seconds == 1
    await asyncio.sleep(1.2)  # the window itself passes: Redis expires keys in real time
    await guard.check_send(ip="198.51.100.200", number_e164="+358469876543")
    assert len(trips) == 1


async def test_breaker_trip_is_logged_by_default(storage, caplog):
    guard = make_guard(storage, budget=1)
    with caplog.at_level(logging.WARNING, logger="idp.ratelimit"):
        await sends(guard, [("198.51.100.1", "+358401111111"), ("198.51.100.2", "+358402222222"),
                            ("198.51.100.3", "+358403333333")])
    tripped = [r for r in caplog.records if "breaker tripped" in r.getMessage()]
    assert len(tripped) == 1
    assert tripped[0].fields["event"] == "sms_budget_breaker_tripped"
