"""The demo's billing records: a paid payment for each package purchase in its ledger, and a
catalogue that shows every credit rule.

``flask demo`` imports its history through the credits service; a purchase there is keyed by
its checkout session (``checkout:<cs>``) as a real fulfilment is. This writes the payment that
fulfilment would have left, so the billing page lists what the ledger shows. Idempotent.
"""

from __future__ import annotations

from sqlalchemy import select

from portal.billing.models import Package, Payment, Plan
from portal.credits.models import LedgerEntry
from portal.extensions import db
from portal.money import MICRO

CHECKOUT_REF = "checkout:"
# Starter keeps the default (unused credits expire with their period), so the billing page
# shows all three rollover policies; Jumbo's credits last a year, the other packages' forever.
DEMO_TERMS: dict[str, dict[str, object]] = {
    "plan_professional": {"rollover": "capped", "rollover_cap": 500 * MICRO},
    "plan_enterprise": {"rollover": "full", "rollover_cap": None},
    "package_jumbo": {"validity_days": 365},
}


def set_demo_terms() -> int:
    """Give the seeded catalogue the demo's credit rules; returns how many items changed.

    Called once, when the demo organization is created: an admin's later edits stay.
    """
    changed = 0
    for model in (Plan, Package):
        for item in db.session.scalars(select(model).where(model.lookup_key.in_(DEMO_TERMS))):
            for name, value in DEMO_TERMS[item.lookup_key].items():
                setattr(item, name, value)
            changed += 1
    db.session.commit()
    return changed


def record_purchases(organization_id: int) -> int:
    """A paid, fulfilled payment for every purchase row that has none; returns how many."""
    recorded = set(
        db.session.scalars(
            select(Payment.checkout_session_id).where(Payment.organization_id == organization_id)
        )
    )
    purchases = db.session.scalars(
        select(LedgerEntry)
        .where(
            LedgerEntry.organization_id == organization_id,
            LedgerEntry.kind == "purchase",
            LedgerEntry.source_ref.startswith(CHECKOUT_REF),
        )
        .order_by(LedgerEntry.id)
    ).all()
    packages = {package.lookup_key: package for package in db.session.scalars(select(Package))}
    added = 0
    for row in purchases:
        session_id = row.source_ref.removeprefix(CHECKOUT_REF)
        package = packages.get((row.meta or {}).get("package"))
        if session_id in recorded or package is None:
            continue
        db.session.add(
            Payment(
                organization_id=organization_id,
                checkout_session_id=session_id,
                mode="payment",
                package=package,
                credits=row.amount,
                amount_cents=package.price_cents,
                currency=package.currency,
                status="paid",
                payment_intent_id=f"pi_{session_id.removeprefix('cs_')}",
                created_at=row.created_at,
                paid_at=row.created_at,
                fulfilled_at=row.created_at,
            )
        )
        added += 1
    db.session.commit()
    return added
