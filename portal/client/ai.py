"""Charging AI calls: ``track_ai_usage`` for a finished call, ``meter_stream`` for a streamed one.

Both price tokens by the model's ``<model>_input_1k_tokens`` / ``<model>_output_1k_tokens``
features in one ``deduct-batch`` call (see ``tokens``). ``meter_stream`` wraps the chunks as they
pass through, counts tokens, and charges exactly once when the stream ends: exhausted, failed,
or closed early by a consumer that stopped reading (``break`` then ``close()``, leaving a ``with``
block, or garbage collection of a sync stream).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from portal.client.aio import AsyncCreditClient
from portal.client.context import resolve_async_client, resolve_client
from portal.client.errors import CreditsAPIError
from portal.client.operations import new_idempotency_key
from portal.client.results import BatchDeduction
from portal.client.sync import CreditClient
from portal.client.tokens import TokenMeter, UsageExtractor, default_usage

T = TypeVar("T")
log = logging.getLogger("portal.client")


def track_ai_usage(
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    client: CreditClient | None = None,
    department: str | None = None,
    user: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> BatchDeduction | None:
    """Charge one AI call's tokens (both sides or neither); None when there is nothing to charge."""
    return resolve_client(client).track_ai_usage(
        model,
        input_tokens,
        output_tokens,
        department=department,
        user=user,
        description=description,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )


async def track_ai_usage_async(
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    client: AsyncCreditClient | None = None,
    department: str | None = None,
    user: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> BatchDeduction | None:
    """``track_ai_usage`` for async code."""
    return await resolve_async_client(client).track_ai_usage(
        model,
        input_tokens,
        output_tokens,
        department=department,
        user=user,
        description=description,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )


@dataclass
class _StreamBill:
    """What a metered stream will charge, and whether it has."""

    model: str
    meter: TokenMeter
    options: dict[str, Any]
    # Fixed when the stream is made: however the charge is retried, it is charged once.
    idempotency_key: str = field(default_factory=new_idempotency_key)
    settled: bool = False
    result: BatchDeduction | None = None

    def arguments(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_tokens": self.meter.input_tokens,
            "output_tokens": self.meter.output_tokens,
            "idempotency_key": self.idempotency_key,
            **self.options,
        }

    def note_failure(self, exc: BaseException, error: CreditsAPIError) -> None:
        note = (
            f"charging the stream's {self.meter.input_tokens} input and "
            f"{self.meter.output_tokens} output tokens of {self.model} failed: {error}"
        )
        log.error(note)
        exc.add_note(note)


class _MeteredBase:
    _bill: _StreamBill

    @property
    def input_tokens(self) -> int:
        return self._bill.meter.input_tokens

    @property
    def output_tokens(self) -> int:
        return self._bill.meter.output_tokens

    @property
    def settled(self) -> bool:
        return self._bill.settled

    @property
    def result(self) -> BatchDeduction | None:
        """The batch charged when the stream ended (None before, or when no tokens were seen)."""
        return self._bill.result


class MeteredStream(_MeteredBase, Generic[T]):
    """An iterator over the wrapped chunks that charges their tokens once, when it ends."""

    def __init__(self, chunks: Iterable[T], client: CreditClient, bill: _StreamBill) -> None:
        self._client = client
        self._bill = bill
        self._source = iter(chunks)
        self._chunks = self._run()

    def _run(self) -> Iterator[T]:
        try:
            for chunk in self._source:
                self._bill.meter.observe(chunk)
                yield chunk
        except GeneratorExit:  # the consumer stopped early
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
            self._settle()
            raise
        except BaseException as exc:  # the source failed: the tokens it used still count
            try:
                self._settle()
            except CreditsAPIError as error:
                self._bill.note_failure(exc, error)
            raise
        self._settle()

    def _settle(self) -> None:
        if not self._bill.settled:
            self._bill.settled = True
            self._bill.result = self._client.track_ai_usage(**self._bill.arguments())

    def __iter__(self) -> MeteredStream[T]:
        return self

    def __next__(self) -> T:
        return next(self._chunks)

    def close(self) -> None:
        """Stop early: close the source and charge what was seen so far."""
        self._chunks.close()

    def __enter__(self) -> MeteredStream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncMeteredStream(_MeteredBase, Generic[T]):
    """``MeteredStream`` over an async iterator; close it with ``async with`` or ``aclose()``.

    (An abandoned async generator is only finalised when the event loop gets round to it, so
    use ``async with`` when the consumer may stop early.)
    """

    def __init__(
        self, chunks: AsyncIterable[T], client: AsyncCreditClient, bill: _StreamBill
    ) -> None:
        self._client = client
        self._bill = bill
        self._source = aiter(chunks)
        self._chunks = self._run()

    async def _run(self) -> AsyncIterator[T]:
        try:
            async for chunk in self._source:
                self._bill.meter.observe(chunk)
                yield chunk
        except GeneratorExit:
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                await aclose()
            await self._settle()
            raise
        except BaseException as exc:
            try:
                await self._settle()
            except CreditsAPIError as error:
                self._bill.note_failure(exc, error)
            raise
        await self._settle()

    async def _settle(self) -> None:
        if not self._bill.settled:
            self._bill.settled = True
            self._bill.result = await self._client.track_ai_usage(**self._bill.arguments())

    def __aiter__(self) -> AsyncMeteredStream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()

    async def __aenter__(self) -> AsyncMeteredStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@overload
def meter_stream(
    chunks: AsyncIterable[T],
    *,
    model: str,
    client: AsyncCreditClient | None = ...,
    extractor: UsageExtractor = ...,
    cumulative: bool = ...,
    department: str | None = ...,
    user: str | None = ...,
    description: str | None = ...,
    metadata: Mapping[str, Any] | None = ...,
    idempotency_key: str | None = ...,
) -> AsyncMeteredStream[T]: ...


@overload
def meter_stream(
    chunks: Iterable[T],
    *,
    model: str,
    client: CreditClient | None = ...,
    extractor: UsageExtractor = ...,
    cumulative: bool = ...,
    department: str | None = ...,
    user: str | None = ...,
    description: str | None = ...,
    metadata: Mapping[str, Any] | None = ...,
    idempotency_key: str | None = ...,
) -> MeteredStream[T]: ...


def meter_stream(
    chunks: Iterable[T] | AsyncIterable[T],
    *,
    model: str,
    client: CreditClient | AsyncCreditClient | None = None,
    extractor: UsageExtractor = default_usage,
    cumulative: bool = True,
    department: str | None = None,
    user: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> MeteredStream[T] | AsyncMeteredStream[T]:
    """Wrap a (sync or async) stream of chunks; charge its tokens once when it ends.

    ``extractor(chunk)`` returns ``(input_tokens, output_tokens)`` (either may be None) or None
    for chunks without usage; the default reads ``usage`` objects or dicts. With ``cumulative``
    (the default) counts are running totals and the largest wins; otherwise they add up. The
    client is resolved now, not when the stream ends, so ``use_client`` blocks need not
    outlive the stream.
    """
    bill = _StreamBill(
        model,
        TokenMeter(extractor, cumulative),
        {"department": department, "user": user, "description": description, "metadata": metadata},
    )
    if idempotency_key is not None:
        bill.idempotency_key = idempotency_key
    if isinstance(chunks, AsyncIterable):
        return AsyncMeteredStream(chunks, resolve_async_client(client), bill)  # type: ignore[arg-type]
    return MeteredStream(chunks, resolve_client(client), bill)  # type: ignore[arg-type]
