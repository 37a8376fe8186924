"""Credits data: organizations and their balance, prices, the ledger, holds and idempotency.

All amounts are integer micro-credits (see ``portal.money``). Only ``portal.credits.service``
writes ``balance``, ``reserved`` and ledger rows.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.money import micros_to_decimal
from portal.timeutil import utcnow
from portal.types import BigIntPK

LEDGER_KINDS = (
    "grant",
    "purchase",
    "subscription",
    "signup_bonus",
    "adjustment",
    "deduct",
    "refund",
)
CREDIT_KINDS = ("grant", "purchase", "subscription", "signup_bonus", "adjustment")
FEATURE_KEY_PATTERN = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"


class Organization(db.Model):
    __tablename__ = "organizations"
    __table_args__ = (CheckConstraint("reserved >= 0", name="organization_reserved_nonnegative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def available(self) -> int:
        return self.balance - self.reserved


class Department(db.Model):
    __tablename__ = "departments"
    __table_args__ = (
        UniqueConstraint("organization_id", "name"),
        CheckConstraint("monthly_limit IS NULL OR monthly_limit >= 0", name="department_limit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    monthly_limit: Mapped[int | None] = mapped_column(BigInteger)
    # Month-to-date use lives on the row so that the limit check is one conditional UPDATE;
    # ``usage_month`` rolls the counter over lazily when a new month starts.
    usage_month: Mapped[str | None] = mapped_column(String(7))
    used_this_month: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def used_in(self, month: str) -> int:
        return self.used_this_month if self.usage_month == month else 0


# "Marketing" and "marketing" are one department: unique regardless of case, and the index that
# every lookup by name reads (names are ASCII, so lower() agrees on SQLite and PostgreSQL).
Index(
    "uq_departments_org_lower_name",
    Department.organization_id,
    func.lower(Department.name),
    unique=True,
)


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class FeaturePrice(db.Model):
    __tablename__ = "feature_prices"
    __table_args__ = (CheckConstraint("credits_per_unit >= 0", name="feature_price_nonnegative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feature_key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(100), default="General")
    credits_per_unit: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(32), default="call")
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A used feature is archived instead of deleted so the ledger keeps explaining itself.
    archived_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def to_json(self) -> dict[str, Any]:
        return {
            "feature_key": self.feature_key,
            "name": self.name,
            "category": self.category,
            "credits": micros_to_decimal(self.credits_per_unit),
            "unit": self.unit,
            "description": self.description,
            "active": self.active,
        }


class PriceChange(db.Model):
    """Who changed which price, when, from what to what: the pricing editor's history."""

    __tablename__ = "price_changes"
    __table_args__ = (Index("ix_price_changes_feature", "feature_key", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feature_price_id: Mapped[int | None] = mapped_column(
        ForeignKey("feature_prices.id", ondelete="SET NULL")
    )
    feature_key: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(20))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class LedgerEntry(db.Model):
    """One append-only row per balance change; never updated, never deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('grant', 'purchase', 'subscription', 'signup_bonus', 'adjustment', "
            "'deduct', 'refund')",
            name="ledger_kind",
        ),
        # Exactly-once grants from outside events (a Stripe session, an invoice) by constraint.
        UniqueConstraint("kind", "source_ref", name="uq_ledger_kind_source_ref"),
        # Listings go newest first by (created_at, id); the rollup folds by id.
        Index("ix_ledger_org_id", "organization_id", "id"),
        Index("ix_ledger_org_created_id", "organization_id", "created_at", "id"),
        Index(
            "ix_ledger_org_feature_created", "organization_id", "feature_key", "created_at", "id"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    feature_key: Mapped[str | None] = mapped_column(String(100))
    unit_price: Mapped[int | None] = mapped_column(BigInteger)
    quantity: Mapped[int | None] = mapped_column(BigInteger)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    user_ref: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(500))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    refund_of_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("ledger_entries.id"),
        index=True,
    )
    reservation_id: Mapped[int | None] = mapped_column(ForeignKey("reservations.id"))
    source_ref: Mapped[str | None] = mapped_column(String(255))
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@event.listens_for(LedgerEntry, "before_update")
@event.listens_for(LedgerEntry, "before_delete")
def _ledger_is_append_only(mapper: Any, connection: Any, target: LedgerEntry) -> None:
    raise RuntimeError("ledger entries are append-only")


class Reservation(db.Model):
    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('open', 'captured', 'released', 'expired')", name="reservation_status"
        ),
        Index("ix_reservation_org_status_expiry", "organization_id", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    feature_key: Mapped[str] = mapped_column(String(100))
    unit_price: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="open")
    captured_quantity: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]


class IdempotencyRecord(db.Model):
    """A client's Idempotency-Key, bound to one request body and, once done, its response."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint("organization_id", "key"),
        CheckConstraint("state IN ('pending', 'done')", name="idempotency_state"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(10))
    lock_token: Mapped[str] = mapped_column(String(32))
    locked_at: Mapped[datetime]
    response_status: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class UsageRollup(db.Model):
    """Usage per organization, day, feature and department, summed from the ledger.

    Charts and month totals read this instead of scanning millions of ledger rows. It is
    filled incrementally by ledger id (see ``portal.credits.rollup``), so every row is counted
    exactly once, backdated imports included, and the deduct hot path never writes here.
    """

    __tablename__ = "usage_rollups"
    __table_args__ = (
        UniqueConstraint("organization_id", "day", "feature_key", "department_id"),
        Index("ix_usage_rollups_org_day", "organization_id", "day"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    day: Mapped[date]
    feature_key: Mapped[str] = mapped_column(String(100), default="")
    department_id: Mapped[int] = mapped_column(Integer, default=0)
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    count: Mapped[int] = mapped_column(Integer, default=0)


class UsageRollupState(db.Model):
    __tablename__ = "usage_rollup_states"

    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    last_ledger_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
