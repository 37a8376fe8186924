"""What the credits service takes and gives back: requests to spend and results of changes.

Each result knows its JSON form (``to_json``), which the API answers with and the idempotency
record stores, so a replay is byte-for-byte the first answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from portal.money import MICRO, micros_to_decimal
from portal.timeutil import isoformat_z

# The most one charge (or hold) may cost, in micro-credits: a billion credits, far above any
# real charge, and small enough that every sum of them stays far inside a BIGINT column.
MAX_CHARGE = 10**15


@dataclass(frozen=True)
class Spend:
    """What a caller wants to spend credits on."""

    feature_key: str
    quantity: int = MICRO  # micro-units, so 0.5 MB is 500_000
    department: str | None = None
    user_ref: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Expiry:
    """The next credits to expire: how many, and when."""

    amount: int
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "amount": micros_to_decimal(self.amount),
            "expires_at": isoformat_z(self.expires_at),
        }


@dataclass(frozen=True)
class Balance:
    organization: str
    balance: int
    reserved: int
    next_expiry: Expiry | None = None
    on_hold: int = 0  # frozen by an open dispute: not in ``balance``, not spendable
    owed: int = 0  # debt: clawed-back credits that were already spent

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    def to_json(self) -> dict[str, Any]:
        return {
            "organization": self.organization,
            "balance": micros_to_decimal(self.balance),
            "reserved": micros_to_decimal(self.reserved),
            "available": micros_to_decimal(self.available),
            "next_expiry": self.next_expiry.to_json() if self.next_expiry else None,
            "on_hold": micros_to_decimal(self.on_hold),
            "owed": micros_to_decimal(self.owed),
        }


@dataclass(frozen=True)
class CheckResult:
    has_enough: bool
    required: int
    available: int
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "has_enough": self.has_enough,
            "required": micros_to_decimal(self.required),
            "available": micros_to_decimal(self.available),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Deduction:
    deduction_id: int
    feature_key: str
    quantity: int
    credits_deducted: int
    remaining_credits: int

    def to_json(self) -> dict[str, Any]:
        return {
            "deduction_id": self.deduction_id,
            "feature_key": self.feature_key,
            "quantity": micros_to_decimal(self.quantity),
            "credits_deducted": micros_to_decimal(self.credits_deducted),
            "remaining_credits": micros_to_decimal(self.remaining_credits),
        }


@dataclass(frozen=True)
class Batch:
    lines: list[Deduction]

    def to_json(self) -> dict[str, Any]:
        return {
            "deductions": [line.to_json() for line in self.lines],
            "credits_deducted": micros_to_decimal(
                sum(line.credits_deducted for line in self.lines)
            ),
            "remaining_credits": micros_to_decimal(self.lines[-1].remaining_credits),
        }


@dataclass(frozen=True)
class ReturnedCredits:
    """Where refunded credits went: back into a grant (a new one if theirs had expired)."""

    grant_id: int
    amount: int
    expires_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "grant_id": self.grant_id,
            "amount": micros_to_decimal(self.amount),
            "expires_at": isoformat_z(self.expires_at) if self.expires_at else None,
        }


@dataclass(frozen=True)
class Refund:
    refund_id: int
    deduction_id: int
    credits_refunded: int
    remaining_credits: int
    returned_to: list[ReturnedCredits] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "refund_id": self.refund_id,
            "deduction_id": self.deduction_id,
            "credits_refunded": micros_to_decimal(self.credits_refunded),
            "remaining_credits": micros_to_decimal(self.remaining_credits),
            "returned_to": [part.to_json() for part in self.returned_to],
        }


@dataclass(frozen=True)
class Hold:
    reservation_id: int
    credits_reserved: int
    expires_at: datetime
    available: int

    def to_json(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "credits_reserved": micros_to_decimal(self.credits_reserved),
            "expires_at": isoformat_z(self.expires_at),
            "available": micros_to_decimal(self.available),
        }


@dataclass(frozen=True)
class Capture:
    reservation_id: int
    deduction_id: int
    credits_deducted: int
    credits_released: int
    remaining_credits: int

    def to_json(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "deduction_id": self.deduction_id,
            "credits_deducted": micros_to_decimal(self.credits_deducted),
            "credits_released": micros_to_decimal(self.credits_released),
            "remaining_credits": micros_to_decimal(self.remaining_credits),
        }


@dataclass(frozen=True)
class Release:
    reservation_id: int
    credits_released: int
    available: int

    def to_json(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "credits_released": micros_to_decimal(self.credits_released),
            "available": micros_to_decimal(self.available),
        }


@dataclass(frozen=True)
class HistoricEntry:
    """A past balance change, for importing history (a migration, the demo data)."""

    kind: str
    amount: int
    created_at: datetime
    feature_key: str | None = None
    unit_price: int | None = None
    quantity: int | None = None
    department_id: int | None = None
    user_ref: str | None = None
    description: str | None = None
    # What the change came from (``checkout:<cs>`` for a package), unique per kind as for grants.
    source_ref: str | None = None
    metadata: dict[str, Any] | None = None
