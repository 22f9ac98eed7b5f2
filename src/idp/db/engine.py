"""Engine and sessions. The caller of `transaction()` owns the commit; services never commit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

T = TypeVar("T")


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, pool_timeout: float = 5.0,
                 statement_timeout: float = 15.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            # One file, many connections: wait for the write lock instead of failing at once.
            self.engine = create_async_engine(url, connect_args={"timeout": 30})
            _sqlite_pragmas_and_immediate_transactions(self.engine)
        else:
            # pool_pre_ping: a database that went away and came back must not leave dead
            # connections in the pool (a wedged pool is a known outage class).
            self.engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=pool_timeout,
                pool_pre_ping=True,
                # A server that accepts connections but never answers (a dropped firewall rule, a
                # wedged host) must fail requests in seconds, not after the driver's 60 s default.
                connect_args={"timeout": pool_timeout, "command_timeout": statement_timeout},
            )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on any exception."""
        async with self.sessionmaker() as session:
            async with session.begin():
                yield session

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in one transaction. An exception rolls it back, unless it says
        `keeps_changes` (e.g. a replayed refresh token: the family's revocation must stick
        although the request itself fails)."""
        async with self.sessionmaker() as session:
            await session.begin()
            try:
                result = await work(session)
            except BaseException as exc:
                if getattr(exc, "keeps_changes", False):
                    await session.commit()
                else:
                    await session.rollback()
                raise
            await session.commit()
            return result

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas_and_immediate_transactions(engine) -> None:
    """SQLite needs two things to be correct under concurrent requests.

    A deferred transaction that reads and then writes fails with SQLITE_BUSY (no wait) when
    another connection wrote in between; `BEGIN IMMEDIATE` takes the write lock up front, so
    concurrent units of work queue on the busy timeout instead. WAL lets readers proceed.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
