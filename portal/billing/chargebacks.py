"""Money going back: refunds and disputes of payments, and what they do to the credits bought.

- ``charge.refunded``: the refunded share of a package's credits is clawed back from that
  payment's own grant (``refund:<re_id>``); what was already spent is taken from the other
  credits, and what they cannot cover becomes debt (owed, paid first by the next grant).
- ``charge.dispute.created``: the disputed payment's remaining credits are frozen (on hold,
  not spendable), ``dispute:<dp_id>``. ``charge.dispute.closed``: ``won`` unfreezes them,
  ``lost`` claws the payment's credits back as a refund would (the frozen ones first).

A dispute is a ``billing_disputes`` row whose status only moves forward (open, then won or
lost), so its events apply in any order: a close that arrives first is applied alone (lost:
the claw-back; won: nothing was frozen, nothing to do) and the late ``created`` is ignored. The
disputed payment is a package payment (by payment intent) or a paid plan invoice (by the
payment intent or charge its grant's ledger row remembers); one whose credits were not granted
yet answers 500, so Stripe retries after the payment's own event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select

from portal.billing import stripe_data as sd
from portal.billing.models import Dispute, Payment
from portal.billing.outcomes import Credit, Event, Outcome, RetryLater, locked
from portal.credits.models import CreditGrant, LedgerEntry
from portal.extensions import db
from portal.money import format_credits
from portal.timeutil import utcnow

# Stripe's open statuses; ``warning_*`` are inquiries, which end ``warning_closed``.
OPEN_STATUSES = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")


def _has_grant(organization_id: int, grant_ref: str) -> bool:
    found = db.session.scalar(
        select(CreditGrant.id)
        .where(CreditGrant.organization_id == organization_id, CreditGrant.source_ref == grant_ref)
        .limit(1)
    )
    return found is not None


def _take_back(
    organization_id: int,
    grant_ref: str,
    amount: int,
    source_ref: str,
    description: str,
    metadata: dict[str, Any],
    applied: Callable[[int], None] | None = None,
) -> Credit | None:
    """A claw-back from the payment's own grant. A payment made before credit grants existed
    has none (its credits are in the opening grant): a negative adjustment takes them back in
    burn order instead, and what is missing becomes debt as well."""
    if amount <= 0:
        return None
    if _has_grant(organization_id, grant_ref):
        return Credit(
            organization_id,
            amount,
            "clawback",
            source_ref,
            description,
            metadata,
            grant_ref=grant_ref,
            applied=applied,
        )
    return Credit(
        organization_id,
        -amount,
        "adjustment",
        source_ref,
        description,
        metadata,
        allow_negative_balance=True,
        applied=applied,
    )


# --- refunds ---------------------------------------------------------------------------------


def on_charge_refunded(event: Event) -> Outcome:
    charge = event["data"]["object"]
    intent = sd.object_id(charge.get("payment_intent"))
    payment = locked(Payment, Payment.payment_intent_id, intent) if intent else None
    ours = payment is not None or (sd.metadata(charge).get("package") and not charge.get("invoice"))
    if payment is not None and payment.status == "mismatch":
        return Outcome("refund of a mismatched payment: it granted nothing to take back")
    if payment is None or payment.fulfilled_at is None:
        if ours:  # its checkout event has not been applied yet: take back after granting
            raise RetryLater("The refunded purchase has not been fulfilled yet.")
        return Outcome("ignored: not a package payment")
    total = charge.get("amount") or payment.amount_cents
    refunded = min(int(charge.get("amount_refunded") or 0), total)
    payment.refunded_cents = max(payment.refunded_cents, refunded)
    payment.status = "refunded" if payment.refunded_cents >= total else "partially_refunded"
    # Cumulative, so the order refunds arrive in cannot matter: take back what is now due.
    due = payment.credits * payment.refunded_cents // total if total else payment.credits
    take = due - payment.refunded_credits
    if take <= 0:
        return Outcome("nothing more to take back")
    payment.refunded_credits = due
    refund_id = sd.newest_refund_id(charge) or f"{charge['id']}:{refunded}"
    name = payment.package.name if payment.package else "Credit"
    return Outcome(
        f"took back {format_credits(take)} credits",
        _take_back(
            payment.organization_id,
            f"checkout:{payment.checkout_session_id}",
            take,
            f"refund:{refund_id}",
            f"{name} package refunded: {format_credits(take)} credits taken back",
            {"charge": charge["id"], "payment_intent": intent, "refund": refund_id},
        ),
    )


# --- disputes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Disputed:
    """What a dispute is about: whose credits, the grant that made them, what a loss takes."""

    organization_id: int
    grant_ref: str | None  # None: the payment granted nothing (a mismatch)
    credits: int
    what: str
    payment: Payment | None = None


def _disputed(dispute: sd.Obj) -> _Disputed:
    charge = dispute.get("charge")
    intent = sd.object_id(dispute.get("payment_intent"))
    if not intent and isinstance(charge, dict):
        intent = sd.object_id(charge.get("payment_intent"))
    payment = locked(Payment, Payment.payment_intent_id, intent) if intent else None
    if payment is not None:
        what = f"{payment.package.name} package" if payment.package else "Credit package"
        if payment.status == "mismatch":
            return _Disputed(payment.organization_id, None, 0, what, payment)
        if payment.fulfilled_at is None:
            raise RetryLater("The disputed payment has not been fulfilled yet.")
        left = payment.credits - payment.refunded_credits
        ref = f"checkout:{payment.checkout_session_id}"
        return _Disputed(payment.organization_id, ref, left, what, payment)
    granted = _invoice_grant(intent, sd.object_id(charge))
    if granted is None:
        raise RetryLater("The disputed payment is not known yet: its payment event comes first.")
    what = f"Invoice for {granted.description or 'a plan'}"
    return _Disputed(granted.organization_id, granted.source_ref, granted.amount, what)


def _invoice_grant(intent: str | None, charge_id: str | None) -> LedgerEntry | None:
    """The plan credits a paid invoice granted, by the payment its ledger row remembers."""
    named = [
        LedgerEntry.meta[key].as_string() == value
        for key, value in (("payment_intent", intent), ("charge", charge_id))
        if value
    ]
    if not named:
        return None
    return db.session.scalar(
        select(LedgerEntry)
        .where(LedgerEntry.kind == "subscription", or_(*named))
        .order_by(LedgerEntry.id)
        .limit(1)
    )


def _final_status(dispute: sd.Obj) -> str:
    status = str(dispute.get("status") or "")
    if status in OPEN_STATUSES or not status:
        raise ValueError(f"a closed dispute with status {status!r}")
    return status


def on_dispute(event: Event) -> Outcome:
    dispute = event["data"]["object"]
    closing = event["type"] == "charge.dispute.closed"
    row = locked(Dispute, Dispute.stripe_dispute_id, dispute["id"])
    if row is not None and row.status not in OPEN_STATUSES:
        return Outcome(f"dispute already closed ({row.status}): nothing more to do")
    if row is not None and not closing:
        return Outcome("dispute already recorded")
    disputed = _disputed(dispute)
    status = _final_status(dispute) if closing else dispute.get("status") or "needs_response"
    first_heard = row is None
    if row is None:
        row = _new_row(dispute, disputed, status)
    row.status = status
    if closing:
        row.closed_at = utcnow()
        return _close(row, disputed, first_heard)
    return _open(row, disputed)


def _new_row(dispute: sd.Obj, disputed: _Disputed, status: str) -> Dispute:
    row = Dispute(
        organization_id=disputed.organization_id,
        payment_id=disputed.payment.id if disputed.payment else None,
        stripe_dispute_id=dispute["id"],
        charge_id=sd.object_id(dispute.get("charge")),
        payment_intent_id=sd.object_id(dispute.get("payment_intent")),
        status=status,
        reason=dispute.get("reason"),
        amount_cents=int(dispute.get("amount") or 0),
        currency=dispute.get("currency") or "usd",
        opened_at=sd.at(dispute.get("created")) or utcnow(),
    )
    db.session.add(row)
    return row


def _metadata(row: Dispute) -> dict[str, Any]:
    return {"dispute": row.stripe_dispute_id, "charge": row.charge_id}


def _open(row: Dispute, disputed: _Disputed) -> Outcome:
    note = f"dispute opened ({disputed.what}): respond in Stripe"
    if disputed.grant_ref is None:
        return Outcome(f"{note}; the payment granted nothing to hold", alert=True)
    if not _has_grant(row.organization_id, disputed.grant_ref):
        return Outcome(f"{note}; its credits predate credit grants and stay spendable", alert=True)

    def frozen(amount: int) -> None:
        row.frozen_credits = amount

    return Outcome(
        f"{note}; its remaining credits are on hold",
        Credit(
            row.organization_id,
            0,
            "freeze",
            f"dispute:{row.stripe_dispute_id}",
            f"{disputed.what} disputed: its remaining credits are on hold",
            _metadata(row),
            grant_ref=disputed.grant_ref,
            applied=frozen,
        ),
        alert=True,
    )


def _close(row: Dispute, disputed: _Disputed, first_heard: bool) -> Outcome:
    source_ref = f"dispute:{row.stripe_dispute_id}"
    if row.status != "lost":
        held = disputed.grant_ref is not None and _has_grant(
            row.organization_id, disputed.grant_ref
        )
        if first_heard or not held:
            return Outcome(f"dispute {row.status}: nothing was on hold")
        return Outcome(
            f"dispute {row.status}: {format_credits(row.frozen_credits)} credits released",
            Credit(
                row.organization_id,
                0,
                "unfreeze",
                source_ref,
                f"{disputed.what}: dispute {row.status}, credits released",
                _metadata(row),
                grant_ref=disputed.grant_ref,
            ),
        )
    if disputed.grant_ref is None:
        return Outcome("dispute lost: the payment granted nothing to take back", alert=True)

    def clawed(amount: int) -> None:
        row.clawed_back_credits = amount

    credit = _take_back(
        row.organization_id,
        disputed.grant_ref,
        disputed.credits,
        source_ref,
        f"{disputed.what}: dispute lost, {format_credits(disputed.credits)} credits taken back",
        _metadata(row),
        clawed,
    )
    if credit is None:
        return Outcome("dispute lost: nothing left to take back")
    return Outcome(f"dispute lost: took back {format_credits(disputed.credits)} credits", credit)
