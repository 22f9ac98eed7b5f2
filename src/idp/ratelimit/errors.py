"""Typed refusals. The route layer maps them to 429 with `Retry-After` (RFC 6585 §4).

They carry no account state: the message and `retry_after` are the same whether or not an
account exists (SECURITY-CHECKLIST item 97). `rule` is for logs, never for the page.
"""

from __future__ import annotations


class RateLimited(Exception):
    def __init__(self, retry_after: int, rule: str = "") -> None:
        super().__init__(f"too many requests; retry after {retry_after} s")
        self.retry_after = max(1, int(retry_after))  # whole seconds, as Retry-After wants
        self.rule = rule


class SmsBudgetExceeded(RateLimited):
    """The global SMS budget is spent: the breaker is open and every SMS waits for the window."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after, rule="sms_budget")
        self.args = (f"SMS paused: budget spent; retry after {self.retry_after} s",)
