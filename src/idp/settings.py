"""One settings object, read from `IDP_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

import base64
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IDP_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    issuer: str = "http://127.0.0.1:8000"
    database_url: str = "sqlite+aiosqlite:///./idp.db"
    db_pool_size: int = 10
    db_pool_timeout: float = 5.0  # also the connect timeout
    db_statement_timeout: float = 15.0

    # Key-encryption key (32 bytes, urlsafe base64). Development generates one in `dev_key_dir`.
    kek: str | None = None
    dev_key_dir: Path = Path("keys")

    # Lifetimes in seconds.
    code_ttl: int = Field(60, le=600)  # RFC 6749 §4.1.2: at most 10 minutes; we use 60 s
    access_token_ttl: int = 600
    id_token_ttl: int = 600
    refresh_token_ttl: int = 30 * 24 * 3600
    session_ttl: int = 12 * 3600
    flow_ttl: int = 15 * 60
    # How long a client assertion (private_key_jwt) may live, so its `jti` need only be kept that long.
    client_assertion_max_age: int = 300
    # How often a node re-reads signing keys from the database (another node may have rotated).
    key_cache_seconds: float = 5.0

    # argon2id, OWASP minimum: m=19 MiB, t=2, p=1.
    argon2_memory_kib: int = 19 * 1024
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    # At most this many hashes in flight (one per core measured best; see ARCHITECTURE.md).
    hash_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1)

    default_locale: str = "en"
    log_level: str = "INFO"
    log_json: bool = True
    # Serve the built-in demo relying party at /_demo (make run).
    demo: bool = False

    @field_validator("issuer")
    @classmethod
    def _issuer_has_no_trailing_slash(cls, value: str) -> str:
        # OIDC Discovery §4.3: the issuer must be identical everywhere; we never add a slash.
        return value.rstrip("/")

    @property
    def is_https(self) -> bool:
        return self.issuer.startswith("https://")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def key_encryption_key(self) -> bytes:
        """The 32-byte KEK; in development it is generated once under `dev_key_dir`."""
        if self.kek:
            return _decode_kek(self.kek)
        if self.env == "production":
            raise RuntimeError("IDP_KEK must be set in production")
        path = self.dev_key_dir / "dev-kek"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Created exclusively and private from the first byte: several workers starting at
            # once must end up with the one same KEK, never each their own.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as file:
                file.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        return _decode_kek(path.read_text().strip())


def _decode_kek(value: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise RuntimeError("IDP_KEK must be 32 bytes, urlsafe base64 encoded") from None
    if len(raw) != 32:
        raise RuntimeError("IDP_KEK must be 32 bytes, urlsafe base64 encoded")
    return raw


@lru_cache
def get_settings() -> Settings:
    return Settings()
