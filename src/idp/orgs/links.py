"""Single-use links sent by email (invitations, ownership offers): random tokens, stored only as
keyed hashes, and the two refusals a link can meet.

A token is `random_token(prefix)`: 256 random bits behind a recognisable prefix (`idpinv_`,
`idpown_`), so a leaked one is easy to spot, and the access log redacts the path segment that
carries it (observability.py). The database holds HMAC(key, token) only.
"""

from __future__ import annotations

import re
from datetime import datetime

from idp.orgs.errors import OrgError, OrgNotFound
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


def expiry_text(moment: datetime) -> str:
    """`2025-06-30 14:05 UTC`: how an email states when its link stops working (the same in every
    language, so no date format per locale)."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")
