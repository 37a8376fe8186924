"""The only writer of balances: every change is one ledger row plus the balance update.

Each public function is one database transaction, committed once at its end. Overspending is
impossible by construction: debits are a conditional ``UPDATE … WHERE balance - reserved >=
:cost`` (the database serializes concurrent writers on the organization row), department
limits are the same kind of conditional UPDATE on the department row, and refunds lock the
organization row before they sum what was already refunded. Locks are always taken in the
order department → organization, so two operations can never deadlock on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

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
from sqlalchemy.exc import IntegrityError

from portal.credits.errors import (
    AlreadyRefunded,
    DeductionNotFound,
    DepartmentExists,
    DepartmentLimitExceeded,
    DepartmentNotFound,
    FeatureNotFound,
    InsufficientCredits,
    QuantityExceedsReservation,
    RefundExceedsDeduction,
    ReservationNotFound,
    ReservationNotOpen,
)
from portal.credits.idempotency import IdempotencySlot
from portal.credits.models import (
    CREDIT_KINDS,
    Department,
    FeaturePrice,
    LedgerEntry,
    Organization,
    Reservation,
)
from portal.credits.results import (
    MAX_CHARGE,
    Balance,
    Batch,
    Capture,
    CheckResult,
    Deduction,
    HistoricEntry,
    Hold,
    Refund,
    Release,
    Spend,
)
from portal.errors import Conflict, InvalidRequest
from portal.extensions import db
from portal.money import cost_micros, micros_to_decimal
from portal.timeutil import month_key, utcnow

NO_SYNC = {"synchronize_session": False}

# The deduct hot path's statements, built once with bound parameters: SQLAlchemy then neither
# rebuilds nor re-keys them per call. They name Core tables and columns and run on the session's
# connection (``_run``): the same transaction, without the ORM's per-statement machinery.
_organizations = Organization.__table__
_ledger = LedgerEntry.__table__
_DEBIT = (
    update(_organizations)
    .where(
        _organizations.c.id == bindparam("organization_id"),
        _organizations.c.balance - _organizations.c.reserved >= bindparam("needed"),
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


class DuplicateGrant(Conflict):
    code = "already_granted"


@contextmanager
def _transaction(idempotency: IdempotencySlot | None = None) -> Iterator[None]:
    """Commit once at the end; on any error roll everything back (and free the key)."""
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        if idempotency is not None:
            idempotency.abandon()
        raise


# --- reads that every operation shares -------------------------------------------------------


def _run(statement: Executable, params: dict[str, Any]) -> Result[Any]:
    """Execute on the session's connection, inside the session's transaction."""
    return db.session.connection().execute(statement, params)


def active_feature(feature_key: str) -> Row[Any]:
    """The feature's ``feature_key`` and ``credits_per_unit``, if it may be charged now."""
    feature = _run(_ACTIVE_FEATURE, {"feature_key": feature_key}).one_or_none()
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


def _balance_row(organization_id: int) -> tuple[int, int]:
    row = db.session.execute(
        select(Organization.balance, Organization.reserved).where(
            Organization.id == organization_id
        )
    ).one()
    return row.balance, row.reserved


def release_expired_holds(organization_id: int, now: datetime | None = None) -> int:
    """Expire this organization's lapsed reservations and return what they freed."""
    now = now or utcnow()
    freed = db.session.scalars(
        update(Reservation)
        .where(
            Reservation.organization_id == organization_id,
            Reservation.status == "open",
            Reservation.expires_at <= now,
        )
        .values(status="expired", closed_at=now)
        .returning(Reservation.amount)
        .execution_options(**NO_SYNC)
    ).all()
    total = sum(freed)
    if total:
        db.session.execute(
            update(Organization)
            .where(Organization.id == organization_id)
            .values(reserved=Organization.reserved - total)
            .execution_options(**NO_SYNC)
        )
    return total


# --- the guarded primitives ------------------------------------------------------------------


def _debit(organization_id: int, cost: int, *, hold: int = 0) -> tuple[int, int]:
    """Take ``cost`` from balance if available covers it (``hold`` moves into ``reserved``).

    Returns (balance, reserved) after. Expired holds only ever make ``available`` look smaller,
    so they are swept only when the fast conditional UPDATE fails; the hot path stays one
    statement. The ``reserved`` returned leaves out lapsed holds (see ``_unlapsed``).
    """
    params = {"organization_id": organization_id, "cost": cost, "hold": hold, "needed": cost + hold}
    row = _run(_DEBIT, params).one_or_none()
    if row is None and release_expired_holds(organization_id):
        row = _run(_DEBIT, params).one_or_none()
    if row is None:
        balance, reserved = _balance_row(organization_id)
        raise InsufficientCredits(cost + hold, balance - reserved)
    return row.balance, _unlapsed(organization_id, row.reserved, hold)


def _unlapsed(organization_id: int, reserved: int, fresh: int = 0) -> int:
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


def _credit(organization_id: int, amount: int, *, release: int = 0) -> tuple[int, int]:
    row = db.session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(balance=Organization.balance + amount, reserved=Organization.reserved - release)
        .returning(Organization.balance, Organization.reserved)
        .execution_options(**NO_SYNC)
    ).one()
    return row.balance, _unlapsed(organization_id, row.reserved)


def _charge_department(department: Department, cost: int, now: datetime) -> None:
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


def _append(organization_id: int, kind: str, amount: int, balance_after: int, **fields: Any) -> int:
    fields.setdefault("created_at", utcnow())
    if "meta" in fields:  # the column behind ``LedgerEntry.meta`` is named "metadata"
        fields["metadata"] = fields.pop("meta")
    return _run(
        _APPEND,
        {
            "organization_id": organization_id,
            "kind": kind,
            "amount": amount,
            "balance_after": balance_after,
            **fields,
        },
    ).scalar_one()


# --- operations ------------------------------------------------------------------------------


def get_balance(organization: Organization) -> Balance:
    balance, reserved = _balance_row(organization.id)
    if reserved:
        with _transaction():
            if release_expired_holds(organization.id):
                balance, reserved = _balance_row(organization.id)
    return Balance(organization.slug, balance, reserved)


def _cost(unit_price: int, quantity: int, line: int | None = None) -> int:
    """Price × quantity, refused (as the quantity's fault) above the most one charge may cost."""
    cost = cost_micros(unit_price, quantity)
    if cost > MAX_CHARGE:
        field = "quantity" if line is None else f"lines[{line}].quantity"
        raise InvalidRequest(
            field, f"would cost more than {micros_to_decimal(MAX_CHARGE):,} credits in one charge"
        )
    return cost


def check(organization: Organization, spend: Spend) -> CheckResult:
    """Would ``spend`` succeed right now? Answers without writing anything it would charge."""
    feature = active_feature(spend.feature_key)
    required = _cost(feature.credits_per_unit, spend.quantity)
    available = get_balance(organization).available
    reason = None
    if spend.department:
        department = find_department(organization.id, spend.department)
        used = department.used_in(month_key(utcnow()))
        if department.monthly_limit is not None and used + required > department.monthly_limit:
            reason = "department_limit_exceeded"
    if available < required:
        reason = "insufficient_credits"
    return CheckResult(reason is None, required, available, reason)


def deduct(
    organization: Organization, spend: Spend, idempotency: IdempotencySlot | None = None
) -> Deduction:
    """Charge ``spend`` at today's price, or raise and write nothing."""
    with _transaction(idempotency):
        (result,) = _charge_lines(organization, [spend])
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result


def deduct_batch(
    organization: Organization, spends: list[Spend], idempotency: IdempotencySlot | None = None
) -> Batch:
    """Charge every line or none (an AI call's input and output tokens, say)."""
    with _transaction(idempotency):
        lines = _charge_lines(organization, spends, batch=True)
        result = Batch(lines)
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result


def _charge_lines(
    organization: Organization, spends: list[Spend], *, batch: bool = False
) -> list[Deduction]:
    """Price, limit-check and debit all lines as one guarded change, then write their rows."""
    features = {spend.feature_key: active_feature(spend.feature_key) for spend in spends}
    departments = {
        spend.department: find_department(organization.id, spend.department)
        for spend in spends
        if spend.department
    }
    costs = [
        _cost(features[s.feature_key].credits_per_unit, s.quantity, index if batch else None)
        for index, s in enumerate(spends)
    ]
    now = utcnow()
    per_department: dict[int, int] = {}
    for spend, cost in zip(spends, costs, strict=True):
        if spend.department:
            department_id = departments[spend.department].id
            per_department[department_id] = per_department.get(department_id, 0) + cost
    by_id = {department.id: department for department in departments.values()}
    for department_id in sorted(per_department):  # a fixed lock order: no deadlocks
        _charge_department(by_id[department_id], per_department[department_id], now)
    balance, reserved = _debit(organization.id, sum(costs))
    running = balance + sum(costs)
    results = []
    for spend, cost in zip(spends, costs, strict=True):
        running -= cost
        feature = features[spend.feature_key]
        department = departments.get(spend.department) if spend.department else None
        entry_id = _append(
            organization.id,
            "deduct",
            -cost,
            running,
            feature_key=feature.feature_key,
            unit_price=feature.credits_per_unit,
            quantity=spend.quantity,
            department_id=department.id if department else None,
            user_ref=spend.user_ref,
            description=spend.description,
            meta=spend.metadata,
            created_at=now,
        )
        results.append(
            Deduction(entry_id, feature.feature_key, spend.quantity, cost, running - reserved)
        )
    return results


def refund(
    organization: Organization,
    deduction_id: int,
    amount: int | None = None,
    reason: str | None = None,
    idempotency: IdempotencySlot | None = None,
) -> Refund:
    """Give back all or part of one deduction; the refunds of a deduction never exceed it."""
    with _transaction(idempotency):
        deduction = db.session.scalar(
            select(LedgerEntry).where(
                LedgerEntry.id == deduction_id,
                LedgerEntry.organization_id == organization.id,
                LedgerEntry.kind == "deduct",
            )
        )
        if deduction is None:
            raise DeductionNotFound(deduction_id)
        if deduction.department_id is not None:
            db.session.execute(
                select(Department.id)
                .where(Department.id == deduction.department_id)
                .with_for_update()
            )
        # Serializes refunds of this organization, so the sum below cannot go stale.
        db.session.execute(
            select(Organization.id).where(Organization.id == organization.id).with_for_update()
        )
        # int(): PostgreSQL sums BIGINT as NUMERIC, which would reach the API as a Decimal.
        refunded = int(
            db.session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.refund_of_id == deduction.id
                )
            )
        )
        refundable = -deduction.amount - refunded
        if refundable <= 0:
            raise AlreadyRefunded(deduction.id)
        amount = refundable if amount is None else amount
        if amount > refundable:
            raise RefundExceedsDeduction(amount, refundable)
        now = utcnow()
        if deduction.department_id is not None:
            _uncharge_department(deduction.department_id, amount, deduction.created_at, now)
        balance, reserved = _credit(organization.id, amount)
        refund_id = _append(
            organization.id,
            "refund",
            amount,
            balance,
            feature_key=deduction.feature_key,
            unit_price=deduction.unit_price,
            department_id=deduction.department_id,
            user_ref=deduction.user_ref,
            description=reason,
            refund_of_id=deduction.id,
            created_at=now,
        )
        result = Refund(refund_id, deduction.id, amount, balance - reserved)
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result


def _uncharge_department(
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


def reserve(
    organization: Organization,
    feature_key: str,
    quantity: int,
    expires_in: int,
    idempotency: IdempotencySlot | None = None,
) -> Hold:
    """Hold credits for work whose final size is not known yet."""
    with _transaction(idempotency):
        feature = active_feature(feature_key)
        amount = _cost(feature.credits_per_unit, quantity)
        now = utcnow()
        balance, reserved = _debit(organization.id, 0, hold=amount)
        expires_at = now + timedelta(seconds=expires_in)
        reservation_id = db.session.scalar(
            insert(Reservation)
            .values(
                organization_id=organization.id,
                feature_key=feature.feature_key,
                unit_price=feature.credits_per_unit,
                quantity=quantity,
                amount=amount,
                status="open",
                expires_at=expires_at,
                created_at=now,
            )
            .returning(Reservation.id)
        )
        result = Hold(reservation_id, amount, expires_at, balance - reserved)
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result


def _close_reservation(
    organization: Organization, reservation_id: int, status: str, quantity: int | None = None
) -> Reservation:
    """Move an open, unexpired hold to ``status``; exactly one closer wins a race."""
    reservation = db.session.scalar(
        select(Reservation).where(
            Reservation.id == reservation_id, Reservation.organization_id == organization.id
        )
    )
    if reservation is None:
        raise ReservationNotFound(reservation_id)
    if quantity is not None and quantity > reservation.quantity:
        raise QuantityExceedsReservation(reservation.quantity)
    now = utcnow()
    captured = None
    if status == "captured":
        captured = reservation.quantity if quantity is None else quantity
    closed = db.session.execute(
        update(Reservation)
        .where(
            Reservation.id == reservation.id,
            Reservation.status == "open",
            Reservation.expires_at > now,
        )
        .values(status=status, closed_at=now, captured_quantity=captured)
        .execution_options(**NO_SYNC)
    )
    if closed.rowcount != 1:
        db.session.refresh(reservation)
        if reservation.status == "open":  # lapsed: expire it now, so the state says so
            release_expired_holds(organization.id, now)
            db.session.commit()
            raise ReservationNotOpen(reservation.id, "expired")
        raise ReservationNotOpen(reservation.id, reservation.status)
    return reservation


def capture(
    organization: Organization,
    reservation_id: int,
    quantity: int | None = None,
    idempotency: IdempotencySlot | None = None,
) -> Capture:
    """Charge all or part of a hold at the price it was taken at; release the rest."""
    with _transaction(idempotency):
        reservation = _close_reservation(organization, reservation_id, "captured", quantity)
        used = reservation.quantity if quantity is None else quantity
        cost = cost_micros(reservation.unit_price, used)
        balance, reserved = _credit(organization.id, -cost, release=reservation.amount)
        deduction_id = _append(
            organization.id,
            "deduct",
            -cost,
            balance,
            feature_key=reservation.feature_key,
            unit_price=reservation.unit_price,
            quantity=used,
            reservation_id=reservation.id,
        )
        result = Capture(
            reservation.id, deduction_id, cost, reservation.amount - cost, balance - reserved
        )
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result


def release(
    organization: Organization, reservation_id: int, idempotency: IdempotencySlot | None = None
) -> Release:
    with _transaction(idempotency):
        reservation = _close_reservation(organization, reservation_id, "released")
        balance, reserved = _credit(organization.id, 0, release=reservation.amount)
        result = Release(reservation.id, reservation.amount, balance - reserved)
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result


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
    try:
        with _transaction():
            if amount < 0 and not allow_negative_balance:
                balance, _ = _debit(organization_id, -amount)
            else:
                balance, _ = _credit(organization_id, amount)
            return _append(
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
        if source_ref is not None and db.session.scalar(
            select(LedgerEntry.id).where(
                LedgerEntry.kind == kind, LedgerEntry.source_ref == source_ref
            )
        ):
            raise DuplicateGrant(f"Credits for {source_ref} were already granted.") from None
        raise


def create_department(organization_id: int, name: str, monthly_limit: int | None) -> Department:
    """A new department; one whose name differs only by case from another is refused."""
    existing = db.session.scalar(department_lookup(organization_id, name))
    if existing is not None:
        raise DepartmentExists(existing.name)
    department = Department(organization_id=organization_id, name=name, monthly_limit=monthly_limit)
    db.session.add(department)
    try:
        db.session.commit()
    except IntegrityError:  # created concurrently by another request: the index decided
        db.session.rollback()
        raise DepartmentExists(find_department(organization_id, name).name) from None
    return department


def set_department_limit(organization_id: int, name: str, monthly_limit: int | None) -> Department:
    """Set or clear a department's monthly limit, creating the department if it is new.

    ``name`` in any case finds the stored department, which keeps its own spelling."""
    department = db.session.scalar(department_lookup(organization_id, name))
    if department is None:
        department = Department(organization_id=organization_id, name=name)
        db.session.add(department)
    department.monthly_limit = monthly_limit
    try:
        db.session.commit()
    except IntegrityError:  # created concurrently by another request: update that one
        db.session.rollback()
        department = find_department(organization_id, name)
        department.monthly_limit = monthly_limit
        db.session.commit()
    return department


def import_history(organization_id: int, entries: list[HistoricEntry]) -> int:
    """Append past entries in time order in one transaction; the balance never dips below 0.

    Used to bring an organization over from another system (and by ``flask demo``). The
    balance row is locked and updated once, by the sum of what was appended.
    """
    entries = sorted(entries, key=lambda entry: entry.created_at)
    with _transaction():
        db.session.execute(
            select(Organization.id).where(Organization.id == organization_id).with_for_update()
        )
        balance, _reserved = _balance_row(organization_id)
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
            _credit(organization_id, balance - start)
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
