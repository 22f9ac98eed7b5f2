"""Property-based test of the whole API: schemathesis generates requests from the COMMITTED
openapi/openapi.json and sends them to a real server process, with a token carrying every API
scope. No request may get a 500, and every response must match the document: its status, content
type, headers and body schema.

Bounded (10 cases per operation, a fixed seed) so it stays under a minute; run it harder by hand
with IDP_SCHEMATHESIS_EXAMPLES=100 IDP_SCHEMATHESIS_SEED=<n> (and IDP_SCHEMATHESIS_PHASES below).
It runs once, in the SQLite pass: the server process keeps its own SQLite database whatever the
suite's database is.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from idp.api.scopes import SCOPES
from tests.server_process import BIN, ServerProcess

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
# The coverage phase (every boundary of every field) sends ~2,500 requests: a minute and a half
# more. Run it by hand with IDP_SCHEMATHESIS_PHASES=examples,coverage,fuzzing,stateful.
PHASES = os.environ.get("IDP_SCHEMATHESIS_PHASES", "examples,fuzzing,stateful")
EXAMPLES = os.environ.get("IDP_SCHEMATHESIS_EXAMPLES", "10")
SEED = os.environ.get("IDP_SCHEMATHESIS_SEED", "20261203")
LIMITS = {"login_per_ip": "100000/minute", "sms_per_ip": "100000/minute",
          "sms_per_prefix": "100000/minute", "registration_per_ip": "100000/minute"}
SEED_PASSWORD = "correct-horse-battery-staple-42"

pytestmark = pytest.mark.skipif(
    os.environ.get("IDP_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="schemathesis runs once, in the SQLite pass (its server has a database of its own)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schemathesis")
    env = {"IDP_ACCESS_TOKEN_TTL": "3600", "IDP_RATE_LIMITS": json.dumps(LIMITS),
           # Generated webhook URLs must not be called: only the API's answers are under test.
           "IDP_WEBHOOKS_IN_PROCESS": "false"}
    with ServerProcess(folder, env=env) as running:
        yield running


def add_client(server: ServerProcess, name: str) -> dict:
    args = ["clients", "add", "--name", name, "--grant-type", "client_credentials", "--json"]
    for scope in SCOPES:
        args += ["--scope", scope]
    return json.loads(server.idp(*args).stdout)


def platform_token(server: ServerProcess) -> str:
    """A platform client allowed every API scope, and a token for all of them."""
    client = add_client(server, "schemathesis")
    reply = httpx.post(f"{server.url}/token", data={"grant_type": "client_credentials", "scope": " ".join(SCOPES)},
                       auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert reply.status_code == 200, reply.text
    assert set(reply.json()["scope"].split()) == set(SCOPES)
    return reply.json()["access_token"]


def config(server: ServerProcess) -> str:
    """schemathesis.toml: real ids for half of the generated path parameters, so operations get
    past "not found" to their rules; and a client of its own to change and delete — generated
    requests must not delete the client whose token they carry (the run would turn into 401s)."""
    owner = json.loads(server.idp("users", "add", "--email", "owner@example.com", "--password",
                                  SEED_PASSWORD, "--name", "Owner", "--json").stdout)
    org = json.loads(server.idp("orgs", "add", "--name", "Acme Oy", "--handle", "acme",
                                "--owner", "owner@example.com", "--json").stdout)
    target = add_client(server, "schemathesis target")
    return f"""
[phases.coverage]
unexpected-methods = []

[dictionaries.orgs]
values = ["acme", "{org['id']}"]

[dictionaries.users]
values = ["{owner['sub']}"]

[parameters]
"path.client_id" = "{target['client_id']}"
"path.org" = {{ dictionary = "orgs", probability = 0.5 }}
"path.user_id" = {{ dictionary = "users", probability = 0.5 }}
"""


def test_no_server_errors_and_every_response_matches_the_document(server, tmp_path):
    token = platform_token(server)
    settings = tmp_path / "schemathesis.toml"
    settings.write_text(config(server))
    report = tmp_path / "junit.xml"
    command = [
        str(BIN / "st"), "--no-color", "--config-file", str(settings), "run", str(COMMITTED), "--url", server.url,
        "--header", f"Authorization: Bearer {token}",
        "--checks", ",".join(CHECKS), "--phases", PHASES,
        "--max-examples", EXAMPLES, "--seed", SEED, "--generation-database", "none",
        # One worker: Hypothesis describing strategies from two threads trips a CPython 3.11 AST bug.
        "--request-timeout", "20", "--workers", "1", "--report", "junit", "--report-junit-path", str(report),
        "--output-truncate", "false",
    ]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    output = (run.stdout + run.stderr).replace(token, "<token>")
    server_log = server.log.read_text()[-4000:] if server.log.exists() else ""
    print(output[-1500:])  # the summary, seen with `pytest -s` or -rP
    assert run.returncode == 0, f"schemathesis found problems:\n{output[-20000:]}\n--- server log tail ---\n{server_log}"
