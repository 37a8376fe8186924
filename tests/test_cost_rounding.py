"""A priced feature is never free: a cost below half a micro-credit is charged 1, not 0.

``money.cost_micros`` rounds half-up to whole micro-credits, except that a non-zero cost
never rounds to zero. These tests go through the credits service (deduct, batch, check,
reserve, capture) and once through the API, and read the ledger the way the pages do.
"""

from __future__ import annotations

import pytest

from portal.credits import service
from portal.money import cost_micros
from tests.conftest import balance_row, credits, ledger_rows

# 0.000001 credits × 0.1 = a tenth of a micro-credit: half-up alone would make it free.
TINY_PRICE, TINY_QUANTITY = "0.000001", "0.1"


@pytest.fixture
def org(make_org, make_price):
    make_price("tiny", TINY_PRICE, category="Text")
    make_price("free", 0, category="Text")
    return make_org(balance=1)


def test_a_deduct_that_rounds_below_half_a_micro_credit_costs_one(org):
    result = service.deduct(org.organization, service.Spend("tiny", credits(TINY_QUANTITY)))
    assert result.credits_deducted == 1
    deduction = ledger_rows(org.id)[-1]
    assert (deduction.kind, deduction.amount) == ("deduct", -1)
    assert balance_row(org.id) == (credits(1) - 1, 0)


def test_every_line_of_a_batch_costs_at_least_one_micro_credit(org):
    lines = [service.Spend("tiny", credits("0.000001")), service.Spend("tiny", credits("0.4"))]
    batch = service.deduct_batch(org.organization, lines)
    assert [line.credits_deducted for line in batch.lines] == [1, 1]
    assert balance_row(org.id) == (credits(1) - 2, 0)


def test_check_asks_for_the_micro_credit_a_deduct_would_take(make_org, make_price):
    make_price("tiny", TINY_PRICE)
    broke = make_org(balance=0)
    answer = service.check(broke.organization, service.Spend("tiny", credits(TINY_QUANTITY)))
    assert (answer.has_enough, answer.required, answer.reason) == (
        False,
        1,
        "insufficient_credits",
    )


def test_a_hold_and_its_capture_cost_at_least_one_micro_credit(org):
    hold = service.reserve(org.organization, "tiny", credits("0.3"), 600)
    assert hold.credits_reserved == 1
    assert balance_row(org.id) == (credits(1), 1)
    captured = service.capture(org.organization, hold.reservation_id, credits(TINY_QUANTITY))
    assert (captured.credits_deducted, captured.credits_released) == (1, 0)
    assert balance_row(org.id) == (credits(1) - 1, 0)


def test_a_free_feature_and_a_zero_quantity_still_cost_nothing():
    assert cost_micros(0, credits(5)) == 0
    assert cost_micros(credits(5), 0) == 0


def test_the_api_charges_the_micro_credit(api, org):
    response = api.post(
        "/credits/deduct",
        org,
        data='{"feature_key": "tiny", "quantity": 0.1}',
        content_type="application/json",
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert '"credits_deducted": 0.000001' in response.get_data(as_text=True).replace(":0", ": 0")
    assert ledger_rows(org.id)[-1].amount == -1
