"""Delivery providers: how a rendered message leaves the building.

A provider raises DeliveryError with a message we wrote (status codes, never a response body,
which a gateway may echo the text, and so the code, into). `permanent` means retrying is useless.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol, TextIO

import aiosmtplib
import httpx

log = logging.getLogger("idp.courier")


@dataclass(frozen=True)
class Outgoing:
    id: str
    channel: str  # email | sms
    recipient: str
    kind: str
    subject: str | None
    body: str

    def __repr__(self) -> str:  # the body holds the code
        return f"Outgoing(id={self.id!r}, channel={self.channel!r}, kind={self.kind!r})"


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class Provider(Protocol):
    async def send(self, message: Outgoing) -> None: ...


def redact(recipient: str) -> str:
    """Enough to tell messages apart in a log, not enough to identify anyone."""
    if "@" in recipient:
        local, _, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return f"{recipient[:4]}***{recipient[-2:]}" if len(recipient) > 6 else "***"


class SmtpProvider:
    def __init__(self, *, host: str, port: int, starttls: bool, username: str | None,
                 password: str | None, mail_from: str, timeout: float = 15.0) -> None:
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self.password = username, password
        self.mail_from, self.timeout = mail_from, timeout

    async def send(self, message: Outgoing) -> None:
        email = EmailMessage()
        email["From"] = self.mail_from
        email["To"] = message.recipient
        email["Subject"] = message.subject or ""
        email["Message-ID"] = f"<{message.id}@idp>"  # the same on every retry of one message
        email.set_content(message.body)
        try:
            await aiosmtplib.send(
                email, hostname=self.host, port=self.port, start_tls=self.starttls,
                username=self.username, password=self.password, timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError("SMTP recipient refused", permanent=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # RFC 5321 §4.2.1: 5yz is a permanent failure, 4yz a transient one.
            raise DeliveryError(f"SMTP {exc.code}", permanent=500 <= exc.code < 600) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {type(exc).__name__}") from exc


def _raise_for_http(response: httpx.Response) -> None:
    if response.is_success:
        return
    # 4xx other than 408/429 means the request itself is wrong: sending it again will not help.
    status = response.status_code
    permanent = 400 <= status < 500 and status not in (408, 429)
    raise DeliveryError(f"HTTP {status}", permanent=permanent)


class WebhookSmsProvider:
    """A generic JSON POST `{"id", "to", "text"}`, signed: `X-IDP-Signature: sha256=<hex>` is
    HMAC-SHA-256(secret, timestamp + "." + body) and `X-IDP-Timestamp` the Unix time, so the
    gateway can refuse forged and replayed requests. `Idempotency-Key` lets it drop retries."""

    def __init__(self, *, url: str, secret: str, timeout: float = 10.0) -> None:
        self.url, self.secret, self.timeout = url, secret.encode(), timeout

    def sign(self, timestamp: str, body: bytes) -> str:
        return "sha256=" + hmac.new(self.secret, timestamp.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()

    async def send(self, message: Outgoing) -> None:
        body = json.dumps({"id": message.id, "to": message.recipient, "text": message.body},
                          ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-IDP-Timestamp": timestamp,
                   "X-IDP-Signature": self.sign(timestamp, body), "Idempotency-Key": message.id}
        await _post(self.url, self.timeout, content=body, headers=headers)


class TwilioSmsProvider:
    """Twilio's Messages API shape: a form POST with HTTP Basic auth (account SID, auth token)."""

    def __init__(self, *, base_url: str, account_sid: str, auth_token: str, sender: str,
                 timeout: float = 10.0) -> None:
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.auth = (account_sid, auth_token)
        self.sender, self.timeout = sender, timeout

    async def send(self, message: Outgoing) -> None:
        await _post(self.url, self.timeout, auth=self.auth,
                    data={"To": message.recipient, "From": self.sender, "Body": message.body})


async def _post(url: str, timeout: float, **kwargs) -> None:
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"HTTP {type(exc).__name__}") from exc
    _raise_for_http(response)


class DevOutbox:
    """Development: the whole message goes to the console and to a file, never to the log (the
    log may be shipped elsewhere; the console and the file stay on the developer's machine)."""

    def __init__(self, path: Path, stream: TextIO | None = None) -> None:
        self.path = path
        self.stream = stream

    async def send(self, message: Outgoing) -> None:
        log.info("dev outbox: %s message for %s printed and appended to %s", message.channel,
                 redact(message.recipient), self.path)
        text = (f"--- {message.channel} to {message.recipient} ({message.kind}, {message.id})\n"
                + (f"Subject: {message.subject}\n\n" if message.subject else "")
                + message.body.rstrip("\n") + "\n")
        print(text, file=self.stream or sys.stdout, flush=True)
        await asyncio.to_thread(self._append, text + "\n")

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(text)


def providers_from_settings(settings) -> dict[str, Provider]:
    """The email and SMS providers the settings choose (`dev` unless told otherwise)."""
    dev = DevOutbox(settings.dev_outbox_file)
    email: Provider = dev
    sms: Provider = dev
    if settings.email_provider == "smtp":
        email = SmtpProvider(host=settings.smtp_host, port=settings.smtp_port,
                             starttls=settings.smtp_starttls, username=settings.smtp_username,
                             password=settings.smtp_password, mail_from=settings.mail_from)
    if settings.sms_provider == "webhook":
        if not (settings.sms_webhook_url and settings.sms_webhook_secret):
            raise RuntimeError("IDP_SMS_WEBHOOK_URL and IDP_SMS_WEBHOOK_SECRET must be set")
        sms = WebhookSmsProvider(url=settings.sms_webhook_url, secret=settings.sms_webhook_secret)
    elif settings.sms_provider == "twilio":
        if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from):
            raise RuntimeError("IDP_TWILIO_ACCOUNT_SID, IDP_TWILIO_AUTH_TOKEN and IDP_TWILIO_FROM must be set")
        sms = TwilioSmsProvider(base_url=settings.twilio_base_url,
                                account_sid=settings.twilio_account_sid,
                                auth_token=settings.twilio_auth_token, sender=settings.twilio_from)
    return {"email": email, "sms": sms}
