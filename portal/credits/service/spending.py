"""Spending: check, deduct (one line or a batch, all or none) and refund.

A deduction takes its credits from the organization's grants in burn order and says which (one
grant: the ledger row names it; several: allocation rows). A refund gives them back to those
same grants, the last taken first; a part whose grant has expired since comes back as a new
grant valid for ``PORTAL_REFUND_GRACE_DAYS``, never silently lost.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from portal.credits.errors import AlreadyRefunded, DeductionNotFound, RefundExceedsDeduction
from portal.credits.idempotency import IdempotencySlot
from portal.credits.models import CreditGrant, Department, LedgerEntry, Organization
from portal.credits.results import Balance, Batch, CheckResult, Deduction, Expiry, Refund, Spend
from portal.credits.service import allocation, debt, expiry
from portal.credits.service.guard import debit, debit_and_take, release_expired_holds
from portal.credits.service.ledger import (
    active_feature,
    append,
    charge_cost,
    charge_department,
    credit,
    find_department,
    transaction,
    uncharge_department,
)
from portal.extensions import db
from portal.timeutil import month_key, utcnow


def get_balance(organization: Organization) -> Balance:
    """The balance as of now, with the next expiry and what a dispute holds."""
    now = utcnow()
    row = _swept_state(organization.id, now)
    return Balance(
        organization.slug,
        row.balance,
        row.reserved,
        next_expiry=_next_expiry(organization.id, now),
        on_hold=_on_hold(organization.id),
        owed=row.debt,
    )


def sweep_due(organization: Organization) -> None:
    """Release lapsed holds and expire due grants now (what every balance read does first)."""
    _swept_state(organization.id, utcnow())


def _swept_state(organization_id: int, now: datetime):  # a Row, as below
    """Balance, reserved, debt and next expiry once lapsed holds and expired grants that are
    due have been swept: one read when nothing is due."""
    row = _balance_state(organization_id)
    due = row.next_expiry_at is not None and row.next_expiry_at <= now
    if row.reserved or due:
        with transaction():
            if row.reserved:
                release_expired_holds(organization_id, now)
            if due:
                expiry.expire_grants(organization_id, now)
        row = _balance_state(organization_id)
    return row


def _balance_state(organization_id: int):
    return db.session.execute(
        select(
            Organization.balance,
            Organization.reserved,
            Organization.debt,
            Organization.next_expiry_at,
        ).where(Organization.id == organization_id)
    ).one()


def _next_expiry(organization_id: int, now: datetime) -> Expiry | None:
    """The soonest expiry among grants with credits left, and how many expire then."""
    soonest = db.session.scalar(
        select(func.min(CreditGrant.expires_at)).where(
            CreditGrant.organization_id == organization_id,
            CreditGrant.remaining > 0,
            CreditGrant.expires_at > now,
        )
    )
    if soonest is None:
        return None
    amount = db.session.scalar(
        select(func.sum(CreditGrant.remaining)).where(
            CreditGrant.organization_id == organization_id,
            CreditGrant.remaining > 0,
            CreditGrant.expires_at == soonest,
        )
    )
    return Expiry(int(amount or 0), soonest)


def _on_hold(organization_id: int) -> int:
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(CreditGrant.frozen), 0)).where(
                CreditGrant.organization_id == organization_id, CreditGrant.frozen > 0
            )
        )
    )


def check(organization: Organization, spend: Spend) -> CheckResult:
    """Would ``spend`` succeed right now? Answers without writing anything it would charge."""
    feature = active_feature(spend.feature_key)
    required = charge_cost(feature.credits_per_unit, spend.quantity)
    # Only what the answer needs: no expiry or dispute reads on this per-request path.
    state = _swept_state(organization.id, utcnow())
    available = state.balance - state.reserved
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
    with transaction(idempotency):
        (result,) = _charge_lines(organization, [spend])
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result


def deduct_batch(
    organization: Organization, spends: list[Spend], idempotency: IdempotencySlot | None = None
) -> Batch:
    """Charge every line or none (an AI call's input and output tokens, say)."""
    with transaction(idempotency):
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
        charge_cost(features[s.feature_key].credits_per_unit, s.quantity, index if batch else None)
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
        charge_department(by_id[department_id], per_department[department_id], now)
    if len(spends) == 1:
        balance, reserved, first = debit_and_take(organization.id, costs[0])
    else:
        balance, reserved = debit(organization.id, sum(costs))
    running = balance + sum(costs)
    results = []
    for spend, cost in zip(spends, costs, strict=True):
        running -= cost
        feature = features[spend.feature_key]
        department = departments.get(spend.department) if spend.department else None
        parts = first if len(spends) == 1 else allocation.take(organization.id, cost)
        entry_id = append(
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
            grant_id=allocation.single_grant(parts),
            created_at=now,
        )
        allocation.record(parts, ledger_entry_id=entry_id, now=now)
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
    with transaction(idempotency):
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
        allocation.lock_organization(organization.id)
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
        expiry.expire_if_due(organization.id, now)  # so ``available`` counts none of them
        if deduction.department_id is not None:
            uncharge_department(deduction.department_id, amount, deduction.created_at, now)
        parts = _refund_parts(allocation.parts_of(deduction), refunded, amount)
        returned = allocation.give_back(
            organization.id, parts, now, description=f"Refund of deduction {deduction.id}"
        )
        balance, reserved = credit(organization.id, amount)
        receiving = [allocation.Part(part.grant_id, part.amount) for part in returned]
        refund_id = append(
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
            grant_id=allocation.single_grant(receiving),
            created_at=now,
        )
        allocation.record(receiving, ledger_entry_id=refund_id, sign=-1, now=now)
        debt.settle_debt(organization.id, refund_id, now)
        result = Refund(refund_id, deduction.id, amount, balance - reserved, returned)
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result


def _refund_parts(
    taken: list[allocation.Part], refunded: int, amount: int
) -> list[allocation.Part]:
    """Which grants ``amount`` goes back to: the last taken first, after what earlier refunds
    of the same deduction already gave back (``refunded``)."""
    parts, skip, left = [], refunded, amount
    for part in reversed(taken):
        piece = part.amount
        if skip:
            used = min(skip, piece)
            skip -= used
            piece -= used
        give = min(piece, left)
        if give:
            parts.append(allocation.Part(part.grant_id, give))
            left -= give
        if not left:
            break
    return parts
