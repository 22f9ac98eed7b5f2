"""The refresh grant's common case on the database driver (db/driver.py), instead of the ORM
path's statements through SQLAlchemy, which cost four times the grant's two signatures
(bench/README.md): on PostgreSQL one statement; on SQLite one transaction of three statements in
the file's writer thread, one hop off the event loop.

It applies when the request has no `scope` or `organization` parameter and the client sells no
product (so there are no organisation claims to compute), and it rotates only a token that is
this client's, unused, unexpired, of a live family that speaks for no organisation, of an enabled
person: the same rules refresh_token.handle checks one by one, as the conditions of one
statement. Anything else (every refusal included) returns None and changes nothing; the ORM path
then runs and says which rule failed. So does a SQLite request whose session already holds the
write lock (it read the keys or the client in this request, which a warm node does not)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from types import SimpleNamespace

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.accounts.service import CLAIM_COLUMNS
from idp.db.driver import Converter, SqliteWriter, postgres_fetch
from idp.oauth.models import Grant, RefreshToken

_GRANT = [Grant.__table__.c[name] for name in ("id", "user_id", "client_id", "session_id", "auth_time", "amr", "acr")]
_USER = [User.__table__.c[name] for name in CLAIM_COLUMNS]
_EXPIRES_AT = RefreshToken.__table__.c.expires_at

_SELECTED = ", ".join(["t.scope"] + [f"g.{c.name} AS g_{c.name}" for c in _GRANT]
                      + [f"u.{c.name} AS u_{c.name}" for c in _USER])
_JOINED = "refresh_tokens t JOIN grants g ON g.id = t.grant_id JOIN users u ON u.id = g.user_id"
_RULES = ("t.token_hash = {hash} AND t.client_id = {client} AND t.used_at IS NULL AND t.expires_at > {now}"
          " AND g.revoked_at IS NULL AND g.org_id IS NULL AND u.disabled_at IS NULL")
# Where each part starts in a row both dialects return: presented hash, scope, grant, person.
_SCOPE_AT, _GRANT_AT = 1, 2
_USER_AT = _GRANT_AT + len(_GRANT)
_SUCCESSOR_COLUMNS = "token_hash, grant_id, client_id, scope, created_at, expires_at"

# One statement, atomic on its own. Of parallel refreshes with one token, the first locks the row
# (FOR UPDATE); the others wait, then find it used (PostgreSQL re-checks the conditions on the
# updated row) and return nothing: the ORM path sees the reuse and revokes the family.
POSTGRES_ROTATION = f"""
WITH presented AS (
    SELECT t.token_hash AS presented_hash, {_SELECTED} FROM {_JOINED}
    WHERE {_RULES.format(hash="$1", client="$2", now="$3")}
    FOR UPDATE OF t
), spent AS (
    UPDATE refresh_tokens SET used_at = $3 FROM presented
    WHERE refresh_tokens.token_hash = presented.presented_hash AND refresh_tokens.used_at IS NULL
    RETURNING refresh_tokens.token_hash
), successor AS (
    INSERT INTO refresh_tokens ({_SUCCESSOR_COLUMNS})
    SELECT $4, p.g_id, p.g_client_id, p.scope, $3, $5 FROM presented p JOIN spent s ON s.token_hash = p.presented_hash
)
SELECT p.* FROM presented p JOIN spent s ON s.token_hash = p.presented_hash
"""
# SQLite: the writer's transaction begins with BEGIN IMMEDIATE, so no other writer runs between
# these statements.
_SQLITE_PRESENTED = f"SELECT t.token_hash, {_SELECTED} FROM {_JOINED} WHERE {_RULES.format(hash='?', client='?', now='?')}"
_SQLITE_SPEND = "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL"
_SQLITE_SUCCESSOR = f"INSERT INTO refresh_tokens ({_SUCCESSOR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"


@dataclass
class Rotated:
    """The spent token's scope, and the columns of its family and its person that minting the
    tokens reads (user_tokens), as plain attributes: not rows of any session."""

    scope: str
    grant: SimpleNamespace
    user: SimpleNamespace


@dataclass
class Successor:
    token_hash: str
    expires_at: datetime


def applies(params: dict[str, str], product_id: str | None) -> bool:
    return "scope" not in params and "organization" not in params and product_id is None


async def rotate(db: AsyncSession, presented_hash: str, client_id: str, now: datetime,
                 successor: Successor, writer: SqliteWriter | None) -> Rotated | None:
    """Spend the presented token and insert its successor, or change nothing and return None."""
    dialect = db.bind.dialect
    stamp = Converter.binder(dialect, _EXPIRES_AT)
    if dialect.name == "postgresql":
        rows = await postgres_fetch(db, POSTGRES_ROTATION, presented_hash, client_id, stamp(now),
                                    successor.token_hash, stamp(successor.expires_at))
        found = rows[0] if rows else None
    else:
        found = await _rotate_sqlite(db, writer, presented_hash, client_id, stamp(now), successor, stamp)
    if found is None:
        return None
    grants, users = _converters(dialect)
    return Rotated(scope=found[_SCOPE_AT], grant=SimpleNamespace(**grants.read(found[_GRANT_AT:_USER_AT])),
                   user=SimpleNamespace(**users.read(found[_USER_AT:])))


@lru_cache(maxsize=16)  # one dialect per engine: a process has one or two
def _converters(dialect: Dialect) -> tuple[Converter, Converter]:
    return Converter(dialect, _GRANT), Converter(dialect, _USER)


async def _rotate_sqlite(db: AsyncSession, writer: SqliteWriter | None, presented_hash: str, client_id: str,
                         now, successor: Successor, stamp):
    if writer is None or db.in_transaction():
        # No file to share (an in-memory database), or the session holds SQLite's write lock
        # (BEGIN IMMEDIATE) and the writer would wait for it: the ORM path, in that session.
        return None

    def statements(connection):
        found = connection.execute(_SQLITE_PRESENTED, (presented_hash, client_id, now)).fetchone()
        if found is None:
            return None
        connection.execute(_SQLITE_SPEND, (now, presented_hash))
        connection.execute(_SQLITE_SUCCESSOR, (successor.token_hash, found[_GRANT_AT], found[_GRANT_AT + 2],
                                               found[_SCOPE_AT], now, stamp(successor.expires_at)))
        return found

    return await writer.transaction(statements)
