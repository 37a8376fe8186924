"""The demo's billing records: a paid payment for each package purchase in its ledger.

``flask demo`` imports its history through the credits service; a purchase there is keyed by
its checkout session (``checkout:<cs>``) as a real fulfilment is. This writes the payment that
fulfilment would have left, so the billing page lists what the ledger shows. Idempotent.
"""

from __future__ import annotations

from sqlalchemy import select

from portal.billing.models import Package, Payment
from portal.credits.models import LedgerEntry
from portal.extensions import db

CHECKOUT_REF = "checkout:"


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
