"""The member's credits: /credits (grants, paged, active / expired / all), the dashboard's
expiry, owed and on-hold lines, and the transactions page's kind filter and labels."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from portal.credits import service
from portal.timeutil import utcnow
from tests.conftest import credits


@pytest.fixture
def member_org(make_org, make_user, make_price, auth):
    make_price("gen", 1)
    org = make_org(balance=20, slug="acme")
    make_user("member@example.com", org=org, role="member")
    auth.login("member@example.com")
    return org


def grant(org, amount, *, kind="grant", days=None, description=None, source_ref=None):
    expires_at = None if days is None else utcnow() + timedelta(days=days)
    return service.grant(
        org.id,
        credits(amount),
        kind,
        description=description or f"{kind} {amount}",
        source_ref=source_ref,
        terms=service.GrantTerms(expires_at=expires_at),
    )


def html(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def rows(page: str) -> list[str]:
    table = page.split('data-testid="grants-table"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr data-grant=.*?</tr>", table, re.S)


def test_credits_page_lists_active_grants_with_source_remaining_and_expiry(client, member_org):
    soon = utcnow() + timedelta(days=5)
    grant(member_org, "7.5", kind="purchase", days=5, description="Pack of 7.5")
    page = html(client, "/credits")
    listed = rows(page)
    assert len(listed) == 2
    assert "Credit purchase" in listed[0] and "Pack of 7.5" in listed[0]
    assert soon.strftime("%Y-%m-%d") in listed[0] and "badge-grant-active" in listed[0]
    assert "Never" in listed[1] and "Granted by the portal team" in listed[1]
    assert re.search(r'data-testid="next-expiry">7\.5 credits expire on', page)
    assert 'aria-current="page">Credits</a>' in page  # in the nav, marked as here


def test_expired_and_used_grants_leave_the_active_list(client, member_org):
    grant(member_org, 3, days=-1, description="Trial credits")
    service.deduct(member_org.organization, service.Spend("gen", credits(20)))
    active = html(client, "/credits")
    assert "No credits left" in active and 'data-testid="grants-table"' not in active
    expired = rows(html(client, "/credits?status=expired"))
    assert len(expired) == 1 and "Trial credits" in expired[0]
    assert "badge-grant-expired" in expired[0] and "3 expired" in expired[0]
    every = rows(html(client, "/credits?status=all"))
    assert len(every) == 2 and "badge-grant-used_up" in every[1]


def test_an_unknown_status_shows_the_active_grants(client, member_org):
    page = html(client, "/credits?status=bogus")
    assert len(rows(page)) == 1 and 'href="/credits?status=active" aria-current="true"' in page


def test_credits_page_pages_through_grants(client, member_org, monkeypatch):
    monkeypatch.setattr("portal.dashboard.views.PAGE_SIZE", 2)
    for n in range(1, 5):
        grant(member_org, n, description=f"bonus #{n}")
    first = html(client, "/credits")
    older = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = html(client, older)
    third_url = re.search(r'href="([^"]+)" rel="next"', second).group(1).replace("&amp;", "&")
    third = html(client, third_url)
    seen = [re.search(r"bonus #\d|grant 20", row) for row in rows(first) + rows(second)]
    assert [match.group(0) for match in seen if match] == [f"bonus #{n}" for n in (4, 3, 2, 1)]
    assert len(rows(third)) == 1 and 'rel="next"' not in third and "← Newest" in third
    assert "status=active" in older


def test_on_hold_and_owed_are_shown_plainly(client, member_org):
    grant(member_org, 10, kind="purchase", source_ref="checkout:cs_page")
    service.freeze(member_org.id, "checkout:cs_page", source_ref="dp_page", description="Dispute")
    page = html(client, "/credits")
    assert re.search(r'data-testid="on-hold"><span class="credits">10</span>', page)
    dashboard = html(client, "/dashboard")
    assert "On hold: disputed, 10 credits" in dashboard
    # Nothing of it is spendable: listed under all grants, not the active ones.
    assert len(rows(page)) == 1
    held = rows(html(client, "/credits?status=all"))[0]
    assert "10 on hold: disputed" in held and "badge-grant-on_hold" in held


@pytest.mark.allow_negative_balance
def test_debt_shows_as_owed(client, member_org):
    grant(member_org, 10, kind="purchase", source_ref="checkout:cs_owed")
    service.deduct(member_org.organization, service.Spend("gen", credits(30)))
    service.clawback(
        member_org.id, "checkout:cs_owed", credits(10), source_ref="re_owed", description="Refund"
    )
    for path in ("/credits", "/dashboard"):
        page = html(client, path)
        assert re.search(r'data-testid="owed">Owed: 10 credits, paid from the next credits', page)


def test_dashboard_without_expiring_credits_has_no_expiry_line(client, member_org):
    page = html(client, "/dashboard")
    assert 'data-testid="next-expiry"' not in page and 'data-testid="owed"' not in page
    assert 'href="/credits"' in page
    assert "None of your credits expire." in html(client, "/credits")


def test_transactions_filter_by_kind_with_labels_for_lifecycle_rows(client, member_org):
    grant(member_org, 2, days=-1, description="Lapsed bonus")
    grant(member_org, 5, kind="purchase", source_ref="checkout:cs_tx")
    service.freeze(member_org.id, "checkout:cs_tx", source_ref="dp_tx", description="Disputed")
    service.unfreeze(member_org.id, "checkout:cs_tx", source_ref="dp_tx", description="Won")
    service.get_balance(member_org.organization)  # the sweep writes the expire row
    page = html(client, "/transactions")
    for kind, label in (("expire", "expired"), ("freeze", "on hold: disputed")):
        assert f'<span class="badge badge-{kind}">{label}</span>' in page
    assert '<span class="badge badge-unfreeze">hold released</span>' in page
    assert '<option value="clawback">Clawed back</option>' in page
    only = html(client, "/transactions?kind=expire")
    body = only.split("<tbody>")[1]
    assert body.count("<tr>") == 1 and "badge-expire" in body
    assert '<option value="expire" selected>' in only
    assert "No transactions of this type" in html(client, "/transactions?kind=clawback")
    assert len(html(client, "/transactions?kind=nonsense").split("<tbody>")[1].split("<tr>")) > 4


def test_transactions_pager_keeps_the_kind(client, member_org, monkeypatch):
    monkeypatch.setattr("portal.dashboard.views.PAGE_SIZE", 1)
    for n in range(3):
        grant(member_org, n + 1)
    page = html(client, "/transactions?kind=grant")
    older = re.search(r'href="([^"]+)" rel="next"', page).group(1)
    assert "kind=grant" in older


def test_credits_page_needs_login(client):
    response = client.get("/credits")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
