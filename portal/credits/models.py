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
    text,
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
    "opening",
    "deduct",
    "refund",
    "expire",
    "clawback",
    "freeze",
    "unfreeze",
)
CREDIT_KINDS = ("grant", "purchase", "subscription", "signup_bonus", "adjustment", "opening")
# Kinds of grant, and where each burns by default: free credits first (as at OpenAI), then
# plan credits, purchased (and opening) credits last.
GRANT_KINDS = CREDIT_KINDS
DEFAULT_PRIORITY = {
    "signup_bonus": 10,
    "grant": 10,
    "adjustment": 10,
    "subscription": 20,
    "purchase": 30,
    "opening": 30,
}
ROLLOVER_POLICIES = ("none", "capped", "full")
LEDGER_KIND_CHECK = "kind IN ({})".format(", ".join(f"'{kind}'" for kind in LEDGER_KINDS))
FEATURE_KEY_PATTERN = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"


class Organization(db.Model):
    __tablename__ = "organizations"
    __table_args__ = (CheckConstraint("reserved >= 0", name="organization_reserved_nonnegative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    # Credits clawed back after they were spent (a refunded or lost payment); the next grant
    # pays it first. ``balance`` already counts it (balance = grants' credits − debt).
    debt: Mapped[int] = mapped_column(BigInteger, default=0)
    # No later than the soonest expiry of a grant with credits left: the debit guard refuses
    # once it has passed, so an expired grant is never spent, even before any sweep ran.
    next_expiry_at: Mapped[datetime | None]
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
        CheckConstraint(LEDGER_KIND_CHECK, name="ledger_kind"),
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
    # The one grant this row concerns: a grant's own row, an expiry or claw-back, and a
    # deduction or refund that took from (gave back to) a single grant. Several grants: rows
    # in ``grant_allocations`` instead.
    grant_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("credit_grants.id")
    )
    source_ref: Mapped[str | None] = mapped_column(String(255))
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@event.listens_for(LedgerEntry, "before_update")
@event.listens_for(LedgerEntry, "before_delete")
def _ledger_is_append_only(mapper: Any, connection: Any, target: LedgerEntry) -> None:
    raise RuntimeError("ledger entries are append-only")


class CreditGrant(db.Model):
    """Credits that entered an organization, with their own burn priority and expiry.

    Each credit of the balance sits in exactly one grant. ``amount`` never changes; what
    became of it is counted in the other columns, and the database checks they add up:
    ``amount = remaining + held + consumed - returned + expired + clawed_back + frozen``.
    Only ``portal.credits.service`` writes them, under the organization row's lock.
    """

    __tablename__ = "credit_grants"
    __table_args__ = (
        CheckConstraint("amount > 0", name="grant_amount_positive"),
        CheckConstraint(
            "remaining >= 0 AND held >= 0 AND consumed >= 0 AND returned >= 0 "
            "AND expired >= 0 AND clawed_back >= 0 AND frozen >= 0",
            name="grant_parts_nonnegative",
        ),
        CheckConstraint(
            "amount = remaining + held + consumed - returned + expired + clawed_back + frozen",
            name="grant_adds_up",
        ),
        CheckConstraint(
            "kind IN ({})".format(", ".join(f"'{kind}'" for kind in GRANT_KINDS)),
            name="grant_kind",
        ),
        # The burn order's index; only grants with credits left are candidates.
        Index(
            "ix_credit_grants_burn",
            "organization_id",
            "priority",
            "expires_at",
            "created_at",
            "id",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
        Index("ix_credit_grants_org_created", "organization_id", "created_at", "id"),
        Index("ix_credit_grants_source", "source_ref"),
        Index("ix_credit_grants_subscription", "subscription_ref"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    held: Mapped[int] = mapped_column(BigInteger, default=0)  # by open reservations
    consumed: Mapped[int] = mapped_column(BigInteger, default=0)
    returned: Mapped[int] = mapped_column(BigInteger, default=0)  # refunded back into it
    expired: Mapped[int] = mapped_column(BigInteger, default=0)
    clawed_back: Mapped[int] = mapped_column(BigInteger, default=0)
    frozen: Mapped[int] = mapped_column(BigInteger, default=0)  # on hold: disputed
    priority: Mapped[int] = mapped_column(Integer)
    effective_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(String(500))
    # Where it came from: ``plan`` (+ subscription and period), ``package`` (+ payment),
    # ``admin`` (+ user and reason), ``signup``, ``opening``, ``refund`` (an expired grant's
    # credits given back), ``system``.
    source_type: Mapped[str] = mapped_column(String(20))
    source_ref: Mapped[str | None] = mapped_column(String(255))
    subscription_ref: Mapped[str | None] = mapped_column(String(255))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]  # the period it now belongs to (moves on carry-over)
    rollover: Mapped[str | None] = mapped_column(String(10))
    rollover_cap: Mapped[int | None] = mapped_column(BigInteger)
    carryovers: Mapped[int] = mapped_column(Integer, default=0)
    returned_from_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("credit_grants.id")
    )
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class GrantAllocation(db.Model):
    """How much one ledger row (or one open hold) took from (+) or gave back to (−) a grant.

    Written only when a row touches several grants; a single-grant row names its grant in
    ``ledger_entries.grant_id`` instead (the common case: one statement fewer to deduct).
    Append-only, like the ledger.
    """

    __tablename__ = "grant_allocations"
    __table_args__ = (
        Index("ix_grant_allocations_entry", "ledger_entry_id"),
        Index("ix_grant_allocations_reservation", "reservation_id"),
        Index("ix_grant_allocations_grant", "grant_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    grant_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("credit_grants.id")
    )
    ledger_entry_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("ledger_entries.id")
    )
    reservation_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("reservations.id")
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
