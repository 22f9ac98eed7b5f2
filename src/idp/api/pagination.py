"""Cursor pagination on the API: `?limit=50&cursor=...` → `{"items": [...], "next_cursor": ...}`.
The paging itself is db/paging.py's; services take `limit` and `cursor` and return the next one."""

from __future__ import annotations

from typing import Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

T = TypeVar("T")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page")


class PageParams(BaseModel):
    limit: int
    cursor: str | None


def page_params(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"Items per page, at most {MAX_LIMIT}"),
    cursor: str | None = Query(None, max_length=500, description="The `next_cursor` of the previous page"),
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)
