"""The outbox: ``emit`` writes an event in the caller's transaction; the worker delivers it.

An event exists only if the change that caused it committed, so nothing is ever sent for work
that rolled back, and a crash between commit and delivery only delays it (the worker finds the
row undispatched and sends it then, with the same ``event_id``). See ``portal.outbox.worker``.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from portal import jsonio
from portal.credits.models import Organization
from portal.extensions import db
from portal.outbox.models import OutboxEvent
from portal.timeutil import isoformat_z, utcnow

__all__ = ["OutboxEvent", "emit", "new_event_id"]


def new_event_id() -> str:
    """``msg_`` and a ULID in 32 hex digits: 48 bits of milliseconds, 80 random bits, so ids
    sort by creation time (handy in logs) and never collide."""
    millis = time.time_ns() // 1_000_000
    return f"msg_{millis:012x}{secrets.randbits(80):020x}"


def _plain(value: Any) -> Any:
    """JSON-ready ``data``: datetimes as ISO 8601 with ``Z``; Decimals (amounts from
    ``micros_to_decimal``) stay Decimals, written as exact JSON numbers (``portal.jsonio``)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return isoformat_z(value)
    return value


def emit(
    event_type: str,
    organization_id: int | None,
    data: dict[str, Any],
    *,
    dedupe_key: str | None = None,
) -> OutboxEvent | None:
    """Write one event in the current transaction (never commits); ``None`` when an event
    with ``dedupe_key`` exists already (then nothing is written).

    One ``INSERT … ON CONFLICT (dedupe_key) DO NOTHING``: unlike a check then an insert it
    cannot race, and unlike a savepoint it leaves the caller's transaction untouched on both
    databases.
    """
    now = utcnow()
    body = dict(data)
    if organization_id is not None:
        body["organization"] = db.session.scalar(
            select(Organization.slug).where(Organization.id == organization_id)
        )
    payload = {"type": event_type, "timestamp": isoformat_z(now), "data": _plain(body)}
    body = jsonio.dumps(payload)  # refuses what JSON cannot say, here and not at flush
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(OutboxEvent)
        .values(
            event_id=new_event_id(),
            organization_id=organization_id,
            type=event_type,
            body=body,
            dedupe_key=dedupe_key,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OutboxEvent)
    )
    return db.session.scalars(statement).one_or_none()
