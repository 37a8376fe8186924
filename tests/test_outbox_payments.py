"""Billing writes payment.succeeded / payment.failed in the Stripe event's own transaction."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.billing.catalogue import seed_catalogue
from portal.billing.models import Package, Plan
from portal.extensions import db
from portal.outbox.models import OutboxEvent
from tests import billing_helpers as bh


@pytest.fixture
def buyer(app, make_org):
    seed_catalogue()  # PostgreSQL tests start from truncated tables
    return bh.make_buyer(make_org(balance=0).id)


def item(model, key):
    found = db.session.scalar(select(model).where(model.lookup_key == key))
    db.session.expunge(found)
    db.session.rollback()
    return found


def payments(event_type: str) -> list[dict]:
    found = [
        row.payload["data"]["payment"]
        for row in db.session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == event_type).order_by(OutboxEvent.id)
        )
    ]
    db.session.rollback()
    return found


def test_a_paid_package_checkout_writes_payment_succeeded_once(client, buyer):
    package = item(Package, "package_medium")
    session_id = bh.open_checkout(buyer, package=package)
    session = bh.checkout_session(
        buyer, session_id, lookup_key="package_medium", amount_total=package.price_cents
    )
    assert bh.post_event(client, bh.event("checkout.session.completed", session)).status_code == 200
    again = bh.event("checkout.session.async_payment_succeeded", session)
    assert bh.post_event(client, again).status_code == 200  # another event, same payment
    assert payments("payment.succeeded") == [
        {
            "type": "checkout",
            "id": session_id,
            "amount": Decimal(package.price_cents) / 100,  # exact, as the event carries it
            "currency": "usd",
            "credits": 500,
            "product": "package_medium",
        }
    ]


def test_a_failed_asynchronous_checkout_writes_payment_failed(client, buyer):
    session_id = bh.open_checkout(buyer, package=item(Package, "package_small"))
    pending = bh.checkout_session(buyer, session_id, payment_status="unpaid")
    bh.post_event(client, bh.event("checkout.session.completed", pending))
    bh.post_event(client, bh.event("checkout.session.async_payment_failed", pending))
    assert payments("payment.succeeded") == []
    [failed] = payments("payment.failed")
    assert (failed["type"], failed["id"], failed["product"]) == (
        "checkout",
        session_id,
        "package_small",
    )


def test_invoices_paid_and_failed_write_payment_events(client, buyer):
    item(Plan, "plan_starter")
    sub_id = bh.new_id("sub")
    first = bh.invoice(buyer, sub_id)
    for evt in (
        bh.event("customer.subscription.created", bh.subscription(buyer, sub_id)),
        bh.event("invoice.paid", first),
        bh.event("invoice.paid", first),  # another event about the same invoice
    ):
        assert bh.post_event(client, evt).status_code == 200
    failing = bh.invoice(
        buyer, sub_id, reason="subscription_cycle", start=bh.T0 + bh.PERIOD, paid=False
    )
    for _ in range(2):  # Stripe retries the charge: each failure is an event of its own
        failed = bh.event("invoice.payment_failed", failing, created=bh.T0 + bh.PERIOD)
        assert bh.post_event(client, failed).status_code == 200
    [paid] = payments("payment.succeeded")
    assert (paid["type"], paid["id"], paid["product"]) == ("invoice", first["id"], "plan_starter")
    assert [p["id"] for p in payments("payment.failed")] == [failing["id"]] * 2


def test_an_event_that_rolls_back_writes_no_payment_event(client, buyer):
    sub_id = bh.new_id("sub")
    unknown_plan = bh.invoice(buyer, sub_id, plan="plan_missing")  # RetryLater: all rolled back
    response = bh.post_event(client, bh.event("invoice.paid", unknown_plan))
    assert response.status_code >= 500
    assert payments("payment.succeeded") == []
