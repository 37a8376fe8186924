"""One function per event type: what each event's ``data`` says, in one place.

Each is called inside the transaction of the change it reports (a grant, an expiry sweep, a
Stripe event's fulfilment), so the event commits with it or not at all. Amounts are credits as
JSON numbers (``micros_to_decimal``); times are ISO 8601 with ``Z``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

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


def payment_succeeded(
    organization_id: int,
    reference: str,
    *,
    amount_cents: int,
    currency: str,
    credits: int,
    product: str | None,
) -> None:
    """A package checkout or an invoice paid; ``reference`` is ``checkout:…`` or ``invoice:…``,
    the grant's ``source_ref``, so it happens once per payment."""
    emit(
        "payment.succeeded",
        organization_id,
        _payment(reference, amount_cents, currency, credits, product),
        dedupe_key=f"payment.succeeded:{reference}",
    )


def payment_failed(
    organization_id: int,
    reference: str,
    *,
    amount_cents: int,
    currency: str,
    product: str | None,
    stripe_event_id: str,
) -> None:
    """Each failure is its own event (an invoice may fail on every retry), once per Stripe
    event."""
    emit(
        "payment.failed",
        organization_id,
        _payment(reference, amount_cents, currency, 0, product),
        dedupe_key=f"payment.failed:{stripe_event_id}",
    )


def _payment(
    reference: str, amount_cents: int, currency: str, credits: int, product: str | None
) -> dict[str, object]:
    kind, _, stripe_id = reference.partition(":")
    return {
        "payment": {
            "type": "checkout" if kind == "checkout" else "invoice",
            "id": stripe_id,
            "amount": _cents(amount_cents),
            "currency": currency,
            "credits": micros_to_decimal(credits),
            "product": product,
        }
    }
