"""Holds: reserve credits for work of unknown size, then capture or release them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import (
    insert,
    select,
    update,
)

from portal.credits.errors import (
    QuantityExceedsReservation,
    ReservationNotFound,
    ReservationNotOpen,
)
from portal.credits.idempotency import IdempotencySlot
from portal.credits.models import (
    Organization,
    Reservation,
)
from portal.credits.results import (
    Capture,
    Hold,
    Release,
)
from portal.credits.service import allocation, debt, expiry
from portal.credits.service.guard import debit, release_expired_holds
from portal.credits.service.ledger import (
    NO_SYNC,
    active_feature,
    append,
    charge_cost,
    credit,
    transaction,
)
from portal.extensions import db
from portal.money import cost_micros
from portal.timeutil import utcnow


def reserve(
    organization: Organization,
    feature_key: str,
    quantity: int,
    expires_in: int,
    idempotency: IdempotencySlot | None = None,
) -> Hold:
    """Hold credits for work whose final size is not known yet."""
    with transaction(idempotency):
        feature = active_feature(feature_key)
        amount = charge_cost(feature.credits_per_unit, quantity)
        now = utcnow()
        balance, reserved = debit(organization.id, 0, hold=amount)
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
        parts = allocation.take(organization.id, amount, hold=True)
        allocation.record(parts, reservation_id=reservation_id, now=now)
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
    with transaction(idempotency):
        reservation = _close_reservation(organization, reservation_id, "captured", quantity)
        used = reservation.quantity if quantity is None else quantity
        cost = cost_micros(reservation.unit_price, used)
        now = utcnow()
        allocation.lock_organization(organization.id)  # before its grants: the lock order
        expiry.expire_if_due(organization.id, now)  # so ``available`` counts none of them
        ended = expiry.end_hold(organization.id, reservation.id, cost, now)
        gone = sum(part.amount for part in ended.expired)
        balance, reserved = credit(organization.id, -cost - gone, release=reservation.amount)
        deduction_id = append(
            organization.id,
            "deduct",
            -cost,
            balance + gone,
            feature_key=reservation.feature_key,
            unit_price=reservation.unit_price,
            quantity=used,
            reservation_id=reservation.id,
            grant_id=allocation.single_grant(ended.consumed),
            created_at=now,
        )
        allocation.record(ended.consumed, ledger_entry_id=deduction_id, now=now)
        expiry.append_expiries(
            organization.id, ended.expired, balance, now, "Held credits expired with their hold"
        )
        # The released rest may pay a debt: not part of this deduction (a refund of it reads
        # its allocations), so, as for a release, the payment names no ledger row.
        debt.settle_debt(organization.id, None, now)
        result = Capture(
            reservation.id, deduction_id, cost, reservation.amount - cost, balance - reserved
        )
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result


def release(
    organization: Organization, reservation_id: int, idempotency: IdempotencySlot | None = None
) -> Release:
    with transaction(idempotency):
        reservation = _close_reservation(organization, reservation_id, "released")
        now = utcnow()
        allocation.lock_organization(organization.id)  # before its grants: the lock order
        expiry.expire_if_due(organization.id, now)  # so ``available`` counts none of them
        ended = expiry.end_hold(organization.id, reservation.id, 0, now)
        gone = sum(part.amount for part in ended.expired)
        balance, reserved = credit(organization.id, -gone, release=reservation.amount)
        expiry.append_expiries(
            organization.id, ended.expired, balance, now, "Held credits expired with their hold"
        )
        debt.settle_debt(organization.id, None, now)
        result = Release(reservation.id, reservation.amount, balance - reserved)
        if idempotency is not None:
            idempotency.complete(result.to_json())
    return result
