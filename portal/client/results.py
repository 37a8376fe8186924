"""Typed, frozen results of the API, with every amount a ``Decimal`` and every time aware UTC.

Each ``from_json`` reads only the fields it knows, so a newer portal that adds fields does not
break an older client. Results of mutating calls carry ``replayed``: true when the portal answered
from its idempotency record (a retry of a call that had already succeeded), so nothing new
was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from portal.client._convert import optional_datetime, optional_decimal, to_datetime, to_decimal
from portal.client.grants import Expiry, ReturnedCredits

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Balance:
    """``on_hold``: credits of a disputed payment, frozen until it closes (not in ``balance``);
    ``owed``: credits clawed back after they were spent, paid from the next ones to arrive."""

    organization: str
    balance: Decimal
    reserved: Decimal
    available: Decimal
    next_expiry: Expiry | None = None
    on_hold: Decimal = Decimal(0)
    owed: Decimal = Decimal(0)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Balance:
        expiry = data.get("next_expiry")
        return cls(
            organization=data["organization"],
            balance=to_decimal(data["balance"]),
            reserved=to_decimal(data["reserved"]),
            available=to_decimal(data["available"]),
            next_expiry=None
            if expiry is None
            else Expiry(to_decimal(expiry["amount"]), to_datetime(expiry["expires_at"])),
            on_hold=to_decimal(data.get("on_hold", 0)),
            owed=to_decimal(data.get("owed", 0)),
        )


@dataclass(frozen=True, slots=True)
class CheckResult:
    has_enough: bool
    required: Decimal
    available: Decimal
    reason: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            has_enough=bool(data["has_enough"]),
            required=to_decimal(data["required"]),
            available=to_decimal(data["available"]),
            reason=data.get("reason"),
        )


@dataclass(frozen=True, slots=True)
class Deduction:
    deduction_id: int
    feature_key: str
    quantity: Decimal
    credits_deducted: Decimal
    remaining_credits: Decimal
    replayed: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], replayed: bool = False) -> Deduction:
        return cls(
            deduction_id=int(data["deduction_id"]),
            feature_key=data["feature_key"],
            quantity=to_decimal(data["quantity"]),
            credits_deducted=to_decimal(data["credits_deducted"]),
            remaining_credits=to_decimal(data["remaining_credits"]),
            replayed=replayed,
        )


@dataclass(frozen=True, slots=True)
class BatchDeduction:
    deductions: tuple[Deduction, ...]
    credits_deducted: Decimal
    remaining_credits: Decimal
    replayed: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], replayed: bool = False) -> BatchDeduction:
        return cls(
            deductions=tuple(Deduction.from_json(line, replayed) for line in data["deductions"]),
            credits_deducted=to_decimal(data["credits_deducted"]),
            remaining_credits=to_decimal(data["remaining_credits"]),
            replayed=replayed,
        )


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: int
    deduction_id: int
    credits_refunded: Decimal
    remaining_credits: Decimal
    replayed: bool = False
    returned_to: tuple[ReturnedCredits, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any], replayed: bool = False) -> Refund:
        return cls(
            refund_id=int(data["refund_id"]),
            deduction_id=int(data["deduction_id"]),
            credits_refunded=to_decimal(data["credits_refunded"]),
            remaining_credits=to_decimal(data["remaining_credits"]),
            replayed=replayed,
            returned_to=tuple(
                ReturnedCredits(
                    int(part["grant_id"]),
                    to_decimal(part["amount"]),
                    optional_datetime(part.get("expires_at")),
                )
                for part in data.get("returned_to", ())
            ),
        )


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: int
    credits_reserved: Decimal
    expires_at: datetime
    available: Decimal
    replayed: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], replayed: bool = False) -> Reservation:
        return cls(
            reservation_id=int(data["reservation_id"]),
            credits_reserved=to_decimal(data["credits_reserved"]),
            expires_at=to_datetime(data["expires_at"]),
            available=to_decimal(data["available"]),
            replayed=replayed,
        )


@dataclass(frozen=True, slots=True)
class Capture:
    reservation_id: int
    deduction_id: int
    credits_deducted: Decimal
    credits_released: Decimal
    remaining_credits: Decimal
    replayed: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], replayed: bool = False) -> Capture:
        return cls(
            reservation_id=int(data["reservation_id"]),
            deduction_id=int(data["deduction_id"]),
            credits_deducted=to_decimal(data["credits_deducted"]),
            credits_released=to_decimal(data["credits_released"]),
            remaining_credits=to_decimal(data["remaining_credits"]),
            replayed=replayed,
        )


@dataclass(frozen=True, slots=True)
class Release:
    reservation_id: int
    credits_released: Decimal
    available: Decimal
    replayed: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], replayed: bool = False) -> Release:
        return cls(
            reservation_id=int(data["reservation_id"]),
            credits_released=to_decimal(data["credits_released"]),
            available=to_decimal(data["available"]),
            replayed=replayed,
        )


@dataclass(frozen=True, slots=True)
class FeaturePrice:
    feature_key: str
    name: str
    category: str
    credits: Decimal
    unit: str
    description: str | None
    active: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeaturePrice:
        return cls(
            feature_key=data["feature_key"],
            name=data["name"],
            category=data["category"],
            credits=to_decimal(data["credits"]),
            unit=data["unit"],
            description=data.get("description"),
            active=bool(data["active"]),
        )


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One deduction, with what has been refunded of it since."""

    id: int
    feature_key: str | None
    quantity: Decimal | None
    unit_price: Decimal | None
    credits: Decimal
    credits_refunded: Decimal
    department: str | None
    user: str | None
    description: str | None
    metadata: dict[str, Any] | None
    reservation_id: int | None
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageRecord:
        return cls(
            id=int(data["id"]),
            feature_key=data.get("feature_key"),
            quantity=optional_decimal(data.get("quantity")),
            unit_price=optional_decimal(data.get("unit_price")),
            credits=to_decimal(data["credits"]),
            credits_refunded=to_decimal(data.get("credits_refunded", 0)),
            department=data.get("department"),
            user=data.get("user"),
            description=data.get("description"),
            metadata=data.get("metadata"),
            reservation_id=data.get("reservation_id"),
            created_at=to_datetime(data["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class Transaction:
    """One ledger row: a signed change of the balance (grant, purchase, deduct, refund…)."""

    id: int
    kind: str
    amount: Decimal
    balance_after: Decimal
    feature_key: str | None
    quantity: Decimal | None
    unit_price: Decimal | None
    department: str | None
    user: str | None
    description: str | None
    metadata: dict[str, Any] | None
    refund_of: int | None
    reservation_id: int | None
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transaction:
        return cls(
            id=int(data["id"]),
            kind=data["kind"],
            amount=to_decimal(data["amount"]),
            balance_after=to_decimal(data["balance_after"]),
            feature_key=data.get("feature_key"),
            quantity=optional_decimal(data.get("quantity")),
            unit_price=optional_decimal(data.get("unit_price")),
            department=data.get("department"),
            user=data.get("user"),
            description=data.get("description"),
            metadata=data.get("metadata"),
            refund_of=data.get("refund_of"),
            reservation_id=data.get("reservation_id"),
            created_at=to_datetime(data["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class UsageSummaryRow:
    key: str | None
    credits: Decimal
    count: int


@dataclass(frozen=True, slots=True)
class UsageSummary:
    group_by: str
    rows: tuple[UsageSummaryRow, ...]
    total: Decimal

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageSummary:
        return cls(
            group_by=data.get("group_by", "feature"),
            rows=tuple(
                UsageSummaryRow(row.get("key"), to_decimal(row["credits"]), int(row["count"]))
                for row in data["data"]
            ),
            total=to_decimal(data["total"]),
        )


@dataclass(frozen=True, slots=True)
class Department:
    name: str
    monthly_limit: Decimal | None
    used_this_month: Decimal

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Department:
        return cls(
            name=data["name"],
            monthly_limit=optional_decimal(data.get("monthly_limit")),
            used_this_month=to_decimal(data["used_this_month"]),
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; the clients' iterators follow ``next_cursor`` until it is None."""

    items: tuple[T, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class CreditInfo:
    """What ``@credit_aware`` passes as ``credit_info``: the cost and what is there to pay it.

    ``balance`` is the *available* balance (balance minus open reservations), the amount a
    deduct can actually use.
    """

    feature_key: str
    quantity: Decimal
    cost: Decimal
    balance: Decimal
    has_enough: bool
    reason: str | None = None

    @property
    def available(self) -> Decimal:
        return self.balance


@dataclass(frozen=True, slots=True)
class DeductLine:
    """One line of ``deduct_batch``; mappings with the same keys are accepted too."""

    feature_key: str
    quantity: int | Decimal | str | float = 1
    department: str | None = None
    user: str | None = None
    description: str | None = None
    metadata: Mapping[str, Any] | None = field(default=None, hash=False)
