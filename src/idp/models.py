"""Imports every model so the metadata is complete (alembic autogenerate and checks)."""

from idp.accounts.models import Identifier, User  # noqa: F401
from idp.api.models import IdempotencyRecord  # noqa: F401
from idp.audit.models import AuditEvent  # noqa: F401
from idp.courier.models import CourierMessage  # noqa: F401
from idp.events.models import WebhookDelivery, WebhookSubscription  # noqa: F401
from idp.flows.models import AuthorizationFlow  # noqa: F401
from idp.flows.recovery import PasswordResetFlow  # noqa: F401
from idp.flows.registration import RegistrationFlow  # noqa: F401
from idp.keys.models import SigningKey  # noqa: F401
from idp.mfa.models import RecoveryCode, TotpFactor  # noqa: F401
from idp.oauth.models import (  # noqa: F401
    AuthorizationCode, Client, Consent, Grant, RefreshToken, RevokedAccessToken, UsedClientAssertion,
)
from idp.orgs.models import (  # noqa: F401
    ContactChangeRequest, Invitation, Membership, Organisation, OrgContact, OwnershipOffer, Product,
    ProductAccess,
)
from idp.otp.models import OneTimeCode, OtpSubject  # noqa: F401
from idp.sessions.models import BrowserSession  # noqa: F401
from idp.db import Base

metadata = Base.metadata
