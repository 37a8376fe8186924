"""What the sync and async clients share: the wire format, one call's description, retries.

A ``Call`` describes one API request and how to read its answer; ``operations`` builds them.
The two clients differ only in *how* they send a call (blocking or awaited) and sleep between
attempts; everything they decide (what to send, which failures to retry, how long to wait, what a
response means) lives here, once.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

import httpx

from portal.client.errors import (
    CreditsAPIError,
    CreditsConnectionError,
    IdempotencyKeyInUseError,
    RateLimitedError,
    ServerError,
    error_from_payload,
)

T = TypeVar("T")

log = logging.getLogger("portal.client")

USER_AGENT = "credits-portal-client/1"
REPLAY_HEADER = "Idempotent-Replayed"
API_PATH = "/api/v1"  # every call's path starts with it
# Failures after which the request may or may not have reached the portal: safe to resend only
# because every mutating call carries its idempotency key.
RETRYABLE_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


# --- JSON: Decimal in, Decimal out, never a float on the way ---------------------------------


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite number")
        return format(value, "f")
    if isinstance(value, float):
        # Only user metadata can hold floats (amounts are validated first); keep them as given.
        return json.dumps(value, allow_nan=False)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            items.append(f"{json.dumps(key)}:{_encode(item)}")
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(value: Any) -> bytes:
    """JSON with ``Decimal`` written as a plain number (``0.001``), exactly as given."""
    return _encode(value).encode()


def decode_json(content: bytes) -> Any:
    return json.loads(content, parse_float=Decimal)


# --- one call -----------------------------------------------------------------------------------

Parser = Callable[[Any, bool], T]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API request and the reader of its answer (``parse(payload, replayed)``)."""

    method: str
    path: str
    parse: Parser[T]
    body: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None
    idempotency_key: str | None = None

    def request_args(self) -> dict[str, Any]:
        """Arguments for ``httpx.Client.build_request``: built once, sent on every attempt."""
        headers = {}
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        args: dict[str, Any] = {"method": self.method, "url": self.path, "headers": headers}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
            args["content"] = encode_json(self.body)
        if self.params:
            args["params"] = dict(self.params)
        return args


def interpret(call: Call[T], response: httpx.Response) -> T:
    """The typed result of a 2xx, or raise the typed error of anything else."""
    status = response.status_code
    try:
        payload = decode_json(response.content) if response.content else None
    except ValueError:
        payload = None
        if 200 <= status < 300:
            raise CreditsAPIError(
                "The portal answered with a body that is not JSON.",
                status=status,
                code="invalid_response",
            ) from None
    if 200 <= status < 300:
        replayed = response.headers.get(REPLAY_HEADER, "").lower() == "true"
        return call.parse(payload, replayed)
    error = error_from_payload(status, payload, response.text if payload is None else "")
    error.retry_after = _retry_after(response.headers.get("Retry-After"))
    raise error


def _retry_after(value: str | None) -> float | None:
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:  # an HTTP date: rare enough to fall back to our own backoff
        return None


def connection_error(exc: httpx.TransportError, call: Call[Any]) -> CreditsConnectionError:
    error = CreditsConnectionError(
        f"{call.method} {call.path} failed: {type(exc).__name__}: {exc or 'no detail'}",
        details={"retryable": isinstance(exc, RETRYABLE_TRANSPORT_ERRORS)},
    )
    error.__cause__ = exc
    return error


# --- retries ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter, for failures a resend can cure.

    Retried: connection errors and timeouts, 5xx, 429 and 409 ``idempotency_key_in_use`` (the
    first attempt is still running). Every call either changes nothing or carries its
    idempotency key, so a resend is either harmless or replayed, never charged twice.
    """

    max_retries: int = 3
    backoff: float = 0.2
    max_backoff: float = 5.0
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def retryable(self, error: CreditsAPIError) -> bool:
        if isinstance(error, CreditsConnectionError):
            return bool(error.details.get("retryable"))
        return isinstance(error, ServerError | RateLimitedError | IdempotencyKeyInUseError)

    def delay(self, attempt: int, error: CreditsAPIError) -> float | None:
        """Seconds to wait before resending after failed ``attempt`` (0-based), or None: give up."""
        if attempt >= self.max_retries or not self.retryable(error):
            return None
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        # Half fixed, half random: spreads a herd of clients without ever retrying at once.
        delay = ceiling * (0.5 + self.jitter() / 2)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.max_backoff))
        return delay


def log_retry(call: Call[Any], attempt: int, error: CreditsAPIError, delay: float) -> None:
    log.warning(
        "credits %s %s failed (%s), retry %d in %.2fs with idempotency key %s",
        call.method,
        call.path,
        error,
        attempt + 1,
        delay,
        call.idempotency_key,
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """Connection settings both clients are built from."""

    base_url: str
    api_key: str
    timeout: float
    retry: RetryPolicy

    @classmethod
    def create(
        cls,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        max_retries: int,
        backoff: float,
        max_backoff: float,
    ) -> Settings:
        base_url = base_url.strip()
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        api_key = api_key.strip()  # pasted keys bring their newline along
        if not api_key:
            raise ValueError("api_key is required")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        # The portal's address, or the API's (as curl examples write it): both mean the portal.
        base_url = base_url.rstrip("/").removesuffix(API_PATH).rstrip("/")
        return cls(base_url, api_key, timeout, RetryPolicy(max_retries, backoff, max_backoff))

    def httpx_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "timeout": httpx.Timeout(self.timeout),
            "headers": {
                "Authorization": f"Bearer {self.api_key}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
        }
