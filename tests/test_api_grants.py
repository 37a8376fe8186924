"""GET /api/v1/credits/grants, the balance's expiry, holds and debt, refunds' returned_to, and
the transactions listing's kind filter (expiries, claw-backs and freezes included)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from portal.credits import service
from portal.money import micros_to_decimal
from portal.timeutil import isoformat_z, utcnow
from tests.conftest import assert_error, credits

GRANT_FIELDS = ["id", "kind", "amount", "remaining", "priority", "expires_at", "description"]


def grant(org, amount, *, kind="grant", days=None, priority=None, source_ref=None, **extra):
    """A grant of ``amount`` credits expiring in ``days`` (negative: already expired)."""
    expires_at = None if days is None else utcnow() + timedelta(days=days)
    return service.grant(
        org.id,
        credits(amount),
        kind,
        description=extra.pop("description", f"{kind} of {amount}"),
        source_ref=source_ref,
        terms=service.GrantTerms(expires_at=expires_at, priority=priority),
    ).grant_id


def grants(api, org, **query):
    response = api.get("/credits/grants", org, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture
def org(make_org, make_price):
    make_price("gen", 1)
    return make_org(balance=10)  # an opening grant of 10 that never expires


def test_active_grants_newest_first_with_every_field(api, org):
    soon = grant(org, 5, days=3, priority=5, description="Launch week")
    page = grants(api, org)
    assert page["next_cursor"] is None
    assert [row["id"] for row in page["data"]] == [soon, soon - 1]
    first = page["data"][0]
    assert list(first) == [*GRANT_FIELDS, "created_at"]
    assert first["kind"] == "grant" and first["amount"] == 5 and first["remaining"] == 5
    assert (first["priority"], first["description"]) == (5, "Launch week")
    assert first["expires_at"].endswith("Z") and first["created_at"].endswith("Z")
    opening = page["data"][1]
    assert (opening["amount"], opening["expires_at"], opening["priority"]) == (10, None, 10)


def test_statuses_split_active_expired_and_spent_grants(api, org):
    gone = grant(org, 3, days=-1)  # expired before anyone spent it
    used = grant(org, 2, priority=0)  # burns first, then is used up
    assert (
        api.post("/credits/deduct", org, json={"feature_key": "gen", "quantity": 2}).status_code
        == 201
    )
    active = [row["id"] for row in grants(api, org)["data"]]
    expired = grants(api, org, status="expired")["data"]
    every = [row["id"] for row in grants(api, org, status="all")["data"]]
    assert active == [gone - 1]  # the opening grant; the used one has nothing left
    assert [(row["id"], row["remaining"]) for row in expired] == [(gone, 0)]  # swept first
    assert every == [used, gone, gone - 1]


def test_a_grant_whose_credits_are_all_held_is_still_active(api, org):
    only = grant(org, 4, priority=0)
    held = api.post("/credits/reservations", org, json={"feature_key": "gen", "quantity": 4})
    assert held.status_code == 201
    rows = {row["id"]: row for row in grants(api, org)["data"]}
    assert only in rows and rows[only]["remaining"] == 0


def test_pages_follow_the_cursor_through_every_grant(api, org):
    made = [grant(org, n) for n in range(1, 6)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2, "status": "all", **({"cursor": cursor} if cursor else {})}
        page = grants(api, org, **query)
        seen += [row["id"] for row in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [*reversed(made), made[0] - 1] and pages == 3


def test_grants_are_the_keys_organizations_own(api, org, make_org):
    other = make_org(balance=7)
    grant(other, 1, description="theirs")
    assert all(row["description"] != "theirs" for row in grants(api, org, status="all")["data"])
    assert [row["amount"] for row in grants(api, other, status="all")["data"]] == [1, 7]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "spent"}, "status"),
        ({"status": ""}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"kind": "grant"}, "kind"),  # not a parameter of this listing
        ({"status": ["active", "expired"]}, "status"),  # given twice
    ],
)
def test_bad_parameters_are_refused_by_name(api, org, query, field):
    response = api.get("/credits/grants", org, query_string=query)
    assert_error(response, 422, "invalid_request", field=field)


def test_grants_need_an_api_key(api):
    assert_error(api.get("/credits/grants"), 401, "unauthorized")


# --- the balance -----------------------------------------------------------------------------


def test_balance_names_the_next_expiry(api, org):
    assert api.get("/balance", org).json["next_expiry"] is None
    grant(org, 4, days=9)
    soonest = grant(org, "1.5", days=2)
    body = api.get("/balance", org).json
    listed = {row["id"]: row for row in grants(api, org)["data"]}
    assert body["next_expiry"] == {
        "amount": Decimal("1.5"),
        "expires_at": listed[soonest]["expires_at"],
    }
    assert (body["balance"], body["on_hold"], body["owed"]) == (Decimal("15.5"), 0, 0)


def test_balance_shows_disputed_credits_on_hold_and_debt_as_owed(api, make_org, make_price):
    make_price("gen", 1)
    org = make_org(balance=0)
    grant(org, 10, kind="purchase", source_ref="checkout:cs_disputed")
    service.freeze(org.id, "checkout:cs_disputed", source_ref="dp_1", description="Disputed")
    held = api.get("/balance", org).json
    assert (held["balance"], held["on_hold"], held["owed"]) == (0, 10, 0)
    service.unfreeze(org.id, "checkout:cs_disputed", source_ref="dp_1", description="Won")
    assert (
        api.post("/credits/deduct", org, json={"feature_key": "gen", "quantity": 8}).status_code
        == 201
    )
    service.clawback(
        org.id, "checkout:cs_disputed", credits(10), source_ref="re_1", description="Refunded"
    )
    owed = api.get("/balance", org).json
    assert (owed["balance"], owed["available"], owed["on_hold"], owed["owed"]) == (-8, -8, 0, 8)


# --- refunds and the ledger ------------------------------------------------------------------


def test_a_refund_says_which_grants_took_the_credits_back(api, org):
    first = grant(org, 1, priority=0, days=5)
    deduction = api.post("/credits/deduct", org, json={"feature_key": "gen", "quantity": 3})
    refund = api.post(
        "/credits/refund", org, json={"deduction_id": deduction.json["deduction_id"]}
    ).json
    by_grant = {part["grant_id"]: part for part in refund["returned_to"]}
    assert set(by_grant) == {first, first - 1}
    assert by_grant[first]["amount"] == 1 and by_grant[first]["expires_at"].endswith("Z")
    assert by_grant[first - 1] == {"grant_id": first - 1, "amount": 2, "expires_at": None}


def test_transactions_list_lifecycle_rows_and_filter_by_kind(api, org):
    grant(org, 2, days=-1)  # expires at the next read
    grant(org, 5, kind="purchase", source_ref="checkout:cs_kind")
    service.freeze(org.id, "checkout:cs_kind", source_ref="dp_kind", description="Disputed")
    api.get("/balance", org)
    rows = api.get("/transactions", org).json["data"]
    # Newest first: the freeze swept the due expiry before it froze anything.
    assert [row["kind"] for row in rows[:2]] == ["freeze", "expire"]
    expired = api.get("/transactions", org, query_string={"kind": "expire"}).json["data"]
    assert [(row["kind"], row["amount"]) for row in expired] == [("expire", -2)]
    frozen = api.get("/transactions", org, query_string={"kind": "freeze"}).json["data"]
    assert [row["amount"] for row in frozen] == [-5]
    assert api.get("/transactions", org, query_string={"kind": "refund"}).json["data"] == []


def test_transactions_refuse_an_unknown_kind(api, org):
    response = api.get("/transactions", org, query_string={"kind": "bonus"})
    assert_error(response, 422, "invalid_request", field="kind")


def test_grant_amounts_are_exact_json_numbers(api, org):
    grant(org, "0.000001", days=1)
    row = grants(api, org)["data"][0]
    assert row["amount"] == micros_to_decimal(1) and row["remaining"] == Decimal("0.000001")
    assert row["expires_at"] == isoformat_z(
        service.get_balance(org.organization).next_expiry.expires_at
    )
