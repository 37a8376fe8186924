"""``CreditClient``, the blocking client; its async twin (``aio``) shares ``_wire``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from portal.client import operations as ops
from portal.client._wire import Call, Settings, connection_error, interpret, log_retry
from portal.client.errors import CreditsAPIError
from portal.client.grants import Grant
from portal.client.operations import Number
from portal.client.reservations import ReservationHold
from portal.client.results import (
    Balance,
    BatchDeduction,
    Capture,
    CheckResult,
    Deduction,
    DeductLine,
    Department,
    FeaturePrice,
    Page,
    Refund,
    Release,
    Reservation,
    Transaction,
    UsageRecord,
    UsageSummary,
)
from portal.client.tokens import token_lines

T = TypeVar("T")
Moment = date | datetime | str


class CreditClient:
    """Talks to the portal's JSON API with one organization's API key.

    Mutating calls carry an idempotency key made once per call (or the caller's
    ``idempotency_key=``) and resent unchanged on every retry, so a dropped connection or a
    5xx can be retried without ever charging twice. Use it as a context manager, or call
    ``close()``, to free its connection pool.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = Settings.create(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self._http = httpx.Client(**self.settings.httpx_options(), transport=transport)

    def __repr__(self) -> str:
        return f"CreditClient({self.settings.base_url!r})"

    def __enter__(self) -> CreditClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call[T]) -> T:
        """Send ``call``, resending the same request (same key) while the failure is retryable."""
        request = self._http.build_request(**call.request_args())
        attempt = 0
        while True:
            try:
                return interpret(call, self._http.send(request))
            except httpx.TransportError as exc:
                error: CreditsAPIError = connection_error(exc, call)
            except CreditsAPIError as exc:
                error = exc
            delay = self.settings.retry.delay(attempt, error)
            if delay is None:
                raise error
            log_retry(call, attempt, error, delay)
            time.sleep(delay)
            attempt += 1

    def _every(self, page_at: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        """Every item of a listing, following ``next_cursor`` until the last page."""
        cursor = None
        while True:
            page = self.send(page_at(cursor))
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # --- reads -----------------------------------------------------------------------------

    def balance(self) -> Balance:
        return self.send(ops.balance())

    def check(
        self, feature_key: str, quantity: Number = 1, department: str | None = None
    ) -> CheckResult:
        """Would this deduct succeed now? Charges nothing (``reason`` says why not)."""
        return self.send(ops.check(feature_key, quantity, department))

    def pricing(self, feature_key: str) -> FeaturePrice:
        return self.send(ops.pricing(feature_key))

    def features(self) -> list[FeaturePrice]:
        """Active feature prices, by category."""
        return self.send(ops.features())

    def usage(
        self,
        *,
        start: Moment | None = None,
        end: Moment | None = None,
        feature_key: str | None = None,
        category: str | None = None,
        department: str | None = None,
        page_size: int = ops.DEFAULT_PAGE_SIZE,
    ) -> Iterator[UsageRecord]:
        """Every deduction matching the filters, newest first, fetching pages as it goes."""
        query = ops.ledger_query(
            start=start, end=end, feature_key=feature_key, category=category, department=department
        )
        yield from self._every(lambda cursor: ops.usage_page(query, page_size, cursor))

    def usage_summary(
        self,
        group_by: str = "feature",
        *,
        start: Moment | None = None,
        end: Moment | None = None,
        feature_key: str | None = None,
        category: str | None = None,
        department: str | None = None,
    ) -> UsageSummary:
        query = ops.ledger_query(
            start=start, end=end, feature_key=feature_key, category=category, department=department
        )
        return self.send(ops.usage_summary(group_by, query))

    def transactions(
        self, *, kind: str | None = None, page_size: int = ops.DEFAULT_PAGE_SIZE
    ) -> Iterator[Transaction]:
        """Every ledger row of the organization (or only those of ``kind``), newest first."""
        yield from self._every(lambda cursor: ops.transactions_page(page_size, cursor, kind))

    def grants(
        self, status: str = "active", *, page_size: int = ops.DEFAULT_PAGE_SIZE
    ) -> Iterator[Grant]:
        """The organization's grants, newest first: ``active`` (credits left, not expired),
        ``expired`` or ``all``; fetching pages as it goes."""
        yield from self._every(lambda cursor: ops.grants_page(status, page_size, cursor))

    def departments(self) -> list[Department]:
        return self.send(ops.departments())

    def set_department_limit(self, name: str, monthly_limit: Number | None) -> Department:
        """Set (or with None remove) a department's monthly limit; creates the department."""
        return self.send(ops.set_department_limit(name, monthly_limit))

    # --- writes ------------------------------------------------------------------------------

    def deduct(
        self,
        feature_key: str,
        quantity: Number = 1,
        *,
        department: str | None = None,
        user: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Deduction:
        return self.send(
            ops.deduct(
                feature_key,
                quantity,
                department=department,
                user=user,
                description=description,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    def deduct_batch(
        self,
        lines: Iterable[DeductLine | Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> BatchDeduction:
        """Charge every line or none, idempotent as a whole."""
        return self.send(ops.deduct_batch(lines, idempotency_key=idempotency_key))

    def refund(
        self,
        deduction_id: int,
        amount: Number | None = None,
        reason: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Refund:
        """Give back ``amount`` (default: all that is still refundable) of one deduction."""
        return self.send(ops.refund(deduction_id, amount, reason, idempotency_key=idempotency_key))

    def reserve(
        self,
        feature_key: str,
        quantity: Number = 1,
        *,
        expires_in: int | None = None,
        idempotency_key: str | None = None,
    ) -> Reservation:
        return self.send(
            ops.reserve(
                feature_key, quantity, expires_in=expires_in, idempotency_key=idempotency_key
            )
        )

    def capture(
        self,
        reservation_id: int,
        quantity: Number | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Capture:
        """Charge ``quantity`` (default: all) of a hold at its price and release the rest."""
        return self.send(ops.capture(reservation_id, quantity, idempotency_key=idempotency_key))

    def release(self, reservation_id: int, *, idempotency_key: str | None = None) -> Release:
        return self.send(ops.release(reservation_id, idempotency_key=idempotency_key))

    def reservation(
        self,
        feature_key: str,
        quantity: Number = 1,
        *,
        expires_in: int | None = None,
        idempotency_key: str | None = None,
    ) -> ReservationHold:
        """``with client.reservation("generate_video", quantity=30) as hold: ...``"""
        return ReservationHold(
            self, feature_key, quantity, expires_in=expires_in, idempotency_key=idempotency_key
        )

    def track_ai_usage(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        department: str | None = None,
        user: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> BatchDeduction | None:
        """Charge an AI call's tokens in one batch; None when both counts are zero."""
        lines = token_lines(
            model,
            input_tokens,
            output_tokens,
            department=department,
            user=user,
            description=description,
            metadata=metadata,
        )
        return self.deduct_batch(lines, idempotency_key=idempotency_key) if lines else None
