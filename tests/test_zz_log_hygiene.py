"""No code, password or token appears in the logs of the whole test run.

conftest.py writes every log record of the session to one file and always runs this module last;
tests/secrets_registry.py holds every code the SMTP server and SMS gateway received, every
temporary password, the passwords the tests typed or define, and the tokens and codes the relying
party was given. Besides those exact values, anything shaped like one of our tokens (the prefixes
of security.random_token, a JWT) is a leak, whether or not a test saw it.

The log of the `idp serve` of the browser tests is read too, one JSON record per line. Its other
lines are the development outbox, which prints whole messages, codes included, to the console by
design (`make run`): that is the console, not the log, and is not searched.

Run alone, this module signs someone in first, so there is always something to check.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from tests import secrets_registry
from tests.conftest import LOG_CAPTURE
from tests.token_support import OFFLINE

# security.random_token prefixes that are bearer secrets: authorization codes, refresh tokens,
# client secrets, browser-session cookies, invitation/ownership/contact/reset link tokens, webhook
# secrets. (idpc_ is a client_id: public.)
TOKEN_SHAPES = re.compile(
    r"idp(?:ac|rt|cs|s|inv|own|cc|rst)_[A-Za-z0-9_-]{16,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|whsec_[A-Za-z0-9+/=]{16,}"  # webhook signing secrets
)


def _server_logs(basetemp: Path) -> list[str]:
    lines = []
    for path in sorted(basetemp.glob("browser-idp*/server.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the development outbox printing a message: console, not log
            if isinstance(record, dict) and "logger" in record:
                lines.append(f"[{path.parent.name}] {json.dumps(record, ensure_ascii=False)}")
    return lines


def _read(path: Path) -> str:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text(encoding="utf-8")


def _pattern(secret: str) -> re.Pattern:
    # A code is digits: it must stand alone, not be a run inside a request id or another number.
    if secret.isdigit():
        return re.compile(rf"(?<![\w.-]){secret}(?![\w-]|\.\d)")
    return re.compile(re.escape(secret))


def _redacted(line: str, found: str) -> str:
    shown = line.replace(found, f"<{found[:3]}…{len(found)} chars>")
    return shown if len(shown) <= 400 else shown[:400] + " …"


def leaks_in(lines: list[str], known: frozenset[str]) -> list[str]:
    """Every line holding a remembered secret or something shaped like our tokens, redacted."""
    text = "\n".join(lines)
    leaks = []
    for secret in known:  # one search of the whole text each; lines only for what is found
        pattern = _pattern(secret)
        if pattern.search(text):
            leaks += [f"line {number}: a remembered secret: {_redacted(line, secret)}"
                      for number, line in enumerate(lines, 1) if pattern.search(line)]
    for number, line in enumerate(lines, 1):
        for match in TOKEN_SHAPES.finditer(line):
            leaks.append(f"line {number}: a token: {_redacted(line, match.group(0))}")
    return leaks


def test_the_search_finds_planted_secrets_and_token_shapes_and_redacts_them():
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWlqYSJ9.c2lnbmF0dXJl"
    lines = [
        '{"message": "request", "request_id": "a483920b4f1e0c77", "duration_ms": 483920.5}',
        '{"message": "code=483920 for m***@example.com"}',
        '{"message": "login with a long enough test password"}',
        f'{{"message": "GET /logout?id_token_hint={jwt}"}}',
        '{"message": "cookie idps_0123456789abcdefghijKLMNOP"}',
        '{"message": "client idpc_0123456789abcdefghij is public"}',
    ]
    found = leaks_in(lines, frozenset({"483920", "a long enough test password"}))
    # The code inside a request id or a number is not it; the code standing alone is.
    assert sorted(leak.split(":")[0] for leak in found) == ["line 2", "line 3", "line 4", "line 5"]
    assert not any("483920 for" in leak or jwt in leak or "long enough test" in leak for leak in found)


async def test_no_code_password_or_token_appears_in_the_log_of_the_run(
        request, rp, http, tmp_path_factory):
    captured = request.config.stash[LOG_CAPTURE]
    # The capture is real: every test before this one that spoke HTTP to the app left access-log
    # lines in it (a run of this module alone, or of tests without HTTP, has none yet).
    spoke_http = [item for item in request.session.items if item.path.name != Path(__file__).name
                  and {"http", "rp", "delivering_app"} & set(getattr(item, "fixturenames", ()))]
    earlier = _read(captured).count('"logger": "idp.access"')
    assert earlier or not spoke_http, f"{len(spoke_http)} tests spoke HTTP, but {captured} has no request"

    # Something to find even when run alone: a sign-in that mints a code and tokens.
    client = await rp.register()
    email, _ = await rp.user()
    tokens = await rp.exchange(http, client, await rp.sign_in(http, client, email, scope=OFFLINE))
    assert tokens.status_code == 200, tokens.text
    lines = _read(captured).splitlines() + _server_logs(tmp_path_factory.getbasetemp())
    assert sum('"logger": "idp.access"' in line for line in lines) > earlier

    known = secrets_registry.remembered()
    assert tokens.json()["refresh_token"] in known and tokens.json()["id_token"] in known
    leaks = leaks_in(lines, known)
    assert not leaks, (f"{len(leaks)} secrets in the log of the run ({captured}), checked against "
                       f"{len(known)} remembered values:\n" + "\n".join(leaks[:20]))
