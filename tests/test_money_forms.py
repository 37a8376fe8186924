"""Every web form and command that takes money refuses ``9,90``, ``2,5``, ``1_000`` and ``1e3``.

One parser (``portal.money.parse_typed``) reads every amount a person types. Each form here
re-renders with the parser's error next to the field and saves nothing; each command fails
and writes nothing. The amounts a person means (``9.90``, ``1,234.5``) still work.
"""

from __future__ import annotations

import html as html_lib
import re

import pytest
from sqlalchemy import select

from portal.billing.catalogue import seed_catalogue
from portal.billing.models import Package, Plan
from portal.credits import organizations
from portal.credits.models import Department, FeaturePrice, PriceChange
from portal.extensions import db
from tests.conftest import balance_row, credits, ledger_rows
from tests.web_helpers import Web

HTMX = {"HX-Request": "true"}
AMBIGUOUS = ["9,90", "2,5", "1,23,4", "1_000", "1e3", "+5", "5\x00"]
WHAT_TO_TYPE = "Type an amount like 1234.5 or 1,234.5"


def field_error(response, field_id: str) -> str:
    found = re.search(
        rf'<p class="error" id="{re.escape(field_id)}-error">([^<]*)</p>',
        response.get_data(as_text=True),
    )
    assert found, f"no error for {field_id}"
    return html_lib.unescape(found.group(1))


def fresh(model, **where):
    db.session.expire_all()
    row = db.session.scalar(select(model).filter_by(**where))
    db.session.rollback()
    return row


@pytest.fixture
def web(client) -> Web:
    return Web(client)


# --- admin: feature prices -------------------------------------------------------------------

FEATURE = {"feature_key": "ocr_page", "name": "OCR", "category": "Docs", "unit": "page"}


@pytest.mark.parametrize("typed", AMBIGUOUS)
def test_a_new_feature_price_refuses_an_ambiguous_amount(client, web, typed):
    web.login_admin()
    response = client.post("/admin/feature-pricing", data={**FEATURE, "credits": typed})
    assert response.status_code == 422
    assert WHAT_TO_TYPE in field_error(response, "credits")
    assert fresh(FeaturePrice, feature_key="ocr_page") is None


def test_a_new_feature_price_takes_a_grouped_amount(client, web):
    web.login_admin()
    response = client.post("/admin/feature-pricing", data={**FEATURE, "credits": "1,234.5"})
    assert response.status_code == 302
    assert fresh(FeaturePrice, feature_key="ocr_page").credits_per_unit == credits("1234.5")


@pytest.mark.parametrize("headers", [HTMX, {}], ids=["inline", "page"])
@pytest.mark.parametrize("typed", ["9,90", "2,5"])
def test_editing_a_feature_price_refuses_an_ambiguous_amount(
    client, web, make_price, headers, typed
):
    price = make_price("seedream_text_to_image", 5)
    web.login_admin()
    data = {"name": "X", "category": "C", "unit": "call", "credits": typed}
    response = client.post(f"/admin/feature-pricing/{price.id}", data=data, headers=headers)
    assert response.status_code == 422
    field_id = f"edit-{price.id}-credits" if headers else "credits"
    assert WHAT_TO_TYPE in field_error(response, field_id)
    assert fresh(FeaturePrice, id=price.id).credits_per_unit == credits(5)
    assert [c.action for c in db.session.scalars(select(PriceChange))] == ["created"]


# --- admin: manual grants and adjustments ----------------------------------------------------


@pytest.mark.parametrize("typed", ["2,5", "-2,5", "9,90", "1_000", "1e3"])
def test_a_credit_adjustment_refuses_an_ambiguous_amount(client, web, make_org, typed):
    org = make_org(balance=100, slug="acme")
    web.login_admin()
    response = client.post(
        "/admin/organizations/acme/grants", data={"amount": typed, "reason": "Goodwill"}
    )
    assert response.status_code == 422
    assert WHAT_TO_TYPE in field_error(response, "amount")
    assert balance_row(org.id) == (credits(100), 0)
    assert [row.kind for row in ledger_rows(org.id)] == ["grant"]


def test_a_credit_adjustment_takes_grouped_and_negative_amounts(client, web, make_org):
    org = make_org(balance=2_000, slug="acme")
    web.login_admin()
    for typed in ("1,234.5", "-1,000"):
        response = client.post(
            "/admin/organizations/acme/grants", data={"amount": typed, "reason": "Fix"}
        )
        assert response.status_code == 302
    assert balance_row(org.id) == (credits("2234.5"), 0)


# --- settings: department limits -------------------------------------------------------------


@pytest.fixture
def owner(make_org, web):
    org = make_org(slug="acme")
    web.login_member(org.id)  # an owner of the organization
    return org


@pytest.mark.parametrize("typed", ["2,5", "9,90", "1_000", "1e3"])
def test_a_new_department_refuses_an_ambiguous_limit(client, owner, typed):
    response = client.post("/settings/departments", data={"name": "Ops", "monthly_limit": typed})
    assert response.status_code == 422
    assert WHAT_TO_TYPE in field_error(response, "monthly_limit")
    assert fresh(Department, name="Ops") is None


@pytest.mark.parametrize("typed", ["2,5", "9,90"])
def test_a_department_limit_refuses_an_ambiguous_amount(client, owner, typed):
    client.post("/settings/departments", data={"name": "Ops", "monthly_limit": "1,500"})
    department = fresh(Department, name="Ops")
    assert department.monthly_limit == credits(1500)
    response = client.post(
        f"/settings/departments/{department.id}/limit", data={"monthly_limit": typed}
    )
    assert response.status_code == 422
    assert WHAT_TO_TYPE in html_lib.unescape(response.get_data(as_text=True))
    assert fresh(Department, name="Ops").monthly_limit == credits(1500)


# --- admin: plans and packages ---------------------------------------------------------------

PACKAGE = {"lookup_key": "package_team", "name": "Team", "price": "59.90", "credits": "800"}


@pytest.fixture
def catalogue_admin(app, client, web):
    seed_catalogue()
    web.login_admin()
    return client


@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        ("price", "9,90", "Type an amount like 1234.50 or 1,234.50"),  # was $990.00, live
        ("price", "59,9", "Type an amount like 1234.50 or 1,234.50"),
        ("price", "1e3", "Type an amount like 1234.50 or 1,234.50"),
        ("price", "1_000", "Type an amount like 1234.50 or 1,234.50"),
        ("price", "9.999", "at most 2 decimal places"),
        ("credits", "2,5", WHAT_TO_TYPE),  # was 25 credits
        ("credits", "1_000", WHAT_TO_TYPE),
        ("credits", "1e3", WHAT_TO_TYPE),
    ],
)
def test_a_new_package_refuses_an_ambiguous_amount(catalogue_admin, field, typed, message):
    response = catalogue_admin.post("/admin/billing/packages/new", data={**PACKAGE, field: typed})
    assert response.status_code == 422
    assert message in field_error(response, field)
    assert fresh(Package, lookup_key="package_team") is None


def test_a_package_price_is_typed_in_dollars_and_stored_in_cents(catalogue_admin):
    data = {**PACKAGE, "price": "1,499.90", "credits": "12,000"}
    assert catalogue_admin.post("/admin/billing/packages/new", data=data).status_code == 302
    package = fresh(Package, lookup_key="package_team")
    assert (package.price_cents, package.credits) == (149_990, credits(12_000))


@pytest.mark.parametrize(("field", "typed"), [("price", "9,90"), ("credits", "2,5")])
def test_editing_a_plan_refuses_an_ambiguous_amount(catalogue_admin, field, typed):
    plan = fresh(Plan, lookup_key="plan_starter")
    data = {"name": "Starter", "price": "29", "credits": "500", "active": "y", field: typed}
    response = catalogue_admin.post(f"/admin/billing/plans/{plan.id}", data=data)
    assert response.status_code == 422
    assert "Type an amount like" in field_error(response, field)
    after = fresh(Plan, lookup_key="plan_starter")
    assert (after.price_cents, after.credits) == (2900, credits(500))


# --- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["2,5", "-2,5", "1_000", "1e3", "9,90"])
def test_credits_grant_refuses_an_ambiguous_amount(runner, make_org, typed):
    org = make_org(balance=10, slug="acme")
    result = runner.invoke(args=["credits", "grant", "acme", typed, "--reason", "x"])
    assert result.exit_code != 0
    assert WHAT_TO_TYPE in result.output
    assert balance_row(org.id) == (credits(10), 0)


def test_credits_grant_takes_a_grouped_amount(runner, make_org):
    org = make_org(balance=10, slug="acme")
    result = runner.invoke(args=["credits", "grant", "acme", "1,234.5", "--reason", "x"])
    assert result.exit_code == 0, result.output
    assert balance_row(org.id) == (credits("1244.5"), 0)


@pytest.mark.parametrize("typed", ["9,90", "1e3"])
def test_pricing_set_refuses_an_ambiguous_amount(runner, typed):
    result = runner.invoke(args=["pricing", "set", "ocr_page", "--credits", typed])
    assert result.exit_code != 0 and WHAT_TO_TYPE in result.output
    assert fresh(FeaturePrice, feature_key="ocr_page") is None


@pytest.mark.parametrize("typed", ["1_000", "2,5"])
def test_org_create_refuses_an_ambiguous_opening_balance(runner, typed):
    result = runner.invoke(args=["org", "create", "acme", "--credits", typed])
    assert result.exit_code != 0 and WHAT_TO_TYPE in result.output
    with pytest.raises(Exception, match="acme"):
        organizations.get_by_slug("acme")
