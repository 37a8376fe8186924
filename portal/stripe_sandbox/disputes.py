"""Disputes: opened on a charge paid with 4000 0000 0000 0259, closed as won or lost.

Stripe opens the dispute after the payment's own events (``checkout.session.completed``,
``invoice.paid`` …), so the callers that take a payment call ``open_if_disputing`` last.
Closing is ``POST /v1/disputes/:id/close`` (accepting the dispute: lost) or the CLI's
``flask stripe dispute close --outcome won|lost`` (the bank's decision, which no API makes).
"""

from __future__ import annotations

from typing import Any

from portal.stripe_sandbox import events, store
from portal.stripe_sandbox.errors import SandboxError
from portal.stripe_sandbox.payments import Card

# Stripe's statuses; the ``warning_*`` ones are inquiries, which the sandbox never opens.
OPEN_STATUSES = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")
OUTCOMES = ("won", "lost")
EVIDENCE_DAYS = 7
DAY = 86_400


def open_for_charge(charge_id: str, *, created: int | None = None) -> dict[str, Any]:
    """Open a fraud chargeback for the whole charge; emits ``charge.dispute.created``."""
    row = store.get("charge", charge_id, lock=True, param="charge")
    charge = store.doc(row)
    created = store.now() if created is None else created
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    dispute = {
        "id": store.new_id("dp"),
        "object": "dispute",
        "amount": charge["amount"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "evidence_details": {
            "due_by": created + EVIDENCE_DAYS * DAY,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {
            "type": "card",
            "card": {"brand": card.get("brand"), "case_type": "chargeback"},
        },
        "reason": "fraudulent",
        "status": "needs_response",
    }
    store.add(dispute)
    charge["disputed"] = True
    store.save(row, charge)
    events.emit("charge.dispute.created", dispute, created=created)
    return dispute


def open_if_disputing(card: Card | None, charge_id: str | None, *, created: int | None = None):
    """The test card that disputes what it pays: open its dispute, after the payment's events."""
    if card is not None and card.opens_dispute and charge_id:
        open_for_charge(charge_id, created=created)


def close(dispute_id: str, outcome: str) -> dict[str, Any]:
    """Close an open dispute as ``won`` or ``lost``; emits ``charge.dispute.closed``."""
    if outcome not in OUTCOMES:
        raise SandboxError(f"Invalid outcome: must be one of {', '.join(OUTCOMES)}")
    row = store.get("dispute", dispute_id, lock=True)
    dispute = store.doc(row)
    if dispute["status"] not in OPEN_STATUSES:
        raise SandboxError(f"Dispute {dispute_id} is already closed (status: {dispute['status']}).")
    dispute["status"] = outcome
    store.save(row, dispute)
    events.emit("charge.dispute.closed", dispute)
    return dispute


def latest_open() -> str | None:
    """The newest dispute still awaiting an outcome, if any."""
    for row in reversed(store.all_of("dispute")):
        if row.data["status"] in OPEN_STATUSES:
            return row.id
    return None


def all_newest_first() -> list[dict[str, Any]]:
    return [row.data for row in reversed(store.all_of("dispute"))]
