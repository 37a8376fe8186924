"""Outbound webhooks: an organization's endpoints, and each event's delivery to each of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.timeutil import utcnow
from portal.types import BigIntPK

DELIVERY_STATUSES = ("pending", "succeeded", "failed")


class WebhookEndpoint(db.Model):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_org", "organization_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # "ep_…"
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(200))
    events: Mapped[list[str] | None] = mapped_column(JSON)  # None: every event type
    secret: Mapped[str] = mapped_column(String(100))  # "whsec_…", shown once
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Failing without a success since then; three days of it disables the endpoint.
    failing_since: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class WebhookDelivery(db.Model):
    """One event to one endpoint: created once (unique), attempted until it succeeds or ends."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "outbox_event_id", name="uq_delivery_endpoint_event"),
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name="webhook_delivery_status"
        ),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    outbox_event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(db.Integer(), "sqlite"), ForeignKey("outbox_events.id")
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]  # a worker is sending it (a crash frees it then)
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookAttempt(db.Model):
    """The delivery log: every attempt with its answer."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(db.Integer(), "sqlite"), ForeignKey("webhook_deliveries.id")
    )
    attempt: Mapped[int]
    status_code: Mapped[int | None]
    latency_ms: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(500))
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")  # or "resend"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
