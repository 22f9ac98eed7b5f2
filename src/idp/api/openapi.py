"""The API's OpenAPI 3.1 document, generated from the /api/v1 routes, and /docs.

FastAPI writes the paths and schemas from the routes' models; `build_openapi` then adds what the
routes share by convention rather than declare one by one: the OAuth 2.0 client-credentials scheme
and each operation's scope (read from its `scope(...)` dependency), 401/403 on every operation,
problem+json error bodies, `Idempotency-Key` on POSTs, `If-Match` on updates and the response
headers (`ETag`, `Location`, `Idempotent-Replayed`). The output is deterministic: the committed
openapi/openapi.json is `render(build_openapi(app))`, and a test fails when the two differ.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from idp.api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from idp.api.problems import MEDIA_TYPE as PROBLEM, TYPE_PREFIX, TYPES, ProblemDetails
from idp.api.scopes import SCOPES

API_PREFIX = "/api/v1/"
TITLE = "idp integrator API"
API_VERSION = "1.0"
SECURITY_SCHEME = "oauth2"
_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
_WRITES = ("patch", "put", "delete")

DESCRIPTION = """\
Provision and read accounts, organisations, products, clients, webhooks and the audit log
without a person at a browser.

## Authentication
Register a confidential client with the scopes it needs (`idp clients add --grant-type
client_credentials --scope idp:users:read ...`), get an access token from `POST /token` with the
`client_credentials` grant (HTTP Basic client authentication), and send it as
`Authorization: Bearer <token>`. Each operation names the one scope it needs. A missing or invalid
token is `401`; a token without the scope is `403` with `missing_scope` naming it.

A client bound to an organisation sees and changes that organisation only: anything outside it,
and every platform-wide resource, answers `404`.

## Conventions
- JSON field names are snake_case, ids are strings, times are ISO 8601 in UTC.
- Lists are `{{"items": [...], "next_cursor": ...}}`: pass `next_cursor` as `cursor` for the next
  page; `limit` is {default} by default and at most {maximum}. `next_cursor` is null on the last page.
- A creation answers `201` with the resource and its `Location`; a deletion answers `204`.
- `Idempotency-Key` (1–255 printable ASCII characters) on any POST: a retry with the same key
  and body gets the first response again (header `Idempotent-Replayed: true`), never a second
  resource; the same key with another body is `422 idempotency-key-reused`. Keys live 24 hours.
- A single resource comes with an `ETag`. Send it back as `If-Match` on PATCH, PUT and DELETE:
  if the resource changed since, the answer is `412 precondition-failed` and nothing changes.
- PATCH changes only the fields the body names.
- Password hashes, code hashes, TOTP secrets and client secret hashes are never returned.

## Errors
Every error is `application/problem+json` (RFC 9457) with a stable `type`; switch on it, not on
`title` or `detail`. Validation errors list the offending fields in `errors`.

| type | status | meaning |
| --- | --- | --- |
{problems}
"""


# ---- the document ------------------------------------------------------------------------------

def api_routes(app: FastAPI) -> list:
    """The /api/v1 operations of the app (routers are included lazily: flatten them first)."""
    return [context for context in routing.iter_route_contexts(app.routes)
            if (context.path_format or "").startswith(API_PREFIX)
            and getattr(context, "include_in_schema", False)]


def route_scopes(route) -> list[str]:
    """The scopes a route's dependencies demand (auth.scope sets `required_scope` on them)."""
    found: list[str] = []
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop(0)
        required = getattr(dependant.call, "required_scope", None)
        if required is not None and required not in found:
            found.append(required)
        pending.extend(dependant.dependencies)
    return found


def build_openapi(app: FastAPI) -> dict[str, Any]:
    routes = api_routes(app)
    problems = "\n".join(f"| `{TYPE_PREFIX}{slug}` | {status} | {title} |"
                         for slug, (status, title) in TYPES.items())
    doc = get_openapi(
        title=TITLE, version=API_VERSION, openapi_version="3.1.0", routes=routes,
        description=DESCRIPTION.format(problems=problems, default=DEFAULT_LIMIT, maximum=MAX_LIMIT),
        servers=[{"url": "/"}])
    components = doc.setdefault("components", {})
    components["securitySchemes"] = {SECURITY_SCHEME: {
        "type": "oauth2",
        "description": "Client-credentials access tokens from this server's token endpoint.",
        "flows": {"clientCredentials": {"tokenUrl": "/token", "scopes": dict(SCOPES)}},
    }}
    components.setdefault("schemas", {})
    _problem_schema(components["schemas"])
    names = [route.name for route in routes]
    for route in routes:
        scopes = route_scopes(route)
        unique_name = names.count(route.name) == 1
        for method in sorted(route.methods or ()):
            operation = doc["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                _conventions(operation, method.lower(), scopes, route.name if unique_name else None)
    _drop_unused_schemas(doc)
    return doc


def render(doc: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _problem_schema(schemas: dict[str, Any]) -> None:
    problem = schemas.get("ProblemDetails")
    if problem is None:  # no route declared an error response yet
        problem = schemas["ProblemDetails"] = ProblemDetails.model_json_schema()
    problem["properties"]["type"]["examples"] = sorted(TYPE_PREFIX + slug for slug in TYPES)


def _problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    titles = sorted({title for slug, (code, title) in TYPES.items() if code == status})
    return {"description": description or "; ".join(titles) or "Error",
            "content": {PROBLEM: {"schema": dict(_PROBLEM_REF)}}}


def _conventions(operation: dict, method: str, scopes: list[str], name: str | None) -> None:
    if name:
        operation["operationId"] = name
    operation["security"] = [{SECURITY_SCHEME: scopes}]
    if scopes:
        needs = "Scope: " + ", ".join(f"`{scope}`" for scope in scopes) + "."
        operation["description"] = (operation.get("description", "").rstrip() + "\n\n" + needs).lstrip()
    _error_responses(operation, method)
    _request_headers(operation, method)
    _response_headers(operation, method)


def _error_responses(operation: dict, method: str) -> None:
    responses: dict[str, dict] = operation.setdefault("responses", {})
    for status, response in responses.items():
        content = response.get("content", {})
        refs = [media.get("schema", {}).get("$ref", "") for media in content.values()]
        if status.startswith(("4", "5")) and (PROBLEM in content or any(
                ref.endswith(("/HTTPValidationError", "/ProblemDetails")) for ref in refs)):
            # Errors are problem+json only: FastAPI also lists the model under application/json,
            # and its own 422 under HTTPValidationError, which ApiRoute never sends.
            response["content"] = {PROBLEM: {"schema": dict(_PROBLEM_REF)}}
    if "422" in responses and responses["422"].get("description") == "Validation Error":
        responses["422"]["description"] = TYPES["validation-error"][1]
    needed = [401, 403, 503]  # no token, no scope, the database is unreachable
    if "requestBody" in operation:
        needed.append(400)  # a body that is not JSON at all
    if method == "post":
        needed += [400, 409, 422]  # Idempotency-Key malformed, in use, reused with another body
    if method in _WRITES:
        needed.append(412)  # a stale If-Match
    for status in needed:
        responses.setdefault(str(status), _problem_response(status))


def _request_headers(operation: dict, method: str) -> None:
    parameters: list[dict] = operation.setdefault("parameters", [])
    if method == "post":
        parameters.append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Makes the POST safe to retry: the same key and body get the first "
                           "response again (24 hours), never a second resource.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
        })
    if method in _WRITES:
        parameters.append({
            "name": "If-Match", "in": "header", "required": False,
            "description": "The resource's ETag as last read: a stale one is 412 and nothing changes.",
            "schema": {"type": "string", "maxLength": 1000},
        })
    if not parameters:
        del operation["parameters"]


def _response_headers(operation: dict, method: str) -> None:
    for status, response in operation["responses"].items():
        if not (status.startswith("2") and response.get("content")):
            continue
        headers = response.setdefault("headers", {})
        if not _is_page(response):
            headers["ETag"] = {"description": "The representation's strong ETag (send as If-Match)",
                               "schema": {"type": "string"}}
        if status == "201":
            headers["Location"] = {"description": "Where the new resource lives", "required": True,
                                   "schema": {"type": "string"}}
        if method == "post":
            headers["Idempotent-Replayed"] = {
                "description": "`true` when this is the stored response of an earlier request "
                               "with the same Idempotency-Key",
                "schema": {"type": "string", "enum": ["true"]}}
        if not headers:
            del response["headers"]


def _is_page(response: dict) -> bool:
    ref = response["content"].get("application/json", {}).get("schema", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1].startswith("Page_")


def _drop_unused_schemas(doc: dict[str, Any]) -> None:
    """FastAPI's HTTPValidationError and friends are replaced by ProblemDetails: drop schemas no
    longer referenced from the paths (directly or through other schemas)."""
    schemas = doc["components"]["schemas"]
    used: set[str] = set()
    pending = [doc["paths"]]
    while pending:
        text = json.dumps(pending.pop())
        for name in re.findall(r'"#/components/schemas/([^"]+)"', text):
            if name not in used and name in schemas:
                used.add(name)
                pending.append(schemas[name])
    for name in list(schemas):
        if name not in used:
            del schemas[name]
    if not schemas:
        del doc["components"]["schemas"]


# ---- serving it ------------------------------------------------------------------------------

# Swagger UI runs on this origin, next to the sign-in pages: a pinned version with Subresource
# Integrity, so a changed file on the CDN is refused by the browser instead of run. The hashes
# are of the files in the npm package swagger-ui-dist@5.35.0 (which the CDN serves unchanged);
# to upgrade: `npm pack swagger-ui-dist@<v>`, `openssl dgst -sha384 -binary <file> | base64`.
_SWAGGER = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
SWAGGER_JS = f"{_SWAGGER}/swagger-ui-bundle.js"
SWAGGER_JS_SRI = "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9"
SWAGGER_CSS = f"{_SWAGGER}/swagger-ui.css"
SWAGGER_CSS_SRI = "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I"

def install_docs(app: FastAPI) -> None:
    """Serve /openapi.json and /docs (Swagger UI) for the /api/v1 routes; neither is in the
    document itself. The document is built once, on first use, when every route is in place."""
    built: dict[str, Any] = {}

    def document() -> dict[str, Any]:
        if "doc" not in built:
            built["doc"] = build_openapi(app)
        return built["doc"]

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document(), headers={"Cache-Control": "no-cache"})

    page = get_swagger_ui_html(openapi_url="/openapi.json", title=TITLE, swagger_favicon_url="data:,",
                               swagger_js_url=SWAGGER_JS, swagger_css_url=SWAGGER_CSS,
                               swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False})
    html = page.body.decode()
    for url, integrity in ((SWAGGER_JS, SWAGGER_JS_SRI), (SWAGGER_CSS, SWAGGER_CSS_SRI)):
        html = html.replace(f'"{url}"', f'"{url}" integrity="{integrity}" crossorigin="anonymous"', 1)
    policy = _docs_policy(html)

    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": policy, "Cache-Control": "no-cache"})

    app.add_api_route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def _docs_policy(html: str) -> str:
    """The CSP of /docs: Swagger UI's script and stylesheet from their CDN, its one inline script
    by hash (no 'unsafe-inline' for scripts), and requests to this origin only (the document,
    /token, and "Try it out")."""
    origins = sorted({match.group(1) for match in re.finditer(r'(?:src|href)="(https://[^/"]+)/', html)})
    inline = [match.group(1) for match in re.finditer(r"<script>(.*?)</script>", html, re.S)]
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
              for body in inline]
    cdn = " ".join(origins)
    return "; ".join([
        "default-src 'none'",
        f"script-src {cdn} {' '.join(hashes)}".strip(),
        f"style-src {cdn} 'unsafe-inline'",  # Swagger UI sets style attributes on its elements
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'", "base-uri 'none'", "object-src 'none'", "form-action 'self'",
    ])
