"""The credit lifecycle as a customer sees it, in headless Chromium against a live portal.

A plan's credits expire when the next period is paid and the new ones arrive (the sandbox's test
clock moves the period); a payment made with the disputing card (…0259) puts its credits on
hold, and a lost dispute takes them back; a refund of credits already spent leaves a debt that
the next purchase pays first. Webhooks come from the sandbox's own delivery worker.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.billing_steps import WAIT_MS, available, login_owner, pay, wait_until
from tests.e2e.browser import flask

pytestmark = pytest.mark.e2e


def billing_text(page, base_url: str, test_id: str) -> str:
    page.goto(f"{base_url}/billing")
    found = page.get_by_test_id(test_id)
    return found.inner_text() if found.count() else ""


def buy(page, base_url: str, package: str, card: str) -> None:
    page.goto(f"{base_url}/billing")
    page.get_by_test_id(f"package-{package}").get_by_role("button", name="Buy").click()
    pay(page, card)
    page.wait_for_url(re.compile(r".*/billing/success\?session_id=cs_.*"))
    page.wait_for_selector("[data-state=done]", timeout=WAIT_MS)


def latest_payment_intent(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT payment_intent_id FROM billing_payments "
                    "WHERE payment_intent_id IS NOT NULL ORDER BY id DESC LIMIT 1"
                )
            ).scalar_one()
    finally:
        engine.dispose()


def credits_page(page, base_url: str) -> str:
    page.goto(f"{base_url}/credits")
    return page.locator("main").inner_text()


def test_plan_period_expiry_dispute_and_debt(browser, portal):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    login_owner(page, portal.url)
    start = available(page, portal.url)

    # A plan: its credits arrive with the first paid invoice and expire at the next one.
    page.goto(f"{portal.url}/billing")
    page.get_by_test_id("plan-plan_starter").get_by_role("button", name="Subscribe").click()
    pay(page, "4242 4242 4242 4242")
    page.wait_for_selector("[data-state=done]", timeout=WAIT_MS)
    assert available(page, portal.url) == start + 500
    assert "Starter" in credits_page(page, portal.url)
    flask(portal.database_url, "stripe", "advance", "--days", "31")
    wait_until(
        lambda: "expired" in credits_page(page, portal.url).lower(), "the old plan credits expire"
    )
    assert available(page, portal.url) == start + 500  # 500 expired, 500 new

    # The disputing card pays, then its charge is disputed: the credits go on hold.
    buy(page, portal.url, "package_small", "4000 0000 0000 0259")
    wait_until(
        lambda: "100 credits on hold" in billing_text(page, portal.url, "on-hold"),
        "the dispute to put the credits on hold",
    )
    assert available(page, portal.url) == start + 500
    # The bank decides for the cardholder: the held credits are taken back, nothing is owed.
    flask(portal.database_url, "stripe", "dispute", "close", "--outcome", "lost")
    wait_until(
        lambda: "lost" in billing_text(page, portal.url, "payment-dispute").lower(),
        "the lost dispute",
    )
    assert billing_text(page, portal.url, "on-hold") == ""
    page.goto(f"{portal.url}/transactions")
    assert "claw" in page.locator("main").inner_text().lower()

    # Credits bought, spent, then refunded: what was spent becomes debt, shown as owed.
    buy(page, portal.url, "package_small", "4242 4242 4242 4242")
    spend_all = available(page, portal.url)
    flask(portal.database_url, "credits", "grant", "demo", f"-{spend_all}", "--reason", "spent")
    assert available(page, portal.url) == 0
    flask(portal.database_url, "stripe", "refund", latest_payment_intent(portal.database_url))
    wait_until(
        lambda: "100 credits owed" in billing_text(page, portal.url, "owed"), "the debt to show"
    )
    assert available(page, portal.url) == Decimal(-100)
    # The next purchase pays the debt first.
    buy(page, portal.url, "package_small", "4242 4242 4242 4242")
    wait_until(lambda: billing_text(page, portal.url, "owed") == "", "the debt to be paid")
    assert available(page, portal.url) == 0
    context.close()
