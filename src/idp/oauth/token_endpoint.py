"""The token endpoint pipeline (RFC 6749 §3.2): parse, authenticate the client, run one grant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from idp.oauth.clients import after_authentication
from idp.oauth.errors import InvalidRequest, UnauthorizedClient, UnsupportedGrantType
from idp.oauth.grants import GRANTS, TokenRequest
from idp.oauth.models import Client
from idp.oauth.params import single_valued

if TYPE_CHECKING:
    from idp.services import Services


class TokenEndpoint:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def exchange(self, db: AsyncSession, items: list[tuple[str, str]],
                       authorization: str | None) -> dict:
        params = single_valued(items)
        client = await self.s.clients.authenticate(db, params, authorization)
        return await after_authentication(db, client, lambda: self._grant(db, client, params))

    async def _grant(self, db: AsyncSession, client: Client, params: dict[str, str]) -> dict:
        grant_type = params.get("grant_type")
        if grant_type is None:
            raise InvalidRequest("grant_type is required")
        handler = GRANTS.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType(f"unsupported grant_type: {grant_type}")
        if grant_type not in client.grant_types:
            raise UnauthorizedClient(f"client may not use {grant_type}")
        await self.s.keyring.load(db)
        return await handler(TokenRequest(db, client, params, self.s))
