"""``AsyncCreditClient``: the same surface as ``CreditClient``, awaited, against the live portal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from portal.client import (
    AsyncCreditClient,
    AuthenticationError,
    CreditClient,
    DeductLine,
    FeatureNotFoundError,
    InsufficientCreditsError,
    ReservationNotFoundError,
    ReservationNotOpenError,
)
from tests.client.conftest import charges
from tests.live import INACTIVE_FEATURE, LivePortal, OrgKey

T = TypeVar("T")


def run(
    live_portal: LivePortal, api_key: str, scenario: Callable[[AsyncCreditClient], Awaitable[T]]
) -> T:
    async def main() -> T:
        async with AsyncCreditClient(live_portal.url, api_key, backoff=0.01) as credit_client:
            return await scenario(credit_client)

    return asyncio.run(main())


def test_every_method_awaited(live_portal: LivePortal, org: OrgKey, client: CreditClient) -> None:
    async def scenario(api: AsyncCreditClient) -> dict[str, Any]:
        out: dict[str, Any] = {"balance": await api.balance()}
        out["check"] = await api.check("answer_question", quantity=4)
        out["deduct"] = await api.deduct("answer_question", quantity=4, user="u1")
        out["batch"] = await api.deduct_batch(
            [DeductLine("generate_content"), {"feature_key": "workflow_execution"}]
        )
        out["refund"] = await api.refund(out["deduct"].deduction_id, amount=1, reason="r")
        hold = await api.reserve("generate_video", quantity=10)
        out["capture"] = await api.capture(hold.reservation_id, quantity=4)
        other = await api.reserve("generate_video", quantity=2)
        out["release"] = await api.release(other.reservation_id)
        out["usage"] = [record async for record in api.usage(page_size=1)]
        out["summary"] = await api.usage_summary("category")
        out["transactions"] = [row async for row in api.transactions(page_size=2)]
        out["pricing"] = await api.pricing("generate_video")
        out["features"] = await api.features()
        out["department"] = await api.set_department_limit("Ops", 50)
        out["departments"] = await api.departments()
        out["ai"] = await api.track_ai_usage("gpt-4o", 1000, 0)
        return out

    out = run(live_portal, org.api_key, scenario)

    assert out["balance"].available == Decimal(1000)
    assert (out["check"].has_enough, out["check"].required) == (True, Decimal(2))
    assert out["deduct"].credits_deducted == Decimal(2)
    assert out["batch"].credits_deducted == Decimal("1.001")
    assert out["refund"].credits_refunded == Decimal(1)
    assert (out["capture"].credits_deducted, out["capture"].credits_released) == (2, 3)
    assert out["release"].credits_released == Decimal(1)
    assert len(out["usage"]) == 4  # deduct, two batch lines, the capture: page by page
    assert out["summary"].total == Decimal("4.001")
    assert [row.kind for row in out["transactions"]][-1] == "grant"
    assert out["pricing"].unit == "second"
    assert INACTIVE_FEATURE not in {p.feature_key for p in out["features"]}
    assert out["department"].monthly_limit == Decimal(50)
    assert [d.name for d in out["departments"]] == ["Ops"]
    assert out["ai"].credits_deducted == Decimal("0.0025")
    assert client.balance().balance == Decimal(1000) - Decimal("4.001") - Decimal("0.0025")
    assert len(charges(client)) == 5


@pytest.mark.parametrize(
    ("scenario", "error_type"),
    [
        (lambda api: api.deduct("generate_content", quantity=1001), InsufficientCreditsError),
        (lambda api: api.check("no_such_feature"), FeatureNotFoundError),
        (lambda api: api.capture(987_654_321), ReservationNotFoundError),
    ],
    ids=["insufficient", "feature", "reservation"],
)
def test_errors_are_the_same_types(
    live_portal: LivePortal, org: OrgKey, scenario: Any, error_type: type[Exception]
) -> None:
    with pytest.raises(error_type):
        run(live_portal, org.api_key, scenario)


def test_errors_carry_their_details(live_portal: LivePortal, org: OrgKey) -> None:
    async def scenario(api: AsyncCreditClient) -> ReservationNotOpenError:
        hold = await api.reserve("generate_video")
        await api.release(hold.reservation_id)
        try:
            await api.release(hold.reservation_id)
        except ReservationNotOpenError as exc:
            return exc
        raise AssertionError("a second release must be refused")

    error = run(live_portal, org.api_key, scenario)
    assert (error.status, error.reservation_status) == (409, "released")


def test_bad_key(live_portal: LivePortal) -> None:
    with pytest.raises(AuthenticationError):
        run(live_portal, "cpk_bad", lambda api: api.balance())


def test_concurrent_calls_share_one_client(
    live_portal: LivePortal, org: OrgKey, client: CreditClient
) -> None:
    async def scenario(api: AsyncCreditClient) -> list[Any]:
        return await asyncio.gather(*(api.deduct("workflow_execution") for _ in range(20)))

    results = run(live_portal, org.api_key, scenario)

    assert len({r.deduction_id for r in results}) == 20
    assert client.balance().balance == Decimal("999.98")
