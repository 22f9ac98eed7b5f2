"""The composition root: builds every service once, from one Settings object."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import timedelta

from idp.accounts.password_policy import PasswordPolicy
from idp.accounts.passwords import PasswordHasher
from idp.accounts.phones import PhonePolicy
from idp.accounts.self_service import SelfService
from idp.accounts.service import AccountService
from idp.accounts.temporary import TemporaryPasswordService
from idp.courier.providers import providers_from_settings
from idp.courier.service import Courier
from idp.db import Database
from idp.housekeeping import Housekeeping
from idp.keys.service import KeyRing
from idp.ratelimit import BreakerTrip, FailoverStorage, RateLimiter, SmsGuard, log_breaker_trip
from idp.mfa.recovery import RecoveryCodeService
from idp.mfa.service import SecondFactorService
from idp.mfa.totp import TotpService
from idp.otp.service import OtpService
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
        self._background: set[asyncio.Task] = set()  # fire-and-forget work that must not be collected
        kek = settings.key_encryption_key()
        self.csrf_key = derive_key(kek, "csrf")
        # The REST API's stored first responses (api/http.py) may hold a new client or webhook
        # secret: sealed at rest like every other secret.
        self.idempotency_key = derive_key(kek, "idempotency-record")
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
        self.password_policy = PasswordPolicy(
            min_length=settings.password_min_length,
            min_length_with_second_factor=settings.password_min_length_with_second_factor,
            max_length=settings.password_max_length, forbid_spaces=settings.password_forbid_spaces,
            service_words=("idp", settings.totp_issuer.casefold()),
        )
        self.phones = PhonePolicy(settings.default_phone_region, settings.sms_allowed_country_codes)
        self.accounts = AccountService(self.hasher, self.password_policy, self.phones)
        self.temporary_passwords = TemporaryPasswordService(self)
        from idp.accounts.admin import AccountAdmin  # accounts as the REST API manages them
        self.account_admin = AccountAdmin(self)
        # Second factors (mfa/): TOTP secrets sealed, recovery codes HMACed, each under its own key.
        self.factors = SecondFactorService(
            TotpService(derive_key(kek, "totp"), issuer=settings.totp_issuer),
            RecoveryCodeService(derive_key(kek, "recovery-code"), count=settings.recovery_code_count),
            phones=self.phones,
        )
        self.sessions = SessionService(settings.session_ttl)
        self.clients = ClientService(
            derive_key(kek, "client-secret"), token_endpoint=f"{settings.issuer}/token",
            issuer=settings.issuer, assertion_max_age=settings.client_assertion_max_age,
            cache_seconds=settings.client_cache_seconds,
        )
        self.clients.cache.watch(self.db.session_class)
        self.minter = TokenMinter(
            self.keyring, issuer=settings.issuer, access_ttl=settings.access_token_ttl,
            id_ttl=settings.id_token_ttl, refresh_ttl=settings.refresh_token_ttl,
        )
        self.authorization = AuthorizationService(self)
        self.flows = FlowService(self)
        self.tokens = TokenEndpoint(self)
        self.resources = ResourceService(self)
        self.logout = LogoutService(self)
        # One-time codes and the email/SMS outbox (otp/, courier/).
        self.otp = OtpService(
            derive_key(kek, "otp"), digits=settings.otp_digits, ttl_seconds=settings.otp_ttl,
            resend_cooldown=settings.otp_resend_cooldown, max_attempts=settings.otp_max_attempts,
            max_failures=settings.otp_max_failures, lockout_seconds=settings.otp_lockout_seconds,
        )
        self.courier = Courier(
            derive_key(kek, "courier"), providers_from_settings(settings),
            max_attempts=settings.courier_max_attempts,
            backoff_seconds=settings.courier_backoff_seconds,
            backoff_max_seconds=settings.courier_backoff_max_seconds,
            lease_seconds=settings.courier_lease_seconds,
        )
        # Phone numbers and abuse limits (accounts/phones.py, ratelimit/): counters in Redis when
        # IDP_REDIS_URL is set; keys are HMACs, so Redis holds no numbers or addresses.
        self.rate_limiter = RateLimiter(
            FailoverStorage(settings.redis_url, timeout=settings.redis_timeout,
                            retry_seconds=settings.redis_retry_seconds),
            derive_key(kek, "rate-limit-keys"), settings.rate_limits,
        )
        self.sms_guard = SmsGuard(
            self.rate_limiter, self.phones, resend_delays=settings.sms_resend_delays,
            resend_window=settings.sms_resend_window, budget=settings.sms_hourly_budget,
            budget_window=settings.sms_budget_window, on_breaker_trip=self._sms_breaker_tripped,
        )
        # Password reset (flows/recovery.py): destinations sealed, browsers bound, under its own key.
        # Organisations (orgs/) and the audit log every change of theirs writes (audit/).
        from idp.audit.service import AuditLog
        from idp.orgs.service import OrgService
        self.audit = AuditLog()
        self.housekeeping = Housekeeping(access_token_ttl=settings.access_token_ttl,
                                         id_token_ttl=settings.id_token_ttl)
        from idp.events.service import Limits, WebhookService  # webhooks: the outbox every audit event feeds
        self.webhooks = WebhookService(derive_key(kek, "webhook-secret"), self.audit, Limits(
            allow_http_loopback=settings.webhook_allow_http_loopback,
            timeout_seconds=settings.webhook_timeout_seconds, max_attempts=settings.webhook_max_attempts,
            backoff_seconds=settings.webhook_backoff_seconds,
            backoff_max_seconds=settings.webhook_backoff_max_seconds,
            lease_seconds=settings.webhook_lease_seconds, disable_after=settings.webhook_disable_after,
            disable_after_seconds=settings.webhook_disable_after_seconds,
            retention_seconds=settings.webhook_delivery_retention_seconds))
        self.audit.listeners.append(self.webhooks.enqueue_for_event)
        self.clients.audit = self.keyring.audit = self.audit  # client and key changes are audited
        self.orgs = OrgService(self, derive_key(kek, "org-links"))  # + members, invitations, ownership
        from idp.orgs.policy import OrgPolicyService  # sign-in policies and the floor (orgs/policy.py)
        self.org_policies = OrgPolicyService(self)
        from idp.orgs.products import ProductService  # products and their licences (orgs/products.py)
        self.products = ProductService(self)
        from idp.orgs.usernames import UsernameService  # maija@acme usernames (orgs/usernames.py)
        self.org_usernames = UsernameService(self)
        from idp.orgs.contacts import ContactService  # contacts and their change requests (orgs/contacts.py)
        self.contacts = ContactService(self, derive_key(kek, "contact-request"))
        from idp.flows.recovery import RecoveryService
        self.recovery = RecoveryService(self, derive_key(kek, "password-reset"))
        from idp.flows.registration import RegistrationService
        self.registration = RegistrationService(self, derive_key(kek, "registration"))
        self.self_service = SelfService(self)  # the account pages (ui/account.py)

    async def _sms_breaker_tripped(self, trip: BreakerTrip) -> None:
        """The SMS budget breaker opened (once per window, on one node): a warning and an audit
        event (SECURITY-CHECKLIST 95)."""
        from idp.audit.service import SYSTEM

        await log_breaker_trip(trip)

        async def write() -> None:
            await self.db.run(lambda db: self.audit.record(
                db, SYSTEM, "sms.budget_breaker_tripped", target_type="sms_budget",
                after={"budget": trip.budget, "window_seconds": trip.window_seconds,
                       "reopens_in_seconds": trip.reopens_in_seconds}))

        # In a transaction of its own, after the refused request's: the request may hold the
        # database's write lock (SQLite) while this hook runs inside it.
        task = asyncio.get_running_loop().create_task(write())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        await self.rate_limiter.close()
        self.hasher.close()
        await self.db.dispose()
