"""problem+json (RFC 9457) for the REST API: one stable `type` per kind of error.

Services raise their own domain errors (orgs/errors.py, accounts/errors.py, ...); `to_problem`
maps them here, once. API code that refuses something itself raises `Problem`.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from pydantic import BaseModel, ConfigDict, Field

from idp.accounts.errors import AccountError
from idp.accounts.password_policy import PasswordRejected
from idp.accounts.phones import PhoneNumberError
from idp.accounts.service import AccountNotFound, IdentifierTaken, InvalidIdentifier
from idp.db.paging import InvalidCursor
from idp.events.urls import WebhookRejected
from idp.oauth.clients import ClientConflict, ClientError, ClientForbidden
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.policy import PolicyRejected
from idp.ratelimit.errors import RateLimited

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:idp:problem:"

# slug → (status, title). The slug is the stable part of `type`: clients switch on it.
TYPES: dict[str, tuple[int, str]] = {
    "invalid-request": (400, "The request is not valid"),
    "invalid-cursor": (400, "The pagination cursor is not valid"),
    "unauthorized": (401, "A valid access token is required"),
    "insufficient-scope": (403, "The access token lacks a scope this request needs"),
    "forbidden": (403, "This client may not do this"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "conflict": (409, "The current state does not allow this"),
    "identifier-taken": (409, "The identifier belongs to another account"),
    "idempotency-key-in-use": (409, "A request with this Idempotency-Key is still running"),
    "gone": (410, "No longer available"),
    "precondition-failed": (412, "The resource changed since it was read (If-Match)"),
    "unsupported-media-type": (415, "Send application/json"),
    "validation-error": (422, "The request body or parameters are not valid"),
    "idempotency-key-reused": (422, "The Idempotency-Key was used for a different request"),
    "password-rejected": (422, "The password does not meet the password policy"),
    "invalid-phone-number": (422, "The phone number is not valid or not allowed"),
    "invalid-client-metadata": (422, "The client registration breaks a rule"),
    "policy-rejected": (422, "The sign-in policy breaks a rule or goes below the platform's floor"),
    "rate-limited": (429, "Too many requests"),
    "service-unavailable": (503, "The service is temporarily unavailable"),
}

_HTTP_SLUGS = {400: "invalid-request", 404: "not-found", 405: "method-not-allowed", 415: "unsupported-media-type"}


class ProblemDetails(BaseModel):
    """RFC 9457 problem details. Extension members (e.g. `missing_scope`, `errors`) may follow."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "urn:idp:problem:not-found", "title": "Not found", "status": 404,
        "detail": "not found"}]})

    type: str = Field(description="A stable URN naming the kind of error: urn:idp:problem:<slug>")
    title: str
    status: int
    detail: str | None = None


class Problem(Exception):
    def __init__(self, slug: str, detail: str | None = None, *, headers: dict[str, str] | None = None,
                 **extensions: Any) -> None:
        if slug not in TYPES:
            raise ValueError(f"unknown problem type {slug!r}")
        super().__init__(detail or slug)
        self.slug = slug
        self.status, self.title = TYPES[slug]
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    def response(self) -> JSONResponse:
        body = {"type": TYPE_PREFIX + self.slug, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extensions)
        return JSONResponse(body, status_code=self.status, media_type=MEDIA_TYPE,
                            headers={"Cache-Control": "no-store", **self.headers})


def to_problem(exc: Exception) -> Problem | None:
    """The problem for a domain error, or None for anything unexpected (a real 500)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, RequestValidationError):
        return Problem("validation-error", "see `errors`", errors=[
            {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
            for error in exc.errors()])
    if isinstance(exc, HTTPException) and exc.status_code in _HTTP_SLUGS:
        # FastAPI's own refusals inside a route, e.g. a body that is not JSON (400).
        return Problem(_HTTP_SLUGS[exc.status_code], str(exc.detail), headers=dict(exc.headers or {}))
    if isinstance(exc, InvalidCursor):
        return Problem("invalid-cursor", str(exc))
    if isinstance(exc, PolicyRejected):
        return Problem("policy-rejected", exc.message)
    if isinstance(exc, OrgNotFound):
        return Problem("not-found", exc.message)
    if isinstance(exc, Forbidden):
        return Problem("forbidden", exc.message)
    if isinstance(exc, Conflict):
        return Problem("conflict", exc.message)
    if isinstance(exc, OrgError):
        return Problem({404: "not-found", 403: "forbidden", 409: "conflict", 410: "gone"}.get(
            exc.status, "invalid-request"), exc.message)
    if isinstance(exc, PasswordRejected):
        return Problem("password-rejected", str(exc))
    if isinstance(exc, IdentifierTaken):
        return Problem("identifier-taken", str(exc))
    if isinstance(exc, AccountNotFound):
        return Problem("not-found", str(exc))
    if isinstance(exc, InvalidIdentifier):
        return Problem("invalid-phone-number" if exc.kind == "phone" else "validation-error", str(exc))
    if isinstance(exc, PhoneNumberError):
        return Problem("invalid-phone-number", str(exc))
    if isinstance(exc, AccountError):
        return Problem("conflict", str(exc))
    if isinstance(exc, WebhookRejected):
        return Problem("validation-error", str(exc))
    if isinstance(exc, ClientConflict):
        return Problem("conflict", str(exc))
    if isinstance(exc, ClientForbidden):
        return Problem("forbidden", str(exc))
    if isinstance(exc, ClientError):
        return Problem("invalid-client-metadata", str(exc))
    if isinstance(exc, RateLimited):
        return Problem("rate-limited", f"retry after {exc.retry_after} s",
                       headers={"Retry-After": str(exc.retry_after)})
    return None


def responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries for the error statuses an operation can answer."""
    described: dict[int, str] = {}
    for status, title in TYPES.values():
        described.setdefault(status, title)
    return {status: {"model": ProblemDetails, "description": described.get(status, "Error"),
                     "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}
            for status in statuses}
