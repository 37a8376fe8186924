"""Every model in one import, for Alembic's autogenerate and for the shell."""

from portal.auth.models import Membership, User
from portal.credits.models import (
    ApiKey,
    Department,
    FeaturePrice,
    IdempotencyRecord,
    LedgerEntry,
    Organization,
    Reservation,
)

__all__ = [
    "ApiKey",
    "Department",
    "FeaturePrice",
    "IdempotencyRecord",
    "LedgerEntry",
    "Membership",
    "Organization",
    "Reservation",
    "User",
]
