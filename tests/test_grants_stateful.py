"""Credit grants against a plain Python model of grants in burn order, driven by Hypothesis.

Hypothesis grants credits (with and without expiry, at every priority), deducts, refunds (in
parts), reserves, captures, releases, moves the clock, sweeps expiries and claws payments
back; after every step each grant's parts, the balance, the holds, the debt and the ledger
must be what the model says, and every reported ``available`` must leave expired credits out.
The model keeps what the database keeps, expired credits not swept yet included, and sweeps
them where the service must: at every access except a plain grant. Runs on both databases
(the ``app`` fixture); every example opens its own organization and restarts the clock.
"""

from __future__ import annotations

import copy
import itertools
from datetime import datetime, timedelta

import pytest
from flask import current_app
from hypothesis import HealthCheck, settings
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

from portal.credits import organizations, service
from portal.credits.errors import (
    AlreadyRefunded,
    InsufficientCredits,
    RefundExceedsDeduction,
    ReservationNotOpen,
)
from portal.credits.models import DEFAULT_PRIORITY, CreditGrant, LedgerEntry, Organization
from portal.extensions import db
from portal.money import MICRO
from tests.grants_helpers import PARTS, UNIT, drawn
from tests.grants_model import Grant, Model, Taken, share

HOLD_SECONDS = 400 * 86_400  # longer than any example runs: holds end by capture or release
_examples = itertools.count()

# Grants larger than what one call spends, so most calls succeed; odd micro-credits too.
grant_amounts = st.integers(5, 60).map(lambda n: n * MICRO) | st.integers(1, 60 * MICRO)
amounts = st.integers(1, 12).map(lambda n: n * MICRO) | st.integers(1, 12 * MICRO)
kinds = st.sampled_from(["grant", "signup_bonus", "subscription", "purchase", "purchase"])
priorities = st.sampled_from([None, None, 5, 10, 20, 30])
expiries = st.none() | st.integers(1, 240)  # hours from now
percents = st.none() | st.integers(1, 100)


class GrantsMachine(RuleBasedStateMachine):
    payments = Bundle("payments")
    deductions = Bundle("deductions")
    holds = Bundle("holds")

    clock = None  # the test's ``clock`` fixture
    start: datetime

    def __init__(self) -> None:
        super().__init__()
        self.example = next(_examples)
        self.clock.now = self.start
        self.model = Model(self.start)
        self.org_id: int | None = None
        self.refs = itertools.count()
        self.paid_by: dict[str, int] = {}  # a payment's source_ref -> its grant

    @property
    def organization(self) -> Organization:
        return db.session.get(Organization, self.org_id)

    def refused(self, error: type[Exception], action) -> None:
        with pytest.raises(error):
            action()
        db.session.rollback()  # the invariant then proves nothing was written

    def try_charge(self, amount: int) -> Model | None:
        """What a debit sees: due expiries swept first; None when it must be refused."""
        trial = copy.deepcopy(self.model)
        trial.sweep()
        return trial if trial.available >= amount else None

    @initialize(
        target=payments,
        grants=st.lists(st.tuples(grant_amounts, kinds, priorities, expiries), max_size=4),
    )
    def open_account(self, grants: list[tuple[int, str, int | None, int | None]]):
        slug = f"grants-{self.example}-{current_app.config['BACKEND']}"
        self.org_id = organizations.create_organization(slug, None, 0).id
        refs = [self.grant(*terms) for terms in grants]
        return multiple(*(ref for ref in refs if isinstance(ref, str)))

    @rule(target=payments, amount=grant_amounts, kind=kinds, priority=priorities, hours=expiries)
    def grant(self, amount: int, kind: str, priority: int | None, hours: int | None):
        expires_at = None if hours is None else self.model.now + timedelta(hours=hours)
        ref = f"checkout:cs_{self.example}_{next(self.refs)}" if kind == "purchase" else None
        terms = service.GrantTerms(expires_at=expires_at, priority=priority)
        granted = service.grant(
            self.org_id, amount, kind, description="hypothesis", source_ref=ref, terms=terms
        )
        self.model.grants[granted.grant_id] = Grant(
            granted.grant_id,
            kind,
            DEFAULT_PRIORITY[kind] if priority is None else priority,
            expires_at,
            self.model.now,
            amount,
            amount,
        )
        self.model.rows += 1
        self.model.settle_debt()
        if ref is None:
            return multiple()
        self.paid_by[ref] = granted.grant_id
        return ref

    @rule(target=deductions, amount=amounts)
    def deduct(self, amount: int):
        spend = service.Spend(UNIT, amount)
        trial = self.try_charge(amount)
        if trial is None:
            self.refused(InsufficientCredits, lambda: service.deduct(self.organization, spend))
            return multiple()
        result = service.deduct(self.organization, spend)
        self.model = trial
        parts = trial.take(amount)
        trial.rows += 1
        trial.deductions[result.deduction_id] = Taken(amount, parts)
        assert drawn(result.deduction_id) == parts
        assert result.remaining_credits == trial.available
        return result.deduction_id

    @rule(target=deductions)
    def spend_everything(self):
        """All that is available, so a claw-back after it must end in debt."""
        trial = copy.deepcopy(self.model)
        trial.sweep()
        available = trial.available
        return self.deduct(available) if available > 0 else multiple()

    @rule(amount=amounts)
    def take_back(self, amount: int) -> None:
        """A negative adjustment takes in burn order, like a deduct."""

        def adjust() -> service.Granted:
            return service.grant(self.org_id, -amount, "adjustment", description="hypothesis")

        trial = self.try_charge(amount)
        if trial is None:
            self.refused(InsufficientCredits, adjust)
            return
        entry_id = adjust().entry_id
        self.model = trial
        assert drawn(entry_id) == trial.take(amount)
        trial.rows += 1

    @rule(deduction=deductions, percent=percents)
    def refund(self, deduction: int, percent: int | None) -> None:
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
        amount = refundable if amount is None else amount
        result = give_back()
        grace = timedelta(days=current_app.config["PORTAL_REFUND_GRACE_DAYS"])
        self.model.refund(known, amount, result.returned_to, grace)
        assert result.credits_refunded == amount
        assert result.remaining_credits == self.model.available

    @rule(target=holds, amount=amounts)
    def reserve(self, amount: int):
        def hold() -> service.Hold:
            return service.reserve(self.organization, UNIT, amount, HOLD_SECONDS)

        trial = self.try_charge(amount)
        if trial is None:
            self.refused(InsufficientCredits, hold)
            return multiple()
        result = hold()
        self.model = trial
        trial.holds[result.reservation_id] = Taken(amount, trial.take(amount, "held"))
        assert result.available == trial.available
        return result.reservation_id

    @rule(target=deductions, reservation=holds, percent=percents)
    def capture(self, reservation: int, percent: int | None):
        known = self.model.holds[reservation]
        quantity = None if percent is None else share(known.amount, percent)
        if not known.open:
            self.refused(
                ReservationNotOpen,
                lambda: service.capture(self.organization, reservation, quantity),
            )
            return multiple()
        result = service.capture(self.organization, reservation, quantity)
        cost = known.amount if quantity is None else quantity
        self.model.sweep()
        consumed = self.model.end_hold(known, cost)
        self.model.rows += 1
        self.model.deductions[result.deduction_id] = Taken(cost, consumed)
        self.model.settle_debt()
        assert (result.credits_deducted, result.credits_released) == (cost, known.amount - cost)
        assert drawn(result.deduction_id) == consumed
        assert result.remaining_credits == self.model.available
        return result.deduction_id

    @rule(reservation=holds)
    def release(self, reservation: int) -> None:
        known = self.model.holds[reservation]
        if not known.open:
            self.refused(
                ReservationNotOpen, lambda: service.release(self.organization, reservation)
            )
            return
        result = service.release(self.organization, reservation)
        self.model.sweep()
        self.model.end_hold(known, 0)
        self.model.settle_debt()
        assert result.credits_released == known.amount
        assert result.available == self.model.available

    @rule(payment=payments, percent=st.sampled_from([100, 130]) | st.integers(1, 130))
    def clawback(self, payment: str, percent: int) -> None:
        """A refunded payment: its own credits first, then spent ones from others, then debt."""
        model = self.model
        paid = model.grants[self.paid_by[payment]]
        amount = share(paid.amount, percent)
        result = service.clawback(
            self.org_id,
            payment,
            amount,
            source_ref=f"refund:{self.example}_{next(self.refs)}",
            description="hypothesis",
        )
        taken, owed = model.claw_back(paid, amount)
        assert (result.taken, result.forfeited, result.owed) == (taken, 0, owed)

    @rule(hours=st.integers(1, 120))
    def advance_clock(self, hours: int) -> None:
        self.model.now = self.clock.advance(hours=hours)

    @rule()
    def expire_sweep(self) -> None:
        swept = service.expire_due()  # every organization's: earlier examples' too
        assert swept >= self.model.sweep()

    @rule()
    def read_balance(self) -> None:
        balance = service.get_balance(self.organization)
        self.model.sweep()
        assert (balance.balance, balance.reserved, balance.available, balance.owed) == (
            self.model.balance,
            self.model.reserved,
            self.model.available,
            self.model.debt,
        )
        expiry = balance.next_expiry
        assert (None if expiry is None else (expiry.amount, expiry.expires_at)) == (
            self.model.next_expiry()
        )

    @rule(amount=amounts)
    def check(self, amount: int) -> None:
        result = service.check(self.organization, service.Spend(UNIT, amount))
        self.model.sweep()
        assert (result.has_enough, result.available) == (
            self.model.available >= amount,
            self.model.available,
        )

    @invariant()
    def database_agrees_with_model(self) -> None:
        if self.org_id is None:
            return
        db.session.expire_all()
        grants = {
            g.id: {name: getattr(g, name) for name in PARTS if getattr(g, name)}
            for g in db.session.scalars(
                select(CreditGrant).where(CreditGrant.organization_id == self.org_id)
            )
        }
        org = db.session.get(Organization, self.org_id)
        row = (org.balance, org.reserved, org.debt)
        ledger = db.session.execute(
            select(func.count(), func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.organization_id == self.org_id
            )
        ).one()
        db.session.rollback()
        model = self.model
        assert grants == {g.id: g.parts() for g in model.grants.values()}
        assert row == (model.balance, model.reserved, model.debt)
        assert tuple(ledger) == (model.rows, model.balance)
        for g in model.grants.values():
            assert min(g.remaining, g.held, g.consumed, g.expired) >= 0
            assert g.amount == (
                g.remaining + g.held + g.consumed - g.returned + g.expired + g.clawed_back
            )


def test_grants_match_the_model(app, clock, make_price) -> None:
    make_price(UNIT, 1, category="Text")
    GrantsMachine.clock, GrantsMachine.start = clock, clock.now
    run_state_machine_as_test(
        GrantsMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
