"""Credits entering (or, by adjustment, leaving) an organization outside of usage."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from portal.credits.errors import (
    InsufficientCredits,
)
from portal.credits.models import (
    CREDIT_KINDS,
    Department,
    LedgerEntry,
    Organization,
)
from portal.credits.results import (
    HistoricEntry,
)
from portal.credits.service.ledger import (
    NO_SYNC,
    append,
    balance_row,
    credit,
    debit,
    in_transaction,
    transaction,
)
from portal.errors import Conflict
from portal.extensions import db
from portal.timeutil import month_key, utcnow


class DuplicateGrant(Conflict):
    code = "already_granted"


def grant(
    organization_id: int,
    amount: int,
    kind: str,
    *,
    description: str,
    user_id: int | None = None,
    source_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
    allow_negative_balance: bool = False,
) -> int:
    """Add (or, for adjustments, take) credits outside of usage; returns the ledger row id.

    ``source_ref`` makes a grant happen once per outside event (a paid invoice, a checkout
    session): the unique constraint turns a second attempt into ``DuplicateGrant``.
    A negative amount needs available credits unless ``allow_negative_balance`` (the one path
    for clawing back a refunded payment).
    """
    if kind not in CREDIT_KINDS:
        raise ValueError(f"{kind!r} is not a credit kind")
    if amount < 0 and kind != "adjustment":
        raise ValueError("only adjustments may be negative")
    if source_ref is not None and _granted(kind, source_ref):
        raise DuplicateGrant(f"Credits for {source_ref} were already granted.")
    joined = in_transaction()
    try:
        with transaction():
            if amount < 0 and not allow_negative_balance:
                balance, _ = debit(organization_id, -amount)
            else:
                balance, _ = credit(organization_id, amount)
            return append(
                organization_id,
                kind,
                amount,
                balance,
                description=description,
                created_by_user_id=user_id,
                source_ref=source_ref,
                meta=metadata,
            )
    except IntegrityError:
        # A concurrent twin won the unique (kind, source_ref). Joined to a caller's
        # transaction, the caller decides (the failed transaction can run nothing more).
        if not joined and source_ref is not None and _granted(kind, source_ref):
            raise DuplicateGrant(f"Credits for {source_ref} were already granted.") from None
        raise


def _granted(kind: str, source_ref: str) -> bool:
    found = db.session.scalar(
        select(LedgerEntry.id).where(LedgerEntry.kind == kind, LedgerEntry.source_ref == source_ref)
    )
    return found is not None


def import_history(organization_id: int, entries: list[HistoricEntry]) -> int:
    """Append past entries in time order in one transaction; the balance never dips below 0.

    Used to bring an organization over from another system (and by ``flask demo``). The
    balance row is locked and updated once, by the sum of what was appended.
    """
    entries = sorted(entries, key=lambda entry: entry.created_at)
    with transaction():
        db.session.execute(
            select(Organization.id).where(Organization.id == organization_id).with_for_update()
        )
        balance, _reserved = balance_row(organization_id)
        start = balance
        rows = []
        for entry in entries:
            if entry.kind not in ("deduct", "refund", *CREDIT_KINDS):
                raise ValueError(f"unknown ledger kind {entry.kind!r}")
            balance += entry.amount
            if balance < 0:
                raise InsufficientCredits(-entry.amount, balance - entry.amount)
            rows.append(
                {
                    "organization_id": organization_id,
                    "kind": entry.kind,
                    "amount": entry.amount,
                    "balance_after": balance,
                    "feature_key": entry.feature_key,
                    "unit_price": entry.unit_price,
                    "quantity": entry.quantity,
                    "department_id": entry.department_id,
                    "user_ref": entry.user_ref,
                    "description": entry.description,
                    "source_ref": entry.source_ref,
                    "created_at": entry.created_at,
                    # Only when given: a JSON column would store None as JSON null, not NULL.
                    **({"meta": entry.metadata} if entry.metadata is not None else {}),
                }
            )
        if rows:
            db.session.execute(insert(LedgerEntry), rows)
            credit(organization_id, balance - start)
            _recount_department_usage(organization_id)
    return len(rows)


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
