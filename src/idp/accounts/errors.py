"""Errors of the accounts domain (in their own module so policy, factors and service share them)."""

from __future__ import annotations


class AccountError(Exception):
    """A request about an account that cannot be carried out (message is safe to show)."""


class AccountDisabled(AccountError):
    """An operator or integrator disabled the account (users.disabled_at): nothing may be sent to
    it or set on it that would let someone sign in (reset links, temporary passwords)."""

    def __init__(self) -> None:
        super().__init__("the account is disabled")
