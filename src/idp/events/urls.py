"""What a webhook URL may be, and how it may appear in errors and logs.

A subscription makes our server send requests where an integrator says: https only, so bodies and
signatures are not readable on the way, and no request to this host's or the private network's
own services (SSRF). http to the loopback host is for development and tests
(IDP_WEBHOOK_ALLOW_HTTP_LOOPBACK). Names are not resolved here, when the subscription is made: the
worker checks the addresses a name resolves to when it connects (egress.py).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_LENGTH = 2000

# IPv6 ranges that carry (or route to) an IPv4 address, or are deprecated site-local: a packet to
# 64:ff9b::a9fe:a9fe goes through a NAT64 gateway to 169.254.169.254, one to 2002:a9fe:a9fe::1
# through a 6to4 relay, and `is_global` does not see the IPv4 inside. We refuse them outright rather
# than judge the embedded address (::ffff:0:0/96, the mapped form, is judged as its IPv4 address).
_IPV6_REFUSED = tuple(ipaddress.ip_network(net) for net in (
    "::/96",            # IPv4-compatible (deprecated): ::127.0.0.1
    "64:ff9b::/96",     # NAT64, well known (RFC 6052)
    "64:ff9b:1::/48",   # NAT64, local use (RFC 8215)
    "2002::/16",        # 6to4 (RFC 3056)
    "2001::/32",        # Teredo (RFC 4380)
    "fec0::/10",        # site-local (deprecated, RFC 3879)
))
_IPV6_UNICAST = ipaddress.ip_network("2000::/3")  # global unicast: everything public is in it


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> bool:
    """May a webhook reach `address`? Public addresses only — for IPv6, global unicast minus the
    ranges above — and the loopback address where development allows it."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.is_loopback:
            return allow_loopback
        elif address not in _IPV6_UNICAST or any(address in net for net in _IPV6_REFUSED):
            return False
    return address.is_global or (allow_loopback and address.is_loopback)


class WebhookRejected(ValueError):
    """A subscription breaks a rule (its URL, its event types); the message says which and is
    fit to show. The API answers 422 validation-error."""


def check_url(url: str, *, allow_http_loopback: bool) -> str:
    """The URL if it may be a webhook endpoint; WebhookRejected otherwise."""
    if len(url) > MAX_LENGTH or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise WebhookRejected(f"the URL must be at most {MAX_LENGTH} characters without spaces")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise WebhookRejected("the URL is not valid") from None
    if parts.scheme not in ("https", "http") or not host:
        raise WebhookRejected("the URL must be https://host/...")
    if parts.username is not None or parts.password is not None:
        raise WebhookRejected("the URL must not contain a user name or password")
    loopback = host in LOOPBACK_NAMES or host.endswith(".localhost")
    if parts.scheme == "http" and not (loopback and allow_http_loopback):
        raise WebhookRejected("the URL must use https")
    if loopback and not allow_http_loopback:
        raise WebhookRejected("the URL must not point at this server's own host")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # No top-level domain is numeric: "127.1", "2130706433" or "0x7f.1" are addresses in
        # disguise, which resolvers accept and ip_address does not.
        last = host.rsplit(".", 1)[-1]
        if last.isdigit() or last.startswith("0x"):
            raise WebhookRejected("the URL's host is not a valid name or address") from None
        return url  # a name
    if not public(address, allow_loopback=allow_http_loopback):
        raise WebhookRejected("the URL must not point at a private or reserved address")
    return url


def redacted(url: str) -> str:
    """The URL without its query and fragment (a receiver's token often lives in the query)."""
    try:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    except ValueError:
        return "(invalid URL)"
