"""Subscriptions: started by checkout, changed by the API or the portal page, renewed by the clock.

One item per subscription (the portal sells one plan at a time). Switching plan takes effect
from the next renewal and prorates nothing; ``proration_behavior`` is accepted and ignored.
"""

from __future__ import annotations

import copy
from typing import Any

from portal.stripe_sandbox import disputes, events, invoices, store
from portal.stripe_sandbox.errors import SandboxError
from portal.stripe_sandbox.models import SandboxObject
from portal.stripe_sandbox.params import Params, merge_metadata
from portal.stripe_sandbox.payments import Card

LIVE_STATUSES = ("active", "past_due")
PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
DEFAULT_CARD = Card("visa", "4242")


def _save_card(customer: str, card: Card, created: int) -> str:
    """The card becomes the subscription's payment method: renewals charge it."""
    method = {
        "id": store.new_id("pm"),
        "object": "payment_method",
        "card": {"brand": card.brand, "last4": card.last4, "exp_month": 12, "exp_year": 2034},
        "created": created,
        "customer": customer,
        "livemode": False,
        "metadata": {},
        "type": "card",
        "_opens_dispute": card.opens_dispute,  # hidden: the card's test behaviour, for renewals
    }
    store.add(method)
    return method["id"]


def _card_of(subscription: dict[str, Any]) -> Card:
    row = store.find(subscription.get("default_payment_method") or "")
    if row is None:
        return DEFAULT_CARD
    card = row.data["card"]
    return Card(card["brand"], card["last4"], row.data.get("_opens_dispute", False))


def _set_period(subscription: dict[str, Any], start: int, end: int) -> None:
    # Older API versions read the period on the subscription, newer ones on the item: both.
    subscription["current_period_start"], subscription["current_period_end"] = start, end
    item = subscription["items"]["data"][0]
    item["current_period_start"], item["current_period_end"] = start, end


def start(
    *, customer: str, price: dict[str, Any], quantity: int, metadata: dict[str, str], card: Card
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create an active subscription and its paid first invoice; emits ``created``, ``paid``."""
    now = store.now()
    subscription_id = store.new_id("sub")
    subscription: dict[str, Any] = {
        "id": subscription_id,
        "object": "subscription",
        "billing_cycle_anchor": now,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": now,
        "currency": price["currency"],
        "customer": customer,
        "default_payment_method": _save_card(customer, card, now),
        "ended_at": None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": store.new_id("si", 14),
                    "object": "subscription_item",
                    "created": now,
                    "metadata": {},
                    "price": price,
                    "quantity": quantity,
                    "subscription": subscription_id,
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/subscription_items?subscription={subscription_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": metadata,
        "start_date": now,
        "status": "active",
    }
    _set_period(subscription, now, invoices.next_period_end(now, now, price["recurring"]))
    invoice = invoices.build(
        subscription,
        period=(now, subscription["current_period_end"]),
        billing_reason="subscription_create",
        created=now,
        card=card,
    )
    subscription["latest_invoice"] = invoice["id"]
    store.add(subscription)
    events.emit("customer.subscription.created", subscription)
    events.emit("invoice.paid", invoice)
    return subscription, invoice


def _switch_price(subscription: dict[str, Any], item_id: str | None, price_id: str) -> None:
    item = subscription["items"]["data"][0]
    if item_id != item["id"]:
        raise SandboxError(
            "The sandbox supports one item per subscription: pass items[0][id] "
            f"({item['id']}) with items[0][price].",
            param="items[0][id]",
        )
    price = store.get("price", price_id, param="items[0][price]").data
    if price["type"] != "recurring" or not price["active"]:
        raise SandboxError(
            f"The price {price_id} is not an active recurring price.", param="items[0][price]"
        )
    if price["currency"] != subscription["currency"]:
        raise SandboxError("A subscription cannot change currency.", param="items[0][price]")
    item["price"] = price


def update(
    subscription_id: str,
    *,
    cancel_at_period_end: bool | None = None,
    item_id: str | None = None,
    price_id: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Change a subscription; emits ``customer.subscription.updated`` when anything changed."""
    row = store.get("subscription", subscription_id, lock=True)
    subscription = store.doc(row)
    before = copy.deepcopy(subscription)
    if subscription["status"] == "canceled" and (cancel_at_period_end is not None or price_id):
        raise SandboxError("A canceled subscription can only update its metadata.")
    if price_id:
        _switch_price(subscription, item_id, price_id)
    if cancel_at_period_end not in (None, subscription["cancel_at_period_end"]):
        subscription["cancel_at_period_end"] = cancel_at_period_end
        subscription["cancel_at"] = (
            subscription["current_period_end"] if cancel_at_period_end else None
        )
        subscription["canceled_at"] = store.now() if cancel_at_period_end else None
    subscription["metadata"] = merge_metadata(subscription["metadata"], metadata)
    previous = {key: before[key] for key in subscription if subscription[key] != before[key]}
    if previous:
        store.save(row, subscription)
        events.emit("customer.subscription.updated", subscription, previous=previous)
    return subscription


def update_from_params(subscription_id: str, p: Params) -> dict[str, Any]:
    p.allow("cancel_at_period_end", "items", "proration_behavior", "metadata")
    p.string("proration_behavior", choices=PRORATION_BEHAVIORS)
    items = p.items("items")
    if len(items) > 1:
        raise SandboxError("The sandbox supports one item per subscription.", param="items")
    item = items[0].allow("id", "price") if items else None
    return update(
        subscription_id,
        cancel_at_period_end=p.boolean("cancel_at_period_end"),
        item_id=item.string("id") if item else None,
        price_id=item.string("price", required=True) if item else None,
        metadata=p.metadata(),
    )


def cancel(subscription_id: str) -> dict[str, Any]:
    """End a subscription now; emits ``customer.subscription.deleted``. Nothing is refunded."""
    row = store.get("subscription", subscription_id, lock=True)
    subscription = store.doc(row)
    if subscription["status"] == "canceled":
        raise SandboxError(f"The subscription {subscription_id} is already canceled.")
    now = store.now()
    previous = {"status": subscription["status"], "ended_at": None}
    subscription.update(status="canceled", ended_at=now, canceled_at=now)
    store.save(row, subscription)
    events.emit("customer.subscription.deleted", subscription, previous=previous)
    return subscription


def renew_due(row: SandboxObject, until: int, *, fail_payment: bool) -> int:
    """Renew (or end) a subscription for every period that ended by ``until``; returns count."""
    subscription = store.doc(row)
    renewals = 0
    while subscription["status"] in LIVE_STATUSES and subscription["current_period_end"] <= until:
        boundary = subscription["current_period_end"]
        if subscription["cancel_at_period_end"]:
            previous = {"status": subscription["status"], "ended_at": None}
            subscription.update(status="canceled", ended_at=boundary)
            store.save(row, subscription)
            events.emit(
                "customer.subscription.deleted", subscription, previous=previous, created=boundary
            )
            break
        previous = {
            "current_period_start": subscription["current_period_start"],
            "current_period_end": boundary,
            "latest_invoice": subscription["latest_invoice"],
        }
        recurring = subscription["items"]["data"][0]["price"]["recurring"]
        end = invoices.next_period_end(subscription["billing_cycle_anchor"], boundary, recurring)
        _set_period(subscription, boundary, end)
        card = None if fail_payment else _card_of(subscription)
        invoice = invoices.build(
            subscription,
            period=(boundary, end),
            billing_reason="subscription_cycle",
            created=boundary,
            card=card,
        )
        subscription["latest_invoice"] = invoice["id"]
        if fail_payment and subscription["status"] != "past_due":
            previous["status"] = subscription["status"]
            subscription["status"] = "past_due"
        paid_or_failed = "invoice.payment_failed" if fail_payment else "invoice.paid"
        events.emit(paid_or_failed, invoice, created=boundary)
        store.save(row, subscription)
        events.emit(
            "customer.subscription.updated", subscription, previous=previous, created=boundary
        )
        disputes.open_if_disputing(card, invoice["charge"], created=boundary)
        renewals += 1
    return renewals


def recover(invoice_row: SandboxObject, card: Card | None = None) -> dict[str, Any]:
    """Pay an open invoice; a past-due subscription with nothing else owed becomes active."""
    card = card or DEFAULT_CARD
    invoice = invoices.settle(invoice_row, card, store.now())
    events.emit("invoice.paid", invoice)
    if invoice.get("subscription"):
        _reactivate(invoice["subscription"])
    disputes.open_if_disputing(card, invoice["charge"])
    return invoice


def _reactivate(subscription_id: str) -> None:
    row = store.get("subscription", subscription_id, lock=True)
    subscription = store.doc(row)
    still_open = [
        other
        for other in store.all_of("invoice", SandboxObject.customer == subscription["customer"])
        if other.data["subscription"] == subscription["id"] and other.data["status"] == "open"
    ]
    if subscription["status"] == "past_due" and not still_open:
        subscription["status"] = "active"
        store.save(row, subscription)
        events.emit("customer.subscription.updated", subscription, previous={"status": "past_due"})
