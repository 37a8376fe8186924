"""The debit guard: take credits only if ``available`` covers them, in one statement.

``UPDATE organizations SET balance = balance - :cost … WHERE balance - reserved >= :needed AND
(next_expiry_at IS NULL OR next_expiry_at > :now)``: the database serializes concurrent writers
on the organization row, so no two requests can spend the same credit. When it refuses, the
slow path sweeps what may have made ``available`` look larger than it is (lapsed holds,
expired grants) and tries once more; only then is the refusal final.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text, update

from portal.credits.errors import InsufficientCredits
from portal.credits.models import Organization, Reservation
from portal.credits.service import allocation, expiry
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
        expiry.expire_grants(organization_id, now)
        row = run(DEBIT, params).one_or_none()
    if row is None:
        balance, reserved = balance_row(organization_id)
        raise InsufficientCredits(cost + hold, balance - reserved)
    return row.balance, unlapsed(organization_id, row.reserved, hold)


# PostgreSQL takes the debit and the first grant's share in one round trip: the grant is
# written only once the organization row is locked (``EXISTS (SELECT 1 FROM debit)``), so the
# lock order holds. The grant's pick reads the statement's snapshot, which may predate the
# lock wait; its ``remaining >= :cost`` is re-checked on the row's newest version, so a grant
# emptied meanwhile is never overdrawn (the ordinary path then takes the charge).
_DEBIT_AND_TAKE = text(
    """
    WITH debit AS (
        UPDATE organizations SET balance = balance - :cost, reserved = reserved + :hold
        WHERE id = :organization_id AND balance - reserved >= :needed
          AND (next_expiry_at IS NULL OR next_expiry_at > :now)
        RETURNING balance, reserved
    ), took AS (
        UPDATE credit_grants SET remaining = remaining - :cost, consumed = consumed + :cost
        WHERE id = (
            SELECT id FROM credit_grants
            WHERE organization_id = :organization_id AND remaining > 0
            ORDER BY priority, expires_at NULLS LAST, created_at, id LIMIT 1
        ) AND remaining >= :cost AND EXISTS (SELECT 1 FROM debit)
        RETURNING id
    )
    SELECT debit.balance, debit.reserved, (SELECT id FROM took) AS grant_id FROM debit
    """
)


def debit_and_take(organization_id: int, cost: int) -> tuple[int, int, list[allocation.Part]]:
    """``debit`` and ``allocation.take`` of one charge: one statement on PostgreSQL in the
    common case (one grant covers it), two elsewhere."""
    if cost > 0 and db.session.connection().dialect.name == "postgresql":
        params = {
            "organization_id": organization_id,
            "cost": cost,
            "hold": 0,
            "needed": cost,
            "now": utcnow(),
        }
        row = run(_DEBIT_AND_TAKE, params).one_or_none()
        if row is not None:
            parts = (
                [allocation.Part(row.grant_id, cost)]
                if row.grant_id is not None
                else allocation.take(organization_id, cost)
            )
            return row.balance, unlapsed(organization_id, row.reserved), parts
    balance, reserved = debit(organization_id, cost)
    return balance, reserved, allocation.take(organization_id, cost)


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
        expired += expiry.end_hold(organization_id, reservation_id, 0, now).expired
    gone = sum(part.amount for part in expired)
    balance = db.session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(reserved=Organization.reserved - total, balance=Organization.balance - gone)
        .returning(Organization.balance)
        .execution_options(**NO_SYNC)
    ).scalar_one()
    if expired:
        expiry.append_expiries(
            organization_id, expired, balance, now, "Held credits expired with their hold"
        )
    return total
