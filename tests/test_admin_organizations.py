"""Admin organizations: the list and one organization's page (its grants and the grant form:
tests/test_admin_grants.py)."""

from __future__ import annotations

import re

import pytest

from portal.admin import queries
from portal.billing.catalogue import seed_catalogue
from tests.billing_helpers import event, make_buyer, new_id, post_event, subscription
from tests.web_helpers import Web


@pytest.fixture
def web(client) -> Web:
    return Web(client)


@pytest.fixture
def admin(web):
    return web.login_admin()


@pytest.fixture
def acme(make_org, make_price, api, web):
    """An organization with usage this month and two members."""
    make_price("gen", "2.5")
    org = make_org(balance=100, slug="acme")
    assert (
        api.post("/credits/deduct", org, json={"feature_key": "gen", "quantity": 2}).status_code
        == 201
    )
    web.user("ann@acme.example.com", organization_id=org.id, role="owner")
    web.user("bob@acme.example.com", organization_id=org.id, role="member")
    return org


@pytest.fixture
def globex(make_org, api, web):
    org = make_org(balance=40, slug="globex")
    assert api.post("/credits/deduct", org, json={"feature_key": "gen"}).status_code == 201
    web.user("gina@globex.example.com", organization_id=org.id, role="owner")
    return org


def text(response) -> str:
    return response.get_data(as_text=True)


def row_of(html: str, slug: str) -> str:
    match = re.search(
        rf"<tr>\s*<td[^>]*><a href=\"/admin/organizations/{slug}\">.*?</tr>", html, re.S
    )
    assert match, slug
    return match.group(0)


# --- list ------------------------------------------------------------------------------------


def test_list_shows_balance_available_usage_plan_members(client, admin, acme, globex):
    html = text(client.get("/admin/organizations"))
    acme_row = row_of(html, "acme")
    cells = re.findall(r'<td class="num[^"]*">(.*?)</td>', acme_row)
    assert cells == [
        '<span class="credits">95</span>',  # balance: 100 - 2 × 2.5
        '<span class="credits">95</span>',  # available
        '<span class="credits">5</span>',  # used this month
        "2",  # members
    ]
    assert "<td>—</td>" in acme_row  # plan: filled in by billing
    globex_row = row_of(html, "globex")
    assert '<span class="credits">37.5</span>' in globex_row and "1</td>" in globex_row


@pytest.mark.parametrize(
    ("status", "shown"),
    [("active", "Professional"), ("past_due", "Professional (past due)"), ("canceled", "—")],
)
def test_a_subscription_shows_as_the_plan(client, admin, acme, globex, status, shown):
    """Subscribed through a paid checkout's webhooks, as the billing page would show it."""
    seed_catalogue()
    buyer = make_buyer(globex.id)
    sub_id = new_id("sub")
    sub = subscription(buyer, sub_id, plan="plan_professional", status=status)
    kind = "deleted" if status == "canceled" else "created"
    assert post_event(client, event(f"customer.subscription.{kind}", sub)).status_code == 200
    html = text(client.get("/admin/organizations"))
    assert f"<td>{shown}</td>" in row_of(html, "globex")
    assert "<td>—</td>" in row_of(html, "acme")  # no subscription, no plan
    detail = text(client.get("/admin/organizations/globex"))
    assert f'<p class="stat-value" data-testid="plan">{shown}</p>' in detail


def test_list_reserved_credits_are_not_available(client, admin, acme, api):
    api.post("/credits/reservations", acme, json={"feature_key": "gen", "quantity": 4})
    cells = re.findall(
        r'<td class="num[^"]*">(.*?)</td>', row_of(text(client.get("/admin/organizations")), "acme")
    )
    assert cells[:2] == ['<span class="credits">95</span>', '<span class="credits">85</span>']


def test_list_search(client, admin, acme, globex):
    html = text(client.get("/admin/organizations?q=GLOB"))
    assert "/admin/organizations/globex" in html and "/admin/organizations/acme" not in html
    assert "No organizations match" in text(client.get("/admin/organizations?q=zzz"))


def test_list_empty_state(client, admin):
    assert "No organizations yet" in text(client.get("/admin/organizations"))


def test_list_pages(client, admin, make_org, monkeypatch):
    monkeypatch.setattr(queries, "ORGANIZATIONS_PAGE", 2)
    for slug in ("alpha", "bravo", "charlie"):
        make_org(slug=slug)
    first = text(client.get("/admin/organizations"))
    assert "Alpha" in first and "Bravo" in first and "Charlie" not in first
    assert 'href="/admin/organizations?page=2"' in first
    second = text(client.get("/admin/organizations?page=2"))
    assert "Charlie" in second and "Alpha" not in second and "← Previous" in second


# --- one organization ------------------------------------------------------------------------


def test_detail_shows_figures_ledger_members_and_form(client, admin, acme):
    html = text(client.get("/admin/organizations/acme"))
    assert re.search(r'data-testid="available"><span class="credits">95</span>', html)
    assert re.search(r'data-testid="used-this-month"><span class="credits">5</span>', html)
    ledger = html[html.index('data-testid="ledger-table"') :]
    assert "Opening balance" in ledger and "<code>gen</code>" in ledger
    assert "ann@acme.example.com" in html and "bob@acme.example.com" in html
    assert 'name="amount"' in html and 'name="reason"' in html and 'name="csrf_token"' in html
    assert re.search(r'name="request_id" type="hidden" value="[0-9a-f]{32}"', html)


def test_detail_never_shows_another_organizations_data(client, admin, acme, globex, api):
    api.post(
        "/credits/deduct", globex, json={"feature_key": "gen", "description": "globex secret job"}
    )
    html = text(client.get("/admin/organizations/acme"))
    assert "gina@globex.example.com" not in html and "globex secret job" not in html
    assert "Globex" not in html and '<span class="credits">37.5</span>' not in html
    other = text(client.get("/admin/organizations/globex"))
    assert "globex secret job" in other and "ann@acme.example.com" not in other


def test_unknown_organization_is_404(client, admin):
    assert client.get("/admin/organizations/nope").status_code == 404
