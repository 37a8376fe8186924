"""POST /api/v1/credits/deduct and /credits/deduct-batch: charges, exact amounts and refusals."""

import json
from decimal import ROUND_HALF_UP, Decimal

import pytest

from portal.money import micros_to_decimal
from tests.conftest import assert_error, balance_row, credits, ledger_rows

PRICE = Decimal("1.25")


@pytest.fixture
def org(make_org, make_price):
    make_price("gen", PRICE)
    make_price("tiny", "0.001")
    make_price("off", "1", active=False)
    return make_org(balance=50)


def available(api, org):
    return api.get("/balance", org).json["available"]


def test_deduct(api, org):
    start = available(api, org)
    quantity = Decimal("3.5")
    body = {
        "feature_key": "gen",
        "quantity": quantity,
        "user": "ana@example.com",
        "description": "three and a half renders",
        "metadata": {"job": 42, "ratio": Decimal("0.5")},
    }
    r = api.post("/credits/deduct", org, json=body)  # Decimals go out as JSON numbers
    assert r.status_code == 201, r.json
    cost = PRICE * quantity
    assert r.json == {
        "deduction_id": r.json["deduction_id"],
        "feature_key": "gen",
        "quantity": quantity,
        "credits_deducted": cost,
        "remaining_credits": start - cost,
    }
    assert isinstance(r.json["deduction_id"], int)
    # amounts are JSON numbers, never strings
    plain = json.loads(r.get_data(as_text=True))
    for field in ("quantity", "credits_deducted", "remaining_credits"):
        assert isinstance(plain[field], int | float), field
    assert available(api, org) == start - cost
    row = ledger_rows(org.id)[-1]
    assert (row.id, row.kind, row.amount) == (r.json["deduction_id"], "deduct", -credits(cost))
    assert (row.user_ref, row.description) == ("ana@example.com", "three and a half renders")
    assert row.meta["job"] == 42
    assert Decimal(str(row.meta["ratio"])) == Decimal("0.5")  # kept exact, not as a float


def test_quantity_defaults_to_one(api, org):
    r = api.post("/credits/deduct", org, json={"feature_key": "gen"})
    assert (r.status_code, r.json["quantity"], r.json["credits_deducted"]) == (201, 1, PRICE)


def test_three_deducts_of_a_thousandth_leave_exactly_three_thousandths_less(api, org):
    start = available(api, org)
    for _ in range(3):
        assert api.post("/credits/deduct", org, json={"feature_key": "tiny"}).status_code == 201
    body = api.get("/balance", org).json
    assert body["balance"] == start - Decimal("0.003")
    assert str(body["balance"]) in api.get("/balance", org).get_data(as_text=True)


ROUNDING = [
    ("0.000003", "0.5"),
    ("0.000001", "0.499999"),
    ("0.333333", "0.333333"),
    ("7", "0.000001"),
]


def test_cost_is_rounded_half_up_to_six_places(api, make_org, make_price, subtests):
    for index, (price, quantity) in enumerate(ROUNDING):
        with subtests.test(price=price, quantity=quantity):
            feature_key = f"odd_{index}"
            make_price(feature_key, price)
            org = make_org(balance=1)
            r = api.post(
                "/credits/deduct",
                org,
                data=f'{{"feature_key": "{feature_key}", "quantity": {quantity}}}',
                content_type="application/json",
            )
            expected = (Decimal(price) * Decimal(quantity)).quantize(
                Decimal("0.000001"), rounding=ROUND_HALF_UP
            )
            expected = max(expected, Decimal("0.000001"))  # a non-zero cost is never free
            assert (r.status_code, r.json["credits_deducted"]) == (201, expected)
            assert r.json["remaining_credits"] == 1 - expected


def test_department_user_and_description_are_recorded(api, org):
    api.put("/departments/Research/limit", org, json={"monthly_limit": None})
    r = api.post(
        "/credits/deduct", org, json={"feature_key": "gen", "department": "Research", "user": "u1"}
    )
    assert r.status_code == 201
    row = api.get("/usage", org).json["data"][0]
    assert (row["id"], row["department"], row["user"]) == (r.json["deduction_id"], "Research", "u1")
    assert api.get("/departments", org).json["data"][0]["used_this_month"] == PRICE


def test_insufficient_credits_writes_nothing(api, make_org, make_price, db_state):
    make_price("gen", PRICE)
    org = make_org(balance=1)
    before = db_state()
    r = api.post("/credits/deduct", org, json={"feature_key": "gen"})
    assert_error(r, 402, "insufficient_credits", required=PRICE, available=Decimal(1))
    assert db_state() == before


def test_a_hold_is_not_available_to_deduct(api, make_org, make_price, db_state):
    make_price("gen", PRICE)
    org = make_org(balance=2)
    assert api.post("/credits/reservations", org, json={"feature_key": "gen"}).status_code == 201
    before = db_state()
    r = api.post("/credits/deduct", org, json={"feature_key": "gen"})
    assert_error(r, 402, "insufficient_credits", required=PRICE, available=2 - PRICE)
    assert db_state() == before


def test_department_limit_exceeded_writes_nothing(api, org, db_state):
    limit = PRICE * 2
    api.put("/departments/Marketing/limit", org, json={"monthly_limit": limit})
    for _ in range(2):
        ok = api.post(
            "/credits/deduct", org, json={"feature_key": "gen", "department": "Marketing"}
        )
        assert ok.status_code == 201
    before = db_state()
    r = api.post("/credits/deduct", org, json={"feature_key": "gen", "department": "Marketing"})
    assert_error(r, 402, "department_limit_exceeded", limit=limit, used=limit)
    assert db_state() == before
    # other departments and department-less spends are not affected
    assert api.post("/credits/deduct", org, json={"feature_key": "gen"}).status_code == 201


def test_not_found_writes_nothing(api, org, db_state, subtests):
    before = db_state()
    for body, code in (
        ({"feature_key": "nope"}, "feature_not_found"),
        ({"feature_key": "off"}, "feature_not_found"),
        ({"feature_key": "gen", "department": "Nobody"}, "department_not_found"),
    ):
        with subtests.test(**body):
            assert_error(api.post("/credits/deduct", org, json=body), 404, code)
    assert db_state() == before


def test_deduct_batch_charges_every_line(api, org):
    start = available(api, org)
    lines = [{"feature_key": "gen", "quantity": 2}, {"feature_key": "tiny", "quantity": 5}]
    r = api.post("/credits/deduct-batch", org, json={"lines": lines})
    assert r.status_code == 201, r.json
    costs = [PRICE * 2, Decimal("0.001") * 5]
    assert [line["credits_deducted"] for line in r.json["deductions"]] == costs
    assert r.json["credits_deducted"] == sum(costs)
    assert r.json["remaining_credits"] == start - sum(costs) == available(api, org)
    rows = ledger_rows(org.id)[-2:]
    assert [row.id for row in rows] == [line["deduction_id"] for line in r.json["deductions"]]
    assert rows[-1].balance_after == credits(start - sum(costs))


REFUSED_BATCHES = [
    (
        [{"feature_key": "gen", "quantity": 39}, {"feature_key": "gen", "quantity": 2}],
        402,
        "insufficient_credits",
    ),
    ([{"feature_key": "gen"}, {"feature_key": "nope"}], 404, "feature_not_found"),
    ([{"feature_key": "gen"}, {"feature_key": "gen", "quantity": 0}], 422, "invalid_request"),
    ([], 422, "invalid_request"),
]


def test_deduct_batch_is_all_or_nothing(api, org, db_state, subtests):
    before = db_state()
    for lines, status, code in REFUSED_BATCHES:
        with subtests.test(code=code, lines=str(lines)[:60]):
            r = api.post("/credits/deduct-batch", org, json={"lines": lines})
            assert_error(r, status, code)
    assert db_state() == before


def test_remaining_credits_match_the_ledger(api, org):
    for quantity in (1, 2, 3):
        r = api.post("/credits/deduct", org, json={"feature_key": "gen", "quantity": quantity})
        balance, reserved = balance_row(org.id)
        assert r.json["remaining_credits"] == micros_to_decimal(balance - reserved)
        assert ledger_rows(org.id)[-1].balance_after == balance
