"""The guarded primitives every balance change is made of, and the ledger appends.

Overspending is impossible by construction: debits are a conditional ``UPDATE … WHERE balance -
reserved >= :cost`` (the database serializes concurrent writers on the organization row),
department limits are the same kind of conditional UPDATE on the department row, and refunds
lock the organization row before they sum what was already refunded. Locks are always taken in
the order department → organization, so two operations can never deadlock on them.

``transaction`` is the unit of work: the outermost one commits, inner ones join it, and side
effects wait on its after-commit list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import (
    Executable,
    Result,
    Row,
    Select,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)

from portal.credits.errors import (
    DepartmentLimitExceeded,
    DepartmentNotFound,
    FeatureNotFound,
)
from portal.credits.idempotency import IdempotencySlot
from portal.credits.models import (
    Department,
    FeaturePrice,
    LedgerEntry,
    Organization,
    Reservation,
)
from portal.credits.results import (
    MAX_CHARGE,
)
from portal.errors import InvalidRequest
from portal.extensions import db
from portal.money import cost_micros, micros_to_decimal
from portal.timeutil import month_key, utcnow

NO_SYNC = {"synchronize_session": False}

# The deduct hot path's statements, built once with bound parameters: SQLAlchemy then neither
# rebuilds nor re-keys them per call. They name Core tables and columns and run on the session's
# connection (``_run``): the same transaction, without the ORM's per-statement machinery.
_organizations = Organization.__table__
_ledger = LedgerEntry.__table__
DEBIT = (
    update(_organizations)
    .where(
        _organizations.c.id == bindparam("organization_id"),
        _organizations.c.balance - _organizations.c.reserved >= bindparam("needed"),
        # An expiry due: the slow path sweeps it first, so expired credits are never spent.
        or_(
            _organizations.c.next_expiry_at.is_(None),
            _organizations.c.next_expiry_at > bindparam("now"),
        ),
    )
    .values(
        balance=_organizations.c.balance - bindparam("cost"),
        reserved=_organizations.c.reserved + bindparam("hold"),
    )
    .returning(_organizations.c.balance, _organizations.c.reserved)
)
_APPEND = insert(_ledger).returning(_ledger.c.id)
_ACTIVE_FEATURE = select(FeaturePrice.feature_key, FeaturePrice.credits_per_unit).where(
    FeaturePrice.feature_key == bindparam("feature_key"),
    FeaturePrice.active.is_(True),
    FeaturePrice.archived_at.is_(None),
)


class UnitOfWork:
    """The transaction in progress: what to do once it has committed."""

    def __init__(self) -> None:
        self.after_commit: list[Callable[[], None]] = []

    def on_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the outermost commit; never if the work rolls back."""
        self.after_commit.append(action)


_current: ContextVar[UnitOfWork | None] = ContextVar("credits_unit_of_work", default=None)


@contextmanager
def transaction(idempotency: IdempotencySlot | None = None) -> Iterator[UnitOfWork]:
    """Commit once at the end of the outermost ``transaction``; inner ones join it.

    On any error everything is rolled back (and the idempotency key freed); the after-commit
    actions run only once the commit succeeded, outside the transaction, so a failing side
    effect (a notification, say) can never undo the change that caused it.
    """
    outer = _current.get()
    if outer is not None:
        try:
            yield outer
        except BaseException:
            if idempotency is not None:
                idempotency.abandon()
            raise
        return
    unit = UnitOfWork()
    token = _current.set(unit)
    try:
        yield unit
        db.session.commit()
    except BaseException:
        db.session.rollback()
        if idempotency is not None:
            idempotency.abandon()
        raise
    finally:
        _current.reset(token)
    for action in unit.after_commit:
        try:
            action()
        except Exception:  # the change is committed: report the side effect, do not undo
            current_app.logger.exception("after-commit action failed")


def in_transaction() -> bool:
    """Is a unit of work in progress (so a ``transaction`` now would join it)?"""
    return _current.get() is not None


def after_commit(action: Callable[[], None]) -> None:
    """Hang ``action`` on the transaction in progress (or run it now if there is none)."""
    unit = _current.get()
    if unit is None:
        action()
    else:
        unit.on_commit(action)


# --- reads that every operation shares -------------------------------------------------------


def run(statement: Executable, params: dict[str, Any]) -> Result[Any]:
    """Execute on the session's connection, inside the session's transaction."""
    return db.session.connection().execute(statement, params)


def active_feature(feature_key: str) -> Row[Any]:
    """The feature's ``feature_key`` and ``credits_per_unit``, if it may be charged now."""
    feature = run(_ACTIVE_FEATURE, {"feature_key": feature_key}).one_or_none()
    if feature is None:
        raise FeatureNotFound(feature_key)
    return feature


def department_lookup(organization_id: int, name: str) -> Select[tuple[Department]]:
    """The department called ``name`` in any case: one read of the (organization, lower(name))
    unique index, on the deduct hot path."""
    return select(Department).where(
        Department.organization_id == organization_id,
        func.lower(Department.name) == func.lower(name),
    )


def find_department(organization_id: int, name: str) -> Department:
    department = db.session.scalar(department_lookup(organization_id, name))
    if department is None:
        raise DepartmentNotFound(name)
    return department


def balance_row(organization_id: int) -> tuple[int, int]:
    row = db.session.execute(
        select(Organization.balance, Organization.reserved).where(
            Organization.id == organization_id
        )
    ).one()
    return row.balance, row.reserved


# --- the guarded primitives ------------------------------------------------------------------


def unlapsed(organization_id: int, reserved: int, fresh: int = 0) -> int:
    """``reserved`` without lapsed holds not swept yet, so a reported ``available`` never counts
    an expired hold. Only read (no locks) and only when holds other than ``fresh`` exist: the
    sweep itself stays on paths that lock reservations before the organization row.
    """
    if reserved <= fresh:
        return reserved
    lapsed = db.session.scalar(
        select(func.coalesce(func.sum(Reservation.amount), 0)).where(
            Reservation.organization_id == organization_id,
            Reservation.status == "open",
            Reservation.expires_at <= utcnow(),
        )
    )
    return reserved - int(lapsed)


def credit(organization_id: int, amount: int, *, release: int = 0) -> tuple[int, int]:
    row = db.session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(balance=Organization.balance + amount, reserved=Organization.reserved - release)
        .returning(Organization.balance, Organization.reserved)
        .execution_options(**NO_SYNC)
    ).one()
    return row.balance, unlapsed(organization_id, row.reserved)


def charge_department(department: Department, cost: int, now: datetime) -> None:
    month = month_key(now)
    used = case((Department.usage_month == month, Department.used_this_month), else_=0)
    charged = db.session.execute(
        update(Department)
        .where(
            Department.id == department.id,
            or_(Department.monthly_limit.is_(None), used + cost <= Department.monthly_limit),
        )
        .values(used_this_month=used + cost, usage_month=month)
        .execution_options(**NO_SYNC)
    )
    if charged.rowcount != 1:
        db.session.refresh(department)
        raise DepartmentLimitExceeded(
            department.name, department.monthly_limit or 0, department.used_in(month), cost
        )


def append(organization_id: int, kind: str, amount: int, balance_after: int, **fields: Any) -> int:
    fields.setdefault("created_at", utcnow())
    if "meta" in fields:  # the column behind ``LedgerEntry.meta`` is named "metadata"
        fields["metadata"] = fields.pop("meta")
    return run(
        _APPEND,
        {
            "organization_id": organization_id,
            "kind": kind,
            "amount": amount,
            "balance_after": balance_after,
            **fields,
        },
    ).scalar_one()


def recorded(kind: str, source_ref: str) -> bool:
    """Is there a ledger row of ``kind`` for ``source_ref`` (unique together) already?"""
    found = db.session.scalar(
        select(LedgerEntry.id).where(LedgerEntry.kind == kind, LedgerEntry.source_ref == source_ref)
    )
    return found is not None


def charge_cost(unit_price: int, quantity: int, line: int | None = None) -> int:
    """Price × quantity, refused (as the quantity's fault) above the most one charge may cost."""
    cost = cost_micros(unit_price, quantity)
    if cost > MAX_CHARGE:
        field = "quantity" if line is None else f"lines[{line}].quantity"
        raise InvalidRequest(
            field, f"would cost more than {micros_to_decimal(MAX_CHARGE):,} credits in one charge"
        )
    return cost


def uncharge_department(
    department_id: int, amount: int, charged_at: datetime, now: datetime
) -> None:
    """A refund gives back month-to-date use only when the charge fell in the current month."""
    month = month_key(now)
    if month_key(charged_at) != month:
        return
    db.session.execute(
        update(Department)
        .where(Department.id == department_id, Department.usage_month == month)
        .values(
            used_this_month=case(
                (Department.used_this_month >= amount, Department.used_this_month - amount),
                else_=0,
            )
        )
        .execution_options(**NO_SYNC)
    )
