"""Debt: claw-backs beyond what the grants hold, and the credits that arrive paying it first.

``organizations.debt`` is part of the balance (balance = Σ(remaining + held) − debt). Like
``allocation``, everything here runs once the organization row is locked.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from portal.credits.models import CreditGrant, Organization
from portal.credits.service.allocation import Part, record, take
from portal.credits.service.expiry import expire_if_due
from portal.credits.service.ledger import run

_grants = CreditGrant.__table__
_organizations = Organization.__table__


def _spendable(organization_id: int) -> int:
    """What the organization's grants hold, spendable now (int(): PostgreSQL sums as NUMERIC)."""
    return int(
        run(
            select(func.coalesce(func.sum(_grants.c.remaining), 0)).where(
                _grants.c.organization_id == organization_id
            ),
            {},
        ).scalar_one()
    )


def take_or_owe(organization_id: int, amount: int) -> tuple[list[Part], int]:
    """Take what the grants have of ``amount``; the rest becomes the organization's debt."""
    spendable = _spendable(organization_id)
    parts = take(organization_id, min(amount, spendable))
    owed = amount - min(amount, spendable)
    if owed:
        run(
            update(_organizations)
            .where(_organizations.c.id == organization_id)
            .values(debt=_organizations.c.debt + owed),
            {},
        )
    return parts, owed


def settle_debt(organization_id: int, paid_by: int | None, now: datetime) -> int:
    """Credits that just arrived pay the organization's debt first (balance unchanged)."""
    debt = run(
        select(_organizations.c.debt).where(_organizations.c.id == organization_id), {}
    ).scalar_one()
    if not debt:
        return 0
    expire_if_due(organization_id, now)  # e.g. unfrozen credits of a grant that expired
    spendable = _spendable(organization_id)
    paid = min(debt, spendable)
    if paid:
        parts = take(organization_id, paid)
        run(
            update(_organizations)
            .where(_organizations.c.id == organization_id)
            .values(debt=_organizations.c.debt - paid),
            {},
        )
        record(parts, ledger_entry_id=paid_by, always=True, now=now)
    return paid
