"""Events: written in the same transaction as the change they describe, delivered after commit.

An event row and its delivery row (the outbox) commit with the object change or not at all, so
the portal can never hear of a payment that did not happen, nor miss one that did.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from portal.extensions import db
from portal.stripe_sandbox import store
from portal.stripe_sandbox.models import SandboxDelivery
from portal.stripe_sandbox.render import render

# The version pinned by the ``stripe`` library this portal installs; events only echo it.
API_VERSION = "2026-10-28.endive"


def emit(
    type_: str,
    obj: dict[str, Any],
    *,
    previous: dict[str, Any] | None = None,
    created: int | None = None,
) -> str:
    """Record ``type_`` about ``obj`` (a snapshot, as Stripe sends) and queue its delivery."""
    data: dict[str, Any] = {"object": render(obj)}
    if previous is not None:
        data["previous_attributes"] = previous
    event = {
        "id": store.new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created if created is not None else store.now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }
    store.add(event)
    db.session.add(SandboxDelivery(event_id=event["id"]))
    return event["id"]


def commit() -> None:
    """Commit the operation, then wake this process's delivery worker for what it emitted."""
    from portal.stripe_sandbox.worker import wake

    db.session.commit()
    wake(current_app._get_current_object())  # type: ignore[attr-defined]
