"""Every model in one import, for Alembic's autogenerate and for the shell."""

from portal.auth.models import Invitation, Membership, User
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

__all__ = [
    "ApiKey",
    "Department",
    "FeaturePrice",
    "IdempotencyRecord",
    "Invitation",
    "LedgerEntry",
    "Membership",
    "Organization",
    "PriceChange",
    "Reservation",
    "UsageRollup",
    "UsageRollupState",
    "User",
]
