"""Reading Stripe objects as webhooks deliver them (plain JSON), across API versions.

Newer API versions moved a few fields (an invoice's ``subscription`` under
``parent.subscription_details``, a subscription's period onto its items, a line's price under
``pricing.price_details``); each reader accepts both shapes, so the same code serves the
sandbox and real Stripe.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def at(unix: int | None) -> datetime | None:
    """Stripe's unix seconds as the naive UTC datetime the database stores."""
    if unix is None:
        return None
    return datetime.fromtimestamp(int(unix), UTC).replace(tzinfo=None)


def object_id(value: Any) -> str | None:
    """An expandable field: either the id itself or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def metadata(obj: Obj) -> dict[str, str]:
    return obj.get("metadata") or {}


def first(listing: Any) -> Obj:
    if isinstance(listing, dict):
        data = listing.get("data") or []
        return data[0] if data else {}
    return {}


def line_item_prices(session: Obj) -> list[Any]:
    """The prices of a checkout session's line items, when the session carries them (Stripe
    includes ``line_items`` only when asked to expand them)."""
    listing = session.get("line_items")
    if not isinstance(listing, dict):
        return []
    return [item.get("price") for item in listing.get("data") or []]


def invoice_subscription(invoice: Obj) -> str | None:
    found = object_id(invoice.get("subscription"))
    if found:
        return found
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return object_id(details.get("subscription"))


def invoice_metadata(invoice: Obj) -> dict[str, str]:
    """The subscription's metadata as the invoice carries it (it names the organization)."""
    details = invoice.get("subscription_details") or (invoice.get("parent") or {}).get(
        "subscription_details"
    )
    return (details or {}).get("metadata") or {}


def invoice_price(invoice: Obj) -> Obj | str | None:
    line = first(invoice.get("lines"))
    price = line.get("price")
    if price:
        return price
    details = (line.get("pricing") or {}).get("price_details") or {}
    return details.get("price")


def invoice_period(invoice: Obj) -> tuple[datetime | None, datetime | None]:
    """The period paid for: the line's (the invoice's own fields are the previous period)."""
    period = first(invoice.get("lines")).get("period") or {}
    start = period.get("start", invoice.get("period_start"))
    end = period.get("end", invoice.get("period_end"))
    return at(start), at(end)


def subscription_item(subscription: Obj) -> Obj:
    return first(subscription.get("items"))


def subscription_period(subscription: Obj) -> tuple[datetime | None, datetime | None]:
    item = subscription_item(subscription)
    start = subscription.get("current_period_start", item.get("current_period_start"))
    end = subscription.get("current_period_end", item.get("current_period_end"))
    return at(start), at(end)


def newest_refund_id(charge: Obj) -> str | None:
    refunds = (charge.get("refunds") or {}).get("data") or []
    if not refunds:
        return None
    return max(refunds, key=lambda refund: (refund.get("created") or 0, refund["id"]))["id"]
