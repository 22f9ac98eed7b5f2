"""The courier: a transactional outbox that delivers email and SMS with retries."""

from idp.courier.providers import (
    DeliveryError, DevOutbox, Outgoing, Provider, SmtpProvider, TwilioSmsProvider,
    WebhookSmsProvider,
)
from idp.courier.service import Courier, DeliveryReport

__all__ = [
    "Courier", "DeliveryError", "DeliveryReport", "DevOutbox", "Outgoing", "Provider",
    "SmtpProvider", "TwilioSmsProvider", "WebhookSmsProvider",
]
