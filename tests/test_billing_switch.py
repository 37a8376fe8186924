"""Switching plan on /billing: a confirmation step that states price, credits and when, and
never drops a pending cancellation without being asked to.

Runs against a live server and the offline Stripe sandbox (``tests.test_billing_pages``), so
the switch goes through the real ``stripe`` library; Stripe's copy of the subscription is read
back from the sandbox's API, as the portal reads it.
"""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from portal.billing.gateway import SANDBOX_API_KEY
from portal.billing.models import Subscription
from tests import test_billing_pages as pages
from tests.conftest import balance_row, credits
from tests.test_billing_pages import GOOD_CARD, OWNER, Browser, deliver, pay, scalar, text_of

# The live server and the shop, as the billing page tests build them.
live, shop = pages.live, pages.shop

SWITCH = "/billing/plans/plan_professional/switch"


class StripeSide:
    """Stripe's own copy of the subscription, through the sandbox's REST API."""

    def __init__(self, base_url: str, subscription_id: str) -> None:
        self.http = httpx.Client(
            base_url=f"{base_url}/_stripe/v1",
            headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
            timeout=60,
        )
        self.id = subscription_id

    def get(self) -> dict:
        return self.http.get(f"/subscriptions/{self.id}").json()

    def price_key(self) -> str:
        return self.get()["items"]["data"][0]["price"]["lookup_key"]

    def cancel_at_period_end(self) -> None:
        answer = self.http.post(f"/subscriptions/{self.id}", data={"cancel_at_period_end": "true"})
        assert answer.status_code == 200, answer.text


@pytest.fixture
def subscribed(live, shop, runner):
    """The owner on Starter, paid, with the webhooks applied: (browser, Stripe's side)."""
    browser = Browser(live, OWNER)
    checkout = browser.post("/billing/checkout", plan="plan_starter").headers["location"]
    assert pay(checkout, GOOD_CARD).status_code == 303
    deliver(runner)
    mine = Subscription.organization_id == shop.id
    sub_id = scalar(select(Subscription.stripe_subscription_id).where(mine))
    renews = scalar(select(Subscription.current_period_end).where(mine))
    return browser, StripeSide(live, sub_id), renews


def test_switch_plan_is_a_confirmation_page_not_one_click(subscribed, live):
    browser, stripe_side, renews = subscribed
    page = browser.get("/billing").text
    assert f'href="{SWITCH}"' in page  # a link to the confirmation, not a form that switches
    assert not re.search(r'name="plan" value="plan_professional"', page)
    # The old one-click POST now only leads to the confirmation.
    posted = browser.post("/billing/checkout", plan="plan_professional")
    assert (posted.status_code, posted.headers["location"]) == (303, f"{live}{SWITCH}")
    assert stripe_side.price_key() == "plan_starter"

    confirm = browser.get(SWITCH)
    assert confirm.status_code == 200
    shown = text_of(confirm.text)
    assert "Switch to Professional?" in shown
    assert "$99.00 a month" in shown and "2,000 credits a month" in shown
    assert f"from the next renewal on {renews:%Y-%m-%d}" in shown
    assert "Nothing is charged or refunded now (no proration)" in shown
    assert 'data-testid="cancellation-pending"' not in confirm.text
    assert stripe_side.price_key() == "plan_starter"  # looking changes nothing

    done = browser.post(SWITCH)
    assert (done.status_code, done.headers["location"]) == (303, "/billing")
    assert stripe_side.price_key() == "plan_professional"
    assert stripe_side.get()["cancel_at_period_end"] is False
    after = text_of(browser.get("/billing").text)
    assert "Your plan changes to Professional ($99.00 a month, 2,000 credits a month)" in after
    assert f"from the next renewal on {renews:%Y-%m-%d}; nothing is charged now." in after
    assert balance_row(scalar(select(Subscription.organization_id)))[0] == credits(500)


def test_a_pending_cancellation_is_kept_unless_explicitly_replaced(subscribed, runner):
    browser, stripe_side, renews = subscribed
    stripe_side.cancel_at_period_end()
    deliver(runner)

    confirm = browser.get(SWITCH)
    shown = text_of(confirm.text)
    assert 'data-testid="cancellation-pending"' in confirm.text
    assert f"Starter is cancelled and ends on {renews:%Y-%m-%d}" in shown
    assert "Keep the cancellation" in shown and "Resume and switch to Professional" in shown
    assert 'name="replace_cancellation" value="1"' in confirm.text

    # A switch that did not choose to replace the cancellation changes nothing.
    refused = browser.post(SWITCH)
    assert refused.status_code == 409
    assert "Your plan is set to end" in text_of(refused.text)
    assert stripe_side.price_key() == "plan_starter"
    assert stripe_side.get()["cancel_at_period_end"] is True

    resumed = browser.post(SWITCH, replace_cancellation="1")
    assert resumed.status_code == 303
    stripe_copy = stripe_side.get()
    assert stripe_copy["cancel_at_period_end"] is False
    assert stripe_copy["items"]["data"][0]["price"]["lookup_key"] == "plan_professional"
    assert "Your cancellation is withdrawn." in text_of(browser.get("/billing").text)


def test_a_cancellation_made_elsewhere_a_moment_ago_still_stops_the_switch(subscribed):
    browser, stripe_side, _ = subscribed
    confirm = browser.get(SWITCH)
    assert 'data-testid="cancellation-pending"' not in confirm.text
    stripe_side.cancel_at_period_end()  # in the customer portal; our copy has not heard yet
    refused = browser.post(SWITCH)
    assert refused.status_code == 409
    assert stripe_side.get()["cancel_at_period_end"] is True
    assert stripe_side.price_key() == "plan_starter"


def test_switching_to_the_current_plan_or_without_one_is_refused(subscribed):
    browser, stripe_side, _ = subscribed
    same = browser.get("/billing/plans/plan_starter/switch")
    assert same.status_code == 409 and "on the Starter plan already" in text_of(same.text)
    assert browser.post("/billing/plans/plan_starter/switch").status_code == 409
    assert browser.get("/billing/plans/plan_nope/switch").status_code == 404
    assert stripe_side.price_key() == "plan_starter"
