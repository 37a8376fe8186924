"""The sandbox's own tables, all prefixed ``sandbox_``: Stripe's side of the wire, not the portal's.

Every Stripe object is one JSON document in ``sandbox_objects``, with the few fields the
sandbox queries by (type, customer, lookup key) copied into indexed columns. Events are objects
too; ``sandbox_deliveries`` is the outbox a worker drains. Nothing here is read by the product.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.timeutil import utcnow
from portal.types import BigIntPK


class SandboxObject(db.Model):
    """One Stripe object (customer, price, checkout session, event …) as Stripe would show it."""

    __tablename__ = "sandbox_objects"
    __table_args__ = (Index("ix_sandbox_objects_type_pk", "type", "pk"),)

    # The surrogate key orders lists newest first even within one second of ``created``.
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    id: Mapped[str] = mapped_column(String(80), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    customer: Mapped[str | None] = mapped_column(String(80), index=True)
    # Unique across the account, as in Stripe: a second price with the key must transfer it.
    lookup_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class SandboxDelivery(db.Model):
    """One event on its way to the webhook endpoint: claimed with a lease, retried with backoff."""

    __tablename__ = "sandbox_deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="sandbox_delivery_status"
        ),
        Index("ix_sandbox_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("sandbox_objects.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A worker owns a delivery until ``claimed_until``; a crashed worker's lease simply lapses.
    claimed_until: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_endpoint: Mapped[str | None] = mapped_column(String(500))
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxState(db.Model):
    """The account-wide settings of the sandbox: one row, created on first write."""

    __tablename__ = "sandbox_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The test clock: sandbox time is wall-clock time plus this many seconds.
    clock_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # Where the portal's own API calls came from: the fallback webhook host.
    last_api_host_url: Mapped[str | None] = mapped_column(String(500))


class SandboxIdempotencyKey(db.Model):
    """A successful POST's answer, replayed for a request that repeats its ``Idempotency-Key``."""

    __tablename__ = "sandbox_idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
