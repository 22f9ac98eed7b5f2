"""The OpenAPI document: the committed openapi/openapi.json is what the code generates, it is
valid OpenAPI 3.1, every operation states its scope and errors, and /openapi.json and /docs serve
it. The scope each operation documents is the one the server actually demands."""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import re
from pathlib import Path

import pytest

from idp.api.openapi import build_openapi, render
from idp.api.scopes import SCOPES
from idp.app import create_app
from idp.settings import Settings
from tests.api_support import assert_problem, integrator

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
PROBLEM = "application/problem+json"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def document() -> dict:
    # As scripts/openapi.py builds it: the routes alone, no database.
    return build_openapi(create_app(Settings(_env_file=None)))


def operations(document: dict):
    for path, item in sorted(document["paths"].items()):
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_the_committed_document_is_the_generated_one(document):
    assert COMMITTED.exists(), "openapi/openapi.json is missing: run `make openapi` and commit it"
    committed, generated = COMMITTED.read_text(), render(document)
    if committed != generated:
        diff = difflib.unified_diff(committed.splitlines(), generated.splitlines(),
                                    "committed", "generated", lineterm="", n=2)
        pytest.fail("openapi/openapi.json differs from what the code generates: run `make openapi` "
                    "(scripts/openapi.py) and commit the result\n" + "\n".join(list(diff)[:60]),
                    pytrace=False)


def test_rendering_is_deterministic(document):
    again = build_openapi(create_app(Settings(_env_file=None)))
    assert render(again) == render(document)


def test_it_is_openapi_3_1_for_the_api_only(document):
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert document["servers"] == [{"url": "/"}]
    assert document["info"]["title"] and document["info"]["version"]
    for slug in ("not-found", "precondition-failed", "idempotency-key-reused", "insufficient-scope"):
        assert f"urn:idp:problem:{slug}" in document["info"]["description"]
    assert document["paths"], "no /api/v1 operations found"
    assert all(path.startswith("/api/v1/") for path in document["paths"]), list(document["paths"])


def test_the_security_scheme_is_client_credentials_with_every_scope(document):
    scheme = document["components"]["securitySchemes"]["oauth2"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"] == {"clientCredentials": {"tokenUrl": "/token", "scopes": SCOPES}}


def test_every_operation_has_its_scope_summary_and_error_responses(document):
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), f"{where}: no summary="
        [requirement] = operation["security"]
        # One scope per operation; a webhook's creation and change need idp:audit:read as well.
        scopes = requirement["oauth2"]
        assert scopes and all(scope in SCOPES for scope in scopes), f"{where}: no scope(...) dependency found"
        for status in ("401", "403"):
            response = operation["responses"][status]
            assert list(response["content"]) == [PROBLEM], where
            assert response["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/ProblemDetails"}
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert list(response.get("content", {PROBLEM: 1})) == [PROBLEM], f"{where} {status}"
        headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        if method == "post":
            assert "Idempotency-Key" in headers, where
        if method in ("put", "patch", "delete"):
            assert "If-Match" in headers and "412" in operation["responses"], where
        for status, response in operation["responses"].items():
            if status == "201":
                assert response["headers"]["Location"]["required"] is True, where


def test_operation_ids_are_unique(document):
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))


def test_the_document_is_valid_openapi_3_1(document):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads(render(document)))


async def test_each_operation_demands_the_scope_it_documents(http, rp, document):
    """A token with every scope but the documented one gets 403 naming exactly that scope."""
    tokens: dict[str, dict] = {}
    for path, method, operation in operations(document):
        for scope in operation["security"][0]["oauth2"]:
            if scope not in tokens:
                tokens[scope] = (await integrator(http, rp, scopes=[s for s in SCOPES if s != scope])).headers
            url = re.sub(r"\{[^}]+\}", "x", path)
            reply = await http.request(method.upper(), url, headers=tokens[scope],
                                       json={} if "requestBody" in operation else None)
            body = assert_problem(reply, 403, "insufficient-scope")
            assert body["missing_scope"] == scope, f"{method.upper()} {path}"


async def test_openapi_json_serves_the_document(http, app):
    reply = await http.get("/openapi.json")
    assert reply.status_code == 200
    assert reply.json() == json.loads(render(build_openapi(app)))
    assert "/openapi.json" not in reply.json()["paths"] and "/docs" not in reply.json()["paths"]


async def test_docs_serve_swagger_ui_under_a_policy_that_admits_exactly_its_assets(http):
    reply = await http.get("/docs")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.text
    assert "SwaggerUIBundle" in page and "/openapi.json" in page
    policy = dict(part.strip().split(" ", 1) for part in reply.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    script_sources = policy["script-src"].split()
    assert "'unsafe-inline'" not in script_sources
    for src in re.findall(r'<script src="([^"]+)"', page):
        assert any(src.startswith(origin + "/") for origin in script_sources), src
    for href in re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"|<link[^>]+href="([^"]+)"[^>]+rel="stylesheet"', page):
        href = next(filter(None, href))
        assert any(href.startswith(origin + "/") for origin in policy["style-src"].split()), href
    # What comes from the CDN is pinned and integrity-checked: a changed file is refused, not run.
    remote = re.findall(r"<(?:script|link)[^>]*https://[^>]*>", page)
    assert len(remote) == 2
    for tag in remote:
        assert re.search(r'integrity="sha384-[A-Za-z0-9+/]{64}"', tag) and 'crossorigin="anonymous"' in tag, tag
        assert re.search(r"@\d+\.\d+\.\d+/", tag), tag
    inline = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert inline
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_sources
    # Exactly one policy: the middleware's default must not be added beside it.
    assert len(reply.headers.get_list("content-security-policy")) == 1


async def test_a_body_that_is_not_json_is_the_documented_400_problem(http, rp, document):
    caller = await integrator(http, rp)
    path, method, operation = next((path, method, operation) for path, method, operation in operations(document)
                                   if "requestBody" in operation and "{" not in path)
    reply = await http.request(method.upper(), path, content=b"\xff{not json",
                               headers={**caller.headers, "Content-Type": "application/json"})
    assert_problem(reply, 400, "invalid-request")
    assert "400" in operation["responses"]
