"""Request parameters as OAuth reads them."""

from __future__ import annotations

from collections.abc import Iterable

from idp.oauth.errors import InvalidRequest

MAX_PARAMETER_LENGTH = 4096  # a 2 KB state and long nonces pass; megabyte values do not


def single_valued(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted
    from the request ... Request and response parameters MUST NOT be included more than once."

    Raises InvalidRequest naming the first repeated parameter; see `repeated()` for callers that
    must first decide where the error may be sent.
    """
    values: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in items:
        if name in seen:
            raise InvalidRequest(f"parameter repeated: {name}")
        seen.add(name)
        if len(value) > MAX_PARAMETER_LENGTH:
            raise InvalidRequest(f"parameter too long: {name}")
        if value != "":
            values[name] = value
    return values


def repeated(items: Iterable[tuple[str, str]]) -> set[str]:
    seen: set[str] = set()
    twice: set[str] = set()
    for name, _ in items:
        (twice if name in seen else seen).add(name)
    return twice
