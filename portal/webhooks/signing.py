"""Standard Webhooks signatures (https://www.standardwebhooks.com/), with the standard library.

``webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, keyed with the
base64-decoded part of the ``whsec_…`` secret. Twenty lines of hmac/base64 rather than the
``standardwebhooks`` package at runtime: the spec is that small, and the tests verify these
signatures with that package, so our code is never checked only against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # 192 bits; the spec asks for 24 to 64


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
        "content-type": "application/json",
    }
