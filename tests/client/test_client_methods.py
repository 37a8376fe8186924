"""Every ``CreditClient`` method against a live portal, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from portal.client import (
    Balance,
    BatchDeduction,
    CreditClient,
    Deduction,
    DeductLine,
    FeatureNotFoundError,
)
from tests.client.conftest import assert_books_balance, charges, ledger, make_client
from tests.live import CATALOGUE, INACTIVE_FEATURE, LivePortal, OrgKey


def test_balance_is_typed_and_exact(client: CreditClient, org: OrgKey) -> None:
    balance = client.balance()
    assert balance == Balance(org.slug, Decimal(1000), Decimal(0), Decimal(1000))
    assert all(isinstance(v, Decimal) for v in (balance.balance, balance.available))
    with pytest.raises(AttributeError):
        balance.balance = Decimal(1)  # type: ignore[misc]  # results are frozen


def test_check_answers_without_charging(client: CreditClient) -> None:
    enough = client.check("answer_question", quantity=3)
    short = client.check("generate_content", quantity=5000)

    assert (enough.has_enough, enough.required, enough.reason) == (True, Decimal("1.5"), None)
    assert (short.has_enough, short.required) == (False, Decimal(5000))
    assert (short.available, short.reason) == (Decimal(1000), "insufficient_credits")
    assert charges(client) == []


def test_deduct_returns_the_charge_and_records_its_details(client: CreditClient) -> None:
    deduction = client.deduct(
        "answer_question",
        quantity=3,
        user="user-42",
        description="Answered a question",
        metadata={"topic": "billing", "score": Decimal("0.75")},
    )

    assert isinstance(deduction, Deduction)
    assert deduction.feature_key == "answer_question"
    assert (deduction.quantity, deduction.credits_deducted) == (Decimal(3), Decimal("1.5"))
    assert deduction.remaining_credits == Decimal("998.5")
    assert deduction.replayed is False
    (row,) = charges(client)
    assert row.id == deduction.deduction_id
    assert (row.user, row.description) == ("user-42", "Answered a question")
    assert row.metadata == {"topic": "billing", "score": "0.75"}  # stored exactly, as text
    assert row.unit_price == Decimal("0.5")


def test_amounts_stay_exact_decimals(client: CreditClient) -> None:
    for _ in range(3):
        client.deduct("workflow_execution")
    half = client.deduct("precise_feature", quantity=Decimal("0.5"))

    assert client.balance().balance == Decimal("999.997") - Decimal("0.166667")
    assert half.credits_deducted == Decimal("0.166667")  # 0.1666665 rounded half-up
    assert_books_balance(client)


def test_quantities_accept_strings_and_floats(client: CreditClient) -> None:
    assert client.deduct("file_processing", quantity="2.5").credits_deducted == Decimal("2.5")
    message = "x" * 210
    charged = client.deduct("ai_chat", quantity=len(message) / 100)  # 1 credit per 100 chars
    assert (charged.quantity, charged.credits_deducted) == (Decimal("2.1"), Decimal("2.1"))
    assert client.check("file_processing", quantity=0.1 + 0.2).required == Decimal("0.3")
    assert client.deduct("file_processing", quantity=1 / 3).credits_deducted == Decimal("0.333333")
    with pytest.raises(ValueError, match="finite"):
        client.deduct("file_processing", quantity=float("nan"))
    assert [row.amount for row in charges(client)] == [
        Decimal("-2.5"),
        Decimal("-2.1"),
        Decimal("-0.333333"),
    ]


def test_deduct_batch_charges_every_line_at_once(client: CreditClient) -> None:
    batch = client.deduct_batch(
        [
            DeductLine("answer_question", 2, description="question"),
            {"feature_key": "generate_content", "user": "user-1"},
        ]
    )

    assert isinstance(batch, BatchDeduction)
    assert [line.feature_key for line in batch.deductions] == [
        "answer_question",
        "generate_content",
    ]
    assert batch.credits_deducted == Decimal(2)
    assert batch.remaining_credits == Decimal(998)
    assert [row.id for row in charges(client)] == [d.deduction_id for d in batch.deductions]


def test_deduct_batch_is_all_or_nothing(client: CreditClient) -> None:
    with pytest.raises(FeatureNotFoundError):
        client.deduct_batch([DeductLine("generate_content"), DeductLine("no_such_feature")])
    assert charges(client) == []
    assert client.balance().available == Decimal(1000)


def test_refund_in_parts_never_exceeds_the_deduction(client: CreditClient) -> None:
    deduction = client.deduct("seedream_text_to_image")
    part = client.refund(deduction.deduction_id, amount=Decimal(2), reason="partial")
    rest = client.refund(deduction.deduction_id)

    assert (part.credits_refunded, part.remaining_credits) == (Decimal(2), Decimal(997))
    assert (rest.credits_refunded, rest.remaining_credits) == (Decimal(3), Decimal(1000))
    assert part.deduction_id == rest.deduction_id == deduction.deduction_id
    refunds = [row for row in ledger(client) if row.kind == "refund"]
    assert [row.refund_of for row in refunds] == [deduction.deduction_id] * 2
    assert refunds[0].description == "partial"
    (usage,) = client.usage()
    assert usage.credits_refunded == Decimal(5)


def test_reserve_capture_and_release(client: CreditClient) -> None:
    hold = client.reserve("generate_video", quantity=30, expires_in=600)
    assert (hold.credits_reserved, hold.available) == (Decimal(15), Decimal(985))
    assert hold.expires_at.tzinfo is not None
    assert hold.expires_at > datetime.now(UTC) + timedelta(seconds=500)
    assert client.balance().reserved == Decimal(15)

    captured = client.capture(hold.reservation_id, quantity=12)
    assert (captured.credits_deducted, captured.credits_released) == (Decimal(6), Decimal(9))
    assert captured.remaining_credits == Decimal(994)

    other = client.reserve("generate_video", quantity=10)
    released = client.release(other.reservation_id)
    assert (released.credits_released, released.available) == (Decimal(5), Decimal(994))
    assert client.balance() == Balance(client.balance().organization, 994, 0, 994)
    (row,) = charges(client)
    assert (row.reservation_id, row.quantity) == (hold.reservation_id, Decimal(12))


def test_capture_defaults_to_everything_reserved(client: CreditClient) -> None:
    hold = client.reserve("generate_video", quantity=4)
    assert client.capture(hold.reservation_id).credits_deducted == Decimal(2)


def test_usage_iterates_over_every_page(client: CreditClient) -> None:
    made = [client.deduct("generate_content", description=f"call {n}") for n in range(7)]
    client.deduct("answer_question")

    records = list(client.usage(feature_key="generate_content", page_size=3))

    assert [r.id for r in records] == [d.deduction_id for d in reversed(made)]  # newest first
    assert all(r.credits == Decimal(1) and r.feature_key == "generate_content" for r in records)
    assert len(list(client.usage(page_size=2))) == 8


def test_usage_filters_by_time(client: CreditClient) -> None:
    client.deduct("generate_content")
    today = datetime.now(UTC).date()

    assert len(list(client.usage(start=today, end=today))) == 1
    assert list(client.usage(end=today - timedelta(days=1))) == []
    assert list(client.usage(start=datetime.now(UTC) + timedelta(hours=1))) == []
    assert len(list(client.usage(start=(today - timedelta(days=1)).isoformat()))) == 1


def test_usage_summary_groups_net_of_refunds(client: CreditClient) -> None:
    client.deduct("generate_content", quantity=2)
    refunded = client.deduct("answer_question", quantity=2)
    client.refund(refunded.deduction_id, amount=Decimal("0.25"))

    summary = client.usage_summary("feature", start=date.today() - timedelta(days=1))

    assert summary.group_by == "feature"
    assert {row.key: (row.credits, row.count) for row in summary.rows} == {
        "generate_content": (Decimal(2), 1),
        "answer_question": (Decimal("0.75"), 1),
    }
    assert summary.total == Decimal("2.75")


def test_transactions_iterate_the_whole_ledger(client: CreditClient) -> None:
    for _ in range(4):
        client.deduct("generate_content")

    rows = list(client.transactions(page_size=2))

    assert [row.kind for row in rows] == ["deduct"] * 4 + ["grant"]
    assert rows[-1].amount == Decimal(1000)
    assert rows[0].balance_after == Decimal(996)


def test_pricing_is_public_and_shows_inactive_prices(live_portal: LivePortal) -> None:
    with make_client(live_portal.url, "not-a-valid-key") as anonymous:
        price = anonymous.pricing("answer_question")
        retired = anonymous.pricing(INACTIVE_FEATURE)

    assert (price.credits, price.unit, price.active) == (Decimal("0.5"), "call", True)
    assert price.name and price.category == "General"
    assert retired.active is False


def test_features_lists_active_prices_only(client: CreditClient) -> None:
    keys = {price.feature_key: price for price in client.features()}

    assert {key for key, _, _ in CATALOGUE} <= set(keys)
    assert INACTIVE_FEATURE not in keys
    assert keys["gpt_4o_input_1k_tokens"].credits == Decimal("0.0025")


def test_departments_limits_and_department_usage(client: CreditClient) -> None:
    created = client.set_department_limit("Research Lab", Decimal("12.5"))
    client.deduct("generate_content", quantity=2, department="Research Lab")
    client.set_department_limit("Marketing", None)

    by_name = {d.name: d for d in client.departments()}

    assert (created.monthly_limit, created.used_this_month) == (Decimal("12.5"), Decimal(0))
    assert by_name["Research Lab"].used_this_month == Decimal(2)
    assert by_name["Marketing"].monthly_limit is None
    (record,) = client.usage(department="Research Lab")
    assert record.department == "Research Lab"


def test_context_manager_closes_the_connection_pool(live_portal: LivePortal, org: OrgKey) -> None:
    with make_client(live_portal.url, org.api_key) as credit_client:
        assert credit_client.balance().available == Decimal(1000)
    assert credit_client._http.is_closed
    assert repr(credit_client) == f"CreditClient({live_portal.url!r})"


@pytest.mark.parametrize("suffix", ["/api/v1", "/api/v1/", "/"])
def test_a_base_url_with_the_api_path_and_a_key_with_spaces_work(
    live_portal: LivePortal, org: OrgKey, suffix: str
) -> None:
    """As people paste them: the URL the docs show for curl, the key with its newline."""
    with make_client(live_portal.url + suffix, f"  {org.api_key}\n") as credit_client:
        assert credit_client.balance().available == Decimal(1000)
        assert credit_client.deduct("generate_content").credits_deducted == Decimal(1)


@pytest.mark.parametrize(
    ("base_url", "api_key", "problem"),
    [("127.0.0.1:5000", "k", "http"), ("http://x", "", "api_key")],
)
def test_bad_settings_fail_at_construction(base_url: str, api_key: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        CreditClient(base_url, api_key)
