"""The outbox: events written in the same transaction as the change that caused them.

A row exists only if its change committed; the worker delivers it afterwards (webhooks, email),
so nothing is sent for work that rolled back, and a crash between commit and delivery only
delays it. ``event_id`` is the event's identity everywhere it goes (Standard Webhooks'
``webhook-id``), so every retry and every Resend carries the same one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal import jsonio
from portal.extensions import db
from portal.timeutil import utcnow
from portal.types import BigIntPK


class OutboxEvent(db.Model):
    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_undispatched", "dispatched_at", "id"),
        Index("ix_outbox_org_created", "organization_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)  # "msg_…"
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    type: Mapped[str] = mapped_column(String(64))
    # The exact JSON body ({type, timestamp, data}) as text: amounts stay exact decimal
    # numbers (a JSON column would round-trip them through float), and the bytes signed and
    # sent are the bytes stored.
    body: Mapped[str] = mapped_column("payload", Text)
    # What makes an event happen once (``balance.low:<org>:<crossing>``); unique when given.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Fanned out into webhook deliveries and emails (by one worker, exactly once).
    dispatched_at: Mapped[datetime | None]

    @property
    def payload(self) -> dict[str, Any]:
        return jsonio.loads(self.body)

    @payload.setter
    def payload(self, value: dict[str, Any]) -> None:
        self.body = jsonio.dumps(value)


class ScheduledJob(db.Model):
    """A periodic job's schedule, shared by every worker: one run per due time, whoever wins."""

    __tablename__ = "scheduled_jobs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_run_at: Mapped[datetime]
    last_run_at: Mapped[datetime | None]
    last_outcome: Mapped[str | None] = mapped_column(String(255))
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None]
