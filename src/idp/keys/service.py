"""Signing keys: generate, encrypt at rest, rotate, publish (JWKS), sign and verify.

Only this module signs and verifies with joserfc. Every algorithm family has one *active* key
(signs), one *next* key (published but not yet signing, so relying parties have cached it before
the first token it signs) and any number of *retired* keys (published until the last token they
signed has expired). `rotate()` moves next → active → retired and creates a new next key.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from datetime import timedelta

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey, import_key
from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.service import SYSTEM, Actor, AuditLog
from idp.db import new_id, utcnow
from idp.keys.crypto import seal, unseal
from idp.keys.models import SigningKey

# Key families we sign with. RFC 9864 names the Ed25519 algorithm "Ed25519" and deprecates the
# polymorphic "EdDSA"; clients may register either, both are served by the Ed25519 key.
FAMILIES = ("RS256", "ES256", "Ed25519")
ALG_FAMILY = {"RS256": "RS256", "ES256": "ES256", "Ed25519": "Ed25519", "EdDSA": "Ed25519"}
SIGNING_ALGS = tuple(ALG_FAMILY)

ACTIVE, NEXT, RETIRED = "active", "next", "retired"
# PostgreSQL advisory lock that serialises key creation and rotation across nodes and processes.
_KEY_CHANGE_LOCK = 0x69647000_6b657973  # "idp\0keys"


class TokenInvalid(Exception):
    """A JWT that is malformed, badly signed, of the wrong type or (when checked) expired."""


def _generate(family: str):
    if family == "RS256":
        return RSAKey.generate_key(2048)
    if family == "ES256":
        return ECKey.generate_key("P-256")
    return OKPKey.generate_key("Ed25519")


def _key_type(family: str) -> str:
    return {"RS256": "RSA", "ES256": "EC", "Ed25519": "OKP"}[family]


@dataclass
class _Snapshot:
    loaded_at: float = 0.0
    active: dict = field(default_factory=dict)  # family -> (kid, key)
    published: dict = field(default_factory=dict)  # kid -> public key
    jwks_bytes: bytes = b'{"keys":[]}'


class KeyRing:
    """Per-process cache of the keys in the database, refreshed every `cache_seconds`."""

    def __init__(self, kek: bytes, *, retire_after: timedelta, cache_seconds: float = 5.0) -> None:
        self._kek = kek
        self._retire_after = retire_after
        self._cache_seconds = cache_seconds
        self._snapshot = _Snapshot()
        self._reloading = False
        self._private_by_kid: dict[str, object] = {}
        # The audit log (set by Services): key.created, key.rotated and key.retired events.
        self.audit: AuditLog | None = None

    # ---- persistence -------------------------------------------------------------------------

    def _new_row(self, family: str, status: str) -> SigningKey:
        key = _generate(family)
        kid = new_id()
        public = key.as_dict(private=False)
        public.update({"kid": kid, "use": "sig"})
        if family != "Ed25519":  # the OKP key serves both "Ed25519" and "EdDSA": no single alg
            public["alg"] = family
        pem = key.as_pem(private=True)
        return SigningKey(
            kid=kid, alg=family, status=status, public_jwk=public,
            private_key_enc=seal(self._kek, pem, kid),
            activated_at=utcnow() if status == ACTIVE else None,
        )

    async def _lock_key_changes(self, db: AsyncSession) -> None:
        """One key change at a time. Without it, two concurrent rotations on PostgreSQL each retire
        the active key and neither sees the other's new next key, leaving no active key at all;
        and workers starting together on an empty database each create their own keys. SQLite
        needs nothing: every write transaction there begins with BEGIN IMMEDIATE."""
        if db.get_bind().dialect.name == "postgresql":
            await db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _KEY_CHANGE_LOCK})

    async def _record(self, db: AsyncSession, actor: Actor, action: str, row: SigningKey) -> None:
        """An audit event naming the key, never its material."""
        if self.audit is not None:
            await self.audit.record(db, actor, action, target_type="signing_key", target_id=row.kid,
                                    after={"kid": row.kid, "alg": row.alg, "status": row.status})

    async def ensure_keys(self, db: AsyncSession, *, actor: Actor = SYSTEM) -> bool:
        """Create an active and a next key for every family that lacks them. True if any was made."""
        await self._lock_key_changes(db)
        rows = (await db.execute(select(SigningKey).where(SigningKey.status.in_((ACTIVE, NEXT))))).scalars()
        have = {(row.alg, row.status) for row in rows}
        created = [self._new_row(family, status) for family in FAMILIES for status in (ACTIVE, NEXT)
                   if (family, status) not in have]
        if created:
            db.add_all(created)
            await db.flush()
            for row in created:
                await self._record(db, actor, "key.created", row)
            self.invalidate()
        return bool(created)

    async def rotate(self, db: AsyncSession, *, actor: Actor = SYSTEM) -> list[SigningKey]:
        """Promote each family's next key; retire the old active one. Returns the new active keys."""
        await self.ensure_keys(db, actor=actor)  # takes the key-change lock, held until this transaction ends
        now = utcnow()
        rows = (await db.execute(
            select(SigningKey).where(SigningKey.status.in_((ACTIVE, NEXT))).with_for_update()
        )).scalars().all()
        promoted, retired = [], []
        for row in rows:
            if row.status == ACTIVE:
                row.status, row.retired_at, row.expires_at = RETIRED, now, now + self._retire_after
                retired.append(row)
            else:
                row.status, row.activated_at = ACTIVE, now
                promoted.append(row)
        created = [self._new_row(family, NEXT) for family in FAMILIES]
        db.add_all(created)
        await db.flush()
        for action, changed in (("key.retired", retired), ("key.rotated", promoted), ("key.created", created)):
            for row in sorted(changed, key=lambda r: FAMILIES.index(r.alg)):
                await self._record(db, actor, action, row)
        self.invalidate()
        return promoted

    async def list_keys(self, db: AsyncSession) -> list[SigningKey]:
        return list((await db.execute(select(SigningKey).order_by(SigningKey.created_at))).scalars())

    # ---- cache -------------------------------------------------------------------------------

    def invalidate(self) -> None:
        self._snapshot.loaded_at = 0.0

    @property
    def loaded(self) -> bool:
        """True once the keys were read from the database at least once."""
        return bool(self._snapshot.published)

    def keep_for_now(self) -> None:
        """Trust the keys held for another cache period (the database could not be read)."""
        self._snapshot.loaded_at = time.monotonic()

    @property
    def stale(self) -> bool:
        """True when `load` would read the database."""
        return time.monotonic() - self._snapshot.loaded_at >= self._cache_seconds

    async def load(self, db: AsyncSession) -> None:
        """Refresh the cache if it is older than `cache_seconds` (another node may have rotated)."""
        if not self.stale:
            return
        if self._reloading and self.loaded:
            # Another request is reading them now: the keys held are one cache period old at
            # most. Without this, every request in flight when the cache ran out would queue on
            # the same read (on SQLite, on the write lock behind the sign-ins: a latency spike).
            return
        self._reloading = True
        try:
            await self._reload(db)
        finally:
            self._reloading = False

    async def _reload(self, db: AsyncSession) -> None:
        now = utcnow()
        rows = (await db.execute(
            select(SigningKey).where(or_(SigningKey.expires_at.is_(None), SigningKey.expires_at > now))
            .order_by(SigningKey.created_at)
        )).scalars().all()
        snapshot = _Snapshot(loaded_at=time.monotonic())
        for row in rows:
            snapshot.published[row.kid] = import_key(row.public_jwk)
            if row.status == ACTIVE:
                snapshot.active[row.alg] = (row.kid, self._private(row))
        # Active keys first, so a client that takes the first key of a type gets the signing one.
        ordered = sorted(rows, key=lambda r: {ACTIVE: 0, NEXT: 1}.get(r.status, 2))
        snapshot.jwks_bytes = json.dumps({"keys": [r.public_jwk for r in ordered]}, separators=(",", ":")).encode()
        self._snapshot = snapshot

    def _private(self, row: SigningKey):
        if row.kid not in self._private_by_kid:
            pem = unseal(self._kek, row.private_key_enc, row.kid)
            self._private_by_kid[row.kid] = import_key(pem, _key_type(row.alg))
        return self._private_by_kid[row.kid]

    @property
    def jwks_bytes(self) -> bytes:
        return self._snapshot.jwks_bytes

    # ---- JOSE --------------------------------------------------------------------------------

    def sign(self, claims: dict, *, alg: str = "RS256", typ: str = "JWT") -> str:
        kid, key = self._snapshot.active[ALG_FAMILY[alg]]
        return jwt.encode({"alg": alg, "typ": typ, "kid": kid}, claims, key, algorithms=[alg])

    def verify(self, token: str, *, typ: str | None = None, issuer: str | None = None,
               check_expiry: bool = True) -> dict:
        """Verify a JWT we signed. Raises TokenInvalid. Only our published keys are used: a
        `jwk`, `jku` or `x5u` header is never trusted (Authlib CVE-2026-27962 class)."""
        try:
            header = json.loads(_b64decode(token.split(".")[0]))
            key = self._snapshot.published.get(header.get("kid"))
            alg = header.get("alg")
            if key is None or alg not in SIGNING_ALGS:
                raise TokenInvalid("unknown key or algorithm")
            if typ is not None and str(header.get("typ", "")).lower() not in (typ, f"application/{typ}"):
                raise TokenInvalid("wrong token type")
            token_obj = jwt.decode(token, key, algorithms=[alg])
        except (JoseError, ValueError, IndexError, TypeError, AttributeError) as exc:
            raise TokenInvalid(str(exc)) from exc
        claims = token_obj.claims
        if issuer is not None and claims.get("iss") != issuer:
            raise TokenInvalid("wrong issuer")
        if check_expiry and not (isinstance(claims.get("exp"), int) and claims["exp"] > time.time()):
            raise TokenInvalid("expired")
        return claims


def unverified_claims(token: str) -> dict:
    """The claims of a JWT before its signature is checked: only to find which keys to check it
    with (the client of a private_key_jwt assertion). Raises TokenInvalid."""
    try:
        claims = json.loads(_b64decode(token.split(".")[1]))
    except (IndexError, ValueError) as exc:
        raise TokenInvalid("malformed JWT") from exc
    if not isinstance(claims, dict):
        raise TokenInvalid("JWT claims are not an object")
    return claims


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


ASSERTION_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                  "Ed25519", "EdDSA")


def verify_with_client_keys(token: str, jwks: dict) -> dict:
    """Verify a JWT signed by a client (private_key_jwt) with the keys it registered.

    Only asymmetric algorithms, only the registered keys; header-supplied keys are ignored.
    Returns the claims; raises TokenInvalid. Claim checks are the caller's.
    """
    try:
        header = json.loads(_b64decode(token.split(".")[0]))
        alg = header.get("alg")
        if alg not in ASSERTION_ALGS:
            raise TokenInvalid("algorithm not allowed")
        return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=[alg]).claims
    except (JoseError, ValueError, IndexError, TypeError, AttributeError) as exc:
        raise TokenInvalid(str(exc)) from exc
