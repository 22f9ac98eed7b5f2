"""The courier worker: queued messages leave without anyone calling `deliver_due`.

In the app's lifespan (IDP_COURIER_IN_PROCESS) against a real SMTP server (aiosmtpd), two apps on
one database (each message exactly once), a clean shutdown, and the `idp courier run` / `idp
courier status` commands in a subprocess on a scratch SQLite file.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

import idp.app
from idp.app import create_app
from idp.courier.models import CourierMessage
from idp.services import Services
from idp.settings import Settings
from tests.mail_sms import SmtpServer

IDP = Path(sys.executable).parent / "idp"
POLL = 0.05


@pytest.fixture(autouse=True)
async def empty_outbox(services):
    """Each test sees only its own messages (other modules leave theirs behind)."""
    async def empty(db):
        await db.execute(delete(CourierMessage))
    await services.db.run(empty)


def _worker_settings(settings: Settings, smtp: SmtpServer, **extra) -> Settings:
    return settings.model_copy(update={
        "email_provider": "smtp", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
        "smtp_starttls": False, "mail_from": "idp <no-reply@idp.test>",
        "courier_in_process": True, "courier_poll_seconds": POLL, **extra,
    })


async def _enqueue(services, recipients: list[str]) -> list[str]:
    """What a flow step does: queue the messages inside its own transaction."""
    async def work(db):
        return [await services.courier.enqueue(db, channel="email", recipient=recipient,
                                               kind="login", locale="en", params={"code": "246810"})
                for recipient in recipients]
    return await services.db.run(work)


async def _until(predicate, *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _states(services) -> list[tuple[str, int]]:
    rows = await services.db.run(lambda db: db.execute(
        select(CourierMessage.state, CourierMessage.attempts)))
    return [tuple(row) for row in rows.all()]


async def test_a_queued_message_is_sent_by_the_in_process_worker(settings, smtp):
    app = create_app(_worker_settings(settings, smtp))
    address = f"worker-{secrets.token_hex(3)}@example.com"
    async with app.router.lifespan_context(app):
        services = app.state.services
        [message_id] = await _enqueue(services, [address])

        async def arrived():
            return bool(smtp.to(address))
        await _until(arrived)  # nobody called deliver_due

        async def marked():
            row = await services.db.run(lambda db: db.get(CourierMessage, message_id))
            return row.state == "sent"
        await _until(marked)
    [mail] = smtp.to(address)
    assert "246810" in smtp.body(mail) and mail["Message-ID"] == f"<{message_id}@idp>"


async def test_two_apps_on_one_database_send_each_of_20_messages_exactly_once(settings, smtp):
    first = create_app(_worker_settings(settings, smtp))
    second = create_app(_worker_settings(settings, smtp))
    addresses = [f"pair-{index}-{secrets.token_hex(2)}@example.com" for index in range(20)]
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        assert not first.state.courier_task.done() and not second.state.courier_task.done()
        await _enqueue(first.state.services, addresses[:10])
        await _enqueue(second.state.services, addresses[10:])

        async def all_sent():
            states = await _states(first.state.services)
            return len(states) == 20 and all(state == "sent" for state, _ in states)
        await _until(all_sent, timeout=10)
        await asyncio.sleep(20 * POLL)  # more rounds on both: nothing goes out twice
        assert set(await _states(first.state.services)) == {("sent", 1)}
    received = [m["To"] for m in smtp.messages if m["To"] in addresses]
    assert sorted(received) == sorted(addresses)  # each exactly once


async def test_the_worker_runs_in_process_unless_switched_off(settings):
    """The fixtures' app has it switched off (so the suite never writes a dev outbox); an app with
    the default setting runs it."""
    assert settings.courier_in_process is False
    quiet = create_app(settings)
    async with quiet.router.lifespan_context(quiet):
        assert quiet.state.courier_task is None

    served = create_app(settings.model_copy(update={"courier_in_process": True}))
    async with served.router.lifespan_context(served):
        assert served.state.courier_task is not None and not served.state.courier_task.done()


async def test_shutdown_stops_the_worker_cleanly(settings, smtp, caplog):
    caplog.set_level(logging.INFO)
    app = create_app(_worker_settings(settings, smtp))
    async with app.router.lifespan_context(app):
        task = app.state.courier_task
        await asyncio.sleep(3 * POLL)
    assert task.done() and not task.cancelled() and task.exception() is None
    gc.collect()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "courier worker stopped" in caplog.text


class _Hanging:
    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def send(self, message) -> None:
        self.started.set()
        await asyncio.sleep(3600)


async def test_a_send_that_hangs_at_shutdown_is_cancelled_and_the_message_retried_later(
        settings, smtp, caplog, monkeypatch):
    monkeypatch.setattr(idp.app, "WORKER_STOP_GRACE", 0.2)
    app = create_app(_worker_settings(settings, smtp))
    hanging = _Hanging()
    async with app.router.lifespan_context(app):
        services = app.state.services
        services.courier.providers["email"] = hanging
        task = app.state.courier_task
        [message_id] = await _enqueue(services, ["stuck@example.com"])
        await asyncio.wait_for(hanging.started.wait(), timeout=5)
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert task.cancelled()
    gc.collect()
    assert "courier worker round still running at shutdown; cancelled" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    row = await _row(settings, message_id)
    assert (row.state, row.attempts) == ("queued", 1)  # leased: another worker retries it later


async def test_a_message_no_worker_can_open_fails_and_does_not_block_the_others(settings, smtp):
    app = create_app(_worker_settings(settings, smtp))
    address = f"after-poison-{secrets.token_hex(2)}@example.com"
    async with app.router.lifespan_context(app):
        services = app.state.services

        async def work(db):
            poison = await services.courier.enqueue(db, channel="email", recipient="poison@example.com",
                                                    kind="login", locale="en", params={"code": "1"})
            # Its payload does not open (another key, corruption): the queue must not wedge on it.
            await db.execute(update(CourierMessage).where(CourierMessage.id == poison)
                             .values(payload=b"\x00" * 40))
            await services.courier.enqueue(db, channel="email", recipient=address, kind="login",
                                           locale="en", params={"code": "2"})
            return poison
        poison = await services.db.run(work)

        async def arrived():
            return bool(smtp.to(address))
        await _until(arrived)
    row = await _row(settings, poison)
    assert row.state == "failed" and row.last_error.startswith("cannot open or render")
    assert not smtp.to("poison@example.com")


async def _row(settings, message_id) -> CourierMessage:
    services = Services(settings)
    try:
        return await services.db.run(lambda db: db.get(CourierMessage, message_id))
    finally:
        await services.close()


# ---- the command line ---------------------------------------------------------------------------

def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    return env | {
        "IDP_DATABASE_URL": f"sqlite+aiosqlite:///{root}/idp.db",
        "IDP_DEV_KEY_DIR": str(root / "keys"),
        "IDP_DEV_OUTBOX_FILE": str(root / "outbox.log"),
        "IDP_ISSUER": "http://idp.test",
    } | extra


def _idp(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(IDP), *args], env=env, cwd=Path(env["IDP_DEV_KEY_DIR"]).parent,
                          capture_output=True, text=True, timeout=60)


def _scratch_settings(root: Path) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{root}/idp.db", dev_key_dir=root / "keys",
                    dev_outbox_file=root / "outbox.log", _env_file=None)


async def _enqueue_in(root: Path, recipients: list[str]) -> None:
    services = Services(_scratch_settings(root))
    try:
        await _enqueue(services, recipients)
    finally:
        await services.close()


async def test_courier_status_counts_messages_and_shows_none_of_them(tmp_path):
    env = _env(tmp_path)
    assert _idp(env, "migrate").returncode == 0
    empty = _idp(env, "courier", "status", "--json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == {"queued": 0, "sent": 0, "failed": 0}

    await _enqueue_in(tmp_path, ["secret-person@example.com", "other@example.com", "third@example.com"])
    services = Services(_scratch_settings(tmp_path))
    try:
        assert (await services.courier.deliver_due(services.db)).sent == 3  # to the dev outbox
    finally:
        await services.close()
    await _enqueue_in(tmp_path, ["waiting@example.com"])

    shown = _idp(env, "courier", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"queued": 1, "sent": 3, "failed": 0}
    assert "@" not in shown.stdout and "246810" not in shown.stdout
    table = _idp(env | {"COLUMNS": "200"}, "courier", "status")
    assert table.returncode == 0 and "queued" in table.stdout and "@" not in table.stdout


def test_courier_status_on_an_unmigrated_database_is_a_one_line_error(tmp_path):
    result = _idp(_env(tmp_path), "courier", "status", "--json")
    assert result.returncode == 1 and "idp migrate" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_courier_run_delivers_in_the_foreground_until_interrupted(tmp_path, smtp):
    env = _env(tmp_path, IDP_EMAIL_PROVIDER="smtp", IDP_SMTP_HOST="127.0.0.1",
               IDP_SMTP_PORT=str(smtp.port), IDP_SMTP_STARTTLS="false",
               IDP_COURIER_POLL_SECONDS="0.1")
    assert _idp(env, "migrate").returncode == 0
    address = f"cli-{secrets.token_hex(3)}@example.com"
    worker = subprocess.Popen([str(IDP), "courier", "run"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        await _enqueue_in(tmp_path, [address])

        async def arrived():
            return bool(smtp.to(address))
        await _until(arrived, timeout=15)
    finally:
        worker.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = worker.communicate(timeout=15)
    assert worker.returncode == 0, output
    assert "Traceback" not in output and "courier worker stopped" in output
    assert "246810" not in output  # the log never carries the code
