"""Errors of the accounts domain (in their own module so policy, factors and service share them)."""

from __future__ import annotations


class AccountError(Exception):
    """A request about an account that cannot be carried out (message is safe to show)."""
