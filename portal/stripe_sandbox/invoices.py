"""Subscription invoices: numbered per customer, paid at once by card or left open on failure.

Building an invoice emits nothing: the caller emits in Stripe's order (``created`` before the
first ``invoice.paid``, the renewal's ``invoice.paid`` before ``subscription.updated``).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any

from portal.stripe_sandbox import payments, store
from portal.stripe_sandbox.display import format_amount, interval_text
from portal.stripe_sandbox.models import SandboxObject
from portal.stripe_sandbox.payments import Card

DAY = 86_400


def add_months(moment: int, months: int) -> int:
    """Stripe's calendar months: Jan 31 + 1 month is Feb 28 (29), the day clamped to the month."""
    start = datetime.fromtimestamp(moment, UTC)
    year, month_index = divmod(start.month - 1 + months, 12)
    year += start.year
    day = min(start.day, calendar.monthrange(year, month_index + 1)[1])
    return int(start.replace(year=year, month=month_index + 1, day=day).timestamp())


def next_period_end(anchor: int, after: int, recurring: dict[str, Any]) -> int:
    """The first period boundary after ``after`` for a subscription anchored at ``anchor``."""
    count = recurring.get("interval_count") or 1
    interval = recurring["interval"]
    if interval in ("day", "week"):
        step = count * DAY * (1 if interval == "day" else 7)
        return anchor + ((after - anchor) // step + 1) * step
    months = count * (12 if interval == "year" else 1)
    periods = 1
    while add_months(anchor, periods * months) <= after:
        periods += 1
    return add_months(anchor, periods * months)


def _next_number(customer_id: str) -> str:
    row = store.get("customer", customer_id, lock=True, param="customer")
    customer = store.doc(row)
    number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    store.save(row, customer)
    return number


def build(
    subscription: dict[str, Any],
    *,
    period: tuple[int, int],
    billing_reason: str,
    created: int,
    card: Card | None,
) -> dict[str, Any]:
    """Store a finalized invoice for the subscription's current price; ``card=None``: unpaid."""
    item = subscription["items"]["data"][0]
    price = item["price"]
    amount = price["unit_amount"] * item["quantity"]
    invoice_id = store.new_id("in")
    base = store.public_base()
    product = store.find(price["product"])
    name = product.data["name"] if product else price["product"]
    unit = format_amount(price["unit_amount"], price["currency"])
    every = interval_text(price["recurring"])
    line = {
        "id": store.new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": f"{item['quantity']} × {name} (at {unit} / {every})",
        "livemode": False,
        "metadata": {},
        "period": {"start": period[0], "end": period[1]},
        "price": price,
        "pricing": {
            "type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]},
            "unit_amount_decimal": str(price["unit_amount"]),
        },
        "quantity": item["quantity"],
        "subscription": subscription["id"],
        "subscription_item": item["id"],
        "type": "subscription",
    }
    invoice = {
        "id": invoice_id,
        "object": "invoice",
        "number": _next_number(subscription["customer"]),
        "customer": subscription["customer"],
        "subscription": subscription["id"],
        "subscription_details": {"metadata": dict(subscription["metadata"])},
        "parent": {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": subscription["id"],
                "metadata": dict(subscription["metadata"]),
            },
        },
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": price["currency"],
        "subtotal": amount,
        "total": amount,
        "amount_due": amount,
        "amount_paid": 0,
        "amount_remaining": amount,
        "attempt_count": 1,
        "attempted": True,
        "paid": False,
        "status": "open",
        "status_transitions": {"finalized_at": created, "paid_at": None},
        # The service period paid for (Stripe puts it on the line; see the design doc).
        "period_start": period[0],
        "period_end": period[1],
        "hosted_invoice_url": f"{base}/_stripe/invoices/{invoice_id}",
        "invoice_pdf": f"{base}/_stripe/invoices/{invoice_id}/pdf",
        "payment_intent": None,
        "charge": None,
        "livemode": False,
        "metadata": {},
        "lines": {
            "object": "list",
            "data": [line],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
    }
    if card is not None:
        _mark_paid(invoice, card, created)
    store.add(invoice)
    return invoice


def _mark_paid(invoice: dict[str, Any], card: Card, paid_at: int) -> None:
    intent = payments.create_payment(
        amount=invoice["amount_due"],
        currency=invoice["currency"],
        customer=invoice["customer"],
        card=card,
        metadata=invoice["subscription_details"]["metadata"],
        description="Subscription " + invoice["billing_reason"].removeprefix("subscription_"),
        invoice=invoice["id"],
        created=paid_at,
    )
    invoice.update(
        amount_paid=invoice["amount_due"],
        amount_remaining=0,
        paid=True,
        status="paid",
        payment_intent=intent["id"],
        charge=intent["latest_charge"],
    )
    invoice["status_transitions"]["paid_at"] = paid_at


def settle(row: SandboxObject, card: Card, paid_at: int) -> dict[str, Any]:
    """Pay an open invoice (a retry or the hosted invoice page); the caller emits."""
    invoice = store.doc(row)
    invoice["attempt_count"] += 1
    _mark_paid(invoice, card, paid_at)
    store.save(row, invoice)
    return invoice
