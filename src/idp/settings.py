"""One settings object, read from `IDP_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    # Short, so that a member removed or demoted in an organisation loses the old claims quickly.
    access_token_ttl: int = 300
    id_token_ttl: int = 600
    refresh_token_ttl: int = 30 * 24 * 3600
    session_ttl: int = 12 * 3600
    flow_ttl: int = 15 * 60
    # How long a client assertion (private_key_jwt) may live, so its `jti` need only be kept that long.
    client_assertion_max_age: int = 300
    # How often a node re-reads signing keys from the database (another node may have rotated).
    key_cache_seconds: float = 5.0
    # How long a node keeps a client's row (its secret hash, grant types, scopes) for client
    # authentication. A change through this node (REST API) applies at once; one made by another
    # node or by the `idp` command (a deleted client, a rotated secret) is seen within this many
    # seconds: the same bound as key_cache_seconds. 0 turns the cache off.
    client_cache_seconds: float = Field(5.0, ge=0)

    # argon2id, OWASP minimum: m=19 MiB, t=2, p=1.
    argon2_memory_kib: int = 19 * 1024
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    # At most this many hashes in flight (one per core measured best; see ARCHITECTURE.md): by
    # default the cores this process may run on (taskset, a container's cpuset), not the machine's.
    hash_concurrency: int = Field(default_factory=lambda: _usable_cpus())

    default_locale: str = "en"
    log_level: str = "INFO"
    log_json: bool = True
    # Serve the built-in demo relying party at /_demo (make run).
    demo: bool = False

    # ---- One-time codes (otp/) ------------------------------------------------------------------
    otp_digits: int = Field(6, ge=6, le=10)
    otp_ttl: int = 600  # seconds a code lives
    otp_resend_cooldown: int = 30  # seconds before another code for the same purpose and address
    otp_max_attempts: int = 5  # wrong tries that burn one code
    # Consecutive failures per purpose and address, across codes (a new code does not reset them),
    # after which codes are refused for `otp_lockout_seconds` since the last failure.
    otp_max_failures: int = 10
    otp_lockout_seconds: int = 900

    # ---- Courier: email and SMS delivery (courier/) ---------------------------------------------
    # `dev` prints every message to the console and appends it to `dev_outbox_file`.
    email_provider: Literal["dev", "smtp"] = "dev"
    sms_provider: Literal["dev", "webhook", "twilio"] = "dev"
    dev_outbox_file: Path = Path("var/outbox.log")
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: str | None = None
    mail_from: str = "idp <no-reply@localhost>"
    # Generic JSON webhook, signed with HMAC-SHA-256 over "<timestamp>.<body>".
    sms_webhook_url: str | None = None
    sms_webhook_secret: str | None = None
    # Twilio's Messages API (the base URL is a setting so tests and proxies can point elsewhere).
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    courier_max_attempts: int = 5  # then the message is `failed`
    courier_backoff_seconds: float = 30.0  # doubled after each failed attempt ...
    courier_backoff_max_seconds: float = 3600.0  # ... up to this
    courier_lease_seconds: float = 120.0  # a claimed message is retried if not marked by then

    # ---- Passwords and second factors (accounts/password_policy.py, mfa/) -----------------------
    # NIST SP 800-63B-4 §3.1.1.2: at least 15 characters when the password is the only factor, 8
    # when the account has a second factor; at least 64 must be accepted (the maximum only bounds
    # the hashing work). Lengths count Unicode characters after NFKC normalisation.
    password_min_length: int = Field(15, ge=8)
    password_min_length_with_second_factor: int = Field(8, ge=8)
    password_max_length: int = Field(256, ge=64, le=4096)
    # A house rule some customers ask for (seed 001: "no spaces"); NIST itself allows spaces.
    password_forbid_spaces: bool = False
    # The issuer an authenticator app shows beside a TOTP entry (otpauth:// `issuer`); also a
    # context word no password may be built on.
    totp_issuer: str = "idp"
    # Recovery codes issued at a time (each single use, 60 bits).
    recovery_code_count: int = Field(10, ge=5, le=20)

    # ---- Phone numbers, rate limits and SMS abuse limits (accounts/phones.py, ratelimit/) --------
    # National forms ("040 123 4567") are read as numbers of this region (ISO 3166 code).
    default_phone_region: str = "FI"
    # SMS goes only to these country calling codes (SECURITY-CHECKLIST 94). Default: the EU/EEA
    # member states. Not +350 (Gibraltar) or +41 (Switzerland), which are neither; the EU's
    # overseas regions with their own codes (+262, +590, +594, +596) are left to operators.
    # Comma-separated or a JSON list: IDP_SMS_ALLOWED_COUNTRY_CODES=358,46,47
    sms_allowed_country_codes: Annotated[tuple[int, ...], NoDecode] = (
        30, 31, 32, 33, 34, 351, 352, 353, 354, 356, 357, 358, 359, 36, 370, 371, 372, 385, 386,
        39, 40, 420, 421, 423, 43, 45, 46, 47, 48, 49,
    )
    # Counters live in Redis when set (redis:// or rediss://), in process memory otherwise. If
    # Redis stops answering, counting moves to memory with one warning and comes back by itself.
    redis_url: str | None = None
    redis_timeout: float = 0.5  # connect and command timeout in seconds
    redis_retry_seconds: float = 30.0  # how often a node probes a Redis that stopped answering
    # Overrides of ratelimit/rules.py by rule name (JSON): {"sms_per_ip": "5/minute;20/hour"}
    rate_limits: dict[str, str] = {}
    # Growing waits between SMS to one number: the n-th resend waits the n-th value (seconds);
    # the last repeats. Sends older than `sms_resend_window` seconds no longer count.
    sms_resend_delays: Annotated[tuple[int, ...], NoDecode] = (30, 60, 120, 300, 600)
    sms_resend_window: int = 3600
    # Global SMS budget per window: past it a circuit breaker refuses every SMS until the
    # window ends and reports the trip (SECURITY-CHECKLIST 95).
    sms_hourly_budget: int = Field(1000, ge=1)
    sms_budget_window: int = Field(3600, ge=1)

    # ---- Sign-in, registration and the account pages (flows/, ui/) --------------------------------
    # Passwordless sign-in by a one-time code (operators switch each channel on or off). With SMS
    # on, a phone number typed on the login page leads straight to the code step.
    login_code_sms: bool = True
    login_code_email: bool = True
    # Self-registration paths: email + password confirmed by a code, and phone + SMS code.
    registration_email: bool = True
    registration_phone: bool = True
    # Removing a factor, changing a phone or a password on the account pages needs a sign-in at
    # most this many seconds old; older sessions are asked to sign in again first.
    reauth_seconds: int = Field(600, ge=30)
    # How long a temporary password set by an admin works (it must be changed at first use).
    temporary_password_ttl: int = Field(7 * 24 * 3600, ge=300)

    # ---- Password reset links (flows/reset_links.py) ---------------------------------------------
    # How long a reset link that an integrator asked for (POST /api/v1/users/{id}/password-reset)
    # stays valid; a newer request voids the older link at once.
    password_reset_link_ttl: int = Field(24 * 3600, ge=300)

    # ---- Courier worker (courier/service.py) ----------------------------------------------------
    # Run the courier in the server process (a background task per worker process; many nodes may
    # run it at once, the claim is atomic). false: run `idp courier run` as its own process instead.
    courier_in_process: bool = True
    courier_poll_seconds: float = Field(2.0, gt=0)  # how often the worker looks for due messages

    # ---- Housekeeping (housekeeping.py) ----------------------------------------------------------
    # Every this many seconds each node deletes the sign-in and token rows nothing can use any more.
    housekeeping_seconds: float = Field(600.0, gt=0)

    # ---- Webhooks (events/) ---------------------------------------------------------------------
    # Run the webhook delivery worker in the server process (many nodes may; claims are atomic).
    webhooks_in_process: bool = True
    webhook_poll_seconds: float = Field(2.0, gt=0)  # how often the worker looks for due deliveries
    # Subscription URLs must be https. true (development and tests only): http to 127.0.0.1,
    # ::1 or localhost is allowed too. Never http to other hosts, never userinfo in the URL.
    webhook_allow_http_loopback: bool = False
    # The whole of one attempt (connect, send, status and headers; the body is never read);
    # redirects are not followed.
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)
    webhook_max_attempts: int = Field(10, ge=1)  # then the delivery is `failed`
    webhook_backoff_seconds: float = Field(30.0, gt=0)  # doubled after each failed attempt ...
    webhook_backoff_max_seconds: float = Field(6 * 3600.0, gt=0)  # ... up to this
    # A claimed delivery is retried by any worker if not marked by then (at least the timeout
    # plus 30 s is used whatever this says).
    webhook_lease_seconds: float = Field(120.0, gt=0)
    # A subscription is disabled on a sustained failure only: at least this many failed attempts
    # in a row (over all its deliveries) AND the first of them at least `..._seconds` ago; a
    # success resets both. Events go on being queued for a disabled subscription and are sent when
    # its owner re-enables it (POST /api/v1/webhooks/{id}/enable).
    webhook_disable_after: int = Field(50, ge=1)
    webhook_disable_after_seconds: float = Field(24 * 3600.0, ge=0)
    # Delivered and failed deliveries are deleted this long after they end, and deliveries that
    # waited this long for a disabled subscription expire (failed). The webhook worker does it
    # (at most every 5 minutes), and deletes expired Idempotency-Key records too.
    webhook_delivery_retention_seconds: float = Field(7 * 24 * 3600.0, gt=0)

    # ---- Organisations (orgs/) --------------------------------------------------------------------
    # How long an emailed invitation link and an ownership-transfer offer stay valid.
    invitation_ttl: int = Field(7 * 24 * 3600, ge=60)
    ownership_offer_ttl: int = Field(7 * 24 * 3600, ge=60)
    # How long a contact-change request (both contacts confirm by emailed links) stays open.
    contact_request_ttl: int = Field(7 * 24 * 3600, ge=300)
    # The platform floor of every organisation's sign-in policy (orgs/policy.py): no policy goes
    # below it. An update asking for something looser is refused; a stored policy that the floor
    # has since overtaken is tightened when it is read (`OrgPolicyService.effective`).
    # true: every organisation requires a second factor of its members.
    org_policy_floor_require_second_factor: bool = False
    # No organisation may let a session live longer than this many seconds (null: no cap).
    org_policy_floor_max_session_age: int | None = Field(None, ge=300)
    # The second factors organisations may allow, a JSON list:
    # IDP_ORG_POLICY_FLOOR_ALLOWED_FACTORS='["totp", "email"]'
    org_policy_floor_allowed_factors: tuple[Literal["totp", "sms", "email"], ...] = Field(
        ("totp", "sms", "email"), min_length=1)
    # false: no organisation may allow sign-in by phone number and SMS code alone.
    org_policy_floor_phone_code_sign_in: bool = True
    # The highest organisation role a phone-code session may carry, whatever a policy says.
    org_policy_floor_phone_code_max_role: Literal["owner", "admin", "editor", "member"] = "owner"

    @field_validator("sms_allowed_country_codes", "sms_resend_delays", mode="before")
    @classmethod
    def _int_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip().lstrip("+") for part in text.split(",") if part.strip()]
        return value

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


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
