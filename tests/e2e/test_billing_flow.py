"""Buying credits as a person does, in headless Chromium against a live gunicorn and its sandbox.

Buy a package → credits appear once; a declined card → nothing; subscribe → the plan's credits
once; the test clock moves a month → the old period's credits expire, the new ones arrive, and a
second invoice; cancel in the customer portal → the period's credits end with it. Webhooks come
from the sandbox's own delivery worker, asynchronously, as Stripe sends them.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.billing_steps import (
    WAIT_MS,
    available,
    current_plan,
    invoice_count,
    login_owner,
    pay,
    plan_detail,
    wait_until,
)
from tests.e2e.browser import flask

pytestmark = pytest.mark.e2e


def test_buy_subscribe_renew_cancel(browser, portal):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    login_owner(page, portal.url)
    start = available(page, portal.url)

    # A package: the success page confirms once the webhook was processed.
    page.goto(f"{portal.url}/billing")
    page.get_by_test_id("package-package_small").get_by_role("button", name="Buy").click()
    pay(page, "4242 4242 4242 4242")
    page.wait_for_url(re.compile(r".*/billing/success\?session_id=cs_.*"))
    page.wait_for_selector("[data-state=done]", timeout=WAIT_MS)
    assert "100 credits added" in page.locator("#checkout-status").inner_text().replace("\n", " ")
    time.sleep(2)  # any redelivery would have landed by now
    assert available(page, portal.url) == start + 100

    # A declined card: the sandbox says so, and nothing is granted.
    page.goto(f"{portal.url}/billing")
    page.get_by_test_id("package-package_medium").get_by_role("button", name="Buy").click()
    pay(page, "4000 0000 0000 0002")
    assert "declined" in page.locator("#card-error").inner_text().lower()
    time.sleep(2)
    assert available(page, portal.url) == start + 100

    # A plan: its credits come with the first paid invoice, once.
    page.goto(f"{portal.url}/billing")
    page.get_by_test_id("plan-plan_starter").get_by_role("button", name="Subscribe").click()
    pay(page, "4242 4242 4242 4242")
    page.wait_for_selector("[data-state=done]", timeout=WAIT_MS)
    assert "500 credits added" in page.locator("#checkout-status").inner_text().replace("\n", " ")
    assert available(page, portal.url) == start + 600
    assert current_plan(page, portal.url) == "Starter"
    assert invoice_count(page, portal.url) == 1

    # A month later: a renewal invoice, the first period's unused plan credits expire (Starter
    # carries nothing over) and the new period's arrive.
    flask(portal.database_url, "stripe", "advance", "--days", "31")
    wait_until(lambda: invoice_count(page, portal.url) == 2, "the renewal invoice")
    wait_until(lambda: available(page, portal.url) == start + 600, "the renewal credits")

    # Cancel at period end in the customer portal: the next month brings nothing.
    page.goto(f"{portal.url}/billing")
    page.get_by_role("button", name="Manage billing").click()
    page.wait_for_url(re.compile(r".*/_stripe/portal/bps_.*"))
    page.get_by_role("button", name="Cancel at period end").click()
    page.get_by_role("link", name=re.compile("Return to")).click()
    page.wait_for_url(f"{portal.url}/billing")
    wait_until(lambda: "· ends " in plan_detail(page, portal.url), "the cancellation to arrive")
    flask(portal.database_url, "stripe", "advance", "--days", "31")
    wait_until(lambda: current_plan(page, portal.url) == "Pay as you go", "the plan to end")
    time.sleep(2)
    assert invoice_count(page, portal.url) == 2
    # The subscription ended with its period: that period's plan credits ended with it.
    assert available(page, portal.url) == start + 100
    context.close()
