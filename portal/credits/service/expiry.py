"""What ends: holds (their credits consumed, given back, or expired with their grant) and
grants past their expiry (one ``expire`` ledger row each).

Like ``allocation``, everything here runs once the organization row is locked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from portal.credits.models import CreditGrant, Organization
from portal.credits.service.allocation import Part, hold_parts, lock_organization, note_expiry
from portal.credits.service.ledger import append, run
from portal.outbox import events

_grants = CreditGrant.__table__
_organizations = Organization.__table__


def _expiry_of(grant_id: int) -> datetime | None:
    return run(select(_grants.c.expires_at).where(_grants.c.id == grant_id), {}).scalar_one()


# --- ending holds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldOutcome:
    consumed: list[Part]  # what the capture charged, per grant
    expired: list[Part]  # released credits whose grant expired while they were held


def end_hold(organization_id: int, reservation_id: int, charged: int, now: datetime) -> HoldOutcome:
    """Settle a hold's grant parts: ``charged`` is consumed (in burn order), the rest goes back
    to its grant, or expires at once if that grant expired while the hold kept it."""
    consumed, expired, left = [], [], charged
    for part in hold_parts(reservation_id):
        use = min(left, part.amount)
        left -= use
        back = part.amount - use
        expires_at = _expiry_of(part.grant_id)
        lapsed = expires_at is not None and expires_at <= now
        run(
            update(_grants)
            .where(_grants.c.id == part.grant_id)
            .values(
                held=_grants.c.held - part.amount,
                consumed=_grants.c.consumed + use,
                remaining=_grants.c.remaining + (0 if lapsed else back),
                expired=_grants.c.expired + (back if lapsed else 0),
            ),
            {},
        )
        if use:
            consumed.append(Part(part.grant_id, use))
        if back and lapsed:
            expired.append(Part(part.grant_id, back))
        elif back:
            note_expiry(organization_id, expires_at)
    return HoldOutcome(consumed, expired)


def append_expiries(
    organization_id: int, parts: list[Part], balance_after: int, now: datetime, why: str
) -> None:
    """One ``expire`` row per grant; ``balance_after`` is the balance once all have expired."""
    running = balance_after + sum(part.amount for part in parts)
    for part in parts:
        running -= part.amount
        append(
            organization_id,
            "expire",
            -part.amount,
            running,
            grant_id=part.grant_id,
            description=why,
            created_at=now,
        )


# --- expiry ----------------------------------------------------------------------------------


def expire_grants(organization_id: int, now: datetime) -> int:
    """Turn what is left of every expired grant into one ``expire`` row each; returns the total.

    Also recomputes ``next_expiry_at`` exactly. Credits an open hold keeps are not touched:
    they expire when the hold ends without using them.
    """
    lock_organization(organization_id)
    due = run(
        select(_grants.c.id, _grants.c.remaining)
        .where(
            _grants.c.organization_id == organization_id,
            _grants.c.remaining > 0,
            _grants.c.expires_at <= now,
        )
        .order_by(_grants.c.expires_at, _grants.c.id),
        {},
    ).all()
    total = sum(remaining for _id, remaining in due)
    for grant_id, remaining in due:
        run(
            update(_grants)
            .where(_grants.c.id == grant_id)
            .values(remaining=0, expired=_grants.c.expired + remaining),
            {},
        )
    soonest = (
        select(func.min(_grants.c.expires_at))
        .where(
            _grants.c.organization_id == organization_id,
            _grants.c.remaining > 0,
            _grants.c.expires_at.is_not(None),
        )
        .scalar_subquery()
    )
    balance = run(
        update(_organizations)
        .where(_organizations.c.id == organization_id)
        .values(balance=_organizations.c.balance - total, next_expiry_at=soonest)
        .returning(_organizations.c.balance),
        {},
    ).scalar_one()
    if due:
        append_expiries(
            organization_id,
            [Part(grant_id, remaining) for grant_id, remaining in due],
            balance,
            now,
            "Credits expired",
        )
        events.credits_expired(organization_id, due, now)
    return total


def expire_if_due(organization_id: int, now: datetime) -> int:
    """Sweep first when an expiry is due, on paths that take credits without the debit guard
    (claw-backs, freezes, debts): expired credits must never be taken, whether or not
    anything has looked at the balance since they expired."""
    due = run(
        select(_organizations.c.next_expiry_at).where(_organizations.c.id == organization_id), {}
    ).scalar_one()
    if due is None or due > now:
        return 0
    return expire_grants(organization_id, now)
