"""Every page in real Chromium: strict CSP holds, nothing errors, phones fit, keys work.

One live demo portal and one browser for the module; each role logs in once and its
storage state is reused by every test that needs it.
"""

from __future__ import annotations

import re

import httpx
import pytest
from flask import Flask, redirect, request

from portal.demo import DEMO_LOGINS
from portal.security import register_security_headers
from tests.e2e.pages import LONG_KEY, crawl_list, demo_values, seed_long_text
from tests.e2e.watch import PHONE, watched_page
from tests.live import serve_in_thread

pytestmark = pytest.mark.e2e
HOSTILE_NAME = "x'+alert(1)+'"
ROLES = ("anonymous", "owner", "member", "admin")
# Error pages a person can reach with a GET, besides the URL map's pages with unknown ids.
ERROR_PAGES = ("/no-such-page", "/logout", "/_stripe/checkout/cs_unknown")
DESKTOP = {"width": 1280, "height": 900}
# Pages with tables of text people type: at desktop width each table fits its card.
TABLE_PAGES = {
    "owner": (
        "/usage",
        "/transactions",
        "/credits?status=all",
        "/settings/departments",
        "/settings/members",
        "/settings/api-keys",
        "/dashboard",
    ),
    "admin": ("/admin/feature-pricing", "/admin/organizations", "/admin/organizations/demo"),
}
OVERFLOWING_TABLES = """() => [...document.querySelectorAll('.table-wrap, .card')]
  .filter((box) => box.scrollWidth > box.clientWidth + 1)
  .map((box) => `${box.className}: ${box.scrollWidth} > ${box.clientWidth}`)"""


@pytest.fixture(scope="module")
def logins(browser, portal, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """role ("owner", "member", "admin") -> a storage-state file of a logged-in session."""
    folder = tmp_path_factory.mktemp("logins")
    states = {}
    for email, password, _, role in DEMO_LOGINS:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{portal.url}/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state("networkidle")
        name = role or "admin"
        context.storage_state(path=folder / f"{name}.json")
        states[name] = str(folder / f"{name}.json")
        context.close()
    return states


@pytest.fixture(scope="module")
def live_values(browser, portal, logins) -> dict[str, str]:
    """Ids that only a walk through the sandbox gives: checkout, customer portal, invoice,
    and an invitation token; plus the demo's own ids from its database."""
    seed_long_text(portal.database_url)
    values = demo_values(portal.database_url)
    context = browser.new_context(storage_state=logins["owner"])
    page = context.new_page()
    page.goto(f"{portal.url}/billing")
    page.get_by_role("button", name="Buy").first.click()
    page.wait_for_url(re.compile(r".*/_stripe/checkout/cs_.*"))
    values["unpaid_checkout"] = page.url
    page.goto(f"{portal.url}/billing")
    page.get_by_role("button", name="Subscribe").first.click()
    page.wait_for_url(re.compile(r".*/_stripe/checkout/cs_.*"))
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()
    page.wait_for_url(re.compile(r".*/billing/success\?session_id=cs_.*"))
    values["session_id"] = page.url.rsplit("=", 1)[1]
    page.goto(f"{portal.url}/billing")
    page.get_by_role("button", name="Manage billing").click()
    page.wait_for_url(re.compile(r".*/_stripe/portal/.*"))
    values["portal_session_id"] = page.url.rsplit("/", 1)[1].split("?")[0]
    invoices = httpx.get(
        f"{portal.url}/_stripe/v1/invoices", headers={"Authorization": "Bearer sk_test_e2e"}
    ).json()["data"]
    values["invoice_id"] = invoices[0]["id"]
    page.goto(f"{portal.url}/settings/members")
    page.get_by_label("Email").fill("guest@example.com")  # an invitation is for one address
    page.get_by_role("button", name="Send invitation").click()
    values["token"] = page.get_by_test_id("invite-url").inner_text().strip().rsplit("/", 1)[1]
    context.close()
    return values


def test_every_page_is_clean_for_every_role(browser, portal, logins, live_values):
    """No CSP violation, console error or failed load anywhere; no page wider than a phone."""
    paths = [ref.path for ref in crawl_list(portal.database_url, live_values)]
    paths += [live_values["unpaid_checkout"].removeprefix(portal.url), *ERROR_PAGES]
    problems, visits = [], 0
    for role in ROLES:
        with watched_page(browser, PHONE, logins.get(role)) as watch:
            for path in paths:
                if watch.redirects(f"{portal.url}{path}"):
                    continue  # where it leads (the login page, say) is on the list itself
                status, found = watch.visit(f"{portal.url}{path}")
                visits += 1
                problems += [f"{role} {path} ({status}): {problem}" for problem in found]
    assert visits >= 60
    assert problems == [], "\n".join(problems)


def test_long_text_stays_inside_its_table_at_desktop_width(browser, portal, logins, live_values):
    problems = []
    for role, paths in TABLE_PAGES.items():
        context = browser.new_context(viewport=DESKTOP, storage_state=logins[role])
        page = context.new_page()
        for path in paths:
            page.goto(f"{portal.url}{path}", wait_until="load")
            problems += [f"{role} {path}: {box}" for box in page.evaluate(OVERFLOWING_TABLES)]
        context.close()
    assert problems == [], "\n".join(problems)


AMOUNT_IN_VIEW = """() => [...document.querySelectorAll('tbody td.amount')].slice(0, 3)
  .map((cell) => {
  window.scrollTo(0, cell.getBoundingClientRect().top + window.scrollY - 200);  // rows only
  const box = cell.getBoundingClientRect();
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return box.left >= 0 && box.right <= window.innerWidth && cell.contains(hit);
})"""
AMOUNT_PAGES = {
    "owner": ("/usage", "/transactions", "/settings/departments"),
    "admin": ("/admin/organizations", "/admin/organizations/demo"),
}


def test_phones_keep_the_amount_column_in_view(browser, portal, logins, live_values):
    """Wide tables scroll inside their card; the amount stays visible at its right edge."""
    hidden = []
    for role, paths in AMOUNT_PAGES.items():
        with watched_page(browser, PHONE, logins[role]) as watch:
            for path in paths:
                watch.visit(f"{portal.url}{path}")
                cells = watch.page.evaluate(AMOUNT_IN_VIEW)
                if not cells or not all(cells):
                    hidden.append(f"{role} {path}: {cells}")
    assert hidden == []


def test_csrf_failure_page_is_styled_and_clean(browser, portal, logins):
    with watched_page(browser, PHONE, logins["owner"]) as watch:
        watch.visit(f"{portal.url}/settings/api-keys")
        page = watch.page
        page.evaluate("document.querySelectorAll('[name=csrf_token]').forEach((i) => i.remove())")
        page.get_by_label("Key name").fill("never created")
        with page.expect_navigation() as navigation:
            page.get_by_role("button", name="Create key").click()
        assert navigation.value.status == 400
        assert page.get_by_role("heading", level=1).inner_text() == "This form expired"
        assert page.locator("header.topbar").is_visible()
        assert watch.check() == []


def test_htmx_chart_switch_under_the_csp(browser, portal, logins):
    with watched_page(browser, DESKTOP, logins["owner"]) as watch:
        watch.visit(f"{portal.url}/dashboard")
        for days in (7, 90, 30):
            watch.page.get_by_role("link", name=f"{days} days").click()
            watch.page.wait_for_selector(f"text=last {days} days")
            assert watch.page.url.endswith(f"/dashboard?days={days}")
        assert watch.check(max_width=None) == []


def test_inline_price_edit_saves_and_escape_cancels(browser, portal, logins, live_values):
    with watched_page(browser, DESKTOP, logins["admin"]) as watch:
        watch.visit(f"{portal.url}/admin/feature-pricing")
        page, row = watch.page, f'tr[data-key="{LONG_KEY}"]'
        before = page.locator(row).inner_text()
        page.locator(row).get_by_role("link", name=f"Edit {LONG_KEY}").click()
        editing = page.locator(f"{row}.editing")
        editing.get_by_label("Credits / unit").fill("77")
        editing.get_by_label("Credits / unit").press("Escape")  # cancels: the saved row returns
        page.wait_for_selector(f"{row}:not(.editing)")
        assert page.locator(row).inner_text() == before
        edit_link = page.locator(row).get_by_role("link", name=f"Edit {LONG_KEY}")
        page.wait_for_function(
            "(link) => document.activeElement === link", arg=edit_link.element_handle()
        )
        page.locator(row).get_by_role("link", name=f"Edit {LONG_KEY}").click()
        page.locator(f"{row}.editing").get_by_label("Credits / unit").fill("2.5")
        page.locator(f"{row}.editing").get_by_role("button", name="Save").click()
        page.wait_for_selector(f"{row}:not(.editing)")
        assert "2.5" in page.locator(row).inner_text()
        assert watch.check(max_width=None) == []


def test_hostile_key_name_is_asked_about_literally_and_dismissing_keeps_the_key(
    browser, portal, logins
):
    with watched_page(browser, DESKTOP, logins["owner"]) as watch:
        page = watch.page
        page.goto(f"{portal.url}/settings/api-keys")
        page.get_by_label("Key name").fill(HOSTILE_NAME)
        # Until the new page has loaded, app.js (deferred) is not listening yet and a click
        # would submit unasked, as every form does without JavaScript.
        with page.expect_navigation(wait_until="load"):
            page.get_by_role("button", name="Create key").click()
        row = page.locator("tbody tr", has_text=HOSTILE_NAME)
        dialogs = []

        def answer(dialog) -> None:
            dialogs.append((dialog.type, dialog.message))
            dialog.dismiss()

        page.on("dialog", answer)
        row.get_by_role("button", name="Revoke").click()
        page.wait_for_timeout(300)  # a dismissed confirm sends nothing: give a wrong submit time
        assert dialogs == [("confirm", f"Revoke {HOSTILE_NAME}? Apps using it will stop working.")]
        page.goto(f"{portal.url}/settings/api-keys")
        assert "active" in page.locator("tbody tr", has_text=HOSTILE_NAME).inner_text().lower()

        page.remove_listener("dialog", answer)
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("tbody tr", has_text=HOSTILE_NAME).get_by_role("button", name="Revoke").click()
        page.wait_for_load_state("networkidle")
        assert "revoked" in page.locator("tbody tr", has_text=HOSTILE_NAME).inner_text().lower()
        assert watch.check(max_width=None) == []


def _landing(name: str) -> Flask:
    app = Flask(name)
    app.add_url_rule("/landed", "landed", lambda: f"landed on {name}")
    app.add_url_rule("/favicon.ico", "favicon", lambda: ("", 204))
    return app


def test_form_action_governs_where_a_forms_303_may_go(browser):
    """Why real Stripe's hosts are in form-action: Chromium blocks a form POST whose 303
    leaves the listed origins (Stripe Checkout is reached exactly so: POST, then 303)."""
    with serve_in_thread(_landing("listed")) as listed, serve_in_thread(_landing("other")) as other:
        portal = _landing("portal")
        portal.config["PORTAL_BASE_URL"] = listed  # a listed origin, like Stripe's with real keys
        register_security_headers(portal)
        portal.add_url_rule(
            "/",
            "form",
            lambda: (
                f'<form method="post" action="/go?to={request.args["to"]}">'
                "<button>Go</button></form>"
            ),
        )
        portal.add_url_rule(
            "/go", "go", lambda: redirect(f"{request.args['to']}/landed", 303), methods=["POST"]
        )
        with serve_in_thread(portal) as origin, watched_page(browser, PHONE, None) as watch:
            watch.visit(f"{origin}/?to={listed}")
            watch.page.get_by_role("button", name="Go").click()
            watch.page.wait_for_url(f"{listed}/landed")
            assert watch.check() == []

            watch.visit(f"{origin}/?to={other}")
            watch.page.get_by_role("button", name="Go").click()
            watch.page.wait_for_timeout(500)
            assert watch.page.url.startswith(origin)
            assert any("form-action" in problem for problem in watch.check())
