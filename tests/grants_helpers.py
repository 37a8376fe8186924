"""Builders and checks for credit-grant tests: grants by whole credits, a grant's parts, which
grants a ledger row drew on, and the books every organization must keep.

A feature priced at one credit per unit (``UNIT``) makes a deduct of ``c(n)`` units cost
exactly ``c(n)`` micro-credits, so tests speak in credits, not prices.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from portal.credits import service
from portal.credits.models import CreditGrant, GrantAllocation, LedgerEntry, Organization
from portal.extensions import db
from portal.money import MICRO

UNIT = "unit"  # one credit per unit
PARTS = ("remaining", "held", "consumed", "returned", "expired", "clawed_back", "frozen")


def c(value: float) -> int:
    """Micro-credits of ``value`` whole credits (``c(2.5) == 2_500_000``)."""
    return round(value * MICRO)


def give(
    organization_id: int,
    amount: int,
    kind: str = "grant",
    *,
    expires_at: datetime | None = None,
    priority: int | None = None,
    source_ref: str | None = None,
) -> int:
    """A grant of ``amount`` micro-credits; returns its id."""
    terms = service.GrantTerms(expires_at=expires_at, priority=priority)
    return service.grant(
        organization_id, amount, kind, description="test", source_ref=source_ref, terms=terms
    ).grant_id


def parts(grant_id: int) -> dict[str, int]:
    """The grant's non-zero parts as stored now, e.g. ``{"remaining": 4, "consumed": 6}``."""
    db.session.expire_all()
    grant = db.session.get(CreditGrant, grant_id)
    found = {name: getattr(grant, name) for name in PARTS if getattr(grant, name)}
    db.session.rollback()
    return found


def drawn(entry_id: int) -> list[tuple[int, int]]:
    """(grant, amount) a ledger row took from (+) or gave to (−) its grants, in order. A row
    names its grant when it touched one, and has allocation rows (never both) when several."""
    entry = db.session.get(LedgerEntry, entry_id)
    rows = db.session.execute(
        select(GrantAllocation.grant_id, GrantAllocation.amount)
        .where(GrantAllocation.ledger_entry_id == entry_id)
        .order_by(GrantAllocation.id)
    ).all()
    db.session.rollback()
    if entry.grant_id is not None:
        assert not rows, f"entry {entry_id} names grant {entry.grant_id} and has allocations"
        return [(entry.grant_id, abs(entry.amount))]
    assert len(rows) != 1, f"entry {entry_id} has one allocation row instead of naming it"
    return [(grant_id, amount) for grant_id, amount in rows]


def ledger(organization_id: int, kind: str | None = None) -> list[LedgerEntry]:
    db.session.expire_all()
    query = select(LedgerEntry).where(LedgerEntry.organization_id == organization_id)
    if kind is not None:
        query = query.where(LedgerEntry.kind == kind)
    rows = list(db.session.scalars(query.order_by(LedgerEntry.id)))
    for row in rows:
        db.session.expunge(row)
    db.session.rollback()
    return rows


def assert_books(organization_id: int, now: datetime) -> service.Balance:
    """Read the balance (an access: due expiries are swept) and check what it must equal:
    balance == Σ remaining of unexpired grants + held − debt == Σ ledger; no expired grant
    keeps spendable credits; every grant adds up and none is below 0; every deduction drew
    exactly its cost from its grants."""
    organization = db.session.get(Organization, organization_id)
    balance = service.get_balance(organization)
    db.session.expire_all()
    organization = db.session.get(Organization, organization_id)
    grants = list(
        db.session.scalars(
            select(CreditGrant).where(CreditGrant.organization_id == organization_id)
        )
    )
    ledger_sum = db.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.organization_id == organization_id
        )
    )
    unexpired = sum(g.remaining for g in grants if g.expires_at is None or g.expires_at > now)
    held = sum(g.held for g in grants)
    assert all(g.remaining == 0 for g in grants if g.expires_at and g.expires_at <= now)
    assert balance.balance == organization.balance == ledger_sum
    assert organization.balance == unexpired + held - organization.debt
    assert balance.available == organization.balance - organization.reserved
    assert balance.owed == organization.debt >= 0
    assert balance.on_hold == sum(g.frozen for g in grants)
    for g in grants:
        total = g.remaining + g.held + g.consumed - g.returned + g.expired + g.clawed_back
        assert g.amount == total + g.frozen, g.id
        assert min(g.remaining, g.held, g.consumed, g.returned, g.expired, g.frozen) >= 0, g.id
    for row in ledger(organization_id, "deduct"):
        assert sum(amount for _, amount in drawn(row.id)) == -row.amount, row.id
    return balance


def days(n: float) -> timedelta:
    return timedelta(days=n)


# --- calls by whole amounts, for an ``OrgFixture`` with the ``UNIT`` feature priced ---------


def deduct(org, amount: int) -> service.Deduction:
    return service.deduct(org.organization, service.Spend(UNIT, amount))


def reserve(org, amount: int, *, seconds: int = 3 * 86_400) -> service.Hold:
    return service.reserve(org.organization, UNIT, amount, seconds)


def expiring_and_lasting(org, clock, expiring: int = 10, lasting: int = 10) -> tuple[int, int]:
    """A grant that expires in a day (burns first), and a purchase that never expires."""
    return (
        give(org.id, c(expiring), expires_at=clock.now + days(1)),
        give(org.id, c(lasting), "purchase"),
    )


def clawback(org, amount: int, ref: str = "refund:re_1") -> Any:
    """Claw back ``amount`` of the payment ``checkout:cs_1`` (a refund of it, say)."""
    return service.clawback(
        org.id, "checkout:cs_1", amount, source_ref=ref, description="payment refunded"
    )
