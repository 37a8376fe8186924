"""Is a paid checkout what the catalogue sold? Stripe signs what happened, not what we meant.

A signed ``checkout.session.completed`` can still carry another amount, currency or price than
the package the portal sold (a price edited in Stripe's dashboard, a session made by hand, a
bug): ``portal.billing.fulfilment`` grants nothing for it and records a ``mismatch``.
"""

from __future__ import annotations

from typing import Any

from portal.billing import stripe_data as sd
from portal.billing.models import Package, Payment


def is_amount(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def catalogue_mismatch(payment: Payment, session: sd.Obj) -> str | None:
    """Why a package session is not what the catalogue sold at checkout, or ``None``.

    The amount and currency are fixed on our row when the session is created (the price then),
    so a later price edit is no mismatch. The price is checked where the event names it: the
    package in the metadata we set, and the line items when the session carries them.
    """
    amount, currency = session.get("amount_total"), session.get("currency")
    if not is_amount(amount) or amount != payment.amount_cents:
        return f"amount_total {amount!r} is not {payment.amount_cents}"
    if not isinstance(currency, str) or currency.lower() != payment.currency.lower():
        return f"currency {currency!r} is not {payment.currency!r}"
    package = payment.package
    if package is None:
        return "no package to compare with"
    named = sd.metadata(session).get("package")
    if named is not None and named != package.lookup_key:
        return f"metadata package {named!r} is not {package.lookup_key!r}"
    for price in sd.line_item_prices(session):
        if not _is_price_of(price, package):
            return f"price {sd.object_id(price)!r} is not a price of {package.lookup_key!r}"
    return None


def _is_price_of(price: Any, package: Package) -> bool:
    """The package's price now, or any price of its product (re-pricing makes a new price)."""
    if isinstance(price, str):
        return price == package.stripe_price_id
    if not isinstance(price, dict):
        return False
    return (bool(price.get("id")) and price.get("id") == package.stripe_price_id) or (
        package.stripe_product_id is not None
        and sd.object_id(price.get("product")) == package.stripe_product_id
    )
