"""Statements run on the database driver itself, for the one path where SQLAlchemy's per-statement
cost is most of the request (the refresh grant: bench/README.md). Everything else goes through
sessions.

- PostgreSQL: the asyncpg connection under a session's pooled connection, used for one statement
  outside any transaction (a single statement is atomic on its own). Pool checkout, the idle ping
  and the pool size stay SQLAlchemy's.
- SQLite: one more connection to the file, used by one thread of its own, so that a whole write
  transaction is one hop off the event loop instead of four hops per statement through aiosqlite.

Values cross with SQLAlchemy's own type processors (`Converter`), so a timestamp or a JSON list
reads and binds exactly as the models do.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Column, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import greenlet_spawn

T = TypeVar("T")

# Errors the asyncpg driver raises on its own (SQLAlchemy wraps them only for statements it runs).
try:
    import asyncpg

    _POSTGRES_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError,
                                                         OSError, asyncio.TimeoutError)
except ImportError:  # pragma: no cover - asyncpg is a dependency; SQLite-only installs still import this
    _POSTGRES_ERRORS = (OSError, asyncio.TimeoutError)


def sqlite_pragmas(dbapi_connection: sqlite3.Connection) -> None:
    """What every connection to the SQLite file runs first."""
    dbapi_connection.isolation_level = None  # we emit BEGIN (IMMEDIATE) ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers proceed beside the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")  # wait for the write lock rather than fail
    # WAL's usual setting: a commit survives the process being killed (SIGKILL mid-request
    # included); only an OS crash or power loss may lose the last commits, never consistency.
    # FULL would fsync on every commit: about 1.5 ms each on our VMs, most of a refresh grant.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Converter:
    """Reads driver values of `columns` into Python values, and Python values into driver binds,
    with the processors SQLAlchemy itself would use on this dialect."""

    def __init__(self, dialect: Dialect, columns: Sequence[Column]) -> None:
        self._readers = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        self.names = [column.name for column in columns]

    def read(self, values: Sequence[Any]) -> dict[str, Any]:
        return {name: (reader(value) if reader else value)
                for name, reader, value in zip(self.names, self._readers, values, strict=True)}

    @staticmethod
    def binder(dialect: Dialect, column: Column) -> Callable[[Any], Any]:
        processor = column.type.dialect_impl(dialect).bind_processor(dialect)
        return processor if processor else (lambda value: value)


async def postgres_fetch(session: AsyncSession, sql: str, *args: Any) -> list[Sequence[Any]]:
    """Run one statement on the asyncpg driver. In the session's transaction when it has one open
    (the statement is then part of it); else on a pooled connection of its own, outside any
    transaction (a single statement is atomic on its own), without the session's bookkeeping.

    A driver error invalidates the connection (after a database restart it is dead) and comes out
    as SQLAlchemy's OperationalError, which the app answers with 503 like any other outage."""
    if session.in_transaction():
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        try:
            return await raw.driver_connection.fetch(sql, *args)
        except _POSTGRES_ERRORS as error:
            await connection.invalidate()
            raise exc.OperationalError(sql, args, error) from error
    pooled = await session.bind.raw_connection()  # the pool's checkout: its idle ping included
    try:
        return await pooled.driver_connection.fetch(sql, *args)
    except _POSTGRES_ERRORS as error:
        pooled.invalidate()
        raise exc.OperationalError(sql, args, error) from error
    finally:
        # Back to the pool (its reset has nothing to roll back: no transaction was begun). Run as
        # SQLAlchemy runs its own pool calls from async code.
        await greenlet_spawn(pooled.close)


class SqliteWriter:
    """A connection of its own to the SQLite file, used only from its own thread: `transaction`
    runs a function under BEGIN IMMEDIATE and commits it, in one hop off the event loop. Its
    writes queue behind each other there (SQLite has one writer anyway), and behind the sessions'
    writes on the busy timeout, as those do."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._connection: sqlite3.Connection | None = None

    async def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, work)
        except sqlite3.Error as error:
            raise exc.DBAPIError.instance("sqlite writer", None, error, sqlite3.Error) from error

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            self._connection = sqlite3.connect(self._path, timeout=30)
            sqlite_pragmas(self._connection)
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    async def close(self) -> None:
        """Close the connection in its own thread (after any transaction queued before), without
        holding up the event loop meanwhile."""
        def close_connection() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close_connection)
        self._executor.shutdown(wait=False)
