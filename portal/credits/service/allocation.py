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
from sqlalchemy import bindparam, case, insert, select, update

from portal.credits.models import CreditGrant, GrantAllocation, LedgerEntry, Organization
from portal.credits.results import ReturnedCredits
from portal.credits.service.ledger import run

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
    always: bool = False,
    now: datetime,
) -> None:
    """Allocation rows: always for a hold, for a ledger row only when it spans several grants
    (or ``always``, when the row's own ``grant_id`` names another grant than these)."""
    if not parts or (reservation_id is None and len(parts) < 2 and not always):
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
