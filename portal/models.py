"""Every model in one import, for Alembic's autogenerate and for the shell."""

from portal.auth.models import Invitation, Membership, User
from portal.billing.models import (
    BillingCustomer,
    Invoice,
    Package,
    Payment,
    Plan,
    StripeEvent,
    Subscription,
)
from portal.credits.models import (
    ApiKey,
    Department,
    FeaturePrice,
    IdempotencyRecord,
    LedgerEntry,
    Organization,
    PriceChange,
    Reservation,
    UsageRollup,
    UsageRollupState,
)
from portal.outbox.models import OutboxEvent, ScheduledJob
from portal.stripe_sandbox.models import (
    SandboxDelivery,
    SandboxIdempotencyKey,
    SandboxObject,
    SandboxState,
)
from portal.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "BillingCustomer",
    "Department",
    "FeaturePrice",
    "IdempotencyRecord",
    "Invitation",
    "Invoice",
    "LedgerEntry",
    "Membership",
    "Organization",
    "OutboxEvent",
    "Package",
    "Payment",
    "Plan",
    "PriceChange",
    "Reservation",
    "SandboxDelivery",
    "SandboxIdempotencyKey",
    "SandboxObject",
    "SandboxState",
    "ScheduledJob",
    "StripeEvent",
    "Subscription",
    "UsageRollup",
    "UsageRollupState",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
