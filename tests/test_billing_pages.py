"""Billing pages: buying through the offline Stripe sandbox, the success page, Manage billing,
who may buy, the admin's catalogue editor, the dashboard's plan card, tenant isolation.

Flows that reach Stripe run against a live server thread, because the portal's ``stripe``
calls go over HTTP to the sandbox it serves at ``/_stripe``; the browser side of those flows
talks to the same server with httpx. Webhooks are delivered with ``flask stripe deliver``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.billing.catalogue import seed_catalogue
from portal.billing.models import BillingCustomer, Package, Payment
from portal.extensions import db
from tests.billing_helpers import (
    T0,
    event,
    invoice,
    make_buyer,
    new_id,
    open_checkout,
    post_event,
    subscription,
)
from tests.conftest import DEFAULT_PASSWORD, balance_row, credits
from tests.live import serve_in_thread as live_server

OWNER, MEMBER, ADMIN = "owner@shop.example", "member@shop.example", "root@shop.example"
GOOD_CARD, DECLINED_CARD = "4242 4242 4242 4242", "4000 0000 0000 0002"


@pytest.fixture
def shop(app, make_org, make_user):
    seed_catalogue()  # PostgreSQL tests start from truncated tables
    org = make_org(balance=0, slug="shop")
    make_user(OWNER, org=org, role="owner")
    make_user(MEMBER, org=org, role="member")
    make_user(ADMIN, admin=True)
    return org


@pytest.fixture
def live(app: Flask, shop) -> Iterator[str]:
    """The app served over HTTP: the gateway's Stripe calls and the webhooks reach it."""
    with live_server(app) as url:
        app.config["PORTAL_BASE_URL"] = url
        app.config["STRIPE_SANDBOX_WEBHOOK_URL"] = url + "/stripe/webhook"
        yield url


class Browser:
    """A signed-in browser talking to the live server (no redirects followed)."""

    def __init__(self, base_url: str, email: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=60)
        response = self.http.post("/login", data={"email": email, "password": DEFAULT_PASSWORD})
        assert response.status_code == 302, response.text[:300]

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url)

    def post(self, url: str, **data: str) -> httpx.Response:
        return self.http.post(url, data=data)


def deliver(runner) -> None:
    """Stripe's side sends what it owes: ``flask stripe deliver``."""
    result = runner.invoke(args=["stripe", "deliver"])
    assert result.exit_code == 0, result.output


def pay(checkout_url: str, card: str) -> httpx.Response:
    """Fill the sandbox's hosted checkout page as a customer would."""
    page = httpx.get(checkout_url)
    assert page.status_code == 200
    assert 'name="card_number"' in page.text
    return httpx.post(checkout_url, data={"card_number": card})


def session_id_of(url: str) -> str:
    found = re.search(r"(cs_[A-Za-z0-9_]+)", url)
    assert found, url
    return found.group(1)


def text_of(html: str) -> str:
    """What a reader sees: tags dropped, spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


def state_of(html: str) -> str:
    return re.search(r'data-state="(\w+)"', html).group(1)


def scalar(stmt):
    value = db.session.scalar(stmt)
    db.session.rollback()  # never keep SQLite's write lock while the live server works
    return value


# --- buying through the sandbox --------------------------------------------------------------


def test_buying_a_package_grants_its_credits_once_the_webhook_arrives(live, shop, runner):
    browser = Browser(live, OWNER)
    response = browser.post("/billing/checkout", package="package_small")
    assert response.status_code == 303
    checkout_url = response.headers["location"]
    assert checkout_url.startswith(f"{live}/_stripe/checkout/cs_")
    session_id = session_id_of(checkout_url)
    assert scalar(select(Payment.status).where(Payment.checkout_session_id == session_id)) == "open"

    paid = pay(checkout_url, GOOD_CARD)
    assert paid.status_code == 303
    assert paid.headers["location"] == f"{live}/billing/success?session_id={session_id}"
    success = browser.get(f"/billing/success?session_id={session_id}")
    assert success.status_code == 200
    assert "Confirming payment…" in success.text
    assert 'hx-trigger="every 1s"' in success.text
    assert f"/billing/success/status?session_id={session_id}" in success.text
    assert balance_row(shop.id)[0] == 0  # the page grants nothing itself

    deliver(runner)
    status = browser.get(f"/billing/success/status?session_id={session_id}")
    assert state_of(status.text) == "done"
    assert "100 credits added" in text_of(status.text)
    assert "hx-trigger" not in status.text  # polling stops
    assert balance_row(shop.id)[0] == credits(100)
    deliver(runner)  # nothing more is owed, and nothing more is granted
    assert balance_row(shop.id)[0] == credits(100)
    page = browser.get("/billing").text
    assert 'data-testid="payments"' in page and "Small" in page


def test_the_customer_is_created_once_and_reused(live, shop):
    browser = Browser(live, OWNER)
    for key in ("package_small", "package_medium"):
        assert browser.post("/billing/checkout", package=key).status_code == 303
    assert scalar(select(func.count(BillingCustomer.id))) == 1
    assert scalar(select(func.count(Payment.id))) == 2


def test_a_declined_card_grants_nothing(live, shop, runner):
    browser = Browser(live, OWNER)
    checkout_url = browser.post("/billing/checkout", package="package_small").headers["location"]
    declined = pay(checkout_url, DECLINED_CARD)
    assert declined.status_code != 303
    assert "declined" in declined.text.lower()
    deliver(runner)
    assert balance_row(shop.id)[0] == 0
    status = browser.get(f"/billing/success/status?session_id={session_id_of(checkout_url)}")
    assert state_of(status.text) == "pending"


def test_subscribing_grants_the_plan_once_and_shows_it_everywhere(live, shop, runner):
    browser = Browser(live, OWNER)
    response = browser.post("/billing/checkout", plan="plan_starter")
    assert response.status_code == 303
    checkout_url = response.headers["location"]
    assert pay(checkout_url, GOOD_CARD).status_code == 303
    deliver(runner)
    status = browser.get(f"/billing/success/status?session_id={session_id_of(checkout_url)}")
    assert "500 credits added" in text_of(status.text)
    assert balance_row(shop.id)[0] == credits(500)

    page = browser.get("/billing").text
    assert re.search(r'data-testid="current-plan">Starter<', page)
    assert 'data-testid="renews-at"' in page
    assert "Switch to Professional" in page
    assert re.search(r"<td class=\"num\">\+500</td>", page)  # the first invoice
    dashboard = browser.get("/dashboard").text
    assert re.search(r'data-testid="plan-name">Starter<', dashboard)
    assert "500 credits a month · renews" in dashboard

    # Switching is confirmed on its own page (tests/test_billing_switch.py), never one click.
    switched = browser.post("/billing/checkout", plan="plan_professional")
    assert switched.status_code == 303
    assert switched.headers["location"] == f"{live}/billing/plans/plan_professional/switch"

    manage = browser.post("/billing/portal")
    assert manage.status_code == 303
    assert manage.headers["location"].startswith(f"{live}/_stripe/portal/bps_")
    assert balance_row(shop.id)[0] == credits(500)


# --- the success page without the sandbox ----------------------------------------------------


def test_the_success_page_polls_until_the_webhook_was_processed(client, auth, shop):
    buyer = make_buyer(shop.id)
    package = scalar(select(Package).where(Package.lookup_key == "package_large"))
    session_id = open_checkout(buyer, package=package)
    auth.login(OWNER)
    page = client.get(f"/billing/success?session_id={session_id}").get_data(as_text=True)
    assert "Confirming payment…" in page and 'hx-trigger="every 1s"' in page
    partial = client.get(f"/billing/success/status?session_id={session_id}")
    assert state_of(partial.get_data(as_text=True)) == "pending"
    assert "<html" not in partial.get_data(as_text=True)  # the box alone, for htmx to swap
    from tests.billing_helpers import checkout_session

    session = checkout_session(buyer, session_id, lookup_key="package_large")
    assert post_event(client, event("checkout.session.completed", session)).status_code == 200
    done = client.get(f"/billing/success/status?session_id={session_id}").get_data(as_text=True)
    assert state_of(done) == "done" and "2,000 credits added" in text_of(done)


def test_the_success_page_slows_down_then_stops_polling(client, auth, shop):
    buyer = make_buyer(shop.id)
    package = scalar(select(Package).where(Package.lookup_key == "package_small"))
    session_id = open_checkout(buyer, package=package)
    auth.login(OWNER)
    url = f"/billing/success/status?session_id={session_id}"
    slow = client.get(f"{url}&attempt=60").get_data(as_text=True)
    assert 'hx-trigger="every 5s"' in slow and "attempt=61" in slow
    stopped = client.get(f"{url}&attempt=100").get_data(as_text=True)
    assert "hx-trigger" not in stopped and "Still waiting for Stripe" in stopped


def test_manage_billing_before_any_purchase_explains_instead(client, auth, shop):
    auth.login(OWNER)
    response = client.post("/billing/portal")
    assert response.status_code == 409
    assert "Nothing to manage yet" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"package": "package_nope"}, 404, "no package"),
        ({"plan": "plan_nope"}, 404, "no plan"),
        ({}, 422, "choose one package or one plan"),
        ({"package": "package_small", "plan": "plan_starter"}, 422, "choose one"),
    ],
)
def test_checkout_of_something_not_for_sale_is_refused(client, auth, shop, form, status, message):
    auth.login(OWNER)
    response = client.post("/billing/checkout", data=form)
    assert response.status_code == status
    assert message in response.get_data(as_text=True).lower()
    assert scalar(select(func.count(Payment.id))) == 0


# --- who may do what -------------------------------------------------------------------------


def test_members_see_billing_but_cannot_buy_or_manage(client, auth, shop):
    auth.login(MEMBER)
    page = client.get("/billing")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Only owners and admins" in html
    assert ">Buy<" not in html and ">Subscribe<" not in html
    assert client.post("/billing/checkout", data={"package": "package_small"}).status_code == 403
    assert client.post("/billing/portal").status_code == 403


def test_billing_needs_a_login(client, shop):
    assert client.get("/billing").status_code == 302
    assert client.post("/billing/checkout", data={"package": "package_small"}).status_code == 302


def test_the_billing_page_lists_the_catalogue_and_invoices_newest_first(client, auth, shop):
    buyer = make_buyer(shop.id)
    sub_id = new_id("sub")
    post_event(client, event("customer.subscription.created", subscription(buyer, sub_id)))
    first = invoice(buyer, sub_id, start=T0)
    second = invoice(buyer, sub_id, start=T0 + 30 * 86400, reason="subscription_cycle")
    for inv in (first, second):
        post_event(client, event("invoice.paid", inv))
    auth.login(OWNER)
    html = client.get("/billing").get_data(as_text=True)
    for text in ("Starter", "Professional", "Enterprise", "$29.00", "$99.00", "$299.00"):
        assert text in html
    for text in ("Small", "Medium", "Large", "Jumbo", "$9.90", "$39.90", "$149.90", "$349.90"):
        assert text in html
    assert "10,000" in html and "5,000" in html
    assert html.index(second["number"]) < html.index(first["number"])
    assert f'href="{first["hosted_invoice_url"]}"' in html
    assert f'href="{first["invoice_pdf"]}"' in html
    assert "Manage billing" in html


def test_the_dashboard_plan_card(client, auth, shop):
    auth.login(OWNER)
    html = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'data-testid="plan-name">Pay as you go<', html)
    buyer = make_buyer(shop.id)
    sub_id = new_id("sub")
    post_event(
        client,
        event("customer.subscription.created", subscription(buyer, sub_id, plan="plan_enterprise")),
    )
    html = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'data-testid="plan-name">Enterprise<', html)
    assert "10,000 credits a month · renews" in html
    assert "past-due-banner" not in html


def test_another_organizations_billing_is_never_shown(client, auth, make_org, make_user, shop):
    buyer = make_buyer(shop.id)
    sub_id = new_id("sub")
    paid = invoice(buyer, sub_id)
    post_event(client, event("invoice.paid", paid))
    package = scalar(select(Package).where(Package.lookup_key == "package_small"))
    session_id = open_checkout(buyer, package=package)
    other = make_org(balance=0, slug="other")
    make_user("owner@other.example", org=other, role="owner")
    auth.login("owner@other.example")
    html = client.get("/billing").get_data(as_text=True)
    assert paid["number"] not in html
    assert "No invoices yet" in html
    assert client.get(f"/billing/success?session_id={session_id}").status_code == 404
    assert client.get(f"/billing/success/status?session_id={session_id}").status_code == 404
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'data-testid="plan-name">Pay as you go<', dashboard)
