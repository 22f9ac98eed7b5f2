"""Single-use links sent by email (invitations, ownership offers): random tokens, stored only as
keyed hashes, the two refusals a link can meet, and the mechanics of a table of such links.

A link row has `token_hash`, `expires_at`, `accepted_at` and one column that closes it unaccepted
(`revoked_at` for invitations, `withdrawn_at` for offers). Its state is read from them, never stored:

    pending ──accept──▶ accepted
       ├──close──▶ revoked / withdrawn
       └──(expires_at passes)──▶ expired

A token is `random_token(prefix)`: 256 random bits behind a recognisable prefix (`idpinv_`,
`idpown_`), so a leaked one is easy to spot, and the access log redacts the path segment that
carries it (observability.py). The database holds HMAC(key, token) only.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from idp.orgs.errors import OrgError, OrgNotFound
from idp.orgs.models import Invitation, Organisation, OwnershipOffer
from idp.security import keyed_hash, random_token
from idp.ui.i18n import N_

INVITATION_PREFIX = "idpinv_"
OFFER_PREFIX = "idpown_"
# What a link token may look like; anything else is refused before touching the database.
_TOKEN = re.compile(r"idp(?:inv|own)_[A-Za-z0-9_-]{20,80}")

LINK_NOT_VALID = N_("This link is not valid. Check that you copied the whole link.")


class LinkNotFound(OrgNotFound):
    """No invitation or offer has this token (mistyped, or never existed)."""

    def __init__(self, message: str = LINK_NOT_VALID) -> None:
        super().__init__(message)


class LinkGone(OrgError):
    """The invitation or offer existed but is spent: accepted, revoked/withdrawn, or expired."""

    status = 410


class LinkTokens:
    """Makes and hashes the tokens of one kind of link."""

    def __init__(self, key: bytes, prefix: str) -> None:
        self.key = key
        self.prefix = prefix

    def new(self) -> tuple[str, str]:
        """(token for the email, hash for the database)."""
        token = random_token(self.prefix)
        return token, self.hash(token)

    def hash(self, token: str) -> str:
        return keyed_hash(self.key, token)

    def lookup_hash(self, token: object) -> str | None:
        """The hash to look for, or None when `token` cannot be one of ours (wrong shape)."""
        if not isinstance(token, str) or not token.startswith(self.prefix) or not _TOKEN.fullmatch(token):
            return None
        return self.hash(token)


L = TypeVar("L", Invitation, OwnershipOffer)


class Links(Generic[L]):
    """One table of single-use links: its tokens, its states, and the conditional UPDATEs that
    close or consume a link atomically (of parallel requests exactly one wins)."""

    def __init__(self, model: type[L], closed_at: InstrumentedAttribute, closed_state: str,
                 key: bytes, prefix: str) -> None:
        self.model = model
        self.closed_at = closed_at
        self.closed_state = closed_state
        self.tokens = LinkTokens(key, prefix)

    def state(self, link: L, now: datetime) -> str:
        """pending | expired | accepted | the closed state (revoked, withdrawn)."""
        if link.accepted_at is not None:
            return "accepted"
        if getattr(link, self.closed_at.key) is not None:
            return self.closed_state
        if link.expires_at <= now:
            return "expired"
        return "pending"

    def open(self) -> tuple:
        """Neither accepted nor closed (an expired link is still open: it may be resent or closed)."""
        return self.model.accepted_at.is_(None), self.closed_at.is_(None)

    def live(self, now: datetime) -> tuple:
        """Open and not expired: the link still works."""
        return *self.open(), self.model.expires_at > now

    async def by_token(self, db: AsyncSession, token: object) -> tuple[L, Organisation]:
        """The link a token names, with its organisation; LinkNotFound for any other token."""
        token_hash = self.tokens.lookup_hash(token)
        row = (await db.execute(select(self.model, Organisation).join(
            Organisation, Organisation.id == self.model.org_id).where(
            self.model.token_hash == token_hash))).first() if token_hash else None
        if row is None:
            raise LinkNotFound()
        return row[0], row[1]

    async def close_open(self, db: AsyncSession, now: datetime, *where: Any) -> list[str]:
        """Close every open link matching `where`; their ids (for the audit log)."""
        ids = (await db.execute(select(self.model.id).where(*where, *self.open()))).scalars().all()
        if ids:
            await db.execute(update(self.model).where(self.model.id.in_(ids)).values({self.closed_at: now}))
        return list(ids)

    async def update_open(self, db: AsyncSession, link_id: str, **values: Any) -> bool:
        """Change an open link (close or resend it); False when it was accepted or closed meanwhile."""
        done = await db.execute(update(self.model).where(self.model.id == link_id, *self.open()).values(**values))
        return done.rowcount == 1

    async def consume(self, db: AsyncSession, link_id: str, now: datetime, **values: Any) -> bool:
        """Accept a live link, once: False when it was spent, closed or expired meanwhile."""
        done = await db.execute(update(self.model).where(self.model.id == link_id, *self.live(now))
                                .values(accepted_at=now, **values))
        return done.rowcount == 1


def expiry_text(moment: datetime) -> str:
    """`2025-06-30 14:05 UTC`: how an email states when its link stops working (the same in every
    language, so no date format per locale)."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")
