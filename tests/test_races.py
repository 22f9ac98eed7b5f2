"""Real concurrency at the token-side endpoints: N requests released together on the ASGI app,
each in its own database transaction (checklist items 98, 99, 101; bug classes 1 and 2:
fosite#778, Keycloak ConcurrentLoginTest, Hydra#3604)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.token_support import (
    all_at_once, authorized, basic, code_row, grant_id_of, grant_revoked, introspect, key_client,
    live_refresh_tokens, refresh, signed_in, userinfo,
)

PARALLEL = 10


def _outcomes(replies) -> Counter:
    return Counter((reply.status_code, reply.json().get("error")) for reply in replies)


@pytest.mark.parametrize("round_", range(3))
async def test_one_code_redeemed_in_parallel_succeeds_exactly_once(http, rp, services, round_):
    client, _, _, result = await authorized(http, rp, scope="openid offline_access")
    replies = await all_at_once(PARALLEL, lambda: rp.exchange(http, client, result))

    outcomes = _outcomes(replies)
    assert outcomes == {(200, None): 1, (400, "invalid_grant"): PARALLEL - 1}, outcomes
    winner = next(reply.json() for reply in replies if reply.status_code == 200)

    row = await code_row(services, result.params["code"])
    assert row.used_at is not None and row.grant_id == grant_id_of(winner["access_token"])
    # The other redemptions are replays (RFC 6749 §4.1.2): the one family issued is revoked.
    assert await grant_revoked(services, row.grant_id)
    assert await live_refresh_tokens(services, row.grant_id) == 0
    assert (await userinfo(http, winner["access_token"])).status_code == 401


@pytest.mark.parametrize("round_", range(3))
async def test_one_refresh_token_used_in_parallel_gives_at_most_one_new_family_member(http, rp, services, round_):
    session = await signed_in(http, rp)
    grant_id = grant_id_of(session.access_token)
    replies = await all_at_once(PARALLEL, lambda: refresh(http, rp, session.client, session.refresh_token))

    outcomes = _outcomes(replies)
    assert set(outcomes) <= {(200, None), (400, "invalid_grant")}, outcomes
    assert outcomes[(200, None)] <= 1, outcomes
    assert await live_refresh_tokens(services, grant_id) <= 1
    issued = [reply.json()["refresh_token"] for reply in replies if reply.status_code == 200]
    active = [token for token in issued if (await introspect(http, session.client, token))["active"]]
    assert len(active) <= 1
    if outcomes[(400, "invalid_grant")]:
        # Losing requests are replays of a spent token: the family is revoked.
        assert await grant_revoked(services, grant_id)
        assert await live_refresh_tokens(services, grant_id) == 0


async def test_parallel_flows_of_one_user_never_cross(http, rp):
    """Checklist 101: many clients and flows at once; each token answers its own request."""
    email, sub = await rp.user()
    clients = [await rp.register() for _ in range(PARALLEL)]
    results = []
    for client in clients:
        results.append((client, await rp.sign_in(http, client, email)))
    pending = iter(results)

    async def exchange():
        client, result = next(pending)
        return client, result, await rp.exchange(http, client, result)

    outcomes = await all_at_once(PARALLEL, exchange)
    for client, result, reply in outcomes:
        assert reply.status_code == 200, reply.text
        id_token = await rp.verify(http, reply.json()["id_token"])
        assert id_token["aud"] == client.client_id and id_token["nonce"] == result.nonce and id_token["sub"] == sub


async def test_parallel_refreshes_of_different_families_all_succeed(http, rp):
    sessions = [await signed_in(http, rp) for _ in range(PARALLEL)]
    pending = iter(sessions)

    async def one():
        session = next(pending)
        return session, await refresh(http, rp, session.client, session.refresh_token)

    for session, reply in await all_at_once(PARALLEL, one):
        assert reply.status_code == 200, reply.text
        assert (await rp.verify(http, reply.json()["access_token"]))["sub"] == session.sub


async def test_one_access_token_revoked_in_parallel(http, rp):
    session = await signed_in(http, rp)
    replies = await all_at_once(PARALLEL, lambda: http.post("/revoke", data={"token": session.access_token},
                                                            headers=basic(session.client)))
    assert [reply.status_code for reply in replies] == [200] * PARALLEL, [r.text for r in replies]
    assert (await userinfo(http, session.access_token)).status_code == 401


async def test_one_refresh_token_revoked_in_parallel(http, rp, services):
    session = await signed_in(http, rp)
    replies = await all_at_once(PARALLEL, lambda: http.post("/revoke", data={"token": session.refresh_token},
                                                            headers=basic(session.client)))
    assert [reply.status_code for reply in replies] == [200] * PARALLEL, [r.text for r in replies]
    assert await grant_revoked(services, grant_id_of(session.access_token))


async def test_one_client_assertion_used_in_parallel_authenticates_once(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    form = {"grant_type": "client_credentials", **keyed.form()}
    replies = await all_at_once(PARALLEL, lambda: http.post("/token", data=form))
    outcomes = _outcomes(replies)
    assert outcomes == {(200, None): 1, (401, "invalid_client"): PARALLEL - 1}, outcomes
