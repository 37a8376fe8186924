"""Idempotency records: a key binds to one request and, once it succeeds, to its response.

The record is claimed (``pending``) in its own short transaction, so a concurrent request with
the same key sees it at once and gets 409. The operation then marks it ``done`` *inside its own
transaction*: the ledger row and the stored response commit together or not at all, so a crash
can never leave a charge without its replayable answer. A failed operation deletes the claim,
which leaves the key free for a retry after, say, a top-up.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from portal.credits.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from portal.credits.models import IdempotencyRecord
from portal.extensions import db
from portal.timeutil import utcnow

# A claim older than this belongs to a request that died; its work never committed (work and
# completion are atomic), so taking the key over cannot charge twice.
STALE_CLAIM_AFTER = timedelta(seconds=60)
RETENTION = timedelta(hours=24)


@dataclass
class Replay:
    status: int
    body: str


@dataclass
class IdempotencySlot:
    record_id: int
    token: str
    status: int

    def complete(self, payload: dict[str, Any]) -> None:
        """Store the response in the caller's open transaction; it commits with the work."""
        body = current_app.json.dumps(payload)
        result = db.session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == self.record_id,
                IdempotencyRecord.lock_token == self.token,
                IdempotencyRecord.state == "pending",
            )
            .values(state="done", response_status=self.status, response_body=body)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise IdempotencyKeyInUse()

    def abandon(self) -> None:
        """Free the key after a failed attempt (402, 404, 422…): only success binds a key."""
        db.session.rollback()
        db.session.execute(
            delete(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == self.record_id,
                IdempotencyRecord.lock_token == self.token,
                IdempotencyRecord.state == "pending",
            )
            .execution_options(synchronize_session=False)
        )
        db.session.commit()


def fingerprint(method: str, path: str, canonical_body: str) -> str:
    return hashlib.sha256(f"{method} {path}\n{canonical_body}".encode()).hexdigest()


def claim(organization_id: int, key: str, request_fingerprint: str, status: int):
    """Claim ``key`` for this request, or return the stored ``Replay`` of the first success."""
    for _ in range(3):
        token = secrets.token_hex(16)
        now = utcnow()
        try:
            record_id = db.session.scalar(
                insert(IdempotencyRecord)
                .values(
                    organization_id=organization_id,
                    key=key,
                    fingerprint=request_fingerprint,
                    state="pending",
                    lock_token=token,
                    locked_at=now,
                    created_at=now,
                )
                .returning(IdempotencyRecord.id)
            )
            db.session.commit()
            return IdempotencySlot(record_id, token, status)
        except IntegrityError:
            db.session.rollback()
        record = db.session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.organization_id == organization_id,
                IdempotencyRecord.key == key,
            )
        )
        if record is None:  # its claimant failed and freed it meanwhile: claim again
            continue
        if record.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused()
        if record.state == "done":
            return Replay(record.response_status or 200, record.response_body or "{}")
        if record.locked_at > now - STALE_CLAIM_AFTER:
            raise IdempotencyKeyInUse()
        taken = db.session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == record.id,
                IdempotencyRecord.lock_token == record.lock_token,
                IdempotencyRecord.state == "pending",
            )
            .values(lock_token=token, locked_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        if taken.rowcount == 1:
            return IdempotencySlot(record.id, token, status)
        raise IdempotencyKeyInUse()
    raise IdempotencyKeyInUse()


def purge_expired(older_than: timedelta = RETENTION) -> int:
    """Delete finished records past retention (never sooner than 24 hours)."""
    older_than = max(older_than, RETENTION)
    result = db.session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.created_at < utcnow() - older_than)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount
