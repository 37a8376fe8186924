"""Customers, products and prices: the objects ``flask stripe sync`` and checkout rely on."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from portal.extensions import db
from portal.stripe_sandbox import store
from portal.stripe_sandbox.errors import SandboxError
from portal.stripe_sandbox.models import SandboxObject
from portal.stripe_sandbox.params import Params, merge_metadata

# A list's SQL conditions (indexed columns) and its filter on document fields.
Filter = tuple[tuple[Any, ...], Callable[[dict[str, Any]], bool]]
INTERVALS = ("day", "week", "month", "year")
MAX_LOOKUP_KEYS = 10


def create_customer(p: Params) -> dict[str, Any]:
    p.allow("email", "name", "description", "phone", "metadata")
    prefix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
    customer = {
        "id": store.new_id("cus", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": store.now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": p.string("description"),
        "email": p.string("email"),
        "invoice_prefix": prefix,
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None},
        "livemode": False,
        "metadata": merge_metadata({}, p.metadata()),
        "name": p.string("name"),
        "next_invoice_sequence": 1,
        "phone": p.string("phone"),
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    store.add(customer)
    return customer


def update_customer(customer_id: str, p: Params) -> dict[str, Any]:
    p.allow("email", "name", "description", "phone", "metadata")
    row = store.get("customer", customer_id, lock=True)
    customer = store.doc(row)
    for field in ("email", "name", "description", "phone"):
        if p.has(field):
            customer[field] = p.string(field)
    customer["metadata"] = merge_metadata(customer["metadata"], p.metadata())
    store.save(row, customer)
    return customer


def create_product(p: Params) -> dict[str, Any]:
    p.allow("id", "name", "active", "description", "metadata")
    product_id = p.string("id") or store.new_id("prod", 14)
    if store.find(product_id) is not None:
        raise SandboxError(
            f"Product already exists: {product_id}", param="id", code="resource_already_exists"
        )
    now = store.now()
    product = {
        "id": product_id,
        "object": "product",
        "active": p.boolean("active") is not False,
        "created": now,
        "default_price": None,
        "description": p.string("description"),
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": merge_metadata({}, p.metadata()),
        "name": p.string("name", required=True),
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": now,
        "url": None,
    }
    store.add(product)
    return product


def update_product(product_id: str, p: Params) -> dict[str, Any]:
    p.allow("name", "active", "description", "metadata")
    row = store.get("product", product_id, lock=True)
    product = store.doc(row)
    if p.has("name"):
        product["name"] = p.string("name", required=True)
    if p.has("description"):
        product["description"] = p.string("description")
    if p.has("active"):
        product["active"] = p.boolean("active")
    product["metadata"] = merge_metadata(product["metadata"], p.metadata())
    product["updated"] = store.now()
    store.save(row, product)
    return product


def product_filter(p: Params) -> Filter:
    p.allow("active", "ids", "limit", "starting_after", "ending_before")
    active, ids = p.boolean("active"), p.strings("ids")

    def keep(product: dict[str, Any]) -> bool:
        return (active is None or product["active"] == active) and (
            ids is None or product["id"] in ids
        )

    return (), keep


def _lookup_key(p: Params) -> str | None:
    key = p.string("lookup_key")
    if key is not None and len(key) > 200:
        raise SandboxError("Invalid lookup_key: at most 200 characters", param="lookup_key")
    return key


def _claim_lookup_key(key: str, price_id: str, transfer: bool) -> None:
    """Stripe's rule: a lookup key names one price; ``transfer_lookup_key`` moves it."""
    holder = db.session.scalar(
        select(SandboxObject).where(SandboxObject.lookup_key == key).with_for_update()
    )
    if holder is None or holder.id == price_id:
        return
    if not transfer:
        raise SandboxError(
            f"A price (`{holder.id}`) already uses that lookup key.", param="lookup_key"
        )
    released = store.doc(holder)
    released["lookup_key"] = None
    store.save(holder, released)


def _recurring(p: Params) -> dict[str, Any] | None:
    if not p.has("recurring"):
        return None
    recurring = p.sub("recurring").allow("interval", "interval_count")
    return {
        "interval": recurring.string("interval", required=True, choices=INTERVALS),
        "interval_count": recurring.integer("interval_count", minimum=1) or 1,
        "meter": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def create_price(p: Params) -> dict[str, Any]:
    p.allow(
        "product",
        "product_data",
        "unit_amount",
        "currency",
        "recurring",
        "lookup_key",
        "transfer_lookup_key",
        "active",
        "nickname",
        "metadata",
    )
    if p.has("product_data") and not p.has("product"):
        product_id = create_product(p.sub("product_data"))["id"]
    else:
        product_id = store.get("product", p.string("product", required=True), param="product").id
    currency = (p.string("currency", required=True) or "").lower()
    if not re.fullmatch(r"[a-z]{3}", currency):
        raise SandboxError(f"Invalid currency: {currency}", param="currency")
    amount = p.integer("unit_amount", required=True)
    recurring = _recurring(p)
    price = {
        "id": store.new_id("price"),
        "object": "price",
        "active": p.boolean("active") is not False,
        "billing_scheme": "per_unit",
        "created": store.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": _lookup_key(p),
        "metadata": merge_metadata({}, p.metadata()),
        "nickname": p.string("nickname"),
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": amount,
        "unit_amount_decimal": str(amount),
    }
    if price["lookup_key"]:
        _claim_lookup_key(price["lookup_key"], price["id"], bool(p.boolean("transfer_lookup_key")))
    store.add(price)
    return price


def update_price(price_id: str, p: Params) -> dict[str, Any]:
    # Amounts and intervals are immutable in Stripe: a new amount is a new price.
    p.allow("active", "lookup_key", "transfer_lookup_key", "nickname", "metadata")
    row = store.get("price", price_id, lock=True)
    price = store.doc(row)
    if p.has("active"):
        price["active"] = p.boolean("active")
    if p.has("nickname"):
        price["nickname"] = p.string("nickname")
    if p.has("lookup_key"):
        key = _lookup_key(p)
        if key:
            _claim_lookup_key(key, price_id, bool(p.boolean("transfer_lookup_key")))
        price["lookup_key"] = key
    price["metadata"] = merge_metadata(price["metadata"], p.metadata())
    store.save(row, price)
    return price


def price_filter(p: Params) -> Filter:
    p.allow(
        "lookup_keys",
        "active",
        "product",
        "type",
        "currency",
        "limit",
        "starting_after",
        "ending_before",
    )
    keys = p.strings("lookup_keys")
    if keys is not None and len(keys) > MAX_LOOKUP_KEYS:
        raise SandboxError("Invalid lookup_keys: at most 10", param="lookup_keys")
    active, product = p.boolean("active"), p.string("product")
    type_ = p.string("type", choices=("one_time", "recurring"))
    currency = p.string("currency")

    def keep(price: dict[str, Any]) -> bool:
        return (
            (active is None or price["active"] == active)
            and (product is None or price["product"] == product)
            and (type_ is None or price["type"] == type_)
            and (currency is None or price["currency"] == currency.lower())
        )

    conditions = () if keys is None else (SandboxObject.lookup_key.in_(keys),)
    return conditions, keep


def customer_filter(p: Params) -> Filter:
    p.allow("email", "limit", "starting_after", "ending_before")
    email = p.string("email")
    return (), (lambda customer: email is None or customer["email"] == email)
