"""Test fixtures: a real database built by the migrations, the real app over real HTTP (ASGI).

The database comes from IDP_TEST_DATABASE_URL (default: a fresh SQLite file). `make test` runs
the suite once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from idp.app import create_app
from idp.db.migrate import upgrade
from idp.settings import Settings
from tests.mail_sms import WEBHOOK_SECRET, SmsGateway, SmtpServer
from tests.rp import RelyingParty

ISSUER = "http://idp.test"


def _database_url(tmp: Path) -> str:
    return os.environ.get("IDP_TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp}/idp-test.db"


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = _database_url(tmp_path_factory.mktemp("db"))
    if url.startswith("postgresql"):
        asyncio.run(_reset_postgres(url))
    upgrade(url)  # the schema comes from the migrations, never from create_all
    return url


@pytest.fixture(scope="session")
def settings(database_url, tmp_path_factory) -> Settings:
    return Settings(
        issuer=ISSUER, database_url=database_url, dev_key_dir=tmp_path_factory.mktemp("keys"),
        # Cheap hashes in tests: the parameters are settings, and the benchmark uses the real ones.
        argon2_memory_kib=1024, argon2_time_cost=1, log_json=True, key_cache_seconds=0.0,
        # The shared app sends nothing: courier tests start their own worker against a real SMTP
        # server, and the suite must never write a dev outbox into the working tree.
        courier_in_process=False,
    )


@pytest.fixture(scope="session")
async def app(settings):
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def services(app):
    return app.state.services


@pytest.fixture
async def http(app):
    """A fresh browser-like HTTP client (own cookie jar) talking to the app."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as client:
        yield client


@pytest.fixture(scope="module")
def smtp():
    """A real SMTP server (aiosmtpd) on 127.0.0.1; tests read what it received by address."""
    server = SmtpServer()
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture
def rp(app, services) -> RelyingParty:
    """An independent relying party: registers a client and drives flows over HTTP."""
    return RelyingParty(app, services)


@pytest.fixture(scope="module")
def gateway():
    """A real HTTP SMS gateway on 127.0.0.1 speaking our signed webhook (and Twilio's API)."""
    server = SmsGateway()
    server.start()
    yield server
    server.stop()


COURIER_POLL = 0.05


@pytest.fixture(scope="module")
async def delivering_app(settings, smtp, gateway):
    """An app on the shared database that really sends: email to the module's SMTP server, SMS to
    the module's gateway, its courier worker running in process."""
    application = create_app(settings.model_copy(update={
        "email_provider": "smtp", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
        "smtp_starttls": False, "mail_from": "idp <no-reply@idp.test>",
        "sms_provider": "webhook", "sms_webhook_url": f"{gateway.url}/webhook",
        "sms_webhook_secret": WEBHOOK_SECRET,
        "courier_in_process": True, "courier_poll_seconds": COURIER_POLL,
    }))
    async with application.router.lifespan_context(application):
        yield application
