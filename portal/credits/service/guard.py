"""The debit guard: take credits only if ``available`` covers them, in one statement.

``UPDATE organizations SET balance = balance - :cost … WHERE balance - reserved >= :needed AND
(next_expiry_at IS NULL OR next_expiry_at > :now)``: the database serializes concurrent writers
on the organization row, so no two requests can spend the same credit. When it refuses, the
slow path sweeps what may have made ``available`` look larger than it is (lapsed holds,
expired grants) and tries once more; only then is the refusal final.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from portal.credits.errors import InsufficientCredits
from portal.credits.models import Organization, Reservation
from portal.credits.service import allocation
from portal.credits.service.ledger import (
    DEBIT,
    NO_SYNC,
    balance_row,
    run,
    unlapsed,
)
from portal.extensions import db
from portal.timeutil import utcnow


def debit(organization_id: int, cost: int, *, hold: int = 0) -> tuple[int, int]:
    """Take ``cost`` from balance if available covers it (``hold`` moves into ``reserved``).

    Returns (balance, reserved) after. Lapsed holds and expired grants are swept only when
    the fast conditional UPDATE fails; the hot path stays one statement. The ``reserved``
    returned leaves out lapsed holds (see ``unlapsed``).
    """
    now = utcnow()
    params = {
        "organization_id": organization_id,
        "cost": cost,
        "hold": hold,
        "needed": cost + hold,
        "now": now,
    }
    row = run(DEBIT, params).one_or_none()
    if row is None:
        release_expired_holds(organization_id, now)
        allocation.expire_grants(organization_id, now)
        row = run(DEBIT, params).one_or_none()
    if row is None:
        balance, reserved = balance_row(organization_id)
        raise InsufficientCredits(cost + hold, balance - reserved)
    return row.balance, unlapsed(organization_id, row.reserved, hold)


def release_expired_holds(organization_id: int, now: datetime | None = None) -> int:
    """Expire this organization's lapsed reservations and return what they freed.

    Their credits go back to their grants; those of a grant that expired meanwhile expire now.
    """
    now = now or utcnow()
    lapsed = db.session.execute(
        update(Reservation)
        .where(
            Reservation.organization_id == organization_id,
            Reservation.status == "open",
            Reservation.expires_at <= now,
        )
        .values(status="expired", closed_at=now)
        .returning(Reservation.id, Reservation.amount)
        .execution_options(**NO_SYNC)
    ).all()
    total = sum(amount for _id, amount in lapsed)
    if not total:
        return 0
    allocation.lock_organization(organization_id)  # before its grants: the lock order
    expired: list[allocation.Part] = []
    for reservation_id, _amount in sorted(lapsed):
        expired += allocation.end_hold(organization_id, reservation_id, 0, now).expired
    gone = sum(part.amount for part in expired)
    balance = db.session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(reserved=Organization.reserved - total, balance=Organization.balance - gone)
        .returning(Organization.balance)
        .execution_options(**NO_SYNC)
    ).scalar_one()
    if expired:
        allocation.append_expiries(
            organization_id, expired, balance, now, "Held credits expired with their hold"
        )
    return total
