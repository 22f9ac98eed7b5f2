"""The composition root: builds every service once, from one Settings object."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from idp.accounts.passwords import PasswordHasher
from idp.accounts.service import AccountService
from idp.db import Database
from idp.keys.service import KeyRing
from idp.settings import Settings
from idp.sessions.service import SessionService


def derive_key(kek: bytes, purpose: str) -> bytes:
    """A separate secret per purpose from the one KEK (HKDF-Expand with a single block)."""
    return hmac.new(kek, purpose.encode() + b"\x01", hashlib.sha256).digest()


class Services:
    def __init__(self, settings: Settings) -> None:
        from idp.flows.service import FlowService
        from idp.oauth.authorization import AuthorizationService
        from idp.oauth.clients import ClientService
        from idp.oauth.logout import LogoutService
        from idp.oauth.resource import ResourceService
        from idp.oauth.token_endpoint import TokenEndpoint
        from idp.oauth.tokens import TokenMinter

        self.settings = settings
        kek = settings.key_encryption_key()
        self.csrf_key = derive_key(kek, "csrf")
        self.db = Database(settings.database_url, pool_size=settings.db_pool_size,
                           pool_timeout=settings.db_pool_timeout,
                           statement_timeout=settings.db_statement_timeout)
        longest_token = max(settings.access_token_ttl, settings.id_token_ttl)
        self.keyring = KeyRing(
            kek, cache_seconds=settings.key_cache_seconds,
            # A retired key stays published until every token it signed has expired, plus the
            # time other nodes may still sign with it before they reload their key cache.
            retire_after=timedelta(seconds=longest_token + 2 * settings.key_cache_seconds),
        )
        self.hasher = PasswordHasher(
            memory_kib=settings.argon2_memory_kib, time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism, concurrency=settings.hash_concurrency,
        )
        self.accounts = AccountService(self.hasher)
        self.sessions = SessionService(settings.session_ttl)
        self.clients = ClientService(
            derive_key(kek, "client-secret"), token_endpoint=f"{settings.issuer}/token",
            issuer=settings.issuer, assertion_max_age=settings.client_assertion_max_age,
        )
        self.minter = TokenMinter(
            self.keyring, issuer=settings.issuer, access_ttl=settings.access_token_ttl,
            id_ttl=settings.id_token_ttl, refresh_ttl=settings.refresh_token_ttl,
        )
        self.authorization = AuthorizationService(self)
        self.flows = FlowService(self)
        self.tokens = TokenEndpoint(self)
        self.resources = ResourceService(self)
        self.logout = LogoutService(self)

    async def close(self) -> None:
        self.hasher.close()
        await self.db.dispose()
