"""Python client of the credits portal: integrate an app in three lines, never charge twice.

    from portal.client import configure, consume_credits
    configure(base_url="https://credits.example.com", api_key="cpk_...")

    @consume_credits("generate_video", quantity=lambda seconds: seconds)
    def generate_video(prompt: str, seconds: int) -> bytes: ...

Needs only the standard library and httpx (no Flask, no database driver), so other apps can
install it alone. See docs/integration.md for every pattern.
"""

from __future__ import annotations

from portal.client.ai import (
    AsyncMeteredStream,
    MeteredStream,
    meter_stream,
    track_ai_usage,
    track_ai_usage_async,
)
from portal.client.aio import AsyncCreditClient
from portal.client.context import (
    configure,
    reset_default,
    resolve_async_client,
    resolve_client,
    use_client,
)
from portal.client.decorators import consume_credits, credit_aware, require_credits
from portal.client.errors import (
    AlreadyRefundedError,
    AuthenticationError,
    BadRequestError,
    ClientConfigurationError,
    ConflictError,
    CreditsAPIError,
    CreditsConnectionError,
    DeductionNotFoundError,
    DepartmentLimitExceededError,
    DepartmentNotFoundError,
    FeatureNotFoundError,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    InsufficientCreditsError,
    InvalidJSONError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    RefundExceedsDeductionError,
    ReservationNotFoundError,
    ReservationNotOpenError,
    ServerError,
    UnprocessableError,
)
from portal.client.grants import Expiry, Grant, ReturnedCredits
from portal.client.reservations import AsyncReservationHold, ReservationHold
from portal.client.results import (
    Balance,
    BatchDeduction,
    Capture,
    CheckResult,
    CreditInfo,
    Deduction,
    DeductLine,
    Department,
    FeaturePrice,
    Refund,
    Release,
    Reservation,
    Transaction,
    UsageRecord,
    UsageSummary,
    UsageSummaryRow,
)
from portal.client.sync import CreditClient
from portal.client.tokens import default_usage, normalize_model

__all__ = [
    "AlreadyRefundedError",
    "AsyncCreditClient",
    "AsyncMeteredStream",
    "AsyncReservationHold",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "BatchDeduction",
    "Capture",
    "CheckResult",
    "ClientConfigurationError",
    "ConflictError",
    "CreditClient",
    "CreditInfo",
    "CreditsAPIError",
    "CreditsConnectionError",
    "DeductLine",
    "Deduction",
    "DeductionNotFoundError",
    "Department",
    "DepartmentLimitExceededError",
    "DepartmentNotFoundError",
    "Expiry",
    "FeatureNotFoundError",
    "FeaturePrice",
    "Grant",
    "IdempotencyKeyInUseError",
    "IdempotencyKeyReusedError",
    "InsufficientCreditsError",
    "InvalidJSONError",
    "InvalidRequestError",
    "MeteredStream",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitedError",
    "Refund",
    "RefundExceedsDeductionError",
    "Release",
    "Reservation",
    "ReservationHold",
    "ReservationNotFoundError",
    "ReservationNotOpenError",
    "ReturnedCredits",
    "ServerError",
    "Transaction",
    "UnprocessableError",
    "UsageRecord",
    "UsageSummary",
    "UsageSummaryRow",
    "configure",
    "consume_credits",
    "credit_aware",
    "default_usage",
    "meter_stream",
    "normalize_model",
    "require_credits",
    "reset_default",
    "resolve_async_client",
    "resolve_client",
    "track_ai_usage",
    "track_ai_usage_async",
    "use_client",
]
