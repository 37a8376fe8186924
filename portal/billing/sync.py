"""Mirror the catalogue in Stripe: one product per item, one active price per lookup key.

Idempotent: a price is found by its lookup key, so running the sync again (or after the local
ids were lost) finds what the last run made. Stripe prices cannot change amount, so a new
price takes the lookup key over (``transfer_lookup_key``) and the old one is deactivated;
subscriptions on the old price keep it until they are moved.
"""

from __future__ import annotations

from dataclasses import dataclass

from portal.billing import gateway
from portal.billing.catalogue import MODELS, Kind, get_item
from portal.extensions import db
from portal.timeutil import utcnow


@dataclass(frozen=True)
class Synced:
    lookup_key: str
    product_id: str
    price_id: str | None
    action: str  # "created", "new price", "unchanged", "off sale"


@dataclass(frozen=True)
class _Snapshot:
    lookup_key: str
    name: str
    description: str | None
    for_sale: bool
    price_cents: int
    currency: str
    interval: str | None
    product_id: str | None


def sync_item(kind: Kind, item_id: int) -> Synced:
    item = get_item(kind, item_id)
    wanted = _Snapshot(
        item.lookup_key,
        item.name,
        item.description,
        item.for_sale,
        item.price_cents,
        item.currency,
        getattr(item, "interval", None),
        item.stripe_product_id,
    )
    # Never hold a transaction open across calls to Stripe: on SQLite it is the write lock,
    # and the sandbox answering those calls may need to write.
    db.session.rollback()
    price = gateway.find_price(wanted.lookup_key)
    product_id = gateway.save_product(
        price.product_id if price else wanted.product_id,
        wanted.name,
        wanted.description,
        wanted.for_sale,
        wanted.lookup_key,
    )
    current = (
        price is not None
        and price.product_id == product_id
        and price.unit_amount == wanted.price_cents
        and price.currency == wanted.currency
        and price.interval == wanted.interval
    )
    if not wanted.for_sale:
        if price is not None and price.active:
            gateway.set_price_active(price.id, False)
        price_id, action = (price.id if price else None), "off sale"
    elif current:
        assert price is not None
        if not price.active:
            gateway.set_price_active(price.id, True)
        price_id, action = price.id, "unchanged"
    else:
        price_id = gateway.create_price(
            product_id,
            wanted.lookup_key,
            wanted.price_cents,
            wanted.currency,
            wanted.interval,
        )
        if price is not None and price.active:
            gateway.set_price_active(price.id, False)
        action = "new price" if price else "created"
    item = get_item(kind, item_id)
    item.stripe_product_id = product_id
    item.stripe_price_id = price_id
    item.synced_at = utcnow()
    db.session.commit()
    return Synced(wanted.lookup_key, product_id, price_id, action)


def sync_catalogue() -> list[Synced]:
    """Every plan and package, archived ones included (their Stripe prices go off sale)."""
    ids = [
        (kind, item_id)
        for kind, model in MODELS.items()
        for item_id in db.session.scalars(db.select(model.id).order_by(model.id))
    ]
    return [sync_item(kind, item_id) for kind, item_id in ids]  # type: ignore[arg-type]
