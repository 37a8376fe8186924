"""Test cards, payment intents with their charge, and refunds (which emit ``charge.refunded``).

Disputes (``disputes.py``) are opened by the caller that took the payment, once it has emitted
its own events: at Stripe a chargeback arrives after the payment, never before.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from portal.stripe_sandbox import events, store
from portal.stripe_sandbox.errors import CardDeclined, SandboxError
from portal.stripe_sandbox.models import SandboxObject
from portal.stripe_sandbox.params import Params, merge_metadata

# Stripe's documented test cards: these succeed …
SUCCEEDING_CARDS = {"4242424242424242": "visa", "5555555555554444": "mastercard"}
# … this one pays, then its cardholder disputes the charge as fraudulent …
DISPUTING_CARDS = {"4000000000000259": "visa"}
# … and these are declined, with Stripe's messages.
DECLINED_CARDS = {
    "4000000000000002": ("Your card was declined.", "generic_decline"),
    "4000000000009995": ("Your card has insufficient funds.", "insufficient_funds"),
    "4000000000000069": ("Your card has expired.", "expired_card"),
}
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


@dataclass(frozen=True)
class Card:
    brand: str
    last4: str
    # Every charge on this card is disputed after it succeeds (4000 0000 0000 0259).
    opens_dispute: bool = False


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def check_card(number: str | None) -> Card:
    """The card if it would be charged; ``CardDeclined`` with Stripe's message otherwise."""
    digits = re.sub(r"[\s-]", "", number or "")
    if not digits:
        raise CardDeclined("Enter a card number.", "incorrect_number")
    if digits in SUCCEEDING_CARDS:
        return Card(SUCCEEDING_CARDS[digits], digits[-4:])
    if digits in DISPUTING_CARDS:
        return Card(DISPUTING_CARDS[digits], digits[-4:], opens_dispute=True)
    if digits in DECLINED_CARDS:
        raise CardDeclined(*DECLINED_CARDS[digits])
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not _luhn_ok(digits):
        raise CardDeclined("Your card number is incorrect.", "incorrect_number")
    raise CardDeclined(
        "Your card was declined: this offline sandbox accepts only Stripe's test cards, "
        "such as 4242 4242 4242 4242.",
        "test_mode_live_card",
    )


def create_payment(
    *,
    amount: int,
    currency: str,
    customer: str | None,
    card: Card,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    invoice: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A succeeded payment intent and its charge; returns the payment intent."""
    created = store.now() if created is None else created
    intent_id, charge_id = store.new_id("pi"), store.new_id("ch")
    charge = {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "captured": True,
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": description,
        "disputed": False,
        "invoice": invoice,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "paid": True,
        "payment_intent": intent_id,
        "payment_method_details": {
            "type": "card",
            "card": {"brand": card.brand, "last4": card.last4, "exp_month": 12, "exp_year": 2034},
        },
        "refunded": False,
        "refunds": {**store.list_object([], f"/v1/charges/{charge_id}/refunds"), "total_count": 0},
        "status": "succeeded",
    }
    intent = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": description,
        "invoice": invoice,
        "latest_charge": charge_id,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "payment_method_types": ["card"],
        "status": "succeeded",
    }
    store.add(intent)
    store.add(charge)
    return intent


def _charge_to_refund(p: Params) -> SandboxObject:
    if p.has("charge"):
        return store.get("charge", p.string("charge"), lock=True, param="charge")
    if p.has("payment_intent"):
        intent = store.get("payment_intent", p.string("payment_intent"), param="payment_intent")
        return store.get("charge", intent.data["latest_charge"], lock=True, param="payment_intent")
    raise SandboxError("Missing required param: charge or payment_intent.", param="charge")


def refund(p: Params) -> dict[str, Any]:
    """Refund all or part of a charge; the portal hears ``charge.refunded``."""
    p.allow("charge", "payment_intent", "amount", "reason", "metadata")
    row = _charge_to_refund(p)
    charge = store.doc(row)
    if charge.get("disputed"):
        # A chargeback already returned the money: Stripe refuses to refund it a second time.
        raise SandboxError(
            f"Charge {charge['id']} has been charged back; it cannot be refunded.",
            code="charge_disputed",
        )
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise SandboxError(
            f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    amount = p.integer("amount", minimum=1) or remaining
    if amount > remaining:
        raise SandboxError(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
            param="amount",
        )
    refund_doc = {
        "id": store.new_id("re"),
        "object": "refund",
        "amount": amount,
        "charge": charge["id"],
        "created": store.now(),
        "currency": charge["currency"],
        "metadata": merge_metadata({}, p.metadata()),
        "payment_intent": charge["payment_intent"],
        "reason": p.string("reason", choices=REFUND_REASONS),
        "status": "succeeded",
    }
    store.add(refund_doc)
    previous: dict[str, Any] = {
        "amount_refunded": charge["amount_refunded"],
        "refunds": copy.deepcopy(charge["refunds"]),
    }
    charge["amount_refunded"] += amount
    charge["refunds"]["data"].insert(0, refund_doc)
    charge["refunds"]["total_count"] = len(charge["refunds"]["data"])
    if charge["amount_refunded"] == charge["amount"]:
        previous["refunded"] = False
        charge["refunded"] = True
    store.save(row, charge)
    events.emit("charge.refunded", charge, previous=previous)
    return refund_doc
