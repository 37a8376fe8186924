"""Results about grants: the credits of an organization, each with its own expiry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from portal.client._convert import optional_datetime, to_datetime, to_decimal


@dataclass(frozen=True, slots=True)
class Expiry:
    """The soonest credits to expire: how many, and when."""

    amount: Decimal
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ReturnedCredits:
    """Refunded credits and the grant they went back into (a new one, if theirs expired)."""

    grant_id: int
    amount: Decimal
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Grant:
    """Credits that entered the organization, with their own burn priority and expiry."""

    id: int
    kind: str
    amount: Decimal
    remaining: Decimal
    priority: int
    expires_at: datetime | None
    description: str | None
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Grant:
        return cls(
            id=int(data["id"]),
            kind=data["kind"],
            amount=to_decimal(data["amount"]),
            remaining=to_decimal(data["remaining"]),
            priority=int(data["priority"]),
            expires_at=optional_datetime(data.get("expires_at")),
            description=data.get("description"),
            created_at=to_datetime(data["created_at"]),
        )
