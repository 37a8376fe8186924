"""The portal as a person uses it, in a real headless Chromium against a live gunicorn.

Sign up → verify the email (through a real SMTP server) → 100 credits → create an API key →
deduct through the JSON API with it → the dashboard's balance, chart and usage table show the
deduction → an admin edits a price inline and copies its key → a member gets a 403 page at
the admin area.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

from portal.demo import DEMO_LOGINS
from tests.mail_helpers import link

pytestmark = pytest.mark.e2e
FEATURE = "seedream_text_to_image"


def login(page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state("networkidle")


def demo_login(role: str | None) -> tuple[str, str]:
    email, password, _, _ = next(item for item in DEMO_LOGINS if item[3] == role)
    return email, password


def test_signup_verify_key_deduct_dashboard(browser, portal, portal_mail):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    email = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(f"{portal.url}/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("e2e-password-1")
    page.get_by_label("Organization name").fill("End To End Labs")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{portal.url}/dashboard")
    # The bonus waits for the email address: the banner says so, the link grants it.
    assert page.get_by_test_id("available").inner_text() == "0"
    assert page.get_by_test_id("verify-banner").is_visible()
    page.goto(portal.url + link(portal_mail.last(email), "/verify-email/"))
    page.wait_for_url(f"{portal.url}/dashboard")
    assert page.get_by_test_id("available").inner_text() == "100"
    assert page.get_by_test_id("verify-banner").count() == 0
    assert "No usage in this period" in page.content()

    page.goto(f"{portal.url}/settings/api-keys")
    page.get_by_label("Key name").fill("e2e key")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-api-key").inner_text().strip()
    assert secret.startswith("cpk_")
    page.reload()  # the page after the POST is a GET: reloading creates no second key
    assert page.get_by_test_id("new-api-key").count() == 0
    assert page.get_by_text("e2e key", exact=True).count() == 1

    price = httpx.get(f"{portal.url}/api/v1/features/pricing", params={"key": FEATURE}).json(
        parse_float=Decimal
    )
    deducted = httpx.post(
        f"{portal.url}/api/v1/credits/deduct",
        json={"feature_key": FEATURE, "quantity": 2, "description": "e2e render"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert deducted.status_code == 201, deducted.text
    cost = Decimal(price["credits"]) * 2
    remaining = Decimal(100) - cost

    page.goto(f"{portal.url}/dashboard")
    assert Decimal(page.get_by_test_id("available").inner_text().replace(",", "")) == remaining
    assert Decimal(page.get_by_test_id("used-this-month").inner_text().replace(",", "")) == cost
    bar = page.locator('[data-testid="usage-chart"] rect title').first.text_content()
    assert f"{price['category']}: {cost.normalize():f} credits" in bar
    page.get_by_role("link", name="7 days").click()  # htmx swaps the chart card only
    page.wait_for_selector("text=last 7 days")
    assert page.url.endswith("/dashboard?days=7")

    page.goto(f"{portal.url}/usage")
    row = page.get_by_test_id("usage-table").locator("tbody tr").first
    assert FEATURE in row.inner_text() and "e2e render" in row.inner_text()
    context.close()


def test_admin_edits_a_price_inline_and_copies_its_key(browser, portal):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal.url)
    page = context.new_page()
    login(page, portal.url, *demo_login(None))
    page.goto(f"{portal.url}/admin/feature-pricing")
    row = page.locator(f'tr[data-key="{FEATURE}"]')
    row.get_by_role("link", name=f"Edit {FEATURE}").click()
    editing = page.locator(f'tr.editing[data-key="{FEATURE}"]')
    editing.get_by_label("Credits / unit").fill("6.25")
    editing.get_by_role("button", name="Save").click()
    page.wait_for_selector(f'tr[data-key="{FEATURE}"]:not(.editing)')
    assert "6.25" in page.locator(f'tr[data-key="{FEATURE}"]').inner_text()
    pricing = httpx.get(f"{portal.url}/api/v1/features/pricing", params={"key": FEATURE})
    assert pricing.json(parse_float=Decimal)["credits"] == Decimal("6.25")

    page.locator(f'tr[data-key="{FEATURE}"] button[data-copy]').click()
    page.wait_for_selector(f'tr[data-key="{FEATURE}"] button.copied')
    assert page.evaluate("navigator.clipboard.readText()") == FEATURE
    context.close()


def test_member_cannot_reach_the_admin_area(browser, portal):
    context = browser.new_context()
    page = context.new_page()
    login(page, portal.url, *demo_login("member"))
    assert "Admin" not in page.get_by_role("navigation", name="Main").inner_text()
    answer = page.goto(f"{portal.url}/admin/feature-pricing")
    assert answer.status == 403 and "platform admins" in page.content()
    assert page.locator(f'tr[data-key="{FEATURE}"]').count() == 0
    api = context.request.get(f"{portal.url}/api/admin/feature-pricing")
    assert api.status == 403 and api.json()["error"]["code"] == "forbidden"
    context.close()
