"""The REST API as an integrator uses it: a client registered with API scopes, a token from
/token by client_credentials, then plain HTTP with `Authorization: Bearer`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx

from idp.api.scopes import SCOPES
from tests import secrets_registry
from tests.rp import RelyingParty

ALL_SCOPES = tuple(SCOPES)
PROBLEM = "application/problem+json"


@dataclass
class Integrator:
    client_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def key(self) -> dict[str, str]:
        """Headers for a POST with a fresh Idempotency-Key."""
        return {**self.headers, "Idempotency-Key": secrets.token_hex(12)}


async def integrator(http: httpx.AsyncClient, rp: RelyingParty, scopes=ALL_SCOPES, *,
                     org: str | None = None, request_scope: str | None = None) -> Integrator:
    """Register a confidential client allowed `scopes` (bound to `org` if given) and get a token."""
    client = await rp.register(grant_types=["client_credentials"], redirect_uris=[], scopes=list(scopes),
                               first_party=False, org=org, name=f"integrator {secrets.token_hex(3)}")
    data = {"grant_type": "client_credentials"}
    if request_scope is not None:
        data["scope"] = request_scope
    reply = await http.post("/token", data=data, auth=(client.client_id, client.secret))
    assert reply.status_code == 200, reply.text
    token = reply.json()["access_token"]
    secrets_registry.remember(token)
    return Integrator(client.client_id, token)


def assert_problem(reply: httpx.Response, status: int, slug: str) -> dict:
    """The reply is problem+json of this status and type; returns its body."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith(PROBLEM), reply.headers["content-type"]
    body = reply.json()
    assert body["type"] == f"urn:idp:problem:{slug}", body
    assert body["status"] == status
    return body
