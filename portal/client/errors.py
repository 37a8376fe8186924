"""Typed errors mapped from the API's error codes, so callers catch meanings, not status codes.

Every error is a ``CreditsAPIError``; the specific class comes from the response's ``code`` and,
for codes this client does not know yet, from the HTTP status. Extra fields of the error body
(``required``, ``available``, ``field``…) stay in ``details`` and the common ones are exposed as
typed properties, with amounts as ``Decimal``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


class CreditsAPIError(Exception):
    """Base of every error the client raises about the portal or the way to it."""

    default_status: ClassVar[int | None] = None
    default_code: ClassVar[str] = "error"
    # Seconds the server asked us to wait (a ``Retry-After`` header), honoured by retries.
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = self.default_status if status is None else status
        self.code = code or self.default_code
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        status = "" if self.status is None else f" (HTTP {self.status})"
        return f"{self.code}{status}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r})"


class CreditsConnectionError(CreditsAPIError):
    """The portal could not be reached or did not answer in time, after every retry."""

    default_code = "connection_error"


class ClientConfigurationError(CreditsAPIError):
    """No client could be found: pass ``client=``, use ``use_client()`` or call ``configure()``."""

    default_code = "client_not_configured"


# --- by HTTP status: the fallbacks for codes this client does not know -------------------------


class BadRequestError(CreditsAPIError):
    default_status = 400
    default_code = "bad_request"


class AuthenticationError(CreditsAPIError):
    """The API key is missing, unknown or revoked."""

    default_status = 401
    default_code = "unauthorized"


class PermissionDeniedError(CreditsAPIError):
    default_status = 403
    default_code = "forbidden"


class NotFoundError(CreditsAPIError):
    default_status = 404
    default_code = "not_found"


class ConflictError(CreditsAPIError):
    default_status = 409
    default_code = "conflict"


class UnprocessableError(CreditsAPIError):
    default_status = 422
    default_code = "unprocessable"


class PaymentRequiredError(CreditsAPIError):
    """The charge was refused for lack of credits; nothing was written."""

    default_status = 402
    default_code = "payment_required"


class RateLimitedError(CreditsAPIError):
    default_status = 429
    default_code = "rate_limited"


class ServerError(CreditsAPIError):
    """The portal failed (5xx) on every attempt; with an idempotency key no retry double-charged."""

    default_status = 500
    default_code = "internal_error"


# --- by code ----------------------------------------------------------------------------------


class InvalidJSONError(BadRequestError):
    default_code = "invalid_json"


class InvalidRequestError(UnprocessableError):
    """A field was missing or out of range; ``field`` names it (``lines[1].quantity``…)."""

    default_code = "invalid_request"

    @property
    def field(self) -> str | None:
        return self.details.get("field")


class InsufficientCreditsError(PaymentRequiredError):
    default_code = "insufficient_credits"

    @property
    def required(self) -> Decimal | None:
        return _decimal(self.details.get("required"))

    @property
    def available(self) -> Decimal | None:
        return _decimal(self.details.get("available"))


class DepartmentLimitExceededError(PaymentRequiredError):
    default_code = "department_limit_exceeded"

    @property
    def limit(self) -> Decimal | None:
        return _decimal(self.details.get("limit"))

    @property
    def used(self) -> Decimal | None:
        return _decimal(self.details.get("used"))

    @property
    def required(self) -> Decimal | None:
        return _decimal(self.details.get("required"))


class FeatureNotFoundError(NotFoundError):
    """No active price for this feature key (unknown, inactive or archived)."""

    default_code = "feature_not_found"

    @property
    def feature_key(self) -> str | None:
        return self.details.get("feature_key")


class DepartmentNotFoundError(NotFoundError):
    default_code = "department_not_found"

    @property
    def department(self) -> str | None:
        return self.details.get("department")


class DeductionNotFoundError(NotFoundError):
    default_code = "deduction_not_found"


class ReservationNotFoundError(NotFoundError):
    default_code = "reservation_not_found"


class AlreadyRefundedError(ConflictError):
    default_code = "already_refunded"


class ReservationNotOpenError(ConflictError):
    """The hold was already captured, released or has expired."""

    default_code = "reservation_not_open"

    @property
    def reservation_status(self) -> str | None:
        return self.details.get("status")


class IdempotencyKeyInUseError(ConflictError):
    """Another request with this key is still in flight; retried with backoff before raising."""

    default_code = "idempotency_key_in_use"


class RefundExceedsDeductionError(ConflictError):
    default_code = "refund_exceeds_deduction"

    @property
    def refundable(self) -> Decimal | None:
        return _decimal(self.details.get("refundable"))


class IdempotencyKeyReusedError(UnprocessableError):
    """The key was already used for a different request body: a bug in the caller's keys."""

    default_code = "idempotency_key_reused"


ERRORS_BY_CODE: dict[str, type[CreditsAPIError]] = {
    cls.default_code: cls
    for cls in (
        InvalidJSONError,
        InvalidRequestError,
        AuthenticationError,
        PermissionDeniedError,
        InsufficientCreditsError,
        DepartmentLimitExceededError,
        FeatureNotFoundError,
        DepartmentNotFoundError,
        DeductionNotFoundError,
        ReservationNotFoundError,
        AlreadyRefundedError,
        ReservationNotOpenError,
        IdempotencyKeyInUseError,
        RefundExceedsDeductionError,
        IdempotencyKeyReusedError,
    )
}

ERRORS_BY_STATUS: dict[int, type[CreditsAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableError,
    429: RateLimitedError,
}


def error_class(status: int, code: str | None) -> type[CreditsAPIError]:
    """The most specific class: by code when it fits the status, else by status."""
    if status >= 500:
        return ServerError
    by_code = ERRORS_BY_CODE.get(code or "")
    if by_code is not None and by_code.default_status == status:
        return by_code
    return ERRORS_BY_STATUS.get(status, CreditsAPIError)


def error_from_payload(status: int, payload: Any, text: str = "") -> CreditsAPIError:
    """Build the typed error for a non-2xx response (JSON error body or anything else)."""
    body = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = body["code"]
        message = str(body.get("message") or code)
        details = {k: v for k, v in body.items() if k not in ("code", "message")}
    else:
        # A proxy or load balancer answered, not the portal: keep a short excerpt to debug by.
        code = f"http_{status}"
        message = text.strip()[:200] or f"HTTP {status} without an error body"
        details = {}
    return error_class(status, code)(message, status=status, code=code, details=details)
