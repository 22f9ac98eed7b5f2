"""Keyset pagination for services: a page of rows ordered by (time, id) and the cursor of the next.

The cursor is opaque to callers: the sort position of the last row, base64url JSON. Keyset paging
never skips or repeats rows when rows are added between pages, and costs an index seek however
deep the page.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession


class InvalidCursor(ValueError):
    """A cursor we did not hand out (the API answers 400 invalid-cursor)."""


def encode_cursor(at: datetime, row_id: str) -> str:
    raw = json.dumps([at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(at)
        if not isinstance(row_id, str) or "\x00" in row_id or moment.tzinfo is None:
            raise ValueError
        return moment, row_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("use the next_cursor of a previous page") from None


async def paginate(db: AsyncSession, query: Select, *, time_column: Any, id_column: Any, limit: int,
                   cursor: str | None, newest_first: bool = False) -> tuple[list[Any], str | None]:
    """One page of `query` (a select of one entity) ordered by (time, id): the rows and the cursor
    of the next page, or None on the last page."""
    if cursor:
        at, row_id = decode_cursor(cursor)
        after = time_column < at if newest_first else time_column > at
        query = query.where(or_(after, and_(time_column == at, id_column > row_id)))
    order = time_column.desc() if newest_first else time_column.asc()
    rows = list((await db.execute(query.order_by(order, id_column.asc()).limit(limit + 1))).scalars())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(getattr(rows[-1], time_column.key), getattr(rows[-1], id_column.key))
