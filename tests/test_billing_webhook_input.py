"""POST /stripe/webhook with signed bodies that are not what they should be.

Every body here carries a valid signature (``tests.billing_helpers.sign``, computed as Stripe
documents it), so only the portal's own checks stand between it and a grant: a body that is
not a readable event is a logged 400 (a 500 would make Stripe retry for days), a timestamp
from the future is refused like a stale one, and a paid checkout that is not what the
catalogue sold grants nothing and is recorded as a ``mismatch`` for a human to see.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from sqlalchemy import select

from portal.auth import service as people
from portal.billing.catalogue import seed_catalogue
from portal.billing.models import Package, Payment, StripeEvent
from portal.extensions import db
from tests import billing_helpers as stripe_test
from tests.billing_helpers import checkout_session, event, make_buyer, open_checkout, post_event
from tests.conftest import DEFAULT_PASSWORD, balance_row, credits, ledger_rows


@pytest.fixture
def buyer(app, make_org):
    seed_catalogue()  # PostgreSQL tests start from truncated tables
    return make_buyer(make_org(balance=0).id)


def package(key: str = "package_small") -> Package:
    found = db.session.scalar(select(Package).where(Package.lookup_key == key))
    db.session.expunge(found)
    db.session.rollback()
    return found


def payment_of(session_id: str) -> Payment:
    db.session.expire_all()
    row = db.session.scalar(select(Payment).where(Payment.checkout_session_id == session_id))
    db.session.expunge(row)
    db.session.rollback()
    return row


def post_raw(client, payload: str, *, timestamp: int | None = None):
    return client.post(
        "/stripe/webhook",
        data=payload,
        headers={"Stripe-Signature": stripe_test.sign(payload, stripe_test.SECRET, timestamp)},
        content_type="application/json",
    )


def purchases(buyer) -> list:
    return [row for row in ledger_rows(buyer.organization_id) if row.kind == "purchase"]


# --- bodies that are not readable events -----------------------------------------------------


def _paid_session(buyer) -> dict:
    session_id = open_checkout(buyer, package=package())
    return event("checkout.session.completed", checkout_session(buyer, session_id))


def _without(evt: dict, *keys: str) -> dict:
    return {key: value for key, value in evt.items() if key not in keys}


MALFORMED = {
    "array body": lambda evt: [evt],
    "empty array": lambda evt: [],
    "a string": lambda evt: "checkout.session.completed",
    "a number": lambda evt: 7,
    "no data": lambda evt: _without(evt, "data"),
    "data not an object": lambda evt: {**evt, "data": [evt["data"]]},
    "no data.object": lambda evt: {**evt, "data": {}},
    "data.object a list": lambda evt: {**evt, "data": {"object": [evt["data"]["object"]]}},
    "data.object a string": lambda evt: {**evt, "data": {"object": "cs_123"}},
    "data.object without id": lambda evt: {
        **evt,
        "data": {"object": _without(evt["data"]["object"], "id")},
    },
    "created soon": lambda evt: {**evt, "created": "soon"},
    "created true": lambda evt: {**evt, "created": True},
    "created beyond bigint": lambda evt: {**evt, "created": 2**63},
    "created negative": lambda evt: {**evt, "created": -1},
    "no created": lambda evt: _without(evt, "created"),
    "no type": lambda evt: _without(evt, "type"),
    "type not a string": lambda evt: {**evt, "type": ["checkout.session.completed"]},
    "type too long": lambda evt: {**evt, "type": "x" * 101},
    "no id": lambda evt: _without(evt, "id"),
    "empty id": lambda evt: {**evt, "id": ""},
    "id a number": lambda evt: {**evt, "id": 12},
    "livemode a string": lambda evt: {**evt, "livemode": "no"},
    # Deeper shapes only the handler reads:
    "metadata a list": lambda evt: {
        **evt,
        "data": {"object": {**evt["data"]["object"], "metadata": ["package_small"]}},
    },
    "line items not a list": lambda evt: {
        **evt,
        "data": {"object": {**evt["data"]["object"], "line_items": {"data": 5}}},
    },
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_signed_malformed_event_is_a_logged_400_and_changes_nothing(client, buyer, caplog, case):
    evt = _paid_session(buyer)
    session_id = evt["data"]["object"]["id"]
    with caplog.at_level(logging.WARNING):
        response = post_raw(client, json.dumps(MALFORMED[case](evt)))
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"]["code"] == "invalid_webhook"
    assert "not a Stripe event" in response.json["error"]["message"]
    assert any("stripe" in record.getMessage() for record in caplog.records)
    assert stripe_test.recorded_events() == 0
    assert balance_row(buyer.organization_id)[0] == 0
    assert payment_of(session_id).status == "open"


def test_a_malformed_invoice_line_is_a_400(client, buyer):
    broken = stripe_test.invoice(buyer, stripe_test.new_id("sub"))
    broken["lines"] = {"object": "list", "data": ["in_line"]}
    response = post_event(client, event("invoice.paid", broken))
    assert response.status_code == 400
    assert stripe_test.recorded_events() == 0 and balance_row(buyer.organization_id)[0] == 0


@pytest.mark.parametrize("payload", ["", "not json", '{"id": ', "[" * 5000 + "]" * 5000])
def test_a_signed_body_that_is_not_json_is_a_400(client, buyer, payload):
    response = post_raw(client, payload)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_webhook"
    assert stripe_test.recorded_events() == 0


@pytest.mark.parametrize(
    "where", ["id", "type", "metadata"], ids=["event id", "event type", "object metadata"]
)
@pytest.mark.parametrize("bad", [r"\ud800", r"a\u0000b"], ids=["lone surrogate", "NUL"])
def test_strings_no_database_can_store_are_a_400(client, buyer, where, bad):
    evt = _paid_session(buyer)
    marker = "@@BAD@@"
    if where == "metadata":
        evt["data"]["object"]["metadata"]["package"] = marker
    else:
        evt[where] = marker
    response = post_raw(client, json.dumps(evt).replace(marker, bad))
    assert response.status_code == 400
    assert stripe_test.recorded_events() == 0 and balance_row(buyer.organization_id)[0] == 0


def test_an_unknown_event_without_an_object_id_is_still_acknowledged(client, buyer):
    evt = event("balance.available", {"object": "balance", "available": []})
    response = post_event(client, evt)
    assert response.status_code == 200 and "not handled" in response.json["outcome"]


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize("ahead", [301, 3600, 10 * 365 * 86400])
def test_a_timestamp_more_than_five_minutes_ahead_is_refused_like_a_stale_one(client, buyer, ahead):
    evt = _paid_session(buyer)
    response = post_event(client, evt, timestamp=int(time.time()) + ahead)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_webhook"
    assert "future" in response.json["error"]["message"]
    assert stripe_test.recorded_events() == 0 and balance_row(buyer.organization_id)[0] == 0


def test_a_second_timestamp_in_the_header_cannot_hide_a_future_one(client, buyer):
    evt = _paid_session(buyer)
    payload = json.dumps(evt)
    future = stripe_test.sign(payload, stripe_test.SECRET, int(time.time()) + 3600)
    header = f" t={int(time.time())},{future}"  # Stripe reads the first exact "t="
    response = client.post(
        "/stripe/webhook",
        data=payload,
        headers={"Stripe-Signature": header},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert stripe_test.recorded_events() == 0


def test_a_little_clock_skew_ahead_is_accepted(client, buyer):
    evt = _paid_session(buyer)
    assert post_event(client, evt, timestamp=int(time.time()) + 120).status_code == 200
    assert balance_row(buyer.organization_id)[0] == credits(100)


# --- checkouts that are not what the catalogue sold ------------------------------------------


MISMATCHES = {
    # case: (the session's fields, what the recorded outcome names)
    "amount": ({"amount_total": 99_000}, "amount_total 99000 is not 990"),
    "amount too low": ({"amount_total": 1}, "amount_total 1"),
    "amount as text": ({"amount_total": "990"}, "amount_total '990'"),
    "no amount": ({"amount_total": None}, "amount_total None"),
    "currency": ({"currency": "eur"}, "currency 'eur'"),
    "no currency": ({"currency": None}, "currency None"),
    "another package in metadata": (
        {"lookup_key": "package_jumbo", "amount_total": 990},
        "metadata package 'package_jumbo'",
    ),
    "another price in the line items": (
        {"line_items": {"object": "list", "data": [{"price": {"id": "price_other"}}]}},
        "price 'price_other'",
    ),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_a_checkout_that_does_not_match_the_catalogue_grants_nothing_and_is_recorded(
    client, buyer, caplog, case
):
    small = package()
    session_id = open_checkout(buyer, package=small)
    fields, reason = MISMATCHES[case]
    session = checkout_session(buyer, session_id, **fields)
    evt = event("checkout.session.completed", session)
    with caplog.at_level(logging.WARNING):
        response = post_event(client, evt)
    assert response.status_code == 200  # Stripe must not retry: a human looks instead
    assert response.json["outcome"].startswith("mismatch:")
    assert reason in response.json["outcome"]
    assert any(
        "mismatch" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records
    )
    assert purchases(buyer) == [] and balance_row(buyer.organization_id)[0] == 0
    assert (
        payment_of(session_id).status == "mismatch" and payment_of(session_id).fulfilled_at is None
    )
    stored = db.session.scalar(select(StripeEvent.outcome).where(StripeEvent.event_id == evt["id"]))
    db.session.rollback()
    assert stored.startswith("mismatch:")
    # A later event about the same session cannot grant it either.
    later = event("checkout.session.async_payment_succeeded", session)
    assert post_event(client, later).status_code == 200
    assert purchases(buyer) == [] and payment_of(session_id).status == "mismatch"


def test_a_checkout_not_started_here_is_checked_against_the_catalogue(client, buyer):
    session_id = stripe_test.new_id("cs")
    cheap = checkout_session(buyer, session_id, lookup_key="package_large", amount_total=990)
    assert post_event(client, event("checkout.session.completed", cheap)).status_code == 200
    assert purchases(buyer) == []
    assert payment_of(cheap["id"]).status == "mismatch"


def test_line_items_of_the_packages_price_or_product_are_granted(client, buyer):
    small = package()
    row = db.session.get(Package, small.id)
    row.stripe_price_id, row.stripe_product_id = "price_small_now", "prod_small"
    db.session.commit()
    for price in ({"id": "price_small_now"}, {"id": "price_small_before", "product": "prod_small"}):
        session_id = open_checkout(buyer, package=package())
        line_items = {"object": "list", "data": [{"price": price}]}
        session = checkout_session(buyer, session_id, line_items=line_items)
        assert post_event(client, event("checkout.session.completed", session)).status_code == 200
        assert payment_of(session_id).status == "paid"
    assert balance_row(buyer.organization_id)[0] == credits(200)


def test_a_mismatched_payment_is_listed_on_the_billing_page(client, auth, buyer):
    session_id = open_checkout(buyer, package=package())
    session = checkout_session(buyer, session_id, amount_total=99_000)
    post_event(client, event("checkout.session.completed", session))
    owner = people.create_user("owner@shop.example", DEFAULT_PASSWORD)
    people.add_membership(owner, buyer.organization_id, "owner")
    auth.login("owner@shop.example")
    page = client.get("/billing").get_data(as_text=True)
    assert "badge-payment-mismatch" in page and "$990.00" in page  # what was actually paid
