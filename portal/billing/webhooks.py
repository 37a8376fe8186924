"""``POST /stripe/webhook``: verify, record the event once, apply it, commit once.

Exactly once, by constraints rather than by checks that could race:

- ``stripe_events.event_id`` is unique and its row is inserted first, in the same transaction
  as everything the event changes. A redelivery (or a twin delivered at the same moment, which
  waits on the unique index until the first commits) finds the row and changes nothing.
- Credits go through ``credits.service.grant`` with a ``source_ref`` (``checkout:…``,
  ``invoice:…``, ``refund:…``) that the ledger holds unique, so two *different* events about
  the same payment still grant once. ``grant`` commits the session: it is called last, so the
  event row, the state it changed and the ledger row land in one commit.
- Any failure rolls all of it back and answers 500, so Stripe's retry starts from scratch.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.billing import fulfilment, gateway
from portal.billing.models import StripeEvent
from portal.credits import service as credits
from portal.credits.models import LedgerEntry
from portal.extensions import db
from portal.timeutil import utcnow

bp = Blueprint("stripe_webhooks", __name__)
ATTEMPTS = 3


@bp.post("/stripe/webhook")
def receive() -> ResponseReturnValue:
    event = gateway.verify_webhook(request.get_data(), request.headers.get("Stripe-Signature"))
    note = process_event(event)
    return jsonify({"received": True, "event": event["id"], "outcome": note})


def process_event(event: fulfilment.Event) -> str:
    """Apply an event once; returns what happened (also stored on its ``stripe_events`` row)."""
    received_at = utcnow()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _process_once(event, received_at)
        except (IntegrityError, credits.DuplicateGrant):
            # A concurrent event wrote the same row first (both were rolled back here): if it
            # was this very event, it is done; otherwise run again and see what it wrote.
            db.session.rollback()
            if _recorded(event["id"]):
                return "duplicate: already processed"
            if attempt == ATTEMPTS:
                raise
        except BaseException:
            db.session.rollback()
            raise
    raise AssertionError("unreachable")


def _recorded(event_id: str) -> bool:
    found = db.session.scalar(select(StripeEvent.id).where(StripeEvent.event_id == event_id))
    db.session.rollback()
    return found is not None


def _granted(kind: str, source_ref: str) -> bool:
    return (
        db.session.scalar(
            select(LedgerEntry.id).where(
                LedgerEntry.kind == kind, LedgerEntry.source_ref == source_ref
            )
        )
        is not None
    )


def _process_once(event: fulfilment.Event, received_at: datetime) -> str:
    record = StripeEvent(
        event_id=event["id"],
        type=event["type"],
        livemode=bool(event.get("livemode")),
        event_created=event.get("created"),
        received_at=received_at,
    )
    db.session.add(record)
    db.session.flush()  # first: a redelivery stops here (IntegrityError) before doing anything
    outcome = fulfilment.apply(event)
    credit = outcome.credit
    note = outcome.note
    if credit is not None and _granted(credit.kind, credit.source_ref):
        note = f"already granted ({credit.source_ref})"
        credit = None
    record.outcome = note[:255]
    record.processed_at = utcnow()
    db.session.flush()
    if credit is None:
        db.session.commit()
    else:
        credits.grant(
            credit.organization_id,
            credit.amount,
            credit.kind,
            description=credit.description,
            source_ref=credit.source_ref,
            metadata={"stripe_event": event["id"], **credit.metadata},
            allow_negative_balance=credit.allow_negative_balance,
        )  # commits the event row, the changes above and the ledger row together
    current_app.logger.info("stripe event %s (%s): %s", event["id"], event["type"], note)
    return note
