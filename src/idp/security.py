"""Small primitives shared by every domain: random tokens and their hashes at rest."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def random_token(prefix: str = "", nbytes: int = 32) -> str:
    """A 256-bit (default) URL-safe secret; the prefix makes a leaked token recognisable."""
    return prefix + secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy token: what we store instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_hash(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
