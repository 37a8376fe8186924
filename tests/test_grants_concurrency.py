"""Grants under real concurrency on PostgreSQL: 32 workers, each a thread with its own app
context and session, spend across hundreds of small grants while some of them expire, new ones
arrive and the expiry sweep runs over and over. Afterwards every grant is reconciled with the
ledger: nothing overspent, nothing consumed twice, no expired credit spent by a deduct, every
deduction drew exactly its cost, and no worker met a deadlock or any other error.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.credits import organizations, pricing, service
from portal.credits.errors import InsufficientCredits
from portal.credits.models import CreditGrant, LedgerEntry, Organization, Reservation
from portal.extensions import db
from portal.timeutil import utcnow
from tests.conftest import postgres_app
from tests.grants_helpers import UNIT, c, drawn

WORKERS = 32
RUN_SECONDS = 4.0
COSTS = [c(0.25), c(0.5), c(1), c(1.5), c(2), c(3)]


@pytest.fixture
def pg_app(postgres_database: str) -> Iterator[Flask]:
    """An app on the session's PostgreSQL database with a connection for every thread."""
    pool = {"pool_size": WORKERS + 4, "pool_pre_ping": True}
    with postgres_app(postgres_database, SQLALCHEMY_ENGINE_OPTIONS=pool) as app:
        yield app


@dataclass
class Outcome:
    """What one thread saw: its successes by ledger row, its refusals, anything else."""

    deductions: dict[int, int] = field(default_factory=dict)  # ledger row -> cost
    refunded: set[int] = field(default_factory=set)  # deductions refunded (in half, once)
    refused: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def small_grant(organization_id: int, rng: random.Random, *, expiring_soon: float) -> None:
    """1 to 5 credits at a random priority; some expire within seconds, some later, some never."""
    roll = rng.random()
    if roll < expiring_soon:
        expires_at = utcnow() + timedelta(seconds=rng.uniform(0.2, RUN_SECONDS))
    elif roll < 0.7:
        expires_at = utcnow() + timedelta(hours=1)
    else:
        expires_at = None
    service.grant(
        organization_id,
        c(rng.randint(1, 5)),
        rng.choice(["grant", "subscription", "purchase", "signup_bonus"]),
        description="concurrency",
        terms=service.GrantTerms(expires_at=expires_at, priority=rng.choice([None, 15, 25])),
    )


def spend_once(org: Organization, rng: random.Random, outcome: Outcome) -> None:
    roll = rng.random()
    if roll < 0.55:
        result = service.deduct(org, service.Spend(UNIT, rng.choice(COSTS)))
        results = [result]
    elif roll < 0.7:
        lines = [service.Spend(UNIT, rng.choice(COSTS)) for _ in range(2)]
        results = service.deduct_batch(org, lines).lines
    elif roll < 0.85:
        hold = service.reserve(org, UNIT, rng.choice(COSTS), 600)
        if rng.random() < 0.6:
            captured = service.capture(org, hold.reservation_id, hold.credits_reserved // 2)
            outcome.deductions[captured.deduction_id] = captured.credits_deducted
        else:
            service.release(org, hold.reservation_id)
        return
    else:
        refundable = [entry for entry in outcome.deductions if entry not in outcome.refunded]
        if refundable:
            deduction = rng.choice(refundable)
            service.refund(org, deduction, outcome.deductions[deduction] // 2)
            outcome.refunded.add(deduction)
        return
    for line in results:
        assert line.remaining_credits >= 0
        outcome.deductions[line.deduction_id] = line.credits_deducted


def describe(exc: Exception) -> str:
    """The error, its statement, and where in the portal it happened."""
    frames = [
        f"{frame.filename.rsplit('/portal/', 1)[-1]}:{frame.lineno} {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
        if "/portal/" in frame.filename
    ]
    return " <- ".join([str(exc).split("[parameters")[0], *reversed(frames)])


def worker(app: Flask, org_ids: list[int], index: int, deadline: float) -> Outcome:
    rng, outcome = random.Random(index), Outcome()
    with app.app_context():
        org = db.session.get(Organization, org_ids[index % len(org_ids)])
        while time.monotonic() < deadline:
            try:
                spend_once(org, rng, outcome)
            except InsufficientCredits:
                outcome.refused["insufficient_credits"] += 1
            except Exception as exc:  # a deadlock, a CHECK violation: all of them count
                outcome.errors.append(describe(exc))
            finally:
                db.session.rollback()
        db.session.remove()
    return outcome


def background(
    app: Flask, stop: threading.Event, step: Callable[[], None], errors: list[str], pause: float
) -> threading.Thread:
    """Run ``step`` every ``pause`` seconds in a thread of its own until ``stop``."""

    def loop() -> None:
        with app.app_context():
            while not stop.is_set():
                try:
                    step()
                except Exception as exc:
                    errors.append(describe(exc))
                finally:
                    db.session.rollback()
                time.sleep(pause)
            db.session.remove()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def audit(organization_id: int, deductions: dict[int, int]) -> tuple[dict[str, int], set[int]]:
    """Reconcile every grant of the organization with its ledger; returns the totals and the
    deductions found."""
    db.session.expire_all()
    grants = {
        g.id: g
        for g in db.session.scalars(
            select(CreditGrant).where(CreditGrant.organization_id == organization_id)
        )
    }
    inflow, consumed, expired = Counter(), Counter(), Counter()
    rows = list(
        db.session.scalars(
            select(LedgerEntry).where(LedgerEntry.organization_id == organization_id)
        )
    )
    for row in rows:
        if row.kind == "deduct":
            parts = drawn(row.id)
            assert sum(amount for _, amount in parts) == -row.amount == deductions[row.id]
            for grant_id, amount in parts:
                consumed[grant_id] += amount
                expires_at = grants[grant_id].expires_at
                if row.reservation_id is None:  # a hold may keep credits past their expiry
                    assert expires_at is None or expires_at > row.created_at, (row.id, grant_id)
        elif row.kind == "refund":
            for grant_id, amount in drawn(row.id):
                inflow[grant_id] += abs(amount)
        elif row.kind == "expire":
            expired[row.grant_id] -= row.amount
            assert row.created_at >= grants[row.grant_id].expires_at
        else:
            assert row.kind in ("grant", "subscription", "purchase", "signup_bonus"), row.kind
            inflow[row.grant_id] += row.amount
    for grant_id, g in grants.items():
        assert inflow[grant_id] == g.amount + g.returned, grant_id
        assert consumed[grant_id] == g.consumed, grant_id  # no credit consumed twice
        assert expired[grant_id] == g.expired, grant_id
        assert min(g.remaining, g.held) >= 0 and g.clawed_back == g.frozen == 0
    totals = {
        name: sum(getattr(g, name) for g in grants.values())
        for name in ("amount", "remaining", "held", "consumed", "returned", "expired")
    }
    organization = db.session.get(Organization, organization_id)
    assert organization.balance == totals["remaining"] + totals["held"] >= 0
    assert organization.debt == organization.reserved == totals["held"] == 0
    assert organization.balance == sum(row.amount for row in rows)
    db.session.rollback()
    return totals, {row.id for row in rows if row.kind == "deduct"}


def test_workers_spend_grants_while_they_expire_and_the_sweep_runs(pg_app: Flask) -> None:
    pricing.set_price(pricing.PriceSpec(UNIT, c(1)))
    rng = random.Random(2026)
    org_ids = [
        organizations.create_organization(f"race-{uuid.uuid4().hex[:8]}", None, 0).id
        for _ in range(2)
    ]
    for organization_id in org_ids:
        for _ in range(60):
            small_grant(organization_id, rng, expiring_soon=0.35)
    errors: list[str] = []
    swept: list[int] = []
    stop = threading.Event()
    helpers = [
        background(pg_app, stop, lambda: swept.append(service.expire_due()), errors, 0.02),
        background(
            pg_app,
            stop,
            lambda: small_grant(rng.choice(org_ids), rng, expiring_soon=0.5),
            errors,
            0.1,
        ),
    ]
    deadline = time.monotonic() + RUN_SECONDS
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(
            pool.map(lambda index: worker(pg_app, org_ids, index, deadline), range(WORKERS))
        )
    stop.set()
    for thread in helpers:
        thread.join(timeout=30)
    ended = utcnow()

    errors += [error for outcome in outcomes for error in outcome.errors]
    assert not errors, "\n\n".join(errors[:5])  # no deadlock, no constraint ever broken
    assert len(swept) > 20, "the sweep did not run over and over"
    during_run = db.session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(LedgerEntry.kind == "expire", LedgerEntry.created_at <= ended)
    )
    assert during_run > 0, "no expiry fell into the run"
    refused = sum(outcome.refused["insufficient_credits"] for outcome in outcomes)
    spent = [cost for outcome in outcomes for cost in outcome.deductions.values()]
    assert refused > 0 and len(spent) > 200, (refused, len(spent))
    time.sleep(max(0.0, deadline + 1 - time.monotonic()))  # past every "expiring soon"
    service.expire_due()
    deductions = {entry: cost for outcome in outcomes for entry, cost in outcome.deductions.items()}
    found: set[int] = set()
    for organization_id in org_ids:
        totals, theirs = audit(organization_id, deductions)
        found |= theirs
        # Σ granted == Σ consumed + Σ expired + Σ remaining (+ held − returned)
        assert totals["amount"] == (
            totals["consumed"]
            + totals["expired"]
            + totals["remaining"]
            + totals["held"]
            - totals["returned"]
        )
        assert totals["expired"] > 0
    assert found == set(deductions)  # every success has its row, and no row is unaccounted
    open_holds = db.session.scalar(
        select(func.count()).select_from(Reservation).where(Reservation.status == "open")
    )
    assert open_holds == 0
