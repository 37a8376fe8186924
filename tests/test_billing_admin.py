"""/admin/billing: platform admins edit plans and packages; nothing sold is ever deleted."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.billing.catalogue import seed_catalogue
from portal.billing.models import Package, Plan
from portal.extensions import db
from tests.conftest import credits

ADMIN, OWNER = "root@shop.example", "owner@shop.example"
VALID = {
    "lookup_key": "package_team",
    "name": "Team",
    "price": "59.90",
    "credits": "800",
    "description": "For a team's month.",
    "sort_order": "5",
    "active": "y",
}


@pytest.fixture
def admin(app, client, auth, make_user, make_org):
    seed_catalogue()
    org = make_org(balance=0, slug="shop")
    make_user(OWNER, org=org, role="owner")
    make_user(ADMIN, admin=True)
    auth.login(ADMIN)
    return client


def switch_user(auth, email: str) -> None:
    """Log in as someone else."""
    auth.logout()
    auth.login(email)


def find(model, key):
    db.session.expire_all()
    item = db.session.scalar(select(model).where(model.lookup_key == key))
    if item is not None:
        db.session.expunge(item)
    db.session.rollback()
    return item


def test_the_catalogue_lists_every_plan_and_package(admin):
    html = admin.get("/admin/billing").get_data(as_text=True)
    for key in ("plan_starter", "plan_enterprise", "package_small", "package_jumbo"):
        assert key in html
    assert "$299.00" in html and "$349.90" in html


def test_only_platform_admins_get_in(client, auth, admin):
    switch_user(auth, OWNER)
    response = client.get("/admin/billing")
    assert response.status_code == 403  # signed in, not an admin: a 403 page, not a login form
    assert client.post("/admin/billing/packages/new", data=VALID).status_code == 403
    assert find(Package, "package_team") is None


def test_a_new_package_goes_on_sale(client, auth, admin):
    response = admin.post("/admin/billing/packages/new", data=VALID)
    assert response.status_code == 302, response.get_data(as_text=True)
    package = find(Package, "package_team")
    assert (package.price_cents, package.credits, package.sort_order) == (5990, credits(800), 5)
    assert package.for_sale and package.stripe_price_id is None
    switch_user(auth, OWNER)
    page = client.get("/billing")
    assert page.status_code == 200
    assert "Team" in page.get_data(as_text=True) and "$59.90" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "Enter a name."),
        ({"price": ""}, "Enter a price, like 9.90."),
        ({"price": "9.999"}, "at most 2 decimal places"),
        ({"price": "0.10"}, "at least $0.50"),
        ({"price": "ten"}, "Type an amount like 1234.50 or 1,234.50"),
        ({"credits": "0"}, "greater than zero"),
        ({"credits": "-5"}, "must not be negative"),
        ({"credits": "1.1234567"}, "at most 6 decimal places"),
        ({"lookup_key": "Team Pack"}, "lowercase words joined by _"),
        ({"lookup_key": "plan_team"}, "starts with “package_”"),
        ({"lookup_key": "package_small"}, "in use already"),
        ({"sort_order": "-1"}, "Number must be between"),
    ],
)
def test_invalid_input_is_shown_next_to_its_field(admin, changes, message):
    response = admin.post("/admin/billing/packages/new", data={**VALID, **changes})
    assert response.status_code in (409, 422)
    assert message in response.get_data(as_text=True)
    assert find(Package, "package_team") is None


def test_editing_a_price_forgets_the_stripe_price_so_a_new_one_is_made(admin):
    plan = find(Plan, "plan_starter")
    db.session.get(Plan, plan.id).stripe_price_id = "price_old"
    db.session.commit()
    form = admin.get(f"/admin/billing/plans/{plan.id}").get_data(as_text=True)
    assert 'value="29.00"' in form and 'value="500"' in form
    edit = {**VALID, "name": "Starter+", "price": "35", "credits": "600"}
    del edit["lookup_key"]  # fixed once created
    response = admin.post(f"/admin/billing/plans/{plan.id}", data=edit)
    assert response.status_code == 302
    changed = find(Plan, "plan_starter")
    assert (changed.name, changed.price_cents, changed.credits) == ("Starter+", 3500, credits(600))
    assert changed.stripe_price_id is None


def test_editing_only_the_name_keeps_the_stripe_price(admin):
    package = find(Package, "package_small")
    db.session.get(Package, package.id).stripe_price_id = "price_kept"
    db.session.commit()
    edit = {"name": "Tiny", "price": "9.90", "credits": "100", "active": "y"}
    assert admin.post(f"/admin/billing/packages/{package.id}", data=edit).status_code == 302
    assert find(Package, "package_small").stripe_price_id == "price_kept"


def test_an_edit_with_errors_keeps_what_was_typed(admin):
    package = find(Package, "package_medium")
    response = admin.post(
        f"/admin/billing/packages/{package.id}", data={"name": "Medium!", "price": "x"}
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'value="Medium!"' in html and "Enter the number of credits." in html
    assert find(Package, "package_medium").name == "Medium"


def test_archiving_takes_an_item_off_sale_and_restoring_brings_it_back(client, auth, admin):
    package = find(Package, "package_jumbo")
    assert admin.post(f"/admin/billing/packages/{package.id}/archive").status_code == 302
    archived = find(Package, "package_jumbo")
    assert archived.archived_at is not None and not archived.for_sale
    assert "archived" in admin.get("/admin/billing").get_data(as_text=True)
    switch_user(auth, OWNER)
    page = client.get("/billing")
    assert page.status_code == 200
    assert "Jumbo" not in page.get_data(as_text=True)
    refused = client.post("/billing/checkout", data={"package": "package_jumbo"})
    assert refused.status_code == 404
    switch_user(auth, ADMIN)
    assert admin.post(f"/admin/billing/packages/{package.id}/restore").status_code == 302
    assert find(Package, "package_jumbo").for_sale


def test_unknown_kinds_and_items_are_not_found(admin):
    assert admin.get("/admin/billing/widgets/new").status_code == 404
    assert admin.get("/admin/billing/plans/9999").status_code == 404
