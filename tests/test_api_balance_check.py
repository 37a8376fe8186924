"""GET /api/v1/balance and POST /api/v1/credits/check (which writes nothing)."""

from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.conftest import assert_error

PRICE = Decimal("0.75")
BALANCE = Decimal("10.5")


@pytest.fixture
def org(make_org, make_price):
    make_price("gen", PRICE)
    make_price("off", "0.1", active=False)
    return make_org(balance=BALANCE)


def test_balance(api, org):
    held = api.post("/credits/reservations", org, json={"feature_key": "gen", "quantity": 2})
    spent = api.post("/credits/deduct", org, json={"feature_key": "gen"})
    r = api.get("/balance", org)
    assert r.status_code == 200
    reserved = held.json["credits_reserved"]
    assert r.json == {
        "organization": org.slug,
        "balance": BALANCE - spent.json["credits_deducted"],
        "reserved": reserved,
        "available": BALANCE - spent.json["credits_deducted"] - reserved,
        "next_expiry": None,
        "on_hold": 0,
        "owed": 0,
    }


def test_balance_is_per_organization(api, org, make_org):
    other = make_org(balance=3)
    assert api.get("/balance", other).json["balance"] == 3
    assert api.get("/balance", org).json["balance"] == BALANCE


CHECKS = [
    (Decimal(1), True),
    (BALANCE / PRICE, True),  # exactly everything
    (BALANCE / PRICE + Decimal("0.000001"), False),
    (Decimal("0.000001"), True),
]


def test_check(api, org, db_state, subtests):
    before = db_state()
    for quantity, has_enough in CHECKS:
        with subtests.test(quantity=quantity):
            body = {"feature_key": "gen", "quantity": quantity}
            r = api.post("/credits/check", org, json=body)
            assert r.status_code == 200, r.json
            required = (PRICE * quantity).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
            assert r.json == {
                "has_enough": has_enough,
                "required": required,
                "available": BALANCE,
                "reason": None if has_enough else "insufficient_credits",
            }
    assert db_state() == before


def test_check_counts_holds(api, org):
    held = api.post("/credits/reservations", org, json={"feature_key": "gen", "quantity": 10})
    r = api.post("/credits/check", org, json={"feature_key": "gen", "quantity": 5})
    assert r.json["available"] == BALANCE - held.json["credits_reserved"]
    assert r.json["has_enough"] is (BALANCE - held.json["credits_reserved"] >= PRICE * 5)


def test_check_with_a_department_limit(api, org, db_state):
    api.put("/departments/Support/limit", org, json={"monthly_limit": PRICE})
    body = {"feature_key": "gen", "department": "Support"}
    assert api.post("/credits/check", org, json=body).json["has_enough"] is True
    assert api.post("/credits/deduct", org, json=body).status_code == 201
    before = db_state()
    r = api.post("/credits/check", org, json=body)
    assert (r.json["has_enough"], r.json["reason"]) == (False, "department_limit_exceeded")
    assert db_state() == before


def test_check_not_found(api, org, db_state, subtests):
    before = db_state()
    for body, code in (
        ({"feature_key": "nope"}, "feature_not_found"),
        ({"feature_key": "off"}, "feature_not_found"),
        ({"feature_key": "gen", "department": "Nobody"}, "department_not_found"),
    ):
        with subtests.test(**body):
            assert_error(api.post("/credits/check", org, json=body), 404, code)
    assert db_state() == before
