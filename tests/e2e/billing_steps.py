"""Steps the Chromium billing tests share: log in, read the balance, pay on the sandbox's page."""

from __future__ import annotations

import re
import time
from decimal import Decimal

from portal.demo import DEMO_LOGINS

WAIT_MS = 20_000


def login_owner(page, base_url: str) -> None:
    email, password, _, _ = next(item for item in DEMO_LOGINS if item[3] == "owner")
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/dashboard")


def available(page, base_url: str) -> Decimal:
    page.goto(f"{base_url}/dashboard")
    return Decimal(page.get_by_test_id("available").inner_text().replace(",", ""))


def pay(page, card: str) -> None:
    page.wait_for_url(re.compile(r".*/_stripe/checkout/cs_.*"))
    page.get_by_label("Card number").fill(card)
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()


def wait_until(check, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def invoice_count(page, base_url: str) -> int:
    page.goto(f"{base_url}/billing")
    table = page.get_by_test_id("invoices")
    return table.locator("tbody tr").count() if table.count() else 0


def current_plan(page, base_url: str) -> str:
    page.goto(f"{base_url}/billing")
    return page.get_by_test_id("current-plan").inner_text()


def plan_detail(page, base_url: str) -> str:
    page.goto(f"{base_url}/dashboard")
    return page.get_by_test_id("plan-detail").inner_text()
