"""Engine and sessions. The caller of `transaction()` owns the commit; services never commit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from time import monotonic
from typing import TypeVar

from sqlalchemy import event, exc, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from idp.db.driver import SqliteWriter, sqlite_pragmas

T = TypeVar("T")

# What a unit of work raises when the database cannot answer (down, unreachable, pool exhausted,
# a statement timed out). The app answers these 503 (app.py tells a refused value apart: a
# DBAPIError with SQLSTATE class 22 or 23 is bad input, not an outage).
DATABASE_ERRORS = (OperationalError, DBAPIError, PoolTimeoutError, OSError)

# A pooled PostgreSQL connection idle for longer than this is pinged before use (see
# _ping_connections_idle_for); one back from a request a moment ago is not.
IDLE_BEFORE_PING = 1.0


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
            # A fixed pool: a request beyond `pool_size` waits (up to pool_timeout) for a
            # connection rather than opening one. Overflow connections are closed again as soon as
            # the pool has room, so a steady load above the pool size opened and closed one per
            # request (a TCP connect, a refused TLS offer and a startup: a third of a refresh grant
            # in the bench).
            self.engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout,
                # A server that accepts connections but never answers (a dropped firewall rule, a
                # wedged host) must fail requests in seconds, not after the driver's 60 s default.
                connect_args={"timeout": pool_timeout, "command_timeout": statement_timeout},
            )
            _ping_connections_idle_for(self.engine, IDLE_BEFORE_PING)
        # A Session class of this database's own: ORM event listeners (the client cache's) then
        # hear only this database's sessions, not every app's in the process.
        self.session_class = type("DatabaseSession", (Session,), {})
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False,
                                               sync_session_class=self.session_class)
        self._sqlite_writer: SqliteWriter | None = None

    @property
    def sqlite_writer(self) -> SqliteWriter | None:
        """The file's own writer thread (driver.py), or None where there is no file to share (an
        in-memory database is one per connection) or no SQLite at all."""
        if self._sqlite_writer is None and self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:" and not path.startswith("file:"):
                self._sqlite_writer = SqliteWriter(path)
        return self._sqlite_writer

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on any exception."""
        async with self.sessionmaker() as session:
            async with session.begin():
                yield session

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in one transaction. An exception rolls it back, unless it says
        `keeps_changes` (e.g. a replayed refresh token: the family's revocation must stick
        although the request itself fails).

        The transaction begins with the first statement (or `add`), not before: work that never
        touches the database (a client_credentials grant served from the caches) costs no BEGIN
        and no COMMIT; SQLite's BEGIN IMMEDIATE is still the first thing any statement runs."""
        async with self.sessionmaker() as session:
            try:
                result = await work(session)
            except BaseException as exc:
                if session.in_transaction():
                    if getattr(exc, "keeps_changes", False):
                        await session.commit()
                    else:
                        await session.rollback()
                raise
            if session.in_transaction():
                await session.commit()
            return result

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._sqlite_writer is not None:
            await self._sqlite_writer.close()
            self._sqlite_writer = None
        await self.engine.dispose()


def _sqlite_pragmas_and_immediate_transactions(engine) -> None:
    """SQLite needs two things to be correct under concurrent requests (pragmas: driver.py).

    A deferred transaction that reads and then writes fails with SQLITE_BUSY (no wait) when
    another connection wrote in between; `BEGIN IMMEDIATE` takes the write lock up front, so
    concurrent units of work queue on the busy timeout instead. WAL lets readers proceed.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        sqlite_pragmas(dbapi_connection)

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _ping_connections_idle_for(engine, seconds: float) -> None:
    """A database that went away and came back must not leave dead connections in the pool (a
    wedged pool is a known outage class). SQLAlchemy's pool_pre_ping would check every checkout
    (BEGIN, a ping, ROLLBACK: three round trips, a tenth of a refresh grant); a connection that
    served a request a moment ago is as good as the ping's answer, so only one idle for longer is
    pinged. A dead one invalidates the whole pool, as pre_ping does: after a restart every pooled
    connection is dead, and each is replaced at its next checkout without a ping of its own. A
    connection that dies within the idle window fails its request, which is a disconnect error:
    SQLAlchemy then invalidates the pool all the same."""
    pool, dialect = engine.sync_engine.pool, engine.sync_engine.dialect

    @event.listens_for(pool, "connect")
    def _on_connect(_dbapi_connection, record):
        record.info["returned_at"] = monotonic()  # a new connection needs no ping

    @event.listens_for(pool, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["returned_at"] = monotonic()

    @event.listens_for(pool, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        if monotonic() - record.info.get("returned_at", 0.0) <= seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.InvalidatePoolError(f"pooled connection found dead: {type(error).__name__}") from error
            raise
