"""The server killed with SIGKILL in the middle of code exchanges and refresh rotations (issue 6,
"Faults").

Many authorization codes and refresh tokens are minted over HTTP, then all of them are redeemed at
once against a real server process (tests/server_process.py), which is killed with SIGKILL when
a third of the answers are in. It is started again on the same database, and every code and
refresh token is judged from what the client saw and from the rows:

- fully used: its successor exists (the code's grant with its refresh token; the refresh token's
  successor in the same family), the client's tokens (if it got an answer) are those rows, and a
  second use now is refused with invalid_grant;
- or still usable: nothing of it was written, and a use now succeeds, once.

Never both, and never used without its successor. Each grant's work is one transaction (the code
or refresh token is consumed with an `UPDATE ... WHERE used_at IS NULL` beside the rows it
creates), so a process that dies before the commit leaves nothing and one that dies after it
leaves everything, answered or not.

Runs on a SQLite file and on the private PostgreSQL cluster (conftest.py), once, in the SQLite
run of `make test` (`only_in_sqlite_run`): it brings its own databases.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp.oauth.models import AuthorizationCode, Grant, RefreshToken
from idp.security import token_hash
from tests.faults.conftest import only_in_sqlite_run, services_of, started
from tests.rp import AuthResult, RegisteredClient, RelyingParty
from tests.server_process import ServerProcess
from tests.token_support import assert_error

pytestmark = only_in_sqlite_run

CODES = 15  # codes exchanged in the storm
REFRESH_TOKENS = 15  # refresh tokens rotated in it
KILL_AFTER = (CODES + REFRESH_TOKENS) // 3  # answers received before the SIGKILL
SCOPE = "openid offline_access"  # every exchange also creates a refresh token: its successor


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    env = {"IDP_CODE_TTL": "600"}  # a slow machine must not expire a code between setup and check
    if request.param == "postgresql":
        # Asked for here, not as an argument: the SQLite run needs no PostgreSQL binaries.
        env["IDP_DATABASE_URL"] = request.getfixturevalue("private_postgres").new_database("kill")
    process = ServerProcess(tmp_path, env=env)
    yield started(process)
    process.stop()


@dataclass
class Outcome:
    """What the client saw: the token response, an error answer, or nothing (the kill)."""

    body: dict | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.body is not None or self.error is not None


async def test_every_code_and_refresh_token_is_fully_used_or_still_usable(server: ServerProcess):
    services = services_of(server)
    rp = RelyingParty(app=None, services=services)
    try:
        client = await rp.register(first_party=True)
        email, _ = await rp.user()
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
            codes = await _codes(rp, http, client, email, CODES + REFRESH_TOKENS)
            minted = await asyncio.gather(*(rp.exchange(http, client, code) for code in codes[CODES:]))
            assert all(reply.status_code == 200 for reply in minted), [r.text for r in minted if r.status_code != 200]
            refresh_tokens = [reply.json()["refresh_token"] for reply in minted]
            codes = codes[:CODES]

            code_outcomes, refresh_outcomes = await _storm_then_kill(server, rp, client, codes, refresh_tokens)

        answered = [o for o in code_outcomes + refresh_outcomes if o.answered]
        assert all(o.body is not None for o in answered), [o.error for o in answered if o.body is None]
        server.start(migrate=False)  # as a crashed node comes back: same database, same port

        async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
            keys = await rp.keyset(http)  # tokens issued after the restart are checked as a client would
            # Each code and refresh token has a token family of its own: judged side by side.
            verdicts = await asyncio.gather(
                *(_judge_code(services, rp, http, client, keys, code, outcome)
                  for code, outcome in zip(codes, code_outcomes)),
                *(_judge_refresh_token(services, rp, http, client, keys, token, outcome)
                  for token, outcome in zip(refresh_tokens, refresh_outcomes)))
            used, still_usable = verdicts.count(True), verdicts.count(False)
        # The kill landed mid-stream, or the test proved nothing.
        assert used >= KILL_AFTER and still_usable > 0, (used, still_usable)
        unanswered_but_used = used - len(answered)
        print(f"\n{used} fully used ({unanswered_but_used} of them without an answer), {still_usable} still usable")
    finally:
        await services.close()


async def _codes(rp: RelyingParty, http: httpx.AsyncClient, client: RegisteredClient, email: str,
                 count: int) -> list[AuthResult]:
    """One sign-in, then `count` authorization codes from the browser's session (each request
    with its own PKCE pair)."""
    await rp.sign_in(http, client, email, scope=SCOPE)

    async def one() -> AuthResult:
        reply = await rp.authorize(http, client, scope=SCOPE)
        assert reply.status_code == 302 and reply.headers["location"].startswith(client.redirect_uri), reply.text
        return AuthResult.of(reply, reply.headers["location"])

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _storm_then_kill(server: ServerProcess, rp: RelyingParty, client: RegisteredClient,
                           codes: list[AuthResult], refresh_tokens: list[str]):
    """Every code exchanged and every refresh token rotated at once; SIGKILL after KILL_AFTER
    answers. Returns what the client saw for each."""
    answers = 0
    enough = asyncio.Event()

    async def attempt(request) -> Outcome:
        nonlocal answers
        try:
            reply = await request
        except httpx.TransportError:  # killed before or while answering
            return Outcome()
        answers += 1
        if answers >= KILL_AFTER:
            enough.set()
        if reply.status_code == 200:
            return Outcome(body=reply.json())
        return Outcome(error=f"{reply.status_code} {reply.text[:200]}")

    async def kill() -> None:
        await enough.wait()
        server.stop(signal.SIGKILL)

    # Fewer connections than requests: some wait in the client's queue, some are in the server.
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=server.url, timeout=15, limits=limits) as storm:
        requests = [attempt(rp.exchange(storm, client, code)) for code in codes]
        requests += [attempt(rp.token(storm, client, {"grant_type": "refresh_token", "refresh_token": token}))
                     for token in refresh_tokens]
        killer = asyncio.create_task(kill())
        outcomes = await asyncio.gather(*_interleaved(requests, len(codes)))
        enough.set()  # everything answered before the threshold: still stop the server
        await killer
    return _uninterleaved(outcomes, len(codes))


def _interleaved(requests: list, codes: int) -> list:
    """Codes and refresh tokens alternate in the storm, so the kill lands among both."""
    exchanges, refreshes = requests[:codes], requests[codes:]
    return [request for pair in zip(exchanges, refreshes) for request in pair]


def _uninterleaved(outcomes: list[Outcome], codes: int) -> tuple[list[Outcome], list[Outcome]]:
    return outcomes[0::2], outcomes[1::2]


def _assert_genuine(keys: KeySet, body: dict, client: RegisteredClient) -> None:
    """Tokens that verify against the published keys (joserfc, not our own code)."""
    access = jwt.decode(body["access_token"], keys, algorithms=["ES256", "RS256"])
    assert access.header["typ"] == "at+jwt" and access.claims["client_id"] == client.client_id
    identity = jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims
    assert identity["aud"] == client.client_id and identity["sub"] == access.claims["sub"]


async def _judge_code(services, rp, http, client, keys: KeySet, code: AuthResult, outcome: Outcome) -> bool:
    """True if the code is fully used (its grant and refresh token exist, a second use is
    refused), False if it is still usable (and it is then used, once)."""
    async def look(db):
        row = (await db.execute(select(AuthorizationCode).where(
            AuthorizationCode.code_hash == token_hash(code.params["code"])))).scalar_one()
        grant = await db.get(Grant, row.grant_id) if row.grant_id else None
        family = (await db.execute(select(RefreshToken).where(RefreshToken.grant_id == row.grant_id))).scalars().all()
        return row, grant, family

    row, grant, family = await services.db.run(look)
    if row.used_at is None:
        assert row.grant_id is None and outcome.body is None, "a code answered with tokens was left unused"
        reply = await rp.exchange(http, client, code)
        assert reply.status_code == 200, reply.text
        _assert_genuine(keys, reply.json(), client)
        assert_error(await rp.exchange(http, client, code), 400, "invalid_grant")
        return False
    # Used: never without its tokens.
    assert grant is not None and grant.revoked_at is None, "a code consumed without its grant"
    assert [token.used_at for token in family] == [None], "a code consumed without its refresh token"
    if outcome.body is not None:  # the tokens the client got are those rows
        assert family[0].token_hash == token_hash(outcome.body["refresh_token"])
    assert_error(await rp.exchange(http, client, code), 400, "invalid_grant")
    return True


async def _judge_refresh_token(services, rp, http, client, keys: KeySet, token: str, outcome: Outcome) -> bool:
    """True if the refresh token is fully used (its successor is the only live token of its
    family, a second use is refused), False if it is still usable (and it is then used, once)."""
    async def look(db):
        row = (await db.execute(select(RefreshToken).where(RefreshToken.token_hash == token_hash(token)))).scalar_one()
        family = (await db.execute(select(RefreshToken).where(
            RefreshToken.grant_id == row.grant_id, RefreshToken.token_hash != row.token_hash))).scalars().all()
        return row, family, await db.get(Grant, row.grant_id)

    row, successors, grant = await services.db.run(look)
    assert grant.revoked_at is None
    refresh = {"grant_type": "refresh_token", "refresh_token": token}
    if row.used_at is None:
        assert successors == [] and outcome.body is None, "a refresh answered with tokens was left unused"
        reply = await rp.token(http, client, refresh)
        assert reply.status_code == 200, reply.text
        _assert_genuine(keys, reply.json(), client)
        assert_error(await rp.token(http, client, refresh), 400, "invalid_grant")
        return False
    assert [s.used_at for s in successors] == [None], "a refresh token used without its successor"
    if outcome.body is not None:
        assert successors[0].token_hash == token_hash(outcome.body["refresh_token"])
    assert_error(await rp.token(http, client, refresh), 400, "invalid_grant")
    return True

