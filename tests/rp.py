"""A relying party as an outside client would write it: discovery, PKCE, the login form, the
token exchange, and validation of tokens with joserfc against the published JWKS.

It registers its clients and users through the services (as the CLI does); everything after
that goes over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.oauth.clients import ClientSpec
from tests import secrets_registry

PASSWORD = "a long enough test password"
secrets_registry.remember(PASSWORD)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def form_field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no field {name} in page"
    return match.group(1)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class RegisteredClient:
    client_id: str
    secret: str | None
    redirect_uri: str
    spec: ClientSpec


@dataclass
class AuthResult:
    location: str
    params: dict[str, str]
    verifier: str | None
    nonce: str | None
    state: str
    redirect_uri: str

    @classmethod
    def of(cls, started: httpx.Response, location: str) -> AuthResult:
        """What the relying party holds once `started` (its authorize reply, carrying what it
        sent) has led to `location`, the redirect back with a code."""
        sent = started.extensions["sent"]
        return cls(location, query_of(location), started.extensions["pkce_verifier"], sent.get("nonce"),
                   sent["state"], sent["redirect_uri"])


@dataclass
class RelyingParty:
    app: object
    services: object
    counter: list = field(default_factory=lambda: [0])

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://idp.test")

    async def discovery(self, http: httpx.AsyncClient) -> dict:
        reply = await http.get("/.well-known/openid-configuration")
        assert reply.status_code == 200
        return reply.json()

    async def keyset(self, http: httpx.AsyncClient) -> KeySet:
        reply = await http.get((await self.discovery(http))["jwks_uri"].removeprefix("http://idp.test"))
        assert reply.status_code == 200
        return KeySet.import_key_set(reply.json())

    async def verify(self, http: httpx.AsyncClient, token: str, **expect) -> dict:
        """Verify a JWT against the published JWKS with joserfc and return its header+claims."""
        keys = await self.keyset(http)
        header = jwt.decode(token, keys, algorithms=["RS256", "ES256", "EdDSA", "Ed25519"])
        return {"header": header.header, **header.claims}

    async def register(self, *, public: bool = False, first_party: bool = True, **overrides) -> RegisteredClient:
        self.counter[0] += 1
        redirect_uri = overrides.pop("redirect_uri", f"https://rp{secrets.token_hex(4)}.example/cb")
        spec = ClientSpec(
            name=overrides.pop("name", "Test RP"), redirect_uris=overrides.pop("redirect_uris", [redirect_uri]),
            public=public, first_party=first_party, **overrides,
        )

        async def create(db):
            return await self.services.clients.create(db, spec)

        client, secret = await self.services.db.run(create)
        secrets_registry.remember(secret)
        return RegisteredClient(client.client_id, secret, redirect_uri, spec)

    async def user(self, *, password: str = PASSWORD, name: str = "Maija Meikäläinen") -> tuple[str, str]:
        email = f"user-{secrets.token_hex(6)}@example.com"

        async def create(db):
            return await self.services.accounts.create_user(db, email=email, password=password, name=name)

        user = await self.services.db.run(create)
        return email, user.id

    async def authorize(self, http: httpx.AsyncClient, client: RegisteredClient, *, pkce: bool = True,
                        scope: str = "openid profile email", method: str = "GET", **extra) -> httpx.Response:
        """Send an authorization request; returns the raw response (not followed)."""
        verifier, challenge = pkce_pair()
        params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
                  "scope": scope, "state": secrets.token_urlsafe(12), "nonce": secrets.token_urlsafe(12)}
        if pkce:
            params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
        params |= extra
        params = {k: v for k, v in params.items() if v is not None}
        if method == "POST":
            reply = await http.post("/authorize", data=params)
        else:
            reply = await http.get("/authorize?" + urlencode(params))
        reply.extensions["pkce_verifier"] = verifier if pkce else None
        reply.extensions["sent"] = params
        return reply

    async def login(self, http: httpx.AsyncClient, login_location: str, email: str,
                    password: str = PASSWORD) -> httpx.Response:
        secrets_registry.remember(password)
        page = await http.get(login_location)
        assert page.status_code == 200, page.text
        return await http.post("/login", data={
            "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
            "username": email, "password": password,
        })

    async def consent(self, http: httpx.AsyncClient, consent_location: str, decision: str = "allow") -> httpx.Response:
        page = await http.get(consent_location)
        assert page.status_code == 200, page.text
        return await http.post("/consent", data={
            "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
            "decision": decision,
        })

    async def sign_in(self, http: httpx.AsyncClient, client: RegisteredClient, email: str, *,
                      password: str = PASSWORD, **extra) -> AuthResult:
        """authorize → (login) → (consent) → redirect back with a code."""
        reply = started = await self.authorize(http, client, **extra)
        sent = reply.extensions["sent"]
        location = reply.headers.get("location", "")
        for _ in range(3):
            assert reply.status_code in (302, 303), reply.text
            location = reply.headers["location"]
            if location.startswith("/login"):
                reply = await self.login(http, location, email, password)
            elif location.startswith("/consent"):
                reply = await self.consent(http, location)
            else:
                break
        assert location.startswith(sent["redirect_uri"]), location
        secrets_registry.remember_fields(query_of(location))
        return AuthResult.of(started, location)

    async def token(self, http: httpx.AsyncClient, client: RegisteredClient, data: dict, *,
                    auth: str = "basic") -> httpx.Response:
        data = dict(data)
        headers = {}
        if auth == "basic" and client.secret:
            headers["Authorization"] = httpx.BasicAuth(client.client_id, client.secret)._auth_header
        elif auth == "post" and client.secret:
            data |= {"client_id": client.client_id, "client_secret": client.secret}
        elif auth == "none":
            data |= {"client_id": client.client_id}
        secrets_registry.remember_fields(data)
        reply = await http.post("/token", data=data, headers=headers)
        if reply.headers.get("content-type", "").startswith("application/json"):
            secrets_registry.remember_fields(reply.json())
        return reply

    async def exchange(self, http: httpx.AsyncClient, client: RegisteredClient, result: AuthResult,
                       **kwargs) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": result.params["code"],
                "redirect_uri": result.redirect_uri}
        if result.verifier:
            data["code_verifier"] = result.verifier
        return await self.token(http, client, data, **kwargs)


def now() -> int:
    return int(time.time())
