"""Safe retries: a lost answer, a timeout or a 5xx is resent with the same key and charged once.

A fault-injecting proxy sits between the client and the live portal and misbehaves on cue;
the ledger, read back through the API, shows what was really charged.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from portal.client import (
    AsyncCreditClient,
    CreditClient,
    CreditsAPIError,
    CreditsConnectionError,
    IdempotencyKeyInUseError,
    InsufficientCreditsError,
    ServerError,
)
from tests.client.conftest import charges, ledger, make_client
from tests.client.faults import DROP_AFTER, DROP_BEFORE, FaultProxy, delay, respond
from tests.live import LivePortal, OrgKey

IN_USE_BODY = (
    b'{"error":{"code":"idempotency_key_in_use",'
    b'"message":"A request with this Idempotency-Key is still being processed."}}'
)


@pytest.fixture
def via_proxy(proxy: FaultProxy, org: OrgKey) -> CreditClient:
    with make_client(proxy.url, org.api_key, max_retries=3) as credit_client:
        yield credit_client


def keys(exchanges: list[Any]) -> list[str | None]:
    return [x.headers.get("idempotency-key") for x in exchanges]


def test_lost_answer_is_resent_with_the_same_key_and_charged_once(
    proxy: FaultProxy, via_proxy: CreditClient, client: CreditClient
) -> None:
    proxy.inject(DROP_AFTER)

    deduction = via_proxy.deduct("seedream_text_to_image")

    first, retry = proxy.seen("/credits/deduct")
    assert first.response_status == 201  # the portal charged; only the answer was lost
    assert keys([first, retry]) == [first.headers["idempotency-key"]] * 2
    assert first.body == retry.body
    assert retry.response_headers.get("idempotent-replayed") == "true"
    assert deduction.replayed is True
    (charge,) = charges(client)
    assert charge.id == deduction.deduction_id
    assert client.balance().balance == Decimal(995)


MUTATIONS: dict[str, tuple[Callable[[CreditClient, CreditClient], Any], str]] = {
    "deduct_batch": (
        lambda c, _: c.deduct_batch(
            [{"feature_key": "generate_content"}, {"feature_key": "answer_question"}]
        ),
        "/credits/deduct-batch",
    ),
    "refund": (
        lambda c, direct: c.refund(direct.deduct("seedream_text_to_image").deduction_id),
        "/credits/refund",
    ),
    "reserve": (lambda c, _: c.reserve("generate_video", quantity=10), "/credits/reservations"),
    "capture": (
        lambda c, direct: c.capture(direct.reserve("generate_video", 10).reservation_id, 4),
        "/capture",
    ),
    "release": (
        lambda c, direct: c.release(direct.reserve("generate_video", 10).reservation_id),
        "/release",
    ),
}
# What the organization's books must show afterwards: exactly one effect of the call.
EXPECTED = {
    "deduct_batch": (Decimal("998.5"), Decimal(0), 2),
    "refund": (Decimal(1000), Decimal(0), 1),
    "reserve": (Decimal(1000), Decimal(5), 0),
    "capture": (Decimal(998), Decimal(0), 1),
    "release": (Decimal(1000), Decimal(0), 0),
}


@pytest.mark.parametrize("operation", MUTATIONS)
def test_every_mutating_call_survives_a_lost_answer(
    operation: str, proxy: FaultProxy, via_proxy: CreditClient, client: CreditClient
) -> None:
    call, path = MUTATIONS[operation]
    proxy.inject(DROP_AFTER)

    result = call(via_proxy, client)

    exchanges = proxy.seen(path)
    assert len(exchanges) == 2 and len(set(keys(exchanges))) == 1
    assert result.replayed is True
    balance = client.balance()
    balance_after, reserved, deducts = EXPECTED[operation]
    assert (balance.balance, balance.reserved, len(charges(client))) == (
        balance_after,
        reserved,
        deducts,
    )


def test_request_lost_before_the_portal_is_simply_sent_again(
    proxy: FaultProxy, via_proxy: CreditClient, client: CreditClient
) -> None:
    proxy.inject(DROP_BEFORE)

    deduction = via_proxy.deduct("generate_content")

    assert deduction.replayed is False  # the portal only ever saw the retry
    assert len(set(keys(proxy.seen("/credits/deduct")))) == 1
    assert len(charges(client)) == 1


def test_timeout_is_retried_with_the_same_key(
    proxy: FaultProxy, org: OrgKey, client: CreditClient
) -> None:
    proxy.inject(delay(1.0))
    with make_client(proxy.url, org.api_key, timeout=0.3) as impatient:
        deduction = impatient.deduct("generate_content")

    assert deduction.replayed is True
    assert len(set(keys(proxy.seen("/credits/deduct")))) == 1
    assert len(charges(client)) == 1


@pytest.mark.parametrize(
    "fault",
    [
        respond(503, b"<html>upstream unavailable</html>", "text/html"),
        respond(500, b'{"error":{"code":"internal_error","message":"boom"}}'),
        respond(409, IN_USE_BODY),
    ],
    ids=["503-html", "500-json", "409-in-use"],
)
def test_transient_answers_are_retried_with_the_same_key(
    fault: Any, proxy: FaultProxy, via_proxy: CreditClient, client: CreditClient
) -> None:
    proxy.inject(fault, fault)

    deduction = via_proxy.deduct("generate_content", idempotency_key="order-99")

    assert keys(proxy.seen("/credits/deduct")) == ["order-99"] * 3
    assert deduction.replayed is False
    assert [row.id for row in charges(client)] == [deduction.deduction_id]


def test_retries_are_bounded(proxy: FaultProxy, org: OrgKey, client: CreditClient) -> None:
    proxy.inject(DROP_BEFORE, DROP_BEFORE, DROP_BEFORE)
    with (
        make_client(proxy.url, org.api_key, max_retries=2) as credit_client,
        pytest.raises(CreditsConnectionError),
    ):
        credit_client.deduct("generate_content")

    assert len(proxy.seen("/credits/deduct")) == 3
    assert len(set(keys(proxy.seen("/credits/deduct")))) == 1
    assert charges(client) == []


@pytest.mark.parametrize(
    ("fault", "error_type", "code"),
    [
        (respond(502, b"<html>Bad gateway</html>", "text/html"), ServerError, "http_502"),
        (respond(500, b'{"error":{"code":"internal_error","message":"x"}}'), ServerError, None),
        (respond(409, IN_USE_BODY), IdempotencyKeyInUseError, "idempotency_key_in_use"),
    ],
    ids=["502-html", "500-json", "409-in-use"],
)
def test_without_retries_transient_answers_raise_typed_errors(
    fault: Any,
    error_type: type[CreditsAPIError],
    code: str | None,
    proxy: FaultProxy,
    org: OrgKey,
) -> None:
    proxy.inject(fault)
    with (
        make_client(proxy.url, org.api_key, max_retries=0) as credit_client,
        pytest.raises(error_type) as caught,
    ):
        credit_client.deduct("generate_content")
    assert caught.value.code == (code or "internal_error")
    assert caught.value.status == fault.status
    assert len(proxy.seen("/credits/deduct")) == 1


def test_refusals_are_not_retried(proxy: FaultProxy, via_proxy: CreditClient) -> None:
    with pytest.raises(InsufficientCreditsError):
        via_proxy.deduct("generate_content", quantity=5000)
    assert len(proxy.seen("/credits/deduct")) == 1


def test_reads_are_retried_too(proxy: FaultProxy, via_proxy: CreditClient) -> None:
    proxy.inject(DROP_AFTER)
    assert via_proxy.balance().available == Decimal(1000)
    assert len(proxy.seen("/balance")) == 2
    assert keys(proxy.seen("/balance")) == [None, None]  # reads carry no key


def test_each_logical_call_gets_its_own_key(
    proxy: FaultProxy, via_proxy: CreditClient, client: CreditClient
) -> None:
    via_proxy.deduct("generate_content")
    via_proxy.deduct("generate_content")
    assert len(set(keys(proxy.seen("/credits/deduct")))) == 2
    assert len(charges(client)) == 2


def test_async_client_resends_the_same_key(
    proxy: FaultProxy, org: OrgKey, client: CreditClient
) -> None:
    proxy.inject(DROP_AFTER)

    async def scenario() -> Any:
        async with AsyncCreditClient(proxy.url, org.api_key, backoff=0.01) as credit_client:
            return await credit_client.deduct("generate_content")

    deduction = asyncio.run(scenario())

    assert deduction.replayed is True
    assert len(set(keys(proxy.seen("/credits/deduct")))) == 1
    assert len(charges(client)) == 1


def test_request_still_in_flight_gets_409_then_the_replay(
    live_portal: LivePortal, proxy: FaultProxy, org: OrgKey, client: CreditClient
) -> None:
    """A real in-flight duplicate: the first request is held up on the organization's row lock."""
    if live_portal.backend != "postgresql":
        pytest.skip("needs row locks another connection can hold (PostgreSQL)")
    import psycopg

    results: dict[str, Any] = {}

    def deduct_as(name: str, credit_client: CreditClient) -> None:
        results[name] = credit_client.deduct("generate_content", idempotency_key="job-7")

    with psycopg.connect(live_portal.database_url) as blocker:
        # NO KEY UPDATE: holds up the debit's UPDATE, not the foreign-key check of the claim.
        blocker.execute(
            "SELECT id FROM organizations WHERE slug = %s FOR NO KEY UPDATE", (org.slug,)
        )
        first = threading.Thread(target=deduct_as, args=("first", client))
        first.start()
        with psycopg.connect(live_portal.database_url, autocommit=True) as watcher:
            deadline = time.monotonic() + 10
            while not watcher.execute(
                "SELECT 1 FROM idempotency_records WHERE key = 'job-7' AND state = 'pending'"
            ).fetchone():
                assert time.monotonic() < deadline, "the first request never claimed its key"
                time.sleep(0.01)
        with make_client(
            proxy.url, org.api_key, max_retries=30, backoff=0.02, max_backoff=0.05
        ) as second_client:
            second = threading.Thread(target=deduct_as, args=("second", second_client))
            second.start()
            deadline = time.monotonic() + 10
            while not any(x.response_status == 409 for x in proxy.seen("/credits/deduct")):
                assert time.monotonic() < deadline, "the duplicate never saw the key in use"
                time.sleep(0.01)
            blocker.rollback()  # let the first request finish
            first.join(10)
            second.join(10)

    statuses = [x.response_status for x in proxy.seen("/credits/deduct")]
    assert statuses[0] == 409 and statuses[-1] == 201
    assert results["first"].replayed is False and results["second"].replayed is True
    assert results["first"].deduction_id == results["second"].deduction_id
    assert len(charges(client)) == 1
    assert ledger(client)[-1].balance_after == Decimal(999)
