"""Token pricing of AI calls: one batch per call, and streams charged once when they end."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from portal.client import (
    AsyncCreditClient,
    CreditClient,
    FeatureNotFoundError,
    InsufficientCreditsError,
    MeteredStream,
    meter_stream,
    track_ai_usage,
    track_ai_usage_async,
    use_client,
)
from tests.client.conftest import charges, make_client
from tests.client.faults import FaultProxy
from tests.live import LivePortal, OrgKey, Seeder


def test_track_ai_usage_charges_both_sides_in_one_call(
    proxy: FaultProxy, org: OrgKey, client: CreditClient
) -> None:
    with make_client(proxy.url, org.api_key) as via_proxy:
        batch = track_ai_usage(
            model="Claude-3.5-Sonnet",
            input_tokens=1234,
            output_tokens=567,
            client=via_proxy,
            user="user-9",
            description="AI chat message",
        )

    assert batch is not None
    assert [(d.feature_key, d.quantity) for d in batch.deductions] == [
        ("claude_3_5_sonnet_input_1k_tokens", Decimal("1.234")),
        ("claude_3_5_sonnet_output_1k_tokens", Decimal("0.567")),
    ]
    # 1.234 × 0.003 + 0.567 × 0.015, exactly
    assert batch.credits_deducted == Decimal("0.003702") + Decimal("0.008505")
    assert [x.path for x in proxy.exchanges] == ["/api/v1/credits/deduct-batch"]
    assert [row.user for row in charges(client)] == ["user-9", "user-9"]


def test_nothing_to_charge_sends_nothing(client: CreditClient) -> None:
    assert client.track_ai_usage("gpt-4o", 0, 0) is None
    only_input = client.track_ai_usage("GPT-4o", 2000, 0)
    assert only_input is not None and len(only_input.deductions) == 1
    assert [row.feature_key for row in charges(client)] == ["gpt_4o_input_1k_tokens"]


def test_an_unpriced_model_charges_neither_side(client: CreditClient) -> None:
    with pytest.raises(FeatureNotFoundError) as caught:
        client.track_ai_usage("mystery-model", 100, 100)
    assert caught.value.feature_key == "mystery_model_input_1k_tokens"
    assert charges(client) == []


def test_track_ai_usage_async_with_the_context_client(live_portal: LivePortal, org: OrgKey) -> None:
    async def scenario() -> Any:
        async with AsyncCreditClient(live_portal.url, org.api_key) as credit_client:
            with use_client(credit_client):
                return await track_ai_usage_async(
                    model="gpt-4o", input_tokens=4000, output_tokens=1000
                )

    batch = asyncio.run(scenario())
    assert batch.credits_deducted == Decimal("0.02")  # 4 × 0.0025 + 1 × 0.01


# --- streams ---------------------------------------------------------------------------------


def anthropic_events(input_tokens: int, output_tokens: int, texts: list[str]) -> list[Any]:
    """Objects shaped like the Anthropic SDK's stream events (running totals of usage)."""
    usage = SimpleNamespace(input_tokens=input_tokens, output_tokens=1)
    events: list[Any] = [
        SimpleNamespace(type="message_start", message=SimpleNamespace(usage=usage))
    ]
    events += [SimpleNamespace(type="content_block_delta", text=text) for text in texts]
    events.append(
        SimpleNamespace(type="message_delta", usage=SimpleNamespace(output_tokens=output_tokens))
    )
    return events


class Source:
    """A chunk source that records whether it was closed (as an HTTP stream would be)."""

    def __init__(self, chunks: list[Any], fail_after: int | None = None) -> None:
        self.chunks, self.fail_after, self.closed = chunks, fail_after, False

    def __iter__(self) -> Iterator[Any]:
        try:
            for index, chunk in enumerate(self.chunks):
                if index == self.fail_after:
                    raise ConnectionError("stream broke")
                yield chunk
        finally:
            self.closed = True


def test_a_stream_is_charged_once_when_it_ends(client: CreditClient) -> None:
    events = anthropic_events(1200, 345, ["Hel", "lo"])

    stream = meter_stream(events, model="claude-3-5-sonnet", client=client, user="user-3")
    assert isinstance(stream, MeteredStream)
    passed = list(stream)

    assert passed == events  # chunks pass through untouched
    assert (stream.input_tokens, stream.output_tokens, stream.settled) == (1200, 345, True)
    assert stream.result is not None
    assert stream.result.credits_deducted == Decimal("0.0036") + Decimal("0.005175")
    assert [(row.feature_key, row.quantity) for row in charges(client)] == [
        ("claude_3_5_sonnet_input_1k_tokens", Decimal("1.2")),
        ("claude_3_5_sonnet_output_1k_tokens", Decimal("0.345")),
    ]


def test_openai_style_dict_chunks(client: CreditClient) -> None:
    chunks = [
        {"choices": ["Hi"]},
        {"choices": [], "usage": {"prompt_tokens": 10_000, "completion_tokens": 500}},
    ]
    assert len(list(meter_stream(chunks, model="gpt-4o", client=client))) == 2
    assert sum(-row.amount for row in charges(client)) == Decimal("0.03")


def test_stopping_early_charges_what_was_used(client: CreditClient) -> None:
    source = Source(anthropic_events(1000, 2000, ["a", "b", "c"]))

    with meter_stream(source, model="claude-3-5-sonnet", client=client) as stream:
        for chunk in stream:
            if getattr(chunk, "text", None) == "a":
                break  # the consumer hung up

    assert source.closed
    assert stream.result is not None and len(stream.result.deductions) == 2
    assert [row.quantity for row in charges(client)] == [Decimal(1), Decimal("0.001")]


def test_an_abandoned_stream_is_charged_when_collected(client: CreditClient) -> None:
    def consume_first() -> None:
        for _chunk in meter_stream(anthropic_events(3000, 9, ["x"]), model="gpt-4o", client=client):
            break

    consume_first()
    gc.collect()
    assert [row.quantity for row in charges(client)] == [Decimal(3), Decimal("0.001")]


def test_a_failing_source_still_pays_for_what_it_used(client: CreditClient) -> None:
    source = Source(anthropic_events(2000, 50, ["a", "b"]), fail_after=2)
    with pytest.raises(ConnectionError):
        for _chunk in meter_stream(source, model="gpt-4o", client=client):
            pass
    assert [row.quantity for row in charges(client)] == [Decimal(2), Decimal("0.001")]


def test_deltas_and_custom_extractors(client: CreditClient) -> None:
    chunks = [("text", 0, 10), ("text", 0, 15), ("final", 900, 0)]
    stream = meter_stream(
        chunks,
        model="gpt-4o",
        client=client,
        extractor=lambda chunk: (chunk[1], chunk[2]),
        cumulative=False,
    )
    for _chunk in stream:
        pass
    assert (stream.input_tokens, stream.output_tokens) == (900, 25)


def test_a_stream_without_usage_charges_nothing(client: CreditClient) -> None:
    stream = meter_stream(iter(["plain", "text"]), model="gpt-4o", client=client)
    assert list(stream) == ["plain", "text"]
    assert stream.settled and stream.result is None
    assert charges(client) == []


def test_a_shortfall_at_the_end_is_raised_to_the_consumer(
    live_portal: LivePortal, seeder: Seeder
) -> None:
    poor = seeder.org(Decimal("0.001"))
    with make_client(live_portal.url, poor.api_key) as credit_client:
        with pytest.raises(InsufficientCreditsError):
            for _chunk in meter_stream(
                anthropic_events(100_000, 100_000, ["x"]), model="gpt-4o", client=credit_client
            ):
                pass
        assert charges(credit_client) == []


def test_async_streams_are_charged_at_the_end_and_on_early_exit(
    live_portal: LivePortal, org: OrgKey
) -> None:
    closed: list[bool] = []

    async def events(texts: list[str]) -> AsyncIterator[Any]:
        try:
            for event in anthropic_events(5000, 1000, texts):
                await asyncio.sleep(0)
                yield event
        finally:
            closed.append(True)

    async def scenario() -> tuple[int, Any]:
        async with AsyncCreditClient(live_portal.url, org.api_key) as credit_client:
            full = meter_stream(events(["a", "b"]), model="gpt-4o", client=credit_client)
            received = [chunk async for chunk in full]
            async with meter_stream(
                events(["c", "d"]), model="gpt-4o", client=credit_client
            ) as partial:
                async for _chunk in partial:
                    break
            return len(received), (full.result, partial.result)

    count, (full, partial) = asyncio.run(scenario())
    assert count == 4 and closed == [True, True]
    assert full.credits_deducted == Decimal("0.0225")  # 5 × 0.0025 + 1 × 0.01
    assert partial.credits_deducted == Decimal("0.01251")  # output seen so far: 1 token
    with make_client(live_portal.url, org.api_key) as credit_client:
        assert len(charges(credit_client)) == 4
