"""Credits entering (or, by adjustment, leaving) an organization outside of usage.

Every credit that enters is a grant (``CreditGrant``) and one ledger row naming it. A negative
adjustment takes credits in burn order. Plan periods end here too: when the next period is
paid (or the subscription ends), the old period's plan credits expire or carry over according
to the rollover policy they were granted under.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from portal.credits.errors import InsufficientCredits
from portal.credits.models import (
    CREDIT_KINDS,
    DEFAULT_PRIORITY,
    CreditGrant,
    Department,
    LedgerEntry,
    Organization,
)
from portal.credits.results import HistoricEntry
from portal.credits.service import allocation, debt, expiry
from portal.credits.service.guard import debit
from portal.credits.service.history import history_rows
from portal.credits.service.ledger import (
    NO_SYNC,
    append,
    balance_row,
    credit,
    in_transaction,
    recorded,
    run,
    transaction,
)
from portal.errors import Conflict
from portal.extensions import db
from portal.outbox import events
from portal.timeutil import month_key, utcnow

_grants = CreditGrant.__table__
SOURCE_BY_KIND = {
    "signup_bonus": "signup",
    "purchase": "package",
    "subscription": "plan",
    "grant": "admin",
    "adjustment": "admin",
    "opening": "opening",
}


class DuplicateGrant(Conflict):
    code = "already_granted"


@dataclass(frozen=True)
class GrantTerms:
    """How a grant burns and ends; every field has the kind's default."""

    expires_at: datetime | None = None
    priority: int | None = None
    source_type: str | None = None
    subscription_ref: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    rollover: str | None = None
    rollover_cap: int | None = None


@dataclass(frozen=True)
class Granted:
    entry_id: int  # the ledger row
    grant_id: int | None  # the new grant (None for a negative adjustment)


def grant(
    organization_id: int,
    amount: int,
    kind: str,
    *,
    description: str,
    user_id: int | None = None,
    source_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
    terms: GrantTerms | None = None,
    allow_negative_balance: bool = False,
) -> Granted:
    """Add credits as a new grant (or, for a negative adjustment, take them in burn order).

    ``source_ref`` makes a grant happen once per outside event (a paid invoice, a checkout
    session): the unique (kind, source_ref) of the ledger turns a second attempt into
    ``DuplicateGrant``. A negative amount needs available credits unless
    ``allow_negative_balance``: then what is missing becomes debt.
    """
    if kind not in CREDIT_KINDS:
        raise ValueError(f"{kind!r} is not a credit kind")
    if amount < 0 and kind != "adjustment":
        raise ValueError("only adjustments may be negative")
    if source_ref is not None and recorded(kind, source_ref):
        raise DuplicateGrant(f"Credits for {source_ref} were already granted.")
    terms = terms or GrantTerms()
    joined = in_transaction()
    try:
        with transaction():
            now = utcnow()
            fields = {
                "description": description,
                "created_by_user_id": user_id,
                "source_ref": source_ref,
                "meta": metadata,
                "created_at": now,
            }
            if amount < 0:
                return Granted(
                    _take_adjustment(organization_id, -amount, allow_negative_balance, fields),
                    None,
                )
            return _add_grant(organization_id, amount, kind, terms, fields, user_id, now)
    except IntegrityError:
        # A concurrent twin won the unique (kind, source_ref). Joined to a caller's
        # transaction, the caller decides (the failed transaction can run nothing more).
        if not joined and source_ref is not None and recorded(kind, source_ref):
            raise DuplicateGrant(f"Credits for {source_ref} were already granted.") from None
        raise


def _add_grant(
    organization_id: int,
    amount: int,
    kind: str,
    terms: GrantTerms,
    fields: dict[str, Any],
    user_id: int | None,
    now: datetime,
) -> Granted:
    grant_id = run(
        insert(_grants).returning(_grants.c.id),
        allocation.new_grant_row(
            organization_id,
            kind,
            amount,
            priority=terms.priority if terms.priority is not None else DEFAULT_PRIORITY[kind],
            expires_at=terms.expires_at,
            description=fields["description"],
            source_type=terms.source_type or SOURCE_BY_KIND[kind],
            now=now,
            source_ref=fields["source_ref"],
            subscription_ref=terms.subscription_ref,
            period_start=terms.period_start,
            period_end=terms.period_end,
            rollover=terms.rollover,
            rollover_cap=terms.rollover_cap,
            created_by_user_id=user_id,
        ),
    ).scalar_one()
    balance, _ = credit(organization_id, amount)
    entry_id = append(organization_id, kind, amount, balance, grant_id=grant_id, **fields)
    allocation.note_expiry(organization_id, terms.expires_at)
    debt.settle_debt(organization_id, entry_id, now)
    events.credits_granted(
        organization_id, grant_id, kind, amount, terms.expires_at, fields["description"]
    )
    return Granted(entry_id, grant_id)


def _take_adjustment(
    organization_id: int, amount: int, allow_debt: bool, fields: dict[str, Any]
) -> int:
    """A negative adjustment: credits taken in burn order; with ``allow_debt`` the part that
    is not there becomes debt instead of a refusal."""
    if allow_debt:
        allocation.lock_organization(organization_id)
        expiry.expire_if_due(organization_id, fields["created_at"])
        parts, owed = debt.take_or_owe(organization_id, amount)
        balance, _ = credit(organization_id, -amount)
    else:
        balance, _ = debit(organization_id, amount)
        parts, owed = allocation.take(organization_id, amount), 0
    entry_id = append(
        organization_id,
        "adjustment",
        -amount,
        balance,
        grant_id=allocation.single_grant(parts) if not owed else None,
        **fields,
    )
    allocation.record(parts, ledger_entry_id=entry_id, now=fields["created_at"])
    return entry_id


# --- expiry ----------------------------------------------------------------------------------


def expire_due(now: datetime | None = None) -> int:
    """Sweep every organization with an expiry due; returns how many micro-credits expired."""
    return sum(expire_due_by_organization(now).values())


def expire_due_by_organization(now: datetime | None = None) -> dict[int, int]:
    """Sweep every organization with an expiry due (``flask credits expire``): what expired,
    per organization that lost any. One transaction per organization, so a long sweep never
    holds many organizations' locks at once."""
    now = now or utcnow()
    due = db.session.scalars(
        select(Organization.id).where(Organization.next_expiry_at <= now).order_by(Organization.id)
    ).all()
    db.session.rollback()
    expired = {}
    for organization_id in due:
        with transaction():
            amount = expiry.expire_grants(organization_id, now)
        if amount:
            expired[organization_id] = amount
    return expired


def expire_organization(organization_id: int, now: datetime | None = None) -> int:
    with transaction():
        return expiry.expire_grants(organization_id, now or utcnow())


# --- history ---------------------------------------------------------------------------------


def import_history(organization_id: int, entries: list[HistoricEntry]) -> int:
    """Append past entries in time order in one transaction; the balance never dips below 0.

    Used to bring an organization over from another system (and by ``flask demo``). Credit
    entries become grants that never expire; deductions take from them in burn order. The
    balance row is locked and updated once, by the sum of what was appended.
    """
    entries = sorted(entries, key=lambda entry: entry.created_at)
    for entry in entries:
        if entry.kind not in ("deduct", "refund", *CREDIT_KINDS):
            raise ValueError(f"unknown ledger kind {entry.kind!r}")
    with transaction():
        allocation.lock_organization(organization_id)
        balance, _reserved = balance_row(organization_id)
        running = balance
        for entry in entries:
            running += entry.amount
            if running < 0:
                raise InsufficientCredits(-entry.amount, running - entry.amount)
        if entries:
            history_rows(organization_id, entries, balance)
            credit(organization_id, running - balance)
            _recount_department_usage(organization_id)
    return len(entries)


def _recount_department_usage(organization_id: int) -> None:
    """Rebuild month-to-date counters from the ledger after history was written."""
    now = utcnow()
    month = month_key(now)
    used = dict(
        db.session.execute(
            select(LedgerEntry.department_id, func.sum(-LedgerEntry.amount))
            .where(
                LedgerEntry.organization_id == organization_id,
                LedgerEntry.department_id.is_not(None),
                LedgerEntry.kind.in_(("deduct", "refund")),
                LedgerEntry.created_at
                >= now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
            )
            .group_by(LedgerEntry.department_id)
        ).all()
    )
    for department_id, total in used.items():
        db.session.execute(
            update(Department)
            .where(Department.id == department_id)
            .values(usage_month=month, used_this_month=max(int(total), 0))
            .execution_options(**NO_SYNC)
        )
