"""Single-use account links: a random token in the URL, only its SHA-256 in the database."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update

from portal.auth.models import AccountToken, User
from portal.errors import PortalError
from portal.extensions import db
from portal.timeutil import utcnow

LIFETIMES = {
    "password_reset": timedelta(hours=1),
    "email_verify": timedelta(days=3),
    "email_change": timedelta(days=1),
}


class LinkNotValid(PortalError):
    """An account link that does not exist, was used, or has expired (the message says which)."""

    status = 404
    code = "link_not_valid"


class LinkUsed(LinkNotValid):
    status = 410
    code = "link_used"


class LinkExpired(LinkNotValid):
    status = 410
    code = "link_expired"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(token for the link, hash to store)."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def issue(user: User, purpose: str, email: str) -> str:
    """Stage a link for ``user`` (the caller commits); returns the token to mail."""
    token, digest = new_token()
    db.session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=digest,
            email=email,
            expires_at=utcnow() + LIFETIMES[purpose],
        )
    )
    return token


def find(token: str, purpose: str) -> AccountToken:
    """The link, if it may still be used; otherwise say clearly why not."""
    record = db.session.scalar(
        select(AccountToken).where(
            AccountToken.token_hash == token_hash(token), AccountToken.purpose == purpose
        )
    )
    if record is None:
        raise LinkNotValid("This link is not valid. Check that you copied all of it.")
    if record.used_at is not None:
        raise LinkUsed("This link was already used. Each link works once; ask for a new one.")
    if record.expires_at <= utcnow():
        raise LinkExpired("This link has expired. Ask for a new one.")
    return record


def spend(token: str, purpose: str) -> AccountToken:
    """Mark the link used, in the caller's transaction; a second use (even a concurrent one)
    matches no row, because the UPDATE requires ``used_at IS NULL``."""
    record = find(token, purpose)
    now = utcnow()
    spent = db.session.execute(
        update(AccountToken)
        .where(
            AccountToken.id == record.id,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        db.session.rollback()
        raise LinkUsed("This link was already used. Each link works once; ask for a new one.")
    return record


def spend_all(user_id: int, purpose: str) -> None:
    """Retire every open link of one kind (a reset makes the other reset links useless)."""
    db.session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
