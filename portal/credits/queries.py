"""Read models over the ledger: usage pages, summaries, transactions, grants, departments,
prices.

Pages use keyset pagination on the ledger id (newest first), so page 10,000 costs the same as
page 1 and a cursor stays valid while new rows arrive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Select, func, literal, select, tuple_

from portal.credits.models import CreditGrant, Department, FeaturePrice, LedgerEntry, Organization
from portal.extensions import db
from portal.money import micros_to_decimal
from portal.timeutil import isoformat_z, month_key, utcnow

SUMMARY_GROUPS = ("feature", "category", "day", "department")
USAGE_KINDS = ("deduct", "refund")
# active: credits left (or held) and not expired; expired: its expiry has passed.
GRANT_STATUSES = ("active", "expired", "all")


@dataclass(frozen=True)
class LedgerFilter:
    organization_id: int
    start: datetime | None = None
    end: datetime | None = None
    feature_key: str | None = None
    category: str | None = None
    department: str | None = None

    def apply(self, stmt: Select, kinds: tuple[str, ...] | None) -> Select:
        stmt = stmt.where(LedgerEntry.organization_id == self.organization_id)
        if kinds is not None:
            stmt = stmt.where(
                LedgerEntry.kind.in_(kinds) if len(kinds) > 1 else (LedgerEntry.kind == kinds[0])
            )
        if self.start is not None:
            stmt = stmt.where(LedgerEntry.created_at >= self.start)
        if self.end is not None:
            stmt = stmt.where(LedgerEntry.created_at < self.end)
        if self.feature_key:
            stmt = stmt.where(LedgerEntry.feature_key == self.feature_key)
        if self.category:
            stmt = stmt.where(
                LedgerEntry.feature_key.in_(
                    select(FeaturePrice.feature_key).where(FeaturePrice.category == self.category)
                )
            )
        if self.department:
            stmt = stmt.where(
                LedgerEntry.department_id.in_(
                    select(Department.id).where(
                        Department.organization_id == self.organization_id,
                        func.lower(Department.name) == func.lower(self.department),
                    )
                )
            )
        return stmt


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_position: Position | None


def department_names(organization_id: int) -> dict[int, str]:
    return dict(
        db.session.execute(
            select(Department.id, Department.name).where(
                Department.organization_id == organization_id
            )
        ).all()
    )


def ledger_row_json(entry: LedgerEntry, departments: dict[int, str]) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": micros_to_decimal(entry.amount),
        "balance_after": micros_to_decimal(entry.balance_after),
        "feature_key": entry.feature_key,
        "quantity": None if entry.quantity is None else micros_to_decimal(entry.quantity),
        "unit_price": None if entry.unit_price is None else micros_to_decimal(entry.unit_price),
        "department": departments.get(entry.department_id) if entry.department_id else None,
        "user": entry.user_ref,
        "description": entry.description,
        "metadata": entry.meta,
        "refund_of": entry.refund_of_id,
        "reservation_id": entry.reservation_id,
        "created_at": isoformat_z(entry.created_at),
    }


@dataclass(frozen=True)
class Position:
    """Where a page ended: ledger rows are listed newest first by (created_at, id).

    Time, not id, orders the listing so that imported (backdated) history sits where it
    happened, and so that a date range is read from the (organization, created_at, id)
    index instead of by scanning every newer row.
    """

    created_at: datetime
    id: int

    # Microseconds since 0001-01-01, a dot, the row id. Every string of this shape decodes
    # (out-of-range parts clamp), so the documented pattern is the whole rule.
    PATTERN: ClassVar[str] = r"^[0-9]{1,18}\.[0-9]{1,19}$"

    def encode(self) -> str:
        micros = (self.created_at - datetime.min) // timedelta(microseconds=1)
        return f"{micros}.{self.id}"

    @classmethod
    def decode(cls, token: str) -> Position:
        """Raises ValueError for anything that is not a token ``encode`` made."""
        if not _POSITION.match(token):
            raise ValueError("not a page position")
        micros, row_id = token.split(".")
        moment = datetime.min + timedelta(microseconds=min(int(micros), _LAST_MICROSECOND))
        return cls(moment, min(int(row_id), 2**63 - 1))


_POSITION = re.compile(Position.PATTERN)
_LAST_MICROSECOND = (datetime.max - datetime.min) // timedelta(microseconds=1)


def ledger_entries(
    filters: LedgerFilter,
    *,
    kinds: tuple[str, ...] | None,
    limit: int,
    before: Position | None = None,
) -> tuple[list[LedgerEntry], Position | None]:
    """One page of ledger rows, newest first, and where the next page starts (or None)."""
    stmt = filters.apply(select(LedgerEntry), kinds)
    if before is not None:
        stmt = stmt.where(
            tuple_(LedgerEntry.created_at, LedgerEntry.id) < tuple_(before.created_at, before.id)
        )
    stmt = stmt.order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc()).limit(limit + 1)
    entries = list(db.session.scalars(stmt))
    has_more = len(entries) > limit
    entries = entries[:limit]
    last = entries[-1] if has_more else None
    return entries, (Position(last.created_at, last.id) if last else None)


def ledger_page(
    filters: LedgerFilter,
    *,
    kinds: tuple[str, ...] | None,
    limit: int,
    before: Position | None = None,
) -> Page:
    entries, after = ledger_entries(filters, kinds=kinds, limit=limit, before=before)
    departments = department_names(filters.organization_id)
    return Page([ledger_row_json(entry, departments) for entry in entries], after)


def refunded_amounts(deduction_ids: list[int]) -> dict[int, int]:
    """How much of each deduction was refunded so far."""
    if not deduction_ids:
        return {}
    return dict(
        db.session.execute(
            select(LedgerEntry.refund_of_id, func.sum(LedgerEntry.amount))
            .where(LedgerEntry.refund_of_id.in_(deduction_ids))
            .group_by(LedgerEntry.refund_of_id)
        ).all()
    )


def usage_page(filters: LedgerFilter, *, limit: int, before: Position | None = None) -> Page:
    """Deductions, newest first, each with how much of it was refunded since."""
    page = ledger_page(filters, kinds=("deduct",), limit=limit, before=before)
    refunded = refunded_amounts([row["id"] for row in page.rows])
    for row in page.rows:
        row["credits"] = -row.pop("amount")
        # int(): PostgreSQL sums BIGINT as NUMERIC.
        row["credits_refunded"] = micros_to_decimal(int(refunded.get(row["id"], 0)))
        for key in ("kind", "balance_after", "refund_of"):
            row.pop(key)
    return page


def usage_summary(filters: LedgerFilter, group_by: str) -> list[dict[str, Any]]:
    """Net credits used (deductions minus their refunds) and deduction count per group."""
    if group_by == "feature":
        key = LedgerEntry.feature_key
    elif group_by == "category":
        key = func.coalesce(FeaturePrice.category, literal("Uncategorized"))
    elif group_by == "day":
        key = func.date(LedgerEntry.created_at)
    else:
        key = Department.name
    credits = func.coalesce(func.sum(-LedgerEntry.amount), 0)
    count = func.sum(func.cast(LedgerEntry.kind == "deduct", db.Integer))
    stmt = select(key.label("key"), credits.label("credits"), count.label("count"))
    if group_by == "category":
        stmt = stmt.select_from(LedgerEntry).outerjoin(
            FeaturePrice, FeaturePrice.feature_key == LedgerEntry.feature_key
        )
    elif group_by == "department":
        stmt = stmt.select_from(LedgerEntry).outerjoin(
            Department, Department.id == LedgerEntry.department_id
        )
    stmt = filters.apply(stmt, USAGE_KINDS).group_by(key)
    rows = [
        {
            "key": row.key if row.key is None else str(row.key),
            "credits": micros_to_decimal(int(row.credits)),
            "count": int(row.count or 0),
        }
        for row in db.session.execute(stmt)
    ]
    if group_by == "day":
        rows.sort(key=lambda row: row["key"] or "")
    else:
        rows.sort(key=lambda row: (-row["credits"], row["key"] or ""))
    return rows


def department_json(department: Department, month: str | None = None) -> dict[str, Any]:
    month = month or month_key(utcnow())
    limit = department.monthly_limit
    return {
        "name": department.name,
        "monthly_limit": None if limit is None else micros_to_decimal(limit),
        "used_this_month": micros_to_decimal(department.used_in(month)),
    }


def list_departments(organization_id: int) -> list[Department]:
    return list(
        db.session.scalars(
            select(Department)
            .where(Department.organization_id == organization_id)
            .order_by(Department.name)
        )
    )


def active_features() -> list[FeaturePrice]:
    return list(
        db.session.scalars(
            select(FeaturePrice)
            .where(FeaturePrice.active.is_(True), FeaturePrice.archived_at.is_(None))
            .order_by(FeaturePrice.category, FeaturePrice.feature_key)
        )
    )


def feature_by_key(feature_key: str) -> FeaturePrice | None:
    return db.session.scalar(
        select(FeaturePrice).where(
            FeaturePrice.feature_key == feature_key, FeaturePrice.archived_at.is_(None)
        )
    )


def feature_choices() -> list[tuple[str, str]]:
    """(feature_key, category) of every priced feature, archived ones included."""
    return list(
        db.session.execute(
            select(FeaturePrice.feature_key, FeaturePrice.category).order_by(
                FeaturePrice.feature_key
            )
        ).all()
    )


# --- grants ----------------------------------------------------------------------------------


def settle(organization: Organization) -> None:
    """Release lapsed holds and sweep expired grants first, as the balance read does, so a
    listing never shows credits as left (or held) that expired before anyone spent them."""
    from portal.credits import service  # the service reads no queries: no import cycle

    service.sweep_due(organization)


def _grant_status(stmt: Select, status: str, now: datetime) -> Select:
    if status == "active":
        return stmt.where(
            (CreditGrant.remaining > 0) | (CreditGrant.held > 0),
            CreditGrant.expires_at.is_(None) | (CreditGrant.expires_at > now),
        )
    if status == "expired":
        return stmt.where(CreditGrant.expires_at <= now)
    return stmt


def grant_rows(
    organization_id: int, status: str, *, limit: int, before: Position | None = None
) -> tuple[list[CreditGrant], Position | None]:
    """One page of grants, newest first (the (organization, created_at, id) index), and where
    the next page starts (or None)."""
    stmt = _grant_status(
        select(CreditGrant).where(CreditGrant.organization_id == organization_id),
        status,
        utcnow(),
    )
    if before is not None:
        stmt = stmt.where(
            tuple_(CreditGrant.created_at, CreditGrant.id) < tuple_(before.created_at, before.id)
        )
    stmt = stmt.order_by(CreditGrant.created_at.desc(), CreditGrant.id.desc()).limit(limit + 1)
    grants = list(db.session.scalars(stmt))
    last = grants[limit - 1] if len(grants) > limit else None
    return grants[:limit], (Position(last.created_at, last.id) if last else None)


def grant_json(grant: CreditGrant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "kind": grant.kind,
        "amount": micros_to_decimal(grant.amount),
        "remaining": micros_to_decimal(grant.remaining),
        "priority": grant.priority,
        "expires_at": isoformat_z(grant.expires_at),
        "description": grant.description,
        "created_at": isoformat_z(grant.created_at),
    }


def grants_page(
    organization: Organization, status: str, *, limit: int, before: Position | None = None
) -> Page:
    settle(organization)
    grants, after = grant_rows(organization.id, status, limit=limit, before=before)
    return Page([grant_json(grant) for grant in grants], after)
