"""API keys: the secret is shown once and stored only as a SHA-256 hash.

A key is 32 random bytes, so a fast hash is enough: nobody can brute-force that space, and
authenticating stays one indexed lookup on the deduct hot path.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, select, update

from portal.credits.models import ApiKey, Organization
from portal.errors import NotFound, Unauthorized
from portal.extensions import db
from portal.timeutil import utcnow

KEY_PREFIX = "cpk_"
# last_used_at is a hint for people, not an audit log: writing it once a minute keeps a hot
# key from turning every request into an extra write.
TOUCH_INTERVAL = timedelta(seconds=60)
# Built once: every API request runs it, and a prebuilt statement is not re-keyed per call.
_ACTIVE_KEY = (
    select(ApiKey.id, ApiKey.last_used_at, Organization)
    .join(Organization, Organization.id == ApiKey.organization_id)
    .where(ApiKey.secret_hash == bindparam("secret_hash"), ApiKey.revoked_at.is_(None))
)


@dataclass(frozen=True)
class Caller:
    """Who an API request is: the key (its id keys the rate limit) and its organization."""

    key_id: int
    organization: Organization


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(organization_id: int, name: str, user_id: int | None = None) -> NewApiKey:
    public = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{public}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        organization_id=organization_id,
        name=name.strip() or "API key",
        prefix=f"{KEY_PREFIX}{public}",
        secret_hash=hash_secret(secret),
        created_by_user_id=user_id,
    )
    db.session.add(key)
    db.session.commit()
    return NewApiKey(key, secret)


def revoke_api_key(organization_id: int, key_id: int) -> ApiKey:
    key = db.session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.organization_id == organization_id)
    )
    if key is None:
        raise NotFound("No such API key in this organization.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.session.commit()
    return key


def list_api_keys(organization_id: int) -> list[ApiKey]:
    return list(
        db.session.scalars(
            select(ApiKey)
            .where(ApiKey.organization_id == organization_id)
            .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc())
        )
    )


def authenticate(authorization: str | None) -> Caller:
    """Resolve ``Bearer <secret>`` to its key and organization, or raise ``Unauthorized``."""
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    row = db.session.execute(
        _ACTIVE_KEY, {"secret_hash": hash_secret(secret.strip())}
    ).one_or_none()
    if row is None:
        raise Unauthorized("This API key is unknown or revoked.")
    now = utcnow()
    if row.last_used_at is None or row.last_used_at < now - TOUCH_INTERVAL:
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    return Caller(row.id, row.Organization)
