"""The SSRF guard: webhooks go to public http(s) addresses only.

Checked twice: when an endpoint is created (its URL), and at every send after DNS resolution,
where the request then goes to the very address that was checked (a name that resolved to a
public address at creation can later resolve to 127.0.0.1: DNS rebinding). Private, loopback,
link-local (169.254.169.254, the cloud metadata service), multicast and reserved addresses are
refused unless ``PORTAL_WEBHOOKS_ALLOW_PRIVATE`` (tests, local development).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from flask import current_app

from portal.errors import InvalidRequest

MAX_URL_LENGTH = 2_000
LOCAL_NAMES = ("localhost", "localhost.localdomain")


class RefusedAddress(Exception):
    """The URL's host is not a public address (the send is refused, never attempted)."""


class Unresolved(RefusedAddress):
    """The name has no address (now)."""


def private_allowed() -> bool:
    return bool(current_app.config.get("PORTAL_WEBHOOKS_ALLOW_PRIVATE"))


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a bracketed host that is no IPv6 address
        raise InvalidRequest("url", "has an invalid host") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("url", "must be an http or https URL")
    if not parts.hostname:
        raise InvalidRequest("url", "must name a host")
    if parts.username or parts.password:
        raise InvalidRequest("url", "must not carry a user name or password")
    try:
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError:
        raise InvalidRequest("url", "has an invalid port") from None
    return parts


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def check_url(url: str) -> str:
    """The URL if an endpoint may point at it; else a field error on ``url``."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest("url", f"must be at most {MAX_URL_LENGTH:,} characters")
    parts = _split(url)
    if private_allowed():
        return url
    host = parts.hostname.rstrip(".").lower()
    literal = _literal(host)
    if host in LOCAL_NAMES or host.endswith(".localhost") or (literal and not is_public(literal)):
        raise InvalidRequest("url", "must not point at a private, loopback or local address")
    if literal is None:
        try:
            resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        except Unresolved:
            pass  # not yet in DNS, perhaps: every send resolves and checks it again
        except RefusedAddress as exc:
            raise InvalidRequest("url", str(exc)) from None
    return url


def resolve(host: str, port: int) -> str:
    """The one address to connect to: every address the name resolves to must be public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolved(f"cannot resolve {host}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise Unresolved(f"{host} has no address")
    for address in addresses:
        if not is_public(address):
            raise RefusedAddress(f"{host} resolves to a non-public address ({address})")
    return addresses[0]


def pinned_target(url: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(URL to request, extra headers, httpx extensions) for a send, checked after resolution.

    With private addresses refused, the request goes to the checked IP itself, with the name in
    ``Host`` and in TLS SNI (so the certificate is still verified against the name).
    """
    parts = _split(url)
    if private_allowed():
        return url, {}, {}
    host = parts.hostname
    literal = _literal(host)
    if literal is not None:
        if not is_public(literal):
            raise RefusedAddress(f"{host} is not a public address")
        return url, {}, {}
    if host.rstrip(".").lower() in LOCAL_NAMES:
        raise RefusedAddress(f"{host} is a local name")
    default_port = 443 if parts.scheme == "https" else 80
    address = resolve(host, parts.port or default_port)
    netloc_host = f"[{address}]" if ":" in address else address
    netloc = netloc_host + (f":{parts.port}" if parts.port else "")
    pinned = parts._replace(netloc=netloc).geturl()
    host_header = host + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return pinned, {"host": host_header}, extensions
