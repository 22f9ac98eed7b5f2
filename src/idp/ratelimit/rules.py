"""Every named rate-limit rule, in one table.

A rule is a `limits` string; several limits joined by `;` must all hold. Operators override any
rule by name with `IDP_RATE_LIMITS='{"sms_per_ip": "5/minute;20/hour"}'`.

Windows are moving windows: "3/minute" means at most 3 in any 60 seconds, not 3 per clock
minute, so a burst across a minute boundary is not twice the limit.
"""

from __future__ import annotations

from collections.abc import Mapping

from limits import RateLimitItem, parse_many

DEFAULT_RULES: dict[str, str] = {
    # SMS (SECURITY-CHECKLIST 92-93). Resends of one number also wait growing delays (sms.py).
    "sms_per_number": "3/minute;10/hour;20/day",
    # A prefix is E.164 minus its last 3 digits (1000 numbers): sequential-number pumping.
    "sms_per_prefix": "5/minute;20/hour;60/day",
    # Per client IP (IPv6 per /64). Generous enough for carrier-grade NAT, far below 100 numbers.
    "sms_per_ip": "5/minute;20/hour;50/day",
    "sms_per_account": "3/minute;10/hour;20/day",
    # Sign-in (item 96). The per-account rule counts failures per account AND client address, so
    # it slows guessing without letting an attacker keep the account closed for its owner, who
    # signs in from another address.
    "login_per_ip": "20/minute;200/hour",
    "login_per_account": "10/minute;50/hour",
    # Sign-in codes by email per address and client address (known or not, so a refusal says
    # nothing about accounts; the code service's resend cooldown bounds each address overall).
    "code_per_address": "3/minute;10/hour",
    # Self-registration attempts per client address (each costs a password hash and a message).
    "registration_per_ip": "10/hour;30/day",
    # Code verification per destination (number or email), on top of the otp service's
    # 5 wrong tries per code.
    "otp_verify_per_destination": "10/minute;30/hour",
}


def compile_rules(overrides: Mapping[str, str] | None = None) -> dict[str, list[RateLimitItem]]:
    """The default table with overrides applied; a bad string or unknown name fails at startup."""
    table = dict(DEFAULT_RULES)
    for name, value in (overrides or {}).items():
        if name not in DEFAULT_RULES:
            known = ", ".join(DEFAULT_RULES)
            raise ValueError(f"unknown rate-limit rule {name!r} (known: {known})")
        table[name] = value
    compiled = {}
    for name, value in table.items():
        try:
            compiled[name] = parse_many(value)
        except ValueError:
            raise ValueError(f"rate-limit rule {name!r}: cannot parse {value!r}") from None
    return compiled
