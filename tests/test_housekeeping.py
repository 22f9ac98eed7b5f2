"""Housekeeping (housekeeping.py): rows nothing can use any more are deleted a retention period
after, and nothing still usable is: a live token family keeps working, a spent refresh token
still revokes its family when replayed, a revoked family goes with its tokens.

It runs on a database of its own (a scratch PostgreSQL database, or a SQLite file), because a
round "two days from now" deletes every expired row: the shared database's rows belong to other
tests. Time is passed to `purge(now=...)` rather than waited for."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from idp import housekeeping as housekeeping_module
from idp.housekeeping import Housekeeping
from idp.app import create_app
from idp.db import utcnow
from idp.flows.models import AuthorizationFlow
from idp.oauth.models import AuthorizationCode, Grant, RefreshToken, RevokedAccessToken
from idp.sessions.models import BrowserSession
from tests.conftest import app_fixtures
from tests.server_process import migrated_database_of_its_own
from tests.token_support import (
    assert_error, grant_id_of, grant_revoked, introspect, refresh, revoke, signed_in, userinfo,
)

DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def own_database(settings, tmp_path_factory):
    with migrated_database_of_its_own(settings.database_url, "test_housekeeping",
                                      tmp_path_factory.mktemp("housekeeping")) as url:
        yield url


@pytest.fixture(scope="module")
async def own_app(settings, own_database):
    application = create_app(settings.model_copy(update={"database_url": own_database}))
    async with application.router.lifespan_context(application):
        yield application


s, rp, browser = app_fixtures("own_app")


async def _count(s, model, *where) -> int:
    return await s.db.run(lambda db: db.scalar(select(func.count()).select_from(model).where(*where)))


async def test_a_round_deletes_what_expired_a_retention_ago_and_keeps_what_is_live(browser, rp, s):
    with_refresh = await signed_in(browser, rp)  # offline_access: a family with a 30-day refresh token
    without = await signed_in(browser, rp, scope="openid profile")  # no refresh token: its access token only
    assert await _count(s, AuthorizationFlow) >= 2 and await _count(s, AuthorizationCode) == 2

    # Within the retention nothing goes, not even what expired (flows last 15 minutes).
    assert await s.housekeeping.purge(s.db, now=utcnow() + timedelta(hours=12)) == {}

    deleted = await s.housekeeping.purge(s.db, now=utcnow() + 2 * DAY)
    assert deleted["authorization_flows"] >= 2 and deleted["authorization_codes"] == 2
    assert deleted["browser_sessions"] == 2  # 12-hour sessions
    assert deleted["grants"] == 1  # the family without a refresh token
    assert await _count(s, AuthorizationFlow) == await _count(s, AuthorizationCode) == 0
    assert await _count(s, Grant, Grant.id == grant_id_of(without.access_token)) == 0
    # The family with a live refresh token stays, and its token still works.
    assert await _count(s, Grant, Grant.id == grant_id_of(with_refresh.access_token)) == 1
    reply = await refresh(browser, rp, with_refresh.client, with_refresh.refresh_token)
    assert reply.status_code == 200, reply.text

    # A second round finds nothing more.
    assert await s.housekeeping.purge(s.db, now=utcnow() + 2 * DAY) == {}


async def test_the_retention_outlasts_the_longest_token_lifetime(browser, rp, s):
    """A family without a refresh token goes once its access and ID tokens cannot be live any
    more: with access tokens of three days, not after two."""
    session = await signed_in(browser, rp, scope="openid profile")
    grant = Grant.id == grant_id_of(session.access_token)
    long_lived = Housekeeping(access_token_ttl=3 * 86400, id_token_ttl=600)
    assert long_lived.retention == timedelta(days=6)
    await long_lived.purge(s.db, now=utcnow() + 2 * DAY)
    assert await _count(s, Grant, grant) == 1
    assert (await userinfo(browser, session.access_token)).status_code == 200
    await s.housekeeping.purge(s.db, now=utcnow() + 2 * DAY)  # the default: 5-minute access tokens
    assert await _count(s, Grant, grant) == 0
    assert_error(await userinfo(browser, session.access_token), 401, "invalid_token")


async def test_a_spent_refresh_token_is_kept_until_it_expires_so_a_replay_still_revokes_the_family(browser, rp, s):
    session = await signed_in(browser, rp)
    rotated = await refresh(browser, rp, session.client, session.refresh_token)
    assert rotated.status_code == 200, rotated.text
    await s.housekeeping.purge(s.db, now=utcnow() + 2 * DAY)
    assert await _count(s, RefreshToken, RefreshToken.grant_id == grant_id_of(session.access_token)) == 2

    assert_error(await refresh(browser, rp, session.client, session.refresh_token), 400, "invalid_grant")
    assert await grant_revoked(s, grant_id_of(session.access_token))
    assert_error(await refresh(browser, rp, session.client, rotated.json()["refresh_token"]), 400, "invalid_grant")


async def test_a_revoked_family_goes_with_its_refresh_tokens_a_retention_after_its_revocation(browser, rp, s):
    session = await signed_in(browser, rp)
    grant_id = grant_id_of(session.access_token)
    await refresh(browser, rp, session.client, session.refresh_token)
    await refresh(browser, rp, session.client, session.refresh_token)  # a replay: the family is revoked
    assert await grant_revoked(s, grant_id)

    await s.housekeeping.purge(s.db, now=utcnow() + timedelta(hours=23))
    assert await _count(s, Grant, Grant.id == grant_id) == 1
    deleted = await s.housekeeping.purge(s.db, now=utcnow() + 2 * DAY)
    assert deleted["grants"] >= 1
    assert await _count(s, Grant, Grant.id == grant_id) == 0
    assert await _count(s, RefreshToken, RefreshToken.grant_id == grant_id) == 0  # ON DELETE CASCADE
    assert_error(await refresh(browser, rp, session.client, session.refresh_token), 400, "invalid_grant")


async def test_a_revoked_access_token_leaves_the_deny_list_once_it_has_expired(browser, rp, s):
    session = await signed_in(browser, rp)
    assert (await revoke(browser, session.client, session.access_token)).status_code == 200
    jti = (await rp.verify(browser, session.access_token))["jti"]
    await s.housekeeping.purge(s.db, now=utcnow())
    assert await _count(s, RevokedAccessToken, RevokedAccessToken.jti == jti) == 1
    assert (await introspect(browser, session.client, session.access_token))["active"] is False
    await s.housekeeping.purge(s.db, now=utcnow() + timedelta(minutes=6))  # access tokens: 5 minutes
    assert await _count(s, RevokedAccessToken, RevokedAccessToken.jti == jti) == 0


async def test_more_rows_than_a_batch_are_all_deleted(browser, rp, s, monkeypatch):
    monkeypatch.setattr(housekeeping_module, "BATCH", 2)
    client = await rp.register()
    for _ in range(5):
        async with rp.browser() as browser:
            await rp.authorize(browser, client)  # a flow each, left at the login page
    await s.housekeeping.purge(s.db, now=utcnow() + 2 * DAY)
    assert await _count(s, AuthorizationFlow) == 0
    assert await _count(s, BrowserSession, BrowserSession.expires_at < utcnow() + DAY) == 0

