"""Where the webhook worker may connect: public addresses only (and the loopback host where
IDP_WEBHOOK_ALLOW_HTTP_LOOPBACK allows it), checked on the addresses a name resolves to at the
moment of connecting, and the connection made to the address checked — so a name that resolves to
a private address, or changes to one after the check (DNS rebinding), reaches nothing internal.
TLS still verifies the certificate against the URL's host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpcore
import httpx

from idp.events.urls import public


def allowed(address: str, *, allow_loopback: bool) -> bool:
    """The rule of urls.public, for an address the resolver gave (perhaps with a %zone)."""
    return public(ipaddress.ip_address(address.split("%", 1)[0]), allow_loopback=allow_loopback)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, *, allow_loopback: bool) -> None:
        self.allow_loopback = allow_loopback
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve the host ({type(exc).__name__})") from None
        addresses = [info[4][0] for info in infos]
        if not addresses or not all(allowed(a, allow_loopback=self.allow_loopback) for a in addresses):
            raise httpcore.ConnectError("the host resolves to an address webhooks may not reach")
        return await self.inner.connect_tcp(addresses[0], port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise httpcore.ConnectError("webhooks are not sent to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guarded backend; no proxies from the environment, no retries."""

    def __init__(self, *, allow_loopback: bool) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBackend(allow_loopback=allow_loopback))
