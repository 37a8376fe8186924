"""The credits service against a plain Python model, driven by Hypothesis.

Hypothesis picks a sequence of grants, deducts, refunds, holds, captures, releases and checks;
after every step the database must agree with the model (balance, holds, ledger length) and
the invariants must hold. A refusal must come exactly when the model says it should, and must
write nothing. The model prices with ``Decimal`` arithmetic of its own, not ``cost_micros``.
Every Hypothesis example opens a fresh organization with its own feature keys, so examples
never see each other's rows. Runs on SQLite and PostgreSQL (the ``app`` fixture).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from flask import current_app
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from portal.credits import idempotency, organizations, pricing, service
from portal.credits.errors import (
    AlreadyRefunded,
    DeductionNotFound,
    DepartmentLimitExceeded,
    DepartmentNotFound,
    FeatureNotFound,
    IdempotencyKeyReused,
    InsufficientCredits,
    QuantityExceedsReservation,
    RefundExceedsDeduction,
    ReservationNotOpen,
)
from portal.credits.models import Department, LedgerEntry, Organization, Reservation
from portal.extensions import db
from portal.timeutil import month_key, utcnow

MICRO = 1_000_000
MAX_QUANTITY = 1_000_000 * MICRO
DEPARTMENTS = ("research", "ops")
_examples = itertools.count()

# Prices and quantities in micro-units: up to 6 decimal places, with the edges spelled out.
prices = st.one_of(
    st.integers(0, 20 * MICRO),
    st.sampled_from([0, 1, 499_999, 500_000, MICRO, 1_234_567, 999_999_999]),
)
quantities = st.one_of(
    st.integers(1, 5 * MICRO),
    st.sampled_from([1, 499_999, 500_000, MICRO, 3 * MICRO, MAX_QUANTITY]),
    st.integers(1, 20 * MICRO),
)
amounts = st.integers(1, 500 * MICRO)
limits = st.none() | st.integers(0, 200 * MICRO)
# Mostly the two departments every example opens with; now and then one that does not exist.
departments = st.sampled_from((None, None, *DEPARTMENTS, *DEPARTMENTS, "nowhere"))
percents = st.none() | st.integers(1, 130)  # of the original; > 100 asks for too much


def model_cost(unit_price: int, quantity: int) -> int:
    """Credits per unit × quantity, rounded half-up to a whole micro-credit; never free."""
    with localcontext() as context:
        context.prec = 60
        exact = Decimal(unit_price) * Decimal(quantity) / MICRO
        rounded = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        return 1 if rounded == 0 and exact > 0 else rounded


def share(total: int, percent: int) -> int:
    return max(1, total * percent // 100)


@dataclass
class ModelDeduction:
    amount: int
    department: str | None = None
    refunded: int = 0


@dataclass
class ModelHold:
    unit_price: int
    quantity: int
    amount: int
    open: bool = True


@dataclass
class ModelDepartment:
    limit: int | None
    used: int = 0


@dataclass
class Model:
    balance: int = 0
    reserved: int = 0
    ledger_rows: int = 0
    prices: dict[str, int] = field(default_factory=dict)
    active: dict[str, bool] = field(default_factory=dict)
    deductions: dict[int, ModelDeduction] = field(default_factory=dict)
    holds: dict[int, ModelHold] = field(default_factory=dict)
    departments: dict[str, ModelDepartment] = field(default_factory=dict)
    idempotency: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    def charge_refusal(self, lines: list[tuple[str, int, str | None]]) -> type[Exception] | None:
        """The error a deduct of these lines must raise, in the order the service checks."""
        if any(not self.active[key] for key, _, _ in lines):
            return FeatureNotFound
        if any(name is not None and name not in self.departments for _, _, name in lines):
            return DepartmentNotFound
        per_department: dict[str, int] = {}
        for key, quantity, name in lines:
            if name is not None:
                per_department[name] = per_department.get(name, 0) + model_cost(
                    self.prices[key], quantity
                )
        for name, cost in per_department.items():
            department = self.departments[name]
            if department.limit is not None and department.used + cost > department.limit:
                return DepartmentLimitExceeded
        total = sum(model_cost(self.prices[key], quantity) for key, quantity, _ in lines)
        if total > self.available:
            return InsufficientCredits
        return None


class CreditsMachine(RuleBasedStateMachine):
    features = Bundle("features")
    deductions = Bundle("deductions")
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.example = next(_examples)
        self.model = Model()
        self.org_id: int | None = None
        self.feature_count = 0

    # --- helpers -----------------------------------------------------------------------------

    @property
    def organization(self) -> Organization:
        return db.session.get(Organization, self.org_id)

    def refused(self, error: type[Exception], action) -> None:
        event(f"refused: {error.__name__}")
        rows_before = self.model.ledger_rows
        with pytest.raises(error):
            action()
        db.session.rollback()
        assert self.ledger_count() == rows_before, "a refusal wrote a ledger row"

    def ledger_count(self) -> int:
        return db.session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.organization_id == self.org_id)
        )

    def record_deduction(self, result: service.Deduction, department: str | None) -> int:
        self.model.deductions[result.deduction_id] = ModelDeduction(
            result.credits_deducted, department
        )
        self.model.balance -= result.credits_deducted
        self.model.ledger_rows += 1
        if department is not None:
            self.model.departments[department].used += result.credits_deducted
        return result.deduction_id

    # --- rules -------------------------------------------------------------------------------

    @initialize(
        target=features,
        opening=st.integers(0, 1_000 * MICRO),
        price=prices,
        research_limit=limits,
        ops_limit=limits,
    )
    def open_account(
        self, opening: int, price: int, research_limit: int | None, ops_limit: int | None
    ) -> str:
        organization = organizations.create_organization(
            f"hyp-{self.example}-{current_app.config['BACKEND']}", None, opening
        )
        self.org_id = organization.id
        self.model.balance = opening
        self.model.ledger_rows = 1 if opening else 0
        self.set_department_limit("research", research_limit)
        self.set_department_limit("ops", ops_limit)
        return self.add_feature(price)

    @rule(target=features, price=prices)
    def add_feature(self, price: int) -> str:
        self.feature_count += 1
        key = f"hyp_{self.example}_{self.feature_count}"
        pricing.set_price(pricing.PriceSpec(key, price))
        self.model.prices[key] = price
        self.model.active[key] = True
        return key

    @rule(feature=features, price=prices, active=st.sampled_from((True, True, True, False)))
    def reprice(self, feature: str, price: int, active: bool) -> None:
        pricing.set_price(pricing.PriceSpec(feature, price, active=active))
        self.model.prices[feature] = price
        self.model.active[feature] = active

    @rule(name=st.sampled_from(DEPARTMENTS), limit=limits)
    def set_department_limit(self, name: str, limit: int | None) -> None:
        service.set_department_limit(self.org_id, name, limit)
        if name in self.model.departments:
            self.model.departments[name].limit = limit
        else:
            self.model.departments[name] = ModelDepartment(limit)

    @rule(amount=amounts)
    def grant(self, amount: int) -> None:
        service.grant(self.org_id, amount, "grant", description="hypothesis grant")
        self.model.balance += amount
        self.model.ledger_rows += 1

    @rule(amount=amounts)
    def take_back(self, amount: int) -> None:
        """A negative adjustment needs available credits like a deduct does."""

        def adjust() -> int:
            return service.grant(self.org_id, -amount, "adjustment", description="hypothesis")

        if amount > self.model.available:
            self.refused(InsufficientCredits, adjust)
            return
        adjust()
        self.model.balance -= amount
        self.model.ledger_rows += 1

    @rule(target=deductions, feature=features, quantity=quantities, department=departments)
    def deduct(self, feature: str, quantity: int, department: str | None):
        spend = service.Spend(feature, quantity, department, user_ref="hypothesis")
        error = self.model.charge_refusal([(feature, quantity, department)])
        if error is not None:
            self.refused(error, lambda: service.deduct(self.organization, spend))
            return multiple()
        result = service.deduct(self.organization, spend)
        expected = model_cost(self.model.prices[feature], quantity)
        assert result.credits_deducted == expected
        assert result.quantity == quantity
        assert result.remaining_credits == self.model.available - expected
        return self.record_deduction(result, department)

    @rule(
        target=deductions,
        lines=st.lists(st.tuples(features, quantities, departments), min_size=1, max_size=4),
    )
    def deduct_batch(self, lines: list[tuple[str, int, str | None]]):
        spends = [service.Spend(key, quantity, name) for key, quantity, name in lines]
        error = self.model.charge_refusal(lines)
        if error is not None:
            self.refused(error, lambda: service.deduct_batch(self.organization, spends))
            return multiple()
        result = service.deduct_batch(self.organization, spends)
        expected = [model_cost(self.model.prices[key], quantity) for key, quantity, _ in lines]
        assert [line.credits_deducted for line in result.lines] == expected
        assert result.lines[-1].remaining_credits == self.model.available - sum(expected)
        return multiple(
            *(
                self.record_deduction(line, name)
                for line, (_, _, name) in zip(result.lines, lines, strict=True)
            )
        )

    @rule(
        target=deductions,
        key=st.sampled_from(["key-a", "key-b", "key-c"]),
        feature=features,
        quantity=quantities,
    )
    def deduct_with_idempotency_key(self, key: str, feature: str, quantity: int):
        """Only a success binds a key; a retry replays it; another body is refused."""
        fingerprint = idempotency.fingerprint("POST", "/deduct", f"{feature} {quantity}")
        bound = self.model.idempotency.get(key)
        if bound is not None and bound[0] != fingerprint:
            self.refused(
                IdempotencyKeyReused,
                lambda: idempotency.claim(self.org_id, key, fingerprint, 201),
            )
            return multiple()
        outcome = idempotency.claim(self.org_id, key, fingerprint, 201)
        if bound is not None:
            assert isinstance(outcome, idempotency.Replay)
            assert (outcome.status, outcome.body) == (201, bound[1])
            return multiple()
        assert isinstance(outcome, idempotency.IdempotencySlot)
        spend = service.Spend(feature, quantity)
        error = self.model.charge_refusal([(feature, quantity, None)])
        if error is not None:
            self.refused(error, lambda: service.deduct(self.organization, spend, outcome))
            return multiple()
        result = service.deduct(self.organization, spend, outcome)
        assert result.credits_deducted == model_cost(self.model.prices[feature], quantity)
        self.model.idempotency[key] = (fingerprint, current_app.json.dumps(result.to_json()))
        return self.record_deduction(result, None)

    @rule(deduction=deductions, percent=percents, stray=st.integers(0, 7))
    def refund(self, deduction: int, percent: int | None, stray: int) -> None:
        if stray == 0:
            self.refund_what_is_not_a_deduction(deduction)
            return
        known = self.model.deductions[deduction]
        refundable = known.amount - known.refunded
        amount = None if percent is None else share(known.amount, percent)

        def give_back() -> service.Refund:
            return service.refund(self.organization, deduction, amount, "hypothesis")

        if refundable <= 0:
            self.refused(AlreadyRefunded, give_back)
            return
        if amount is not None and amount > refundable:
            self.refused(RefundExceedsDeduction, give_back)
            return
        result = give_back()
        expected = refundable if amount is None else amount
        assert result.credits_refunded == expected
        known.refunded += expected
        self.model.balance += expected
        self.model.ledger_rows += 1
        event("refund of a department's deduction" if known.department else "refund")
        if known.department is not None:
            department = self.model.departments[known.department]
            department.used = max(department.used - expected, 0)
        assert result.remaining_credits == self.model.available

    def refund_what_is_not_a_deduction(self, deduction: int) -> None:
        """Grants and ids that do not exist are not deductions."""
        grant_ids = db.session.scalars(
            select(LedgerEntry.id).where(
                LedgerEntry.organization_id == self.org_id, LedgerEntry.kind != "deduct"
            )
        ).all()
        target = grant_ids[0] if grant_ids and deduction % 2 else 10**9 + deduction
        self.refused(DeductionNotFound, lambda: service.refund(self.organization, target))

    @rule(target=holds, feature=features, quantity=quantities)
    def reserve(self, feature: str, quantity: int):
        def hold() -> service.Hold:
            return service.reserve(self.organization, feature, quantity, 900)

        if not self.model.active[feature]:
            self.refused(FeatureNotFound, hold)
            return multiple()
        amount = model_cost(self.model.prices[feature], quantity)
        if amount > self.model.available:
            self.refused(InsufficientCredits, hold)
            return multiple()
        result = hold()
        assert result.credits_reserved == amount
        self.model.reserved += amount
        assert result.available == self.model.available
        self.model.holds[result.reservation_id] = ModelHold(
            self.model.prices[feature], quantity, amount
        )
        return result.reservation_id

    @rule(target=deductions, reservation=holds, percent=percents)
    def capture(self, reservation: int, percent: int | None):
        known = self.model.holds[reservation]
        quantity = None if percent is None else share(known.quantity, percent)

        def take() -> service.Capture:
            return service.capture(self.organization, reservation, quantity)

        if quantity is not None and quantity > known.quantity:
            self.refused(QuantityExceedsReservation, take)
            return multiple()
        if not known.open:
            self.refused(ReservationNotOpen, take)
            return multiple()
        result = take()
        cost = model_cost(known.unit_price, known.quantity if quantity is None else quantity)
        assert (result.credits_deducted, result.credits_released) == (cost, known.amount - cost)
        known.open = False
        self.model.reserved -= known.amount
        self.model.balance -= cost
        self.model.ledger_rows += 1
        self.model.deductions[result.deduction_id] = ModelDeduction(cost)
        assert result.remaining_credits == self.model.available
        return result.deduction_id

    @rule(reservation=holds)
    def release(self, reservation: int) -> None:
        known = self.model.holds[reservation]

        def free() -> service.Release:
            return service.release(self.organization, reservation)

        if not known.open:
            self.refused(ReservationNotOpen, free)
            return
        result = free()
        assert result.credits_released == known.amount
        known.open = False
        self.model.reserved -= known.amount
        assert result.available == self.model.available

    @rule(feature=features, quantity=quantities, department=departments)
    def check(self, feature: str, quantity: int, department: str | None) -> None:
        spend = service.Spend(feature, quantity, department)
        error = self.model.charge_refusal([(feature, quantity, department)])
        if error in (FeatureNotFound, DepartmentNotFound):
            self.refused(error, lambda: service.check(self.organization, spend))
            return
        result = service.check(self.organization, spend)
        assert result.required == model_cost(self.model.prices[feature], quantity)
        assert result.available == self.model.available
        assert result.has_enough == (error is None)

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def database_agrees_with_model(self) -> None:
        if self.org_id is None:
            return
        row = db.session.execute(
            select(Organization.balance, Organization.reserved).where(
                Organization.id == self.org_id
            )
        ).one()
        ledger_sum = db.session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.organization_id == self.org_id
            )
        )
        open_holds = db.session.scalar(
            select(func.coalesce(func.sum(Reservation.amount), 0)).where(
                Reservation.organization_id == self.org_id, Reservation.status == "open"
            )
        )
        used = {
            department.name: department.used_in(month_key(utcnow()))
            for department in db.session.scalars(
                select(Department).where(Department.organization_id == self.org_id)
            )
        }
        db.session.rollback()
        assert (row.balance, row.reserved) == (self.model.balance, self.model.reserved)
        assert used == {name: known.used for name, known in self.model.departments.items()}
        assert row.balance == ledger_sum
        assert row.reserved == open_holds
        assert row.balance >= 0
        assert 0 <= row.reserved <= row.balance
        assert self.ledger_count() == self.model.ledger_rows

    @invariant()
    def refunds_never_exceed_their_deduction(self) -> None:
        if self.org_id is None:
            return
        refunded = dict(
            db.session.execute(
                select(LedgerEntry.refund_of_id, func.sum(LedgerEntry.amount))
                .where(LedgerEntry.organization_id == self.org_id, LedgerEntry.kind == "refund")
                .group_by(LedgerEntry.refund_of_id)
            ).all()
        )
        db.session.rollback()
        assert {key: int(value) for key, value in refunded.items()} == {
            deduction_id: known.refunded
            for deduction_id, known in self.model.deductions.items()
            if known.refunded
        }
        for deduction_id, total in refunded.items():
            assert total <= self.model.deductions[deduction_id].amount


def test_credits_service_matches_the_model(app) -> None:
    run_state_machine_as_test(
        CreditsMachine,
        settings=settings(
            max_examples=35,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
