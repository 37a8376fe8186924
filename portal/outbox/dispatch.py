"""Dispatching: every undispatched event is fanned out into webhook deliveries, once.

One transaction per event: the event is claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several workers take different events and none waits on another; SQLite runs one worker and
serializes writers anyway), fanned out, and marked dispatched in the same commit. A worker that
dies half-way leaves the event undispatched and unlocked; the next pass sends it, with the
same ``event_id``. Fan-out is idempotent (one delivery per endpoint and event), so even a
commit lost after the deliveries were written cannot send an event twice to an endpoint.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select

from portal.credits.service import transaction
from portal.extensions import db
from portal.outbox.models import OutboxEvent


def optional(module: str, name: str) -> Callable[..., Any] | None:
    """``module.name`` if that module exists: the webhooks package ships separately, and until
    it does dispatching only marks events dispatched."""
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    return getattr(found, name, None)


def _claim(skip: list[int]) -> OutboxEvent | None:
    query = select(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None))
    if skip:
        query = query.where(OutboxEvent.id.not_in(skip))
    query = query.order_by(OutboxEvent.id).limit(1)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return db.session.scalars(query).first()


def dispatch_pending(now: datetime, limit: int = 100) -> tuple[int, int]:
    """Dispatch up to ``limit`` events, oldest first; returns (dispatched, failed).

    An event whose fan-out fails is rolled back, logged and left for the next pass (skipped
    for the rest of this one, so one bad event cannot hold up the others).
    """
    fan_out = optional("portal.webhooks.dispatch", "fan_out")
    dispatched, failed = 0, []
    while dispatched + len(failed) < limit:
        event_id = None
        try:
            with transaction():
                event = _claim(failed)
                if event is None:
                    break
                event_id = event.id
                if fan_out is not None:
                    fan_out(event, now)
                event.dispatched_at = now
        except Exception:
            if event_id is None:
                raise
            current_app.logger.exception("outbox: dispatching event %s failed", event_id)
            failed.append(event_id)
            continue
        dispatched += 1
    return dispatched, len(failed)
