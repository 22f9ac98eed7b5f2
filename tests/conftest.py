"""Test fixtures: a real database built by the migrations, the real app over real HTTP (ASGI).

The database comes from IDP_TEST_DATABASE_URL (default: a fresh SQLite file). `make test` runs
the suite once on SQLite and once on PostgreSQL.

Every log record of the run is also written to one file (see `pytest_configure`), and every secret
the tests see is remembered (tests/secrets_registry.py): tests/test_zz_log_hygiene.py, which
always runs last, looks for those secrets in that file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from idp.app import create_app
from idp.db.migrate import upgrade
from idp.observability import JsonFormatter
from idp.settings import Settings
from tests import secrets_registry
from tests.mail_sms import WEBHOOK_SECRET, SmsGateway, SmtpServer
from tests.rp import RelyingParty

ISSUER = "http://idp.test"

# ---- the log of the whole run, for tests/test_zz_log_hygiene.py --------------------------------

LOG_CAPTURE = pytest.StashKey[Path]()
HYGIENE_MODULE = "test_zz_log_hygiene.py"
_PLAIN_RECORD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "fields"}


class CaptureFormatter(JsonFormatter):
    """idp's own JSON line (message, request id, `extra={"fields": ...}`, exception text), plus any
    other attribute a caller passed in `extra` and the stack, unescaped so secrets stay greppable."""

    def format(self, record: logging.LogRecord) -> str:
        entry = json.loads(super().format(record))
        extra = {key: value for key, value in vars(record).items() if key not in _PLAIN_RECORD}
        if extra:
            entry["extra"] = extra
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=repr, ensure_ascii=False)


def pytest_configure(config):
    """One handler on the root logger for the whole session, before any app configures logging
    (configure_logging replaces only its own handler). idp's loggers are opened down to DEBUG, so
    a debug line that would leak is seen too; other libraries keep their levels (aiosmtpd's
    debug lines are the test SMTP server's traffic, not ours)."""
    path = Path(tempfile.mkdtemp(prefix="idp-test-log-")) / "run.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(CaptureFormatter())
    handler.idp_test_capture = True
    logging.getLogger().addHandler(handler)
    logging.getLogger("idp").setLevel(logging.DEBUG)
    config.stash[LOG_CAPTURE] = path


def pytest_unconfigure(config):
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "idp_test_capture", False)]:
        root.removeHandler(handler)
        handler.close()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """The log-hygiene test runs last, whatever reordered the rest; and the passwords and secrets
    the test modules define as constants (PASSWORD, NEW_PASSWORD, WEBHOOK_SECRET, TWILIO_TOKEN, …)
    are remembered before anything runs."""
    modules = {item.module for item in items if getattr(item, "module", None) is not None}
    for module in modules:
        for name, value in vars(module).items():
            if name.isupper() and ("PASSWORD" in name or "SECRET" in name or name.endswith("_TOKEN")):
                secrets_registry.remember(value)
    items.sort(key=lambda item: item.path.name == HYGIENE_MODULE)  # stable: only moves it last


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
        courier_in_process=False, webhooks_in_process=False,
        # Every test browser comes from 127.0.0.1: per-IP limits sized for real traffic would
        # throttle the suite itself. The limits are tested with their defaults in apps of their own.
        rate_limits={"login_per_ip": "100000/minute", "sms_per_ip": "100000/minute",
                     "sms_per_prefix": "100000/minute", "registration_per_ip": "100000/minute"},
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


def delivering_fixtures():
    """The fixtures `s`, `rp` and `browser` (app_fixtures) bound to `delivering_app`, for a module
    whose tests read real mail and SMS:

        s, rp, browser = delivering_fixtures()
    """
    return app_fixtures("delivering_app")


def app_fixtures(app_fixture: str):
    """The fixtures `s` (services), `rp` (a RelyingParty) and `browser` (a fresh HTTP client),
    bound to the app of the fixture named `app_fixture` instead of the shared one:

        s, rp, browser = app_fixtures("own_app")
    """
    @pytest.fixture
    def s(request):
        return request.getfixturevalue(app_fixture).state.services

    @pytest.fixture
    def rp(request, s) -> RelyingParty:
        return RelyingParty(request.getfixturevalue(app_fixture), s)

    @pytest.fixture
    async def browser(rp):
        async with rp.browser() as client:
            yield client

    return s, rp, browser
