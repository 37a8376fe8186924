"""``client.reservation(...)``: reserve on enter, capture on success, release on failure."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from portal.client import (
    AsyncCreditClient,
    ConflictError,
    CreditClient,
    InsufficientCreditsError,
    ReservationHold,
)
from tests.client.conftest import charges, make_client
from tests.client.faults import DROP_BEFORE, FORWARD, FaultProxy
from tests.live import LivePortal, OrgKey


def test_captures_the_actual_quantity_set_inside(client: CreditClient) -> None:
    with client.reservation("generate_video", quantity=30) as hold:
        assert isinstance(hold, ReservationHold)
        assert client.balance().reserved == Decimal(15)  # held while the work runs
        hold.actual_quantity = 12

    assert hold.captured is not None and hold.released is None
    assert (hold.captured.credits_deducted, hold.captured.credits_released) == (6, 9)
    balance = client.balance()
    assert (balance.balance, balance.reserved) == (Decimal(994), Decimal(0))
    (row,) = charges(client)
    assert (row.quantity, row.reservation_id) == (Decimal(12), hold.reservation_id)


def test_captures_everything_when_nothing_is_set(client: CreditClient) -> None:
    with client.reservation("generate_video", quantity=8, expires_in=60) as hold:
        pass
    assert hold.captured is not None and hold.captured.credits_deducted == Decimal(4)


def test_releases_and_reraises_on_exception(client: CreditClient) -> None:
    with (
        pytest.raises(RuntimeError, match="encoder failed"),
        client.reservation("generate_video", quantity=30) as hold,
    ):
        raise RuntimeError("encoder failed")

    assert hold.released is not None and hold.released.credits_released == Decimal(15)
    assert hold.captured is None
    assert client.balance().reserved == Decimal(0)
    assert charges(client) == []


def test_a_zero_actual_quantity_releases(client: CreditClient) -> None:
    with client.reservation("generate_video", quantity=30) as hold:
        hold.actual_quantity = 0
    assert hold.released is not None and hold.captured is None
    assert charges(client) == []


def test_a_refused_capture_still_frees_the_hold(client: CreditClient) -> None:
    with (
        pytest.raises(ConflictError) as caught,
        client.reservation("generate_video", quantity=10) as hold,
    ):
        hold.actual_quantity = 11  # more than was reserved

    assert caught.value.code == "quantity_exceeds_reservation"
    assert caught.value.details["field"] == "quantity"
    assert hold.released is not None
    assert client.balance().reserved == Decimal(0)


def test_a_shortfall_stops_before_the_block(client: CreditClient) -> None:
    ran = []
    with (
        pytest.raises(InsufficientCreditsError),
        client.reservation("generate_video", quantity=5000),
    ):
        ran.append(True)
    assert ran == [] and client.balance().reserved == Decimal(0)


def test_a_keyed_block_rerun_is_charged_once(client: CreditClient) -> None:
    for _ in range(2):  # a redelivered job runs the same block again
        with client.reservation("generate_video", 30, idempotency_key="job-42") as hold:
            hold.actual_quantity = 20
    assert hold.reservation is not None and hold.reservation.replayed is True
    assert hold.captured is not None and hold.captured.replayed is True
    assert [row.amount for row in charges(client)] == [Decimal(-10)]


def test_a_failed_release_is_noted_on_the_original_error(
    proxy: FaultProxy, org: OrgKey, client: CreditClient
) -> None:
    proxy.inject(FORWARD, DROP_BEFORE)  # the reserve goes through, the release is lost
    with (
        make_client(proxy.url, org.api_key, max_retries=0) as flaky,
        pytest.raises(KeyError) as caught,
        flaky.reservation("generate_video", quantity=4),
    ):
        raise KeyError("job vanished")

    notes = getattr(caught.value, "__notes__", [])
    assert len(notes) == 1 and "stay held until it expires" in notes[0]
    assert client.balance().reserved == Decimal(2)  # held, as the note says, until expiry


def test_async_reservation_captures_and_releases(live_portal: LivePortal, org: OrgKey) -> None:
    async def scenario() -> tuple[Decimal, Decimal]:
        async with AsyncCreditClient(live_portal.url, org.api_key) as credit_client:
            async with credit_client.reservation("generate_video", quantity=30) as hold:
                held = (await credit_client.balance()).reserved
                hold.actual_quantity = Decimal("7.5")
            assert hold.captured is not None
            with pytest.raises(ZeroDivisionError):
                async with credit_client.reservation("generate_video", quantity=30) as failed:
                    _ = 1 / 0
            assert failed.released is not None and failed.captured is None
            return held, hold.captured.credits_deducted

    held, charged = asyncio.run(scenario())
    assert (held, charged) == (Decimal(15), Decimal("3.75"))
    with make_client(live_portal.url, org.api_key) as credit_client:
        balance = credit_client.balance()
        assert (balance.balance, balance.reserved) == (Decimal("996.25"), Decimal(0))
