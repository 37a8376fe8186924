"""Which grants credits come from and go back to: burn order, holds, expiry and debt.

Every function here runs inside a ``transaction`` once the organization row is locked (by the
debit ``UPDATE`` or ``lock_organization``): an organization's grants are only ever written under
that lock, so they need no guards of their own beyond their CHECK constraints. The lock order
everywhere is department → reservation → organization → grants, so nothing can deadlock.

Burn order: priority ascending, then the soonest expiry (never-expiring last), then the oldest,
then the id. The common deduct takes everything from the first grant in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, case, func, insert, select, update

from portal.credits.models import CreditGrant, GrantAllocation, LedgerEntry, Organization
from portal.credits.results import ReturnedCredits
from portal.credits.service.ledger import append, run

_grants = CreditGrant.__table__
_organizations = Organization.__table__
# NULLS LAST is PostgreSQL's default for an ascending index, so the order reads the burn index
# (organization_id, priority, expires_at, created_at, id) WHERE remaining > 0 as it is.
BURN_ORDER = (
    _grants.c.priority,
    _grants.c.expires_at.asc().nulls_last(),
    _grants.c.created_at,
    _grants.c.id,
)
_FIRST_WITH_CREDITS = (
    select(_grants.c.id)
    .where(_grants.c.organization_id == bindparam("owner"), _grants.c.remaining > 0)
    .order_by(*BURN_ORDER)
    .limit(1)
    .scalar_subquery()
)


def _take_first(into: str) -> Any:
    """``UPDATE`` the first grant in burn order if it alone covers ``take``: one statement."""
    return (
        update(_grants)
        .where(_grants.c.id == _FIRST_WITH_CREDITS, _grants.c.remaining >= bindparam("take"))
        .values(
            {
                _grants.c.remaining: _grants.c.remaining - bindparam("take"),
                _grants.c[into]: _grants.c[into] + bindparam("take"),
            }
        )
        .returning(_grants.c.id)
    )


_CONSUME_FIRST = _take_first("consumed")
_HOLD_FIRST = _take_first("held")


class LedgerOutOfBalance(RuntimeError):
    """The grants do not hold what the balance says: a bug, never a customer's error."""


@dataclass(frozen=True)
class Part:
    """So many micro-credits of one grant."""

    grant_id: int
    amount: int


def lock_organization(organization_id: int) -> None:
    """Take the organization row's lock (SQLite's ``BEGIN IMMEDIATE`` already serializes).

    ``FOR NO KEY UPDATE``, the lock an ``UPDATE`` of its balance takes: a plain ``FOR UPDATE``
    also waits for the key-share locks of rows being inserted that point at the organization
    (a new grant, before its ``UPDATE`` of the balance), and that inserter then queues behind
    this waiter: a deadlock.
    """
    run(
        select(_organizations.c.id)
        .where(_organizations.c.id == organization_id)
        .with_for_update(key_share=True),
        {},
    )


def single_grant(parts: list[Part]) -> int | None:
    """The grant id a ledger row names itself, when all of it concerns one grant."""
    return parts[0].grant_id if len(parts) == 1 else None


def record(
    parts: list[Part],
    *,
    ledger_entry_id: int | None = None,
    reservation_id: int | None = None,
    sign: int = 1,
    now: datetime,
) -> None:
    """Allocation rows: always for a hold, for a ledger row only when it spans several grants."""
    if not parts or (reservation_id is None and len(parts) < 2):
        return
    run(
        insert(GrantAllocation),
        [
            {
                "grant_id": part.grant_id,
                "ledger_entry_id": ledger_entry_id,
                "reservation_id": reservation_id,
                "amount": sign * part.amount,
                "created_at": now,
            }
            for part in parts
        ],
    )


def take(organization_id: int, amount: int, *, hold: bool = False) -> list[Part]:
    """Move ``amount`` out of the organization's grants in burn order (into ``held`` for a
    hold, else into ``consumed``). The debit guard already proved the credits are there."""
    if amount <= 0:
        return []
    params = {"owner": organization_id, "take": amount}
    row = run(_HOLD_FIRST if hold else _CONSUME_FIRST, params).one_or_none()
    if row is not None:
        return [Part(row.id, amount)]
    return _take_spread(organization_id, amount, "held" if hold else "consumed")


def take_or_owe(organization_id: int, amount: int) -> tuple[list[Part], int]:
    """Take what the grants have of ``amount``; the rest becomes the organization's debt."""
    spendable = int(
        run(
            select(func.coalesce(func.sum(_grants.c.remaining), 0)).where(
                _grants.c.organization_id == organization_id
            ),
            {},
        ).scalar_one()
    )
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


def _take_spread(organization_id: int, amount: int, into: str) -> list[Part]:
    candidates = run(
        select(_grants.c.id, _grants.c.remaining)
        .where(_grants.c.organization_id == organization_id, _grants.c.remaining > 0)
        .order_by(*BURN_ORDER)
        .with_for_update(),
        {},
    ).all()
    parts, left = [], amount
    for grant_id, remaining in candidates:
        if left == 0:
            break
        piece = min(remaining, left)
        run(
            update(_grants)
            .where(_grants.c.id == grant_id)
            .values(
                {
                    _grants.c.remaining: _grants.c.remaining - piece,
                    _grants.c[into]: _grants.c[into] + piece,
                }
            ),
            {},
        )
        parts.append(Part(grant_id, piece))
        left -= piece
    if left:
        raise LedgerOutOfBalance(
            f"organization {organization_id}: grants are {left} micro-credits short"
        )
    return parts


def parts_of(entry: LedgerEntry | Any) -> list[Part]:
    """What one ledger row took from (or gave to) which grants, in the order it happened."""
    if entry.grant_id is not None:
        return [Part(entry.grant_id, abs(entry.amount))]
    rows = run(
        select(GrantAllocation.grant_id, GrantAllocation.amount)
        .where(GrantAllocation.ledger_entry_id == entry.id)
        .order_by(GrantAllocation.id),
        {},
    ).all()
    return [Part(grant_id, abs(amount)) for grant_id, amount in rows]


def hold_parts(reservation_id: int) -> list[Part]:
    rows = run(
        select(GrantAllocation.grant_id, GrantAllocation.amount)
        .where(GrantAllocation.reservation_id == reservation_id)
        .order_by(GrantAllocation.id),
        {},
    ).all()
    return [Part(grant_id, amount) for grant_id, amount in rows]


def note_expiry(organization_id: int, expires_at: datetime | None) -> None:
    """A grant with credits now expires at ``expires_at``: keep ``next_expiry_at`` no later."""
    if expires_at is None:
        return
    column = _organizations.c.next_expiry_at
    run(
        update(_organizations)
        .where(_organizations.c.id == organization_id)
        .values(
            next_expiry_at=case(
                (column.is_(None) | (column > expires_at), expires_at), else_=column
            )
        ),
        {},
    )


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


# --- giving back -----------------------------------------------------------------------------


def give_back(
    organization_id: int, parts: list[Part], now: datetime, *, description: str
) -> list[ReturnedCredits]:
    """Return refunded credits to the grants they came from; a part whose grant has expired
    comes back as a new grant of the same kind and priority, valid for the grace period."""
    grace = timedelta(days=int(current_app.config["PORTAL_REFUND_GRACE_DAYS"]))
    returned = []
    for part in parts:
        grant = run(select(_grants).where(_grants.c.id == part.grant_id), {}).one()
        if grant.expires_at is None or grant.expires_at > now:
            run(
                update(_grants)
                .where(_grants.c.id == grant.id)
                .values(
                    remaining=_grants.c.remaining + part.amount,
                    returned=_grants.c.returned + part.amount,
                ),
                {},
            )
            note_expiry(organization_id, grant.expires_at)
            returned.append(ReturnedCredits(grant.id, part.amount, grant.expires_at))
            continue
        expires_at = now + grace
        new_id = run(
            insert(_grants).returning(_grants.c.id),
            {
                **new_grant_row(
                    organization_id,
                    grant.kind,
                    part.amount,
                    priority=grant.priority,
                    expires_at=expires_at,
                    description=description,
                    source_type="refund",
                    now=now,
                ),
                "returned_from_id": grant.id,
            },
        ).scalar_one()
        note_expiry(organization_id, expires_at)
        returned.append(ReturnedCredits(new_id, part.amount, expires_at))
    return returned


def new_grant_row(
    organization_id: int,
    kind: str,
    amount: int,
    *,
    priority: int,
    expires_at: datetime | None,
    description: str | None,
    source_type: str,
    now: datetime,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "kind": kind,
        "amount": amount,
        "remaining": amount,
        "held": 0,
        "consumed": 0,
        "returned": 0,
        "expired": 0,
        "clawed_back": 0,
        "frozen": 0,
        "priority": priority,
        "effective_at": now,
        "expires_at": expires_at,
        "description": description,
        "source_type": source_type,
        "carryovers": 0,
        "created_at": now,
        **fields,
    }


def settle_debt(organization_id: int, paid_by: int | None, now: datetime) -> int:
    """Credits that just arrived pay the organization's debt first (balance unchanged)."""
    debt = run(
        select(_organizations.c.debt).where(_organizations.c.id == organization_id), {}
    ).scalar_one()
    if not debt:
        return 0
    expire_if_due(organization_id, now)  # e.g. unfrozen credits of a grant that expired
    spendable = run(
        select(func.coalesce(func.sum(_grants.c.remaining), 0)).where(
            _grants.c.organization_id == organization_id
        ),
        {},
    ).scalar_one()
    paid = min(debt, int(spendable))
    if paid:
        parts = take(organization_id, paid)
        run(
            update(_organizations)
            .where(_organizations.c.id == organization_id)
            .values(debt=_organizations.c.debt - paid),
            {},
        )
        run(
            insert(GrantAllocation),
            [
                {
                    "grant_id": part.grant_id,
                    "ledger_entry_id": paid_by,
                    "amount": part.amount,
                    "created_at": now,
                }
                for part in parts
            ],
        )
    return paid
