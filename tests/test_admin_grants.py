"""Manual grants by platform admins: the organization page's grant form (and its list of
grants), and ``POST /api/admin/organizations/<slug>/grants``. A positive amount is a grant with
its own expiry and priority; a negative one is an adjustment taken in burn order."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from portal.credits import service
from portal.timeutil import utcnow
from tests.conftest import assert_error, balance_row, credits, ledger_rows, newest_grant
from tests.web_helpers import Web, csrf_token


@pytest.fixture
def web(client) -> Web:
    return Web(client)


@pytest.fixture
def admin(web):
    return web.login_admin()


@pytest.fixture
def acme(make_org, make_price, api, web):
    """95 credits left of an opening 100, and an owner."""
    make_price("gen", "2.5")
    org = make_org(balance=100, slug="acme")
    assert api.post("/credits/deduct", org, json={"feature_key": "gen", "quantity": 2}).status_code
    web.user("ann@acme.example.com", organization_id=org.id, role="owner")
    return org


@pytest.fixture
def globex(make_org):
    return make_org(balance=40, slug="globex")


def text(response) -> str:
    return response.get_data(as_text=True)


def give(client, slug: str, amount: str, reason: str = "Goodwill credit", **extra):
    return client.post(
        f"/admin/organizations/{slug}/grants", data={"amount": amount, "reason": reason, **extra}
    )


def manual_rows(organization_id: int):
    """Ledger rows an admin made: grants and adjustments, but not the opening balance."""
    return [
        row
        for row in ledger_rows(organization_id)
        if row.kind in ("grant", "adjustment") and row.created_by_user_id is not None
    ]


def field_error(html: str, field: str) -> str | None:
    match = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', html)
    return match.group(1) if match else None


# --- the page --------------------------------------------------------------------------------


def test_the_page_lists_grants_and_offers_expiry_and_priority(client, admin, acme):
    service.grant(
        acme.id,
        credits(3),
        "signup_bonus",
        description="Sign-up bonus",
        terms=service.GrantTerms(expires_at=utcnow() + timedelta(days=4)),
    )
    html = text(client.get("/admin/organizations/acme"))
    table = html[html.index('data-testid="grants-table"') :]
    assert "Sign-up bonus" in table and "Opening balance" in table
    assert re.search(r'data-testid="next-expiry">3 credits expire on', html)
    form = html[html.index('data-testid="grant-form"') :]
    for name in ("amount", "reason", "expires_in_days", "expires_at", "priority"):
        assert f'name="{name}"' in form, name
    assert re.search(r'name="request_id" type="hidden" value="[0-9a-f]{32}"', form)


def test_a_positive_amount_is_a_grant_that_never_expires(client, admin, acme, globex):
    response = give(client, "acme", "12.345678", "Outage compensation")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/organizations/acme")
    page = text(client.get(response.headers["Location"]))
    assert "Granted 12.345678 credits to Acme." in page
    [row] = manual_rows(acme.id)
    assert (row.kind, row.amount, row.description) == (
        "grant",
        credits("12.345678"),
        "Outage compensation",
    )
    assert row.created_by_user_id == admin.id and row.balance_after == credits("107.345678")
    made = newest_grant(acme.id)
    assert (made.expires_at, made.priority, made.source_type) == (None, 10, "admin")
    assert balance_row(globex.id) == (credits(40), 0) and manual_rows(globex.id) == []


def test_a_grant_with_days_and_priority(client, admin, acme):
    before = utcnow()
    assert give(client, "acme", "5", expires_in_days="30", priority="3").status_code == 302
    made = newest_grant(acme.id)
    assert made.priority == 3
    assert before + timedelta(days=30) <= made.expires_at <= utcnow() + timedelta(days=30)


def test_a_grant_expiring_at_a_moment(client, admin, acme):
    moment = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    assert give(client, "acme", "5", expires_at=moment.isoformat() + "Z").status_code == 302
    assert newest_grant(acme.id).expires_at == moment


def test_a_negative_amount_is_an_adjustment_in_burn_order(client, admin, acme):
    service.grant(
        acme.id, credits(5), "grant", description="first", terms=service.GrantTerms(priority=0)
    )
    response = give(client, "acme", "-7", "Duplicate charge")
    assert response.status_code == 302
    assert "Took 7 credits from Acme" in text(client.get(response.headers["Location"]))
    row = manual_rows(acme.id)[-1]
    assert (row.kind, row.amount, row.grant_id) == ("adjustment", -credits(7), None)
    assert newest_grant(acme.id).remaining == 0  # priority 0 burned first, then the opening
    assert balance_row(acme.id) == (credits(93), 0)


def test_a_negative_amount_beyond_available_is_refused(client, admin, acme, api):
    api.post("/credits/reservations", acme, json={"feature_key": "gen", "quantity": 4})  # holds 10
    response = give(client, "acme", "-90", "Clawback")
    html = text(response)
    assert response.status_code == 422
    assert field_error(html, "amount") == "This needs 90 credits; 85 are available."
    assert 'value="-90"' in html and 'value="Clawback"' in html  # the form keeps the input
    assert manual_rows(acme.id) == [] and balance_row(acme.id) == (credits(95), credits(10))


LATER = (utcnow() + timedelta(days=3)).date().isoformat()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"amount": ""}, "amount", "Enter an amount"),
        ({"amount": "0"}, "amount", "The amount must be greater than zero."),
        ({"amount": "1.0000001"}, "amount", "Use at most 6 decimal places"),
        ({"amount": "lots"}, "amount", "Type an amount like 1234.5 or 1,234.5"),
        ({"amount": "1000000001"}, "amount", "Must be at most 1,000,000,000 credits"),
        ({"reason": ""}, "reason", "Say why"),
        ({"reason": "    "}, "reason", "Say why"),
        ({"reason": "r" * 501}, "reason", "Field cannot be longer than 500 characters."),
        ({"expires_in_days": "soon"}, "expires_in_days", "Not a valid integer value."),
        ({"expires_in_days": "0"}, "expires_in_days", "Must be between 1 and 3650"),
        ({"expires_in_days": "3651"}, "expires_in_days", "Must be between 1 and 3650"),
        ({"expires_at": "2020-01-01"}, "expires_at", "Must be in the future"),
        ({"expires_at": "next week"}, "expires_at", "Must be a date (YYYY-MM-DD)"),
        ({"expires_at": "2999-01-01"}, "expires_at", "Must be within ten years"),
        (
            {"expires_in_days": "5", "expires_at": LATER},
            "expires_at",
            "Give expires_in_days or expires_at, not both",
        ),
        ({"priority": "-1"}, "priority", "Must be between 0 and 1000"),
        ({"priority": "1001"}, "priority", "Must be between 0 and 1000"),
        (
            {"amount": "-5", "expires_in_days": "5"},
            "expires_in_days",
            "Applies only to credits added",
        ),
        ({"amount": "-5", "priority": "1"}, "priority", "Applies only to credits added"),
    ],
)
def test_grant_form_errors_name_their_field(client, admin, acme, data, field, message):
    response = give(client, "acme", **{"amount": "5", "reason": "Goodwill", **data})
    assert response.status_code == 422
    error = field_error(text(response), field)
    assert error and message in error, error
    assert manual_rows(acme.id) == [] and balance_row(acme.id) == (credits(95), 0)


def test_a_resubmitted_grant_applies_once(client, admin, acme):
    request_id = uuid.uuid4().hex
    assert give(client, "acme", "10", request_id=request_id).status_code == 302
    again = give(client, "acme", "10", request_id=request_id)
    assert again.status_code == 302
    assert "already applied" in text(client.get(again.headers["Location"]))
    assert len(manual_rows(acme.id)) == 1 and balance_row(acme.id) == (credits(105), 0)
    assert give(client, "acme", "10", request_id="not-an-id").status_code == 422


def test_the_grant_shows_on_the_organizations_own_pages(client, web, admin, acme):
    give(client, "acme", "4", "Conference voucher", expires_in_days="10")
    give(client, "acme", "-2.5", "Duplicate charge correction")
    web.logout()
    web.login("ann@acme.example.com")
    transactions = text(client.get("/transactions"))
    assert "Duplicate charge correction" in transactions and "badge-adjustment" in transactions
    assert "Conference voucher" in text(client.get("/credits"))


def test_unknown_organization_is_404(client, admin):
    assert give(client, "nope", "5").status_code == 404


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_non_admins_cannot_grant(client, web, acme, who):
    if who == "member":
        web.login("ann@acme.example.com")  # an owner of acme, but not a platform admin
    response = give(client, "acme", "1000")
    if who == "member":
        assert response.status_code == 403
    else:
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert api_grant(client, "acme", {"amount": 5, "reason": "x"}).status_code in (401, 403)
    assert manual_rows(acme.id) == [] and balance_row(acme.id) == (credits(95), 0)


@pytest.mark.csrf
def test_a_grant_without_csrf_token_is_refused(client, web, acme):
    web.login_admin()
    assert give(client, "acme", "50").status_code == 400
    assert manual_rows(acme.id) == []
    token = csrf_token(text(client.get("/admin/organizations/acme")))
    assert give(client, "acme", "50", csrf_token=token).status_code == 302
    assert len(manual_rows(acme.id)) == 1


# --- the JSON API ----------------------------------------------------------------------------


def api_grant(client, slug: str, body, **kwargs):
    return client.post(
        f"/api/admin/organizations/{slug}/grants",
        data=client.application.json.dumps(body),
        content_type=kwargs.pop("content_type", "application/json"),
        **kwargs,
    )


def test_api_grant_answers_201_with_the_grant(client, admin, acme):
    moment = (utcnow() + timedelta(days=7)).replace(microsecond=0)
    body = {
        "amount": Decimal("2.5"),
        "reason": "Beta tester",
        "expires_at": moment.isoformat() + "Z",
        "priority": 5,
    }
    response = api_grant(client, "acme", body)
    assert response.status_code == 201, response.json
    made = newest_grant(acme.id)
    assert response.json == {
        "id": made.id,
        "kind": "grant",
        "amount": 2.5,
        "remaining": 2.5,
        "priority": 5,
        "expires_at": moment.isoformat() + ".000000Z",
        "description": "Beta tester",
        "created_at": response.json["created_at"],
        "source_type": "admin",
    }
    assert manual_rows(acme.id)[-1].created_by_user_id == admin.id


def test_api_grant_in_days_and_by_default_forever(client, admin, acme):
    days = api_grant(client, "acme", {"amount": 1, "reason": "Trial", "expires_in_days": 14})
    forever = api_grant(client, "acme", {"amount": 1, "reason": "Gift"})
    assert days.status_code == forever.status_code == 201
    assert days.json["expires_at"].endswith("Z") and forever.json["expires_at"] is None
    assert forever.json["priority"] == 10


def test_api_negative_amount_answers_with_the_adjustment_row(client, admin, acme):
    response = api_grant(client, "acme", {"amount": -5, "reason": "Correction"})
    assert response.status_code == 201
    assert (response.json["kind"], response.json["amount"]) == ("adjustment", -5)
    assert response.json["balance_after"] == 90 and balance_row(acme.id) == (credits(90), 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x"}, "amount"),
        ({"amount": 0, "reason": "x"}, "amount"),
        ({"amount": "5", "reason": "x"}, "amount"),
        ({"amount": Decimal("0.0000001"), "reason": "x"}, "amount"),
        ({"amount": 10**12, "reason": "x"}, "amount"),
        ({"amount": -(10**12), "reason": "x"}, "amount"),
        ({"amount": Decimal("1e400"), "reason": "x"}, "amount"),
        ({"amount": 5}, "reason"),
        ({"amount": 5, "reason": "  "}, "reason"),
        ({"amount": 5, "reason": "x", "expires_in_days": 0}, "expires_in_days"),
        ({"amount": 5, "reason": "x", "expires_in_days": 1.5}, "expires_in_days"),
        ({"amount": 5, "reason": "x", "expires_at": "yesterday"}, "expires_at"),
        ({"amount": 5, "reason": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"amount": 5, "reason": "x", "expires_in_days": 2, "expires_at": LATER}, "expires_at"),
        ({"amount": 5, "reason": "x", "priority": 1001}, "priority"),
        ({"amount": 5, "reason": "x", "priority": -1}, "priority"),
        ({"amount": -5, "reason": "x", "priority": 3}, "priority"),
        ({"amount": -5, "reason": "x", "expires_in_days": 3}, "expires_in_days"),
        ({"amount": 5, "reason": "x", "kind": "purchase"}, "kind"),
    ],
)
def test_api_grant_errors_name_their_field(client, admin, acme, body, field):
    assert_error(api_grant(client, "acme", body), 422, "invalid_request", field=field)
    assert manual_rows(acme.id) == []


def test_api_grant_other_errors(client, admin, acme):
    assert_error(api_grant(client, "nope", {"amount": 1, "reason": "x"}), 404, "not_found")
    short = api_grant(client, "acme", {"amount": -500, "reason": "x"})
    assert_error(short, 402, "insufficient_credits", required=500, available=95)
    form = api_grant(client, "acme", {"amount": 1, "reason": "x"}, content_type="text/plain")
    assert_error(form, 415, "unsupported_media_type")
    assert manual_rows(acme.id) == []
