"""Every secret the test run saw: codes the SMTP server and SMS gateway received, temporary
passwords, passwords the tests typed, and the tokens and codes the relying party was given.

tests/test_zz_log_hygiene.py, the last test of the run, looks for each of them in the log of the
whole run (conftest.py captures it). A value shorter than MIN_LENGTH is not kept: it would match
innocent text ("short" is a rejected password, not a secret).
"""

from __future__ import annotations

import re
import threading

MIN_LENGTH = 6

_seen: set[str] = set()
_lock = threading.Lock()  # the SMTP server and the SMS gateway run in threads of their own

# What a message carries: a one-time code (6–10 digits) or a generated temporary password
# (four groups of four Crockford base32 symbols).
_MESSAGE_SECRETS = re.compile(r"(?<![\w-])(\d{6,10}|(?:[0-9A-HJKMNP-TV-Z]{4}-){3}[0-9A-HJKMNP-TV-Z]{4})(?![\w-])")
# The token-endpoint and redirect fields that are bearer secrets.
SECRET_FIELDS = ("access_token", "refresh_token", "id_token", "code", "client_secret", "device_code")


def remember(value: object) -> None:
    if isinstance(value, str) and len(value) >= MIN_LENGTH:
        with _lock:
            _seen.add(value)


def remember_message(text: str) -> None:
    """Every code or temporary password in a delivered email or SMS."""
    for match in _MESSAGE_SECRETS.finditer(text or ""):
        remember(match.group(1))


def remember_fields(mapping: dict) -> None:
    """The bearer secrets of a token response or of a redirect's query."""
    if not isinstance(mapping, dict):
        return
    for name in SECRET_FIELDS:
        remember(mapping.get(name))


def remembered() -> frozenset[str]:
    with _lock:
        return frozenset(_seen)
