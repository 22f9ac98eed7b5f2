"""Alembic environment: runs the static migrations on the configured (async) database."""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from idp.models import metadata

config = context.config


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only alter tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # WAL is a property of the file: set it once here, so the server's first connections
            # (possibly several at once) never race to switch the journal mode.
            await connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
