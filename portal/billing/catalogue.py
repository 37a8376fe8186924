"""The catalogue: plans and credit packages, what is for sale, and the admin's edits of them.

Items are found by ``lookup_key`` (``plan_starter``, ``package_small``), the same key their
Stripe prices carry. An item that was sold is archived, never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.billing.models import CatalogueItem, Package, Plan
from portal.errors import Conflict, InvalidRequest, NotFound
from portal.extensions import db
from portal.money import MICRO, format_credits
from portal.timeutil import utcnow

Kind = Literal["plan", "package"]
MODELS: dict[str, type[Plan] | type[Package]] = {"plan": Plan, "package": Package}
ROLLOVERS = ("none", "capped", "full")

# From the source documents; ``0010_billing`` inserts the same rows (migrations stay frozen).
SEED: dict[str, list[tuple[str, str, int, int, str]]] = {
    # (lookup_key, name, price in cents, credits, description)
    "plan": [
        ("plan_starter", "Starter", 2_900, 500, "For trying things out and small teams."),
        ("plan_professional", "Professional", 9_900, 2_000, "For teams shipping AI features."),
        ("plan_enterprise", "Enterprise", 29_900, 10_000, "For heavy, steady usage."),
    ],
    "package": [
        ("package_small", "Small", 990, 100, "A quick top-up."),
        ("package_medium", "Medium", 3_990, 500, "A month of light use."),
        ("package_large", "Large", 14_990, 2_000, "For a busy month."),
        ("package_jumbo", "Jumbo", 34_990, 5_000, "The best price per credit."),
    ],
}


class UnknownProduct(NotFound):
    code = "unknown_product"


class LookupKeyTaken(Conflict):
    code = "lookup_key_taken"


def seed_catalogue() -> int:
    """Add whichever seed items are missing (by lookup key); returns how many were added."""
    added = 0
    for kind, rows in SEED.items():
        model = MODELS[kind]
        existing = set(db.session.scalars(select(model.lookup_key)))
        for order, (key, name, cents, credits, description) in enumerate(rows, start=1):
            if key not in existing:
                db.session.add(
                    model(
                        lookup_key=key,
                        name=name,
                        price_cents=cents,
                        credits=credits * MICRO,
                        description=description,
                        sort_order=order,
                    )
                )
                added += 1
    try:
        db.session.commit()
    except IntegrityError:  # seeded at the same moment by another process: theirs will do
        db.session.rollback()
        return 0
    return added


def for_sale(kind: Kind) -> list[CatalogueItem]:
    model = MODELS[kind]
    return list(
        db.session.scalars(
            select(model)
            .where(model.active.is_(True), model.archived_at.is_(None))
            .order_by(model.sort_order, model.price_cents, model.id)
        )
    )


def find_for_sale(kind: Kind, lookup_key: str) -> CatalogueItem:
    model = MODELS[kind]
    item = db.session.scalar(select(model).where(model.lookup_key == lookup_key))
    if item is None or not item.for_sale:
        raise UnknownProduct(f"There is no {kind} “{lookup_key}” for sale.")
    return item


def all_items(kind: Kind) -> list[CatalogueItem]:
    """Everything, archived included: the admin's list."""
    model = MODELS[kind]
    return list(
        db.session.scalars(
            select(model).order_by(
                model.archived_at.is_not(None), model.sort_order, model.price_cents, model.id
            )
        )
    )


def get_item(kind: Kind, item_id: int) -> CatalogueItem:
    item = db.session.get(MODELS[kind], item_id)
    if item is None:
        raise NotFound(f"No such {kind}.")
    return item


@dataclass(frozen=True)
class ItemSpec:
    """An admin's edit of a plan or package (a new one carries its ``lookup_key``).

    Plans say what becomes of a period's unused credits (``rollover``, with ``rollover_cap``
    micro-credits iff ``capped``); packages how long their credits last (``validity_days``,
    none: forever). Each kind ignores the other's fields.
    """

    name: str
    price_cents: int
    credits: int
    description: str | None = None
    sort_order: int = 0
    active: bool = True
    lookup_key: str | None = None
    rollover: str = "none"
    rollover_cap: int | None = None
    validity_days: int | None = None


def save_item(kind: Kind, spec: ItemSpec, item_id: int | None = None) -> CatalogueItem:
    """Create or update an item. A new price drops the stored Stripe price id: Stripe prices
    cannot change, so the next sync (or checkout) makes a new one under the same lookup key."""
    model = MODELS[kind]
    if kind == "plan" and (
        spec.rollover not in ROLLOVERS or (spec.rollover == "capped") != bool(spec.rollover_cap)
    ):
        raise InvalidRequest("rollover_cap", "a capped rollover needs a cap, and only it has one")
    if item_id is None:
        item = model(lookup_key=spec.lookup_key)
        db.session.add(item)
    else:
        item = get_item(kind, item_id)
        if item.price_cents != spec.price_cents:
            item.stripe_price_id = None
    item.name = spec.name
    item.price_cents = spec.price_cents
    item.credits = spec.credits
    item.description = spec.description or None
    item.sort_order = spec.sort_order
    item.active = spec.active
    if isinstance(item, Plan):
        item.rollover = spec.rollover
        item.rollover_cap = spec.rollover_cap if spec.rollover == "capped" else None
    else:
        item.validity_days = spec.validity_days
    item.synced_at = None
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise LookupKeyTaken(f"The lookup key “{spec.lookup_key}” is in use already.") from None
    return item


def credit_rule(item: CatalogueItem) -> str:
    """What becomes of the credits an item grants, as the billing page states it."""
    if isinstance(item, Plan):
        if item.rollover == "full":
            return "Unused credits carry over"
        if item.rollover == "capped" and item.rollover_cap:
            return f"Up to {format_credits(item.rollover_cap)} unused credits carry over one period"
        return "Unused credits expire at the end of each period"
    days = getattr(item, "validity_days", None)
    if days:
        return f"Credits expire {days:,} day{'s' if days != 1 else ''} after purchase"
    return "Credits never expire"


def set_archived(kind: Kind, item_id: int, archived: bool) -> CatalogueItem:
    """Archive (off sale for good, kept for what was sold) or bring an item back on sale."""
    item = get_item(kind, item_id)
    item.archived_at = utcnow() if archived else None
    item.active = not archived
    item.synced_at = None
    db.session.commit()
    return item
