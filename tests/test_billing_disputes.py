"""Refunds and disputes of payments: claw-backs from the payment's own grant, debt when the
credits were spent, credits on hold while a dispute is open, in any event order, once.

End to end through the sandbox (card 4000 0000 0000 0259 pays and is then disputed,
``flask stripe dispute close``, ``flask stripe refund``) and, where the order or a duplicate
matters, with events built and signed by hand (``tests.billing_helpers``).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.billing.catalogue import seed_catalogue
from portal.billing.models import Dispute, Package, Payment
from portal.credits import organizations
from portal.credits.models import CreditGrant, LedgerEntry, Organization
from portal.extensions import db
from tests import test_billing_concurrency as concurrency
from tests import test_billing_lifecycle as lifecycle
from tests.billing_helpers import (
    charge_refunded,
    checkout_session,
    deliver_at_once,
    dispute_object,
    event,
    make_buyer,
    new_id,
    open_checkout,
    post_event,
)
from tests.conftest import balance_row, credits, ledger_rows
from tests.live import serve_in_thread as live_server
from tests.test_billing_concurrency import WORKERS, count
from tests.test_billing_pages import OWNER, scalar, text_of
from tests.test_billing_webhooks import item, one, paid_package

DISPUTED_CARD = "4000 0000 0000 0259"
# The live server, the shop and its owner buying through the sandbox, as the lifecycle tests.
live, shop, store = lifecycle.live, lifecycle.shop, lifecycle.store
pg_app = concurrency.pg_app  # PostgreSQL alone, for the race at the end


@pytest.fixture
def org(app, make_org, make_user, make_price):
    seed_catalogue()
    make_price("render", 1)
    found = make_org(balance=0, slug="buyer")
    make_user(OWNER, org=found, role="owner")
    return found


@pytest.fixture
def buyer(org):
    return make_buyer(org.id)


def spend(api, org, amount: int) -> None:
    spent = api.post("/credits/deduct", org, json={"feature_key": "render", "quantity": amount})
    assert spent.status_code == 201, spent.json


def rows(org) -> list[tuple[str, int, str | None]]:
    return [(row.kind, row.amount, row.source_ref) for row in ledger_rows(org.id)]


def debt(org) -> int:
    owed = scalar(select(Organization.debt).where(Organization.id == org.id))
    return owed


def grant_of(source_ref: str) -> CreditGrant:
    return one(CreditGrant, source_ref=source_ref)


def billing_page(client, auth) -> str:
    auth.login(OWNER)
    return text_of(client.get("/billing").get_data(as_text=True))


def disputed(client, intent: str, kind: str = "created", status="needs_response", **ids):
    """Post ``charge.dispute.<kind>``; ``ids``: dispute_id and charge, to name the same one."""
    obj = dispute_object(intent, ids["dispute_id"], ids["charge"], status=status)
    response = post_event(client, event(f"charge.dispute.{kind}", obj))
    assert response.status_code == 200, response.json
    return response.json["outcome"]


# --- refunds ---------------------------------------------------------------------------------


def test_a_refund_claws_back_from_the_payments_own_grant_once_per_refund(client, org, buyer):
    session_id, intent = paid_package(client, buyer, "package_medium")  # 500 credits, $39.90
    first = charge_refunded(intent, amount=3990, refunded=1995, refunds=[("re_a", 1995, 1)])
    for again in range(2):  # a redelivery, then the same refund in an event of its own
        evt = event("charge.refunded", first, event_id="evt_refund_a" if again == 0 else None)
        assert post_event(client, evt).status_code == 200
        assert post_event(client, evt).json["outcome"].startswith("duplicate")
    both = [("re_a", 1995, 1), ("re_b", 998, 2)]
    second = charge_refunded(intent, amount=3990, refunded=2993, refunds=both)
    assert post_event(client, event("charge.refunded", second)).status_code == 200
    grant = grant_of(f"checkout:{session_id}")
    assert [row for row in rows(org) if row[0] == "clawback"] == [
        ("clawback", -credits(250), "refund:re_a"),
        ("clawback", -credits("125.062656"), "refund:re_b"),  # floor of 500 × 2993 / 3990
    ]
    assert (grant.clawed_back, grant.remaining) == (credits("375.062656"), credits("124.937344"))
    assert one(Payment, checkout_session_id=session_id).status == "partially_refunded"


def test_a_refund_of_spent_credits_becomes_debt_that_the_next_credits_pay(
    client, auth, api, org, buyer
):
    _, intent = paid_package(client, buyer, "package_small")  # +100
    spend(api, org, 70)
    refund = charge_refunded(intent, amount=990, refunded=990, refunds=[("re_all", 990, 1)])
    assert post_event(client, event("charge.refunded", refund)).status_code == 200
    assert (balance_row(org.id)[0], debt(org)) == (-credits(70), credits(70))
    page = billing_page(client, auth)
    assert "70 credits owed." in page and "the next credits you receive pay this first" in page
    refused = api.post("/credits/deduct", org, json={"feature_key": "render", "quantity": 1})
    assert refused.status_code == 402

    paid_package(client, buyer, "package_small")  # +100: 70 pay the debt first
    assert (balance_row(org.id)[0], debt(org)) == (credits(30), 0)
    assert "credits owed" not in billing_page(client, auth)


def test_a_refund_through_the_sandbox(store):
    session_id = store.buy(package="package_small")
    intent = scalar(
        select(Payment.payment_intent_id).where(Payment.checkout_session_id == session_id)
    )
    store.stripe_cli("refund", intent, "--amount", "495", "--deliver")
    assert store.balance() == credits(50)
    (clawed,) = [row for row in ledger_rows(store.org.id) if row.kind == "clawback"]
    assert clawed.amount == -credits(50) and clawed.source_ref.startswith("refund:re_")
    assert clawed.grant_id == grant_of(f"checkout:{session_id}").id
    page = text_of(store.browser.get("/billing").text)
    assert "−$4.95 refunded" in page and "partially refunded" in page


# --- disputes through the sandbox ------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_a_disputed_package_is_on_hold_until_the_dispute_is_decided(store, outcome):
    session_id = store.buy(DISPUTED_CARD, package="package_small")  # pays, then is disputed
    assert store.balance() == 0
    page = text_of(store.browser.get("/billing").text)
    assert "100 credits on hold: disputed." in page
    assert "paid disputed" in page  # the payment's status, and its dispute's
    grant = grant_of(f"checkout:{session_id}")
    assert (grant.frozen, grant.remaining) == (credits(100), 0)

    store.stripe_cli("dispute", "close", "--outcome", outcome, "--deliver")
    kinds = [(kind, amount) for kind, amount in store.kinds()]
    page = text_of(store.browser.get("/billing").text)
    assert "credits on hold" not in page
    if outcome == "won":
        assert kinds[-2:] == [("freeze", -credits(100)), ("unfreeze", credits(100))]
        assert store.balance() == credits(100) and "dispute won" in page
    else:
        assert kinds[-2:] == [("freeze", -credits(100)), ("clawback", 0)]  # it was on hold
        assert store.balance() == 0 and "dispute lost" in page
        assert grant_of(f"checkout:{session_id}").clawed_back == credits(100)
    (row,) = db.session.scalars(select(Dispute)).all()
    assert (row.status, row.frozen_credits, row.amount_cents) == (outcome, credits(100), 990)
    db.session.rollback()


def test_a_disputed_plan_payment_holds_the_invoices_credits(store):
    store.buy(DISPUTED_CARD, plan="plan_starter")
    assert store.balance() == 0
    store.stripe_cli("dispute", "close", "--outcome", "lost", "--deliver")
    assert [kind for kind, _ in store.kinds()] == ["subscription", "freeze", "clawback"]
    page = text_of(store.browser.get("/billing").text)
    assert "Plan payment $29.00 −500 taken back dispute lost" in page


# --- disputes, event by event ----------------------------------------------------------------


def ids() -> dict[str, str]:
    return {"dispute_id": new_id("dp"), "charge": new_id("ch")}


def test_a_lost_dispute_of_spent_credits_becomes_debt(client, auth, api, org, buyer):
    session_id, intent = paid_package(client, buyer, "package_small")  # +100
    spend(api, org, 80)
    case = ids()
    assert "on hold" in disputed(client, intent, **case)
    assert grant_of(f"checkout:{session_id}").frozen == credits(20)
    assert "20 credits on hold: disputed." in billing_page(client, auth)
    assert "took back 100" in disputed(client, intent, "closed", "lost", **case)
    ref = f"dispute:{case['dispute_id']}"
    assert rows(org)[-2:] == [("freeze", -credits(20), ref), ("clawback", -credits(80), ref)]
    assert (balance_row(org.id)[0], debt(org)) == (-credits(80), credits(80))
    page = billing_page(client, auth)
    assert "80 credits owed." in page and "credits on hold" not in page
    assert "dispute lost" in page
    paid_package(client, buyer, "package_medium")  # +500, of which 80 pay the debt
    assert (balance_row(org.id)[0], debt(org)) == (credits(420), 0)


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_a_close_that_arrives_first_is_applied_and_the_late_opening_ignored(
    client, org, buyer, outcome
):
    _, intent = paid_package(client, buyer, "package_small")
    case = ids()
    note = disputed(client, intent, "closed", outcome, **case)
    assert note.startswith(
        "dispute won: nothing was on hold" if outcome == "won" else "dispute lost"
    )
    assert "already closed" in disputed(client, intent, **case)
    kinds = [kind for kind, _, _ in rows(org)]
    assert kinds == (["purchase"] if outcome == "won" else ["purchase", "clawback"])
    assert balance_row(org.id)[0] == (credits(100) if outcome == "won" else 0)
    assert one(Dispute, stripe_dispute_id=case["dispute_id"]).status == outcome


def test_duplicate_dispute_events_change_nothing(client, org, buyer):
    _, intent = paid_package(client, buyer, "package_small")
    case = ids()
    opened = event(
        "charge.dispute.created", dispute_object(intent, case["dispute_id"], case["charge"])
    )
    assert post_event(client, opened).status_code == 200
    assert post_event(client, opened).json["outcome"].startswith("duplicate")
    assert disputed(client, intent, **case) == "dispute already recorded"  # another event
    disputed(client, intent, "closed", "won", **case)
    assert "already closed" in disputed(client, intent, "closed", "lost", **case)
    ref = f"dispute:{case['dispute_id']}"
    assert rows(org)[1:] == [("freeze", -credits(100), ref), ("unfreeze", credits(100), ref)]
    assert balance_row(org.id)[0] == credits(100)


def test_a_dispute_before_its_payment_was_fulfilled_is_retried_until_it_can_apply(client, buyer):
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    session = checkout_session(buyer, session_id)
    case = ids()
    early = event(
        "charge.dispute.created",
        dispute_object(session["payment_intent"], case["dispute_id"], case["charge"]),
    )
    assert post_event(client, early).status_code == 500  # the payment is not known yet
    assert one(Dispute, stripe_dispute_id=case["dispute_id"]) is None
    post_event(client, event("checkout.session.completed", session))
    assert post_event(client, early).status_code == 200  # Stripe's retry
    assert balance_row(buyer.organization_id)[0] == 0
    assert grant_of(f"checkout:{session_id}").frozen == credits(100)


def test_a_dispute_of_a_mismatched_payment_has_nothing_to_hold(client, org, buyer):
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    wrong = checkout_session(buyer, session_id, amount_total=1)  # not what was sold
    post_event(client, event("checkout.session.completed", wrong))
    case = ids()
    assert "granted nothing" in disputed(client, wrong["payment_intent"], **case)
    assert "granted nothing" in disputed(client, wrong["payment_intent"], "closed", "lost", **case)
    assert rows(org) == []


def test_a_payment_from_before_credit_grants_is_taken_back_by_adjustment(client, make_org):
    """Its credits sit in the organization's opening grant (migration 0016), not a grant of
    its own: a refund or a lost dispute takes them in burn order instead."""
    seed_catalogue()
    older = make_org(balance=100, slug="older")
    buyer = make_buyer(older.id)
    session_id = open_checkout(buyer, package=item(Package, "package_small"))
    intent = new_id("pi")
    payment = db.session.scalar(select(Payment).where(Payment.checkout_session_id == session_id))
    payment.status, payment.payment_intent_id = "paid", intent
    payment.paid_at = payment.fulfilled_at = payment.created_at
    db.session.commit()
    case = ids()
    assert "predate credit grants" in disputed(client, intent, **case)
    assert "took back 100" in disputed(client, intent, "closed", "lost", **case)
    assert rows(older)[-1] == ("adjustment", -credits(100), f"dispute:{case['dispute_id']}")
    assert balance_row(older.id)[0] == 0


# --- at once (PostgreSQL) --------------------------------------------------------------------


@pytest.fixture
def pg_buyer(pg_app):
    return make_buyer(organizations.create_organization("racer", "Racer", 0).id)


def test_the_opening_and_the_loss_racing_take_the_credits_back_once(pg_app, pg_buyer):
    session_id = open_checkout(pg_buyer, package=item(Package, "package_small"))
    session = checkout_session(pg_buyer, session_id)
    case = ids()
    opened, lost = (
        event(kind, dispute_object(session["payment_intent"], status=status, **case))
        for kind, status in (
            ("charge.dispute.created", "needs_response"),
            ("charge.dispute.closed", "lost"),
        )
    )
    with live_server(pg_app) as url:
        assert deliver_at_once(url, [event("checkout.session.completed", session)])[0].is_success
        replies = deliver_at_once(url, [opened, lost] * (WORKERS // 2))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    ref = f"dispute:{case['dispute_id']}"
    assert count(LedgerEntry, kind="clawback", source_ref=ref) == 1
    assert count(LedgerEntry, kind="freeze", source_ref=ref) in (0, 1)  # if it came first
    assert count(Dispute, status="lost") == 1
    assert balance_row(pg_buyer.organization_id)[0] == 0
