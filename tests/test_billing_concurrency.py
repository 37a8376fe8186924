"""The same Stripe event delivered by several workers at once grants once (PostgreSQL).

A threaded WSGI server on the test database receives the deliveries over real HTTP, all
released together by a barrier; the test client would serialize them and prove nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal import create_app
from portal.billing.catalogue import seed_catalogue
from portal.billing.models import Invoice, Package, Payment, StripeEvent, Subscription
from portal.credits import organizations
from portal.credits.models import LedgerEntry
from portal.extensions import db
from tests.billing_helpers import (
    T0,
    charge_refunded,
    checkout_session,
    deliver_at_once,
    event,
    invoice,
    make_buyer,
    new_id,
    open_checkout,
    subscription,
)
from tests.conftest import assert_invariants, balance_row, credits, truncate_all
from tests.live import serve_in_thread as live_server

WORKERS = 8


@pytest.fixture
def pg_app(postgres_database: str) -> Iterator[Flask]:
    """An app on the session's PostgreSQL database, truncated afterwards."""
    # TESTING keeps the sandbox's webhook worker off: these tests are the only sender.
    app = create_app({"SQLALCHEMY_DATABASE_URI": postgres_database, "TESTING": True})
    ctx = app.app_context()
    ctx.push()
    try:
        seed_catalogue()
        yield app
        db.session.remove()
        assert_invariants()
    finally:
        db.session.remove()
        ctx.pop()
        truncate_all(app)
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def buyer(pg_app):
    organization = organizations.create_organization("buyer", "Buyer", 0)
    return make_buyer(organization.id)


def count(model, **where) -> int:
    found = db.session.scalar(select(func.count()).select_from(model).filter_by(**where))
    db.session.rollback()
    return found


def small_package() -> Package:
    package = db.session.scalar(select(Package).where(Package.lookup_key == "package_small"))
    db.session.expunge(package)
    db.session.rollback()
    return package


def test_one_event_delivered_by_eight_workers_at_once_grants_once(pg_app, buyer):
    session_id = open_checkout(buyer, package=small_package())
    evt = event("checkout.session.completed", checkout_session(buyer, session_id))
    with live_server(pg_app) as url:
        replies = deliver_at_once(url, [evt] * WORKERS)
    assert [r.status_code for r in replies] == [200] * WORKERS, [r.text for r in replies]
    outcomes = Counter(r.json()["outcome"].split(":")[0] for r in replies)
    assert outcomes == {"granted 100 credits": 1, "duplicate": WORKERS - 1}
    assert balance_row(buyer.organization_id)[0] == credits(100)
    assert count(LedgerEntry, source_ref=f"checkout:{session_id}") == 1
    assert count(StripeEvent) == 1


def test_different_events_for_one_session_at_once_grant_once(pg_app, buyer):
    session_id = open_checkout(buyer, package=small_package())
    session = checkout_session(buyer, session_id)
    events = [
        event(kind, session)
        for kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded")
        for _ in range(WORKERS // 2)
    ]
    with live_server(pg_app) as url:
        replies = deliver_at_once(url, events)
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert balance_row(buyer.organization_id)[0] == credits(100)
    assert count(StripeEvent) == WORKERS
    assert count(Payment, status="paid") == 1


def test_subscription_and_invoice_events_racing_leave_one_subscription_and_one_grant(pg_app, buyer):
    sub_id = new_id("sub")
    paid = event("invoice.paid", invoice(buyer, sub_id), created=T0 + 1)
    created = event("customer.subscription.created", subscription(buyer, sub_id), created=T0)
    events = [paid] * (WORKERS // 2) + [created] * (WORKERS // 2)
    with live_server(pg_app) as url:
        replies = deliver_at_once(url, events)
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert balance_row(buyer.organization_id)[0] == credits(500)
    assert count(Subscription, stripe_subscription_id=sub_id) == 1
    assert count(Invoice) == 1
    assert count(StripeEvent) == 2


@pytest.mark.allow_negative_balance
def test_two_refunds_at_once_take_back_the_right_total(pg_app, buyer):
    session_id = open_checkout(buyer, package=small_package())
    session = checkout_session(buyer, session_id)
    with live_server(pg_app) as url:
        assert deliver_at_once(url, [event("checkout.session.completed", session)])[0].is_success
        intent = session["payment_intent"]
        refunds = [("re_one", 495, T0), ("re_two", 495, T0 + 1)]
        first = charge_refunded(intent, amount=990, refunded=495, refunds=refunds[:1])
        both = charge_refunded(intent, amount=990, refunded=990, refunds=refunds)
        events = [event("charge.refunded", first), event("charge.refunded", both)] * (WORKERS // 2)
        replies = deliver_at_once(url, events)
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert balance_row(buyer.organization_id)[0] == 0
    assert count(LedgerEntry, kind="clawback") in (1, 2)
