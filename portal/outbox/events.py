"""One function per event type: what each event's ``data`` says, in one place.

Each is called inside the transaction of the change it reports (a grant, an expiry sweep, a
Stripe event's fulfilment), so the event commits with it or not at all. Amounts are credits as
JSON numbers (``micros_to_decimal``); times are ISO 8601 with ``Z``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from portal.money import micros_to_decimal
from portal.outbox import emit

EXPIRING_WITHIN_DAYS = 7


def _cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def credits_granted(
    organization_id: int,
    grant_id: int,
    kind: str,
    amount: int,
    expires_at: datetime | None,
    description: str,
) -> None:
    emit(
        "credits.granted",
        organization_id,
        {
            "grant_id": grant_id,
            "kind": kind,
            "amount": micros_to_decimal(amount),
            "expires_at": expires_at,
            "description": description,
        },
    )


def credits_expired(
    organization_id: int, parts: Iterable[tuple[int, int]], expired_at: datetime
) -> None:
    """One event per sweep of one organization: every grant that expired, and how much."""
    parts = list(parts)
    emit(
        "credits.expired",
        organization_id,
        {
            "amount": micros_to_decimal(sum(amount for _grant_id, amount in parts)),
            "expired_at": expired_at,
            "grants": [
                {"grant_id": grant_id, "amount": micros_to_decimal(amount)}
                for grant_id, amount in parts
            ],
        },
    )


def credits_expiring(
    organization_id: int, grant_id: int, kind: str, remaining: int, expires_at: datetime
) -> bool:
    """The warning, once per grant whatever the worker's schedule: True if it was written."""
    return (
        emit(
            "credits.expiring",
            organization_id,
            {
                "grant_id": grant_id,
                "kind": kind,
                "amount": micros_to_decimal(remaining),
                "expires_at": expires_at,
            },
            dedupe_key=f"credits.expiring:{grant_id}",
        )
        is not None
    )


def checkout_paid(payment: Any) -> None:
    """A package checkout was paid (``billing.Payment``): once per checkout session."""
    _payment_event("payment.succeeded", payment, "checkout", payment.checkout_session_id)


def checkout_failed(payment: Any, stripe_event_id: str) -> None:
    _payment_event(
        "payment.failed", payment, "checkout", payment.checkout_session_id, stripe_event_id
    )


def invoice_paid(invoice: Any, plan: Any) -> None:
    """An invoice was paid (``billing.Invoice``): once per invoice, whichever event says so.
    ``plan`` is passed, not read from the row: a row just made has no relationship loaded."""
    _payment_event("payment.succeeded", invoice, "invoice", invoice.stripe_invoice_id, plan=plan)


def invoice_payment_failed(invoice: Any, plan: Any, stripe_event_id: str) -> None:
    """Each failure is its own event (an invoice may fail on every retry): once per Stripe
    event."""
    _payment_event(
        "payment.failed", invoice, "invoice", invoice.stripe_invoice_id, stripe_event_id, plan
    )


def _payment_event(
    event_type: str,
    row: Any,
    kind: str,
    stripe_id: str,
    stripe_event_id: str | None = None,
    plan: Any = None,
) -> None:
    """``row`` is a ``Payment`` or an ``Invoice``: what was (to be) paid, for what."""
    product = plan if kind == "invoice" else row.package or row.plan
    credits = row.credits if kind == "checkout" else None
    emit(
        event_type,
        row.organization_id,
        {
            "payment": {
                "type": kind,
                "id": stripe_id,
                "amount": _cents(row.amount_cents or 0),
                "currency": row.currency or "usd",
                "credits": micros_to_decimal(credits) if credits is not None else None,
                "product": product.lookup_key if product is not None else None,
            }
        },
        dedupe_key=f"{event_type}:{stripe_event_id or f'{kind}:{stripe_id}'}",
    )
