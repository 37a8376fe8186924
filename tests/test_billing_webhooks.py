"""POST /stripe/webhook: signatures, exactly-once fulfilment, ordering, refunds, failures.

Events are built and signed in the test (``tests.billing_helpers``) and posted through the
Flask client; every check reads the database the way the pages do.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, text

from portal.billing.catalogue import seed_catalogue
from portal.billing.models import Invoice, Package, Payment, Plan, StripeEvent, Subscription
from portal.extensions import db
from tests.billing_helpers import (
    PERIOD,
    T0,
    charge_refunded,
    checkout_session,
    event,
    invoice,
    make_buyer,
    new_id,
    open_checkout,
    post_event,
    recorded_events,
    sign,
    subscription,
)
from tests.conftest import balance_row, credits, ledger_rows


@pytest.fixture
def org(app, make_org):
    seed_catalogue()  # PostgreSQL tests start from truncated tables
    return make_org(balance=0)


@pytest.fixture
def buyer(org):
    return make_buyer(org.id)


def item(model, key):
    found = db.session.scalar(select(model).where(model.lookup_key == key))
    db.session.expunge(found)
    db.session.rollback()
    return found


def one(model, **where):
    db.session.expire_all()
    row = db.session.scalar(select(model).filter_by(**where))
    if row is not None:
        db.session.expunge(row)
    db.session.rollback()
    return row


def balance(buyer) -> int:
    return balance_row(buyer.organization_id)[0]


def paid_package(client, buyer, key="package_small"):
    """A package bought through a paid checkout; returns (session id, payment intent id)."""
    package = item(Package, key)
    session_id = open_checkout(buyer, package=package)
    session = checkout_session(buyer, session_id, lookup_key=key, amount_total=package.price_cents)
    assert post_event(client, event("checkout.session.completed", session)).status_code == 200
    return session_id, session["payment_intent"]


# --- signatures ------------------------------------------------------------------------------


def test_a_signed_event_is_accepted_and_recorded(client, buyer):
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    evt = event("checkout.session.completed", checkout_session(buyer, session_id))
    response = post_event(client, evt)
    assert response.status_code == 200, response.json
    assert response.json["received"] is True
    stored = one(StripeEvent, event_id=evt["id"])
    assert stored.type == "checkout.session.completed"
    assert stored.outcome == "granted 100 credits"
    assert balance(buyer) == credits(100)


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "tampered body", "no header", "garbage header", "stale timestamp"],
)
def test_an_unverified_event_is_refused_and_changes_nothing(client, buyer, case):
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    evt = event("checkout.session.completed", checkout_session(buyer, session_id))
    kwargs = {
        "wrong secret": {"secret": "whsec_someone_else"},
        "tampered body": {"header": sign('{"id": "evt_other"}')},
        "no header": {"header": ""},
        "garbage header": {"header": "t=abc,v1=nothing"},
        # Stripe's default tolerance is 300 s.
        "stale timestamp": {"timestamp": int(time.time()) - 301},
    }[case]
    response = post_event(client, evt, **kwargs)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_webhook"
    assert recorded_events() == 0
    assert balance(buyer) == 0
    assert one(Payment, checkout_session_id=session_id).status == "open"


def test_a_recent_timestamp_within_tolerance_is_accepted(client, buyer):
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    evt = event("checkout.session.completed", checkout_session(buyer, session_id))
    assert post_event(client, evt, timestamp=int(time.time()) - 200).status_code == 200


def test_the_endpoint_needs_no_csrf_token(app, client, buyer):
    app.config["WTF_CSRF_ENABLED"] = True
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    evt = event("checkout.session.completed", checkout_session(buyer, session_id))
    assert post_event(client, evt).status_code == 200


# --- replay and unknown events ---------------------------------------------------------------


def test_a_replayed_event_is_acknowledged_and_changes_nothing(client, buyer):
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    evt = event("checkout.session.completed", checkout_session(buyer, session_id))
    assert post_event(client, evt).status_code == 200
    before = [(row.id, row.amount) for row in ledger_rows(buyer.organization_id)]
    for _ in range(3):  # freshly signed each time, as Stripe's retries are
        response = post_event(client, evt)
        assert response.status_code == 200
        assert response.json["outcome"].startswith("duplicate")
    assert [(row.id, row.amount) for row in ledger_rows(buyer.organization_id)] == before
    assert recorded_events() == 1


def test_an_unknown_event_type_is_acknowledged_and_recorded(client, buyer):
    evt = event("customer.tax_id.created", {"id": new_id("txi"), "object": "tax_id"})
    response = post_event(client, evt)
    assert response.status_code == 200
    assert "not handled" in response.json["outcome"]
    assert one(StripeEvent, event_id=evt["id"]) is not None


def test_a_checkout_that_is_not_ours_is_acknowledged_without_credits(client, buyer):
    stranger = {**checkout_session(buyer, new_id("cs")), "customer": new_id("cus")}
    stranger["metadata"] = {}
    stranger["client_reference_id"] = None
    response = post_event(client, event("checkout.session.completed", stranger))
    assert response.status_code == 200
    assert "not a portal checkout" in response.json["outcome"]
    assert balance(buyer) == 0


# --- packages --------------------------------------------------------------------------------


def test_a_package_is_granted_once_per_session(client, buyer):
    session_id, intent = paid_package(client, buyer, "package_medium")
    # A second, different event about the same session (as Stripe may also send) adds nothing.
    again = checkout_session(buyer, session_id, lookup_key="package_medium", payment_intent=intent)
    assert (
        post_event(client, event("checkout.session.async_payment_succeeded", again)).status_code
        == 200
    )
    rows = [row for row in ledger_rows(buyer.organization_id) if row.kind == "purchase"]
    assert [(row.amount, row.source_ref) for row in rows] == [
        (credits(500), f"checkout:{session_id}")
    ]
    payment = one(Payment, checkout_session_id=session_id)
    assert (payment.status, payment.payment_intent_id) == ("paid", intent)
    assert payment.fulfilled_at is not None


def test_a_package_checkout_not_started_here_is_fulfilled_from_its_metadata(client, buyer):
    session = checkout_session(buyer, new_id("cs"), lookup_key="package_large", amount_total=14_990)
    assert post_event(client, event("checkout.session.completed", session)).status_code == 200
    assert balance(buyer) == credits(2000)
    assert one(Payment, checkout_session_id=session["id"]).credits == credits(2000)


def test_the_credits_fixed_at_checkout_are_granted_even_if_the_package_changed(client, buyer):
    session_id = open_checkout(buyer, package=item(Package, "package_small"), credits=credits(120))
    post_event(client, event("checkout.session.completed", checkout_session(buyer, session_id)))
    assert balance(buyer) == credits(120)


def test_an_asynchronous_payment_grants_only_when_it_succeeds(client, buyer):
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    pending = checkout_session(buyer, session_id, payment_status="unpaid")
    assert post_event(client, event("checkout.session.completed", pending)).status_code == 200
    assert balance(buyer) == 0
    assert one(Payment, checkout_session_id=session_id).status == "processing"
    succeeded = event("checkout.session.async_payment_succeeded", pending, created=T0 + 60)
    assert post_event(client, succeeded).status_code == 200
    assert balance(buyer) == credits(100)
    assert one(Payment, checkout_session_id=session_id).status == "paid"


def test_a_failed_asynchronous_payment_grants_nothing(client, buyer):
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    pending = checkout_session(buyer, session_id, payment_status="unpaid")
    post_event(client, event("checkout.session.completed", pending))
    post_event(client, event("checkout.session.async_payment_failed", pending))
    assert balance(buyer) == 0
    assert one(Payment, checkout_session_id=session_id).status == "failed"


# --- plans and invoices ----------------------------------------------------------------------


def subscribe(client, buyer, plan="plan_starter", *, checkout_last=True):
    """The sandbox's order: subscription created, first invoice paid, checkout completed."""
    session_id = open_checkout(buyer, plan=item(Plan, plan))
    sub_id = new_id("sub")
    events = [
        event("customer.subscription.created", subscription(buyer, sub_id, plan=plan)),
        event("invoice.paid", invoice(buyer, sub_id, plan=plan)),
    ]
    done = checkout_session(
        buyer, session_id, mode="subscription", lookup_key=plan, subscription=sub_id
    )
    events.insert(2 if checkout_last else 0, event("checkout.session.completed", done))
    for evt in events:
        assert post_event(client, evt).status_code == 200
    return session_id, sub_id


def test_plan_credits_come_from_the_paid_invoice_never_from_the_checkout(client, buyer):
    session_id, sub_id = subscribe(client, buyer, "plan_professional")
    grants = [row for row in ledger_rows(buyer.organization_id) if row.amount > 0]
    assert [(row.kind, row.amount) for row in grants] == [("subscription", credits(2000))]
    assert grants[0].source_ref.startswith("invoice:in_")
    sub = one(Subscription, stripe_subscription_id=sub_id)
    assert sub.status == "active"
    assert sub.plan_id == item(Plan, "plan_professional").id
    assert one(Payment, checkout_session_id=session_id).stripe_subscription_id == sub_id


def test_a_checkout_event_alone_grants_no_plan_credits(client, buyer):
    session_id = open_checkout(buyer, plan=item(Plan, "plan_starter"))
    done = checkout_session(
        buyer, session_id, mode="subscription", lookup_key="plan_starter", subscription="sub_x"
    )
    response = post_event(client, event("checkout.session.completed", done))
    assert response.status_code == 200
    assert "invoice.paid" in response.json["outcome"]
    assert balance(buyer) == 0


def test_each_paid_invoice_grants_the_plan_once(client, buyer):
    _, sub_id = subscribe(client, buyer)
    renewal = invoice(buyer, sub_id, reason="subscription_cycle", start=T0 + PERIOD)
    paid = event("invoice.paid", renewal, created=T0 + PERIOD)
    assert post_event(client, paid).status_code == 200
    # The same invoice in a second event (e.g. a resend) grants nothing more.
    assert (
        post_event(client, event("invoice.paid", renewal, created=T0 + PERIOD + 5)).status_code
        == 200
    )
    grants = [row.amount for row in ledger_rows(buyer.organization_id) if row.amount > 0]
    assert grants == [credits(500), credits(500)]
    invoices = db.session.scalars(select(Invoice).order_by(Invoice.invoice_date)).all()
    assert [inv.billing_reason for inv in invoices] == ["subscription_create", "subscription_cycle"]
    assert all(inv.status == "paid" and inv.credits_granted == credits(500) for inv in invoices)
    db.session.rollback()


def test_a_proration_invoice_is_stored_but_grants_nothing(client, buyer):
    _, sub_id = subscribe(client, buyer)
    proration = invoice(buyer, sub_id, reason="subscription_update", amount=1234)
    assert post_event(client, event("invoice.paid", proration)).status_code == 200
    assert balance(buyer) == credits(500)
    assert one(Invoice, stripe_invoice_id=proration["id"]).amount_cents == 1234


def test_invoice_paid_before_the_subscription_exists_still_grants_once(client, buyer):
    sub_id = new_id("sub")
    first = invoice(buyer, sub_id)
    assert post_event(client, event("invoice.paid", first, created=T0 + 1)).status_code == 200
    assert balance(buyer) == credits(500)
    assert one(Subscription, stripe_subscription_id=sub_id).status == "active"
    created = event("customer.subscription.created", subscription(buyer, sub_id), created=T0)
    assert post_event(client, created).status_code == 200
    sub = one(Subscription, stripe_subscription_id=sub_id)
    assert (sub.status, sub.stripe_item_id) == ("active", f"si_{sub_id}")
    assert balance(buyer) == credits(500)


def test_an_older_subscription_update_cannot_roll_the_state_back(client, buyer):
    sub_id = new_id("sub")
    newer = subscription(buyer, sub_id, cancel_at_period_end=True, plan="plan_enterprise")
    older = subscription(buyer, sub_id, cancel_at_period_end=False, plan="plan_starter")
    post_event(client, event("customer.subscription.updated", newer, created=T0 + 100))
    response = post_event(client, event("customer.subscription.updated", older, created=T0 + 50))
    assert response.status_code == 200
    assert "older" in response.json["outcome"]
    late_create = event("customer.subscription.created", older, created=T0 + 100)
    assert "older" in post_event(client, late_create).json["outcome"]
    sub = one(Subscription, stripe_subscription_id=sub_id)
    assert sub.cancel_at_period_end is True
    assert sub.plan_id == item(Plan, "plan_enterprise").id
    assert sub.last_event_created == T0 + 100


def test_a_deleted_subscription_stays_ended_whatever_arrives_after(client, buyer):
    sub_id = new_id("sub")
    post_event(
        client,
        event(
            "customer.subscription.deleted",
            subscription(buyer, sub_id, status="canceled"),
            created=T0 + 10,
        ),
    )
    late = event("customer.subscription.updated", subscription(buyer, sub_id), created=T0 + 20)
    assert "ended" in post_event(client, late).json["outcome"]
    assert one(Subscription, stripe_subscription_id=sub_id).status == "canceled"


def test_payment_failure_marks_past_due_and_shows_a_banner(client, auth, make_user, org, buyer):
    _, sub_id = subscribe(client, buyer)
    failing = invoice(buyer, sub_id, reason="subscription_cycle", start=T0 + PERIOD, paid=False)
    failed = event("invoice.payment_failed", failing, created=T0 + PERIOD)
    assert post_event(client, failed).status_code == 200
    assert one(Subscription, stripe_subscription_id=sub_id).status == "past_due"
    assert one(Invoice, stripe_invoice_id=failing["id"]).status == "open"
    assert balance(buyer) == credits(500)  # a failed renewal grants nothing
    # A subscription update from before the failure does not clear it.
    stale = event("customer.subscription.updated", subscription(buyer, sub_id), created=T0 + 5)
    post_event(client, stale)
    assert one(Subscription, stripe_subscription_id=sub_id).status == "past_due"
    make_user("owner@billing.example", org=org, role="member")
    auth.login("owner@billing.example")
    for page in ("/dashboard", "/billing"):
        html = client.get(page).get_data(as_text=True)
        assert 'data-testid="past-due-banner"' in html, page
        assert "payment failed" in html.lower()


# --- refunds ---------------------------------------------------------------------------------


def test_a_partial_then_full_refund_takes_back_the_credits_proportionally(client, buyer):
    session_id, intent = paid_package(client, buyer, "package_medium")  # 500 credits, $39.90
    half = charge_refunded(intent, amount=3990, refunded=1995, refunds=[("re_a", 1995, T0)])
    assert post_event(client, event("charge.refunded", half)).status_code == 200
    assert balance(buyer) == credits(250)
    full = charge_refunded(
        intent, amount=3990, refunded=3990, refunds=[("re_a", 1995, T0), ("re_b", 1995, T0 + 1)]
    )
    assert post_event(client, event("charge.refunded", full)).status_code == 200
    assert balance(buyer) == 0
    # Claw-backs from the payment's own grant (tests/test_billing_disputes.py has the rest).
    clawed = [row for row in ledger_rows(buyer.organization_id) if row.kind == "clawback"]
    assert [(row.amount, row.source_ref) for row in clawed] == [
        (-credits(250), "refund:re_a"),
        (-credits(250), "refund:re_b"),
    ]
    payment = one(Payment, checkout_session_id=session_id)
    assert (payment.status, payment.refunded_cents, payment.refunded_credits) == (
        "refunded",
        3990,
        credits(500),
    )


def test_refund_events_out_of_order_take_back_the_same_total(client, buyer):
    _, intent = paid_package(client, buyer, "package_medium")
    both = [("re_a", 1000, T0), ("re_b", 2990, T0 + 1)]
    post_event(
        client,
        event("charge.refunded", charge_refunded(intent, amount=3990, refunded=3990, refunds=both)),
    )
    post_event(
        client,
        event(
            "charge.refunded",
            charge_refunded(intent, amount=3990, refunded=1000, refunds=both[:1]),
        ),
    )
    assert balance(buyer) == 0


def test_a_refund_after_spending_leaves_a_negative_balance_until_topped_up(
    client, api, make_price, buyer
):
    from portal.credits import apikeys

    make_price("render", 1)
    key = apikeys.create_api_key(buyer.organization_id, "test").secret
    headers = {"Authorization": f"Bearer {key}"}
    _, intent = paid_package(client, buyer, "package_small")  # +100
    spend = client.post(
        "/api/v1/credits/deduct", json={"feature_key": "render", "quantity": 80}, headers=headers
    )
    assert spend.status_code == 201, spend.json
    refund = charge_refunded(intent, amount=990, refunded=990, refunds=[("re_full", 990, T0)])
    assert post_event(client, event("charge.refunded", refund)).status_code == 200
    assert balance(buyer) == -credits(80)
    refused = client.post(
        "/api/v1/credits/deduct", json={"feature_key": "render", "quantity": 1}, headers=headers
    )
    assert refused.status_code == 402
    paid_package(client, buyer, "package_small")  # a top-up: back to +20
    assert balance(buyer) == credits(20)
    again = client.post(
        "/api/v1/credits/deduct", json={"feature_key": "render", "quantity": 1}, headers=headers
    )
    assert again.status_code == 201


def test_a_refund_before_its_purchase_was_fulfilled_is_retried_until_it_can_apply(client, buyer):
    package = item(Package, "package_small")
    session_id = open_checkout(buyer, package=package)
    session = checkout_session(buyer, session_id)
    refund = charge_refunded(
        session["payment_intent"], amount=990, refunded=990, refunds=[("re_early", 990, T0)]
    )
    refund["metadata"] = {"organization_id": str(buyer.organization_id), "package": "package_small"}
    early = event("charge.refunded", refund)
    response = post_event(client, early)
    assert response.status_code == 500
    assert recorded_events() == 0
    post_event(client, event("checkout.session.completed", session))
    assert post_event(client, early).status_code == 200  # Stripe's retry
    assert balance(buyer) == 0
    assert post_event(client, early).json["outcome"].startswith("duplicate")


# --- failures leave nothing behind -----------------------------------------------------------


def _fail_ledger_inserts(app, source_ref: str) -> None:
    if app.config["BACKEND"] == "postgresql":
        db.session.execute(
            text(
                "CREATE FUNCTION billing_test_outage() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.source_ref = '{source_ref}' THEN RAISE EXCEPTION 'simulated outage'; "
                "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        db.session.execute(
            text(
                "CREATE TRIGGER billing_test_outage BEFORE INSERT ON ledger_entries "
                "FOR EACH ROW EXECUTE FUNCTION billing_test_outage()"
            )
        )
    else:
        db.session.execute(
            text(
                "CREATE TRIGGER billing_test_outage BEFORE INSERT ON ledger_entries "
                f"WHEN NEW.source_ref = '{source_ref}' "
                "BEGIN SELECT RAISE(ABORT, 'simulated outage'); END"
            )
        )
    db.session.commit()


def _restore_ledger_inserts(app) -> None:
    db.session.rollback()
    db.session.execute(
        text(
            "DROP TRIGGER IF EXISTS billing_test_outage"
            + (" ON ledger_entries" if app.config["BACKEND"] == "postgresql" else "")
        )
    )
    if app.config["BACKEND"] == "postgresql":
        db.session.execute(text("DROP FUNCTION IF EXISTS billing_test_outage()"))
    db.session.commit()


def test_a_failure_while_processing_answers_500_and_the_retry_applies_it_once(app, client, buyer):
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    evt = event("checkout.session.completed", checkout_session(buyer, session_id))
    _fail_ledger_inserts(app, f"checkout:{session_id}")
    try:
        response = post_event(client, evt)
        assert response.status_code == 500
        # Nothing partial: no event row, the payment untouched, no credits.
        assert recorded_events() == 0
        payment = one(Payment, checkout_session_id=session_id)
        assert (payment.status, payment.fulfilled_at) == ("open", None)
        assert balance(buyer) == 0
    finally:
        _restore_ledger_inserts(app)
    assert post_event(client, evt).status_code == 200
    assert post_event(client, evt).status_code == 200
    assert balance(buyer) == credits(100)
    assert recorded_events() == 1
    assert one(Payment, checkout_session_id=session_id).status == "paid"
