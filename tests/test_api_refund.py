"""POST /api/v1/credits/refund: all or part of one deduction, never more than it."""

from decimal import Decimal

import pytest

from tests.conftest import assert_error, ledger_rows

PRICE = Decimal("2.5")


@pytest.fixture
def org(make_org, make_price):
    make_price("gen", PRICE)
    return make_org(balance=20)


@pytest.fixture
def deduction(api, org):
    r = api.post("/credits/deduct", org, json={"feature_key": "gen", "quantity": 2})
    assert r.status_code == 201
    return r.json


def refund(api, org, **body):
    return api.post("/credits/refund", org, json=body)


def test_refund(api, org, deduction):
    r = refund(api, org, deduction_id=deduction["deduction_id"], reason="the render failed")
    assert r.status_code == 200, r.json
    assert r.json == {
        "refund_id": r.json["refund_id"],
        "deduction_id": deduction["deduction_id"],
        "credits_refunded": deduction["credits_deducted"],
        "remaining_credits": deduction["remaining_credits"] + deduction["credits_deducted"],
        "returned_to": [r.json["returned_to"][0]],
    }
    [returned] = r.json["returned_to"]  # back into the opening grant, which never expires
    assert (returned["amount"], returned["expires_at"]) == (deduction["credits_deducted"], None)
    assert api.get("/balance", org).json["available"] == r.json["remaining_credits"]
    row = ledger_rows(org.id)[-1]
    assert (row.id, row.kind, row.refund_of_id, row.description) == (
        r.json["refund_id"],
        "refund",
        deduction["deduction_id"],
        "the render failed",
    )


def test_partial_refunds_then_the_rest(api, org, deduction):
    part = Decimal("0.75")
    first = refund(api, org, deduction_id=deduction["deduction_id"], amount=part)
    assert (first.status_code, first.json["credits_refunded"]) == (200, part)
    assert first.json["remaining_credits"] == deduction["remaining_credits"] + part
    rest = refund(api, org, deduction_id=deduction["deduction_id"])
    assert rest.json["credits_refunded"] == deduction["credits_deducted"] - part
    usage = api.get("/usage", org).json["data"][0]
    assert usage["credits_refunded"] == deduction["credits_deducted"]


def test_already_refunded(api, org, deduction, db_state):
    assert refund(api, org, deduction_id=deduction["deduction_id"]).status_code == 200
    before = db_state()
    for body in ({}, {"amount": Decimal("0.000001")}):
        r = refund(api, org, deduction_id=deduction["deduction_id"], **body)
        assert_error(r, 409, "already_refunded")
    assert db_state() == before


def test_refund_exceeds_deduction(api, org, deduction, db_state):
    part = Decimal("1")
    refund(api, org, deduction_id=deduction["deduction_id"], amount=part)
    refundable = deduction["credits_deducted"] - part
    before = db_state()
    r = refund(
        api, org, deduction_id=deduction["deduction_id"], amount=refundable + Decimal("0.000001")
    )
    assert_error(r, 409, "refund_exceeds_deduction", refundable=refundable)
    assert db_state() == before


def test_another_organizations_deduction_is_not_found(api, make_org, deduction, db_state):
    other = make_org(balance=20)
    before = db_state()
    r = refund(api, other, deduction_id=deduction["deduction_id"])
    assert_error(r, 404, "deduction_not_found")
    assert db_state() == before


def test_only_deductions_can_be_refunded(api, org, deduction, db_state):
    first = refund(api, org, deduction_id=deduction["deduction_id"], amount=1).json
    grant_id = ledger_rows(org.id)[0].id
    before = db_state()
    for deduction_id in (first["refund_id"], grant_id, 10**12):
        assert_error(refund(api, org, deduction_id=deduction_id), 404, "deduction_not_found")
    assert db_state() == before


OWN = "the deduction"  # stands for the id of the fixture's deduction


INVALID_REFUNDS = [
    ({"amount": 1}, "deduction_id"),
    ({"deduction_id": "1"}, "deduction_id"),
    ({"deduction_id": 0}, "deduction_id"),
    ({"deduction_id": -3}, "deduction_id"),
    ({"deduction_id": Decimal("1.5")}, "deduction_id"),
    ({"deduction_id": True}, "deduction_id"),
    ({"deduction_id": OWN, "amount": 0}, "amount"),
    ({"deduction_id": OWN, "amount": -1}, "amount"),
    ({"deduction_id": OWN, "amount": "1"}, "amount"),
    ({"deduction_id": OWN, "amount": Decimal("0.0000001")}, "amount"),
    ({"deduction_id": OWN, "reason": 5}, "reason"),
]


def test_invalid_refund_requests_write_nothing(api, org, deduction, db_state, subtests):
    before = db_state()
    for body, field in INVALID_REFUNDS:
        with subtests.test(field=field, body=str(body)):
            own = {
                name: deduction["deduction_id"] if value == OWN else value
                for name, value in body.items()
            }
            assert_error(refund(api, org, **own), 422, "invalid_request", field=field)
    assert db_state() == before
