"""Billing data: the catalogue, Stripe customers, subscriptions, invoices, payments, events.

Money paid is integer cents; credits are integer micro-credits (``portal.money``). Every Stripe
object is keyed by its Stripe id under a unique constraint, so a webhook delivered twice (or by
two workers at once) finds the row the first one wrote instead of writing a second.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.timeutil import utcnow

LIVE_SUBSCRIPTION_STATUSES = ("active", "trialing", "past_due", "unpaid", "incomplete")
# ``mismatch``: Stripe reported a payment that is not what the catalogue sold; nothing granted.
PAYMENT_STATUSES = (
    "open",
    "processing",
    "paid",
    "failed",
    "refunded",
    "partially_refunded",
    "mismatch",
)


class CatalogueItem:
    """What plans and packages share: a priced number of credits, mirrored in Stripe."""

    id: Mapped[int] = mapped_column(primary_key=True)
    lookup_key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    price_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    credits: Mapped[int] = mapped_column(BigInteger)
    sort_order: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # What was sold is archived, never deleted: payments and invoices keep pointing at it.
    archived_at: Mapped[datetime | None]
    stripe_product_id: Mapped[str | None] = mapped_column(String(255))
    stripe_price_id: Mapped[str | None] = mapped_column(String(255))
    synced_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def for_sale(self) -> bool:
        return self.active and self.archived_at is None


class Plan(CatalogueItem, db.Model):
    """A monthly subscription that grants ``credits`` each paid period."""

    __tablename__ = "billing_plans"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="billing_plan_price"),
        CheckConstraint("credits > 0", name="billing_plan_credits"),
        CheckConstraint("rollover IN ('none', 'capped', 'full')", name="billing_plan_rollover"),
        CheckConstraint(
            "(rollover = 'capped') = (rollover_cap IS NOT NULL) AND "
            "(rollover_cap IS NULL OR rollover_cap > 0)",
            name="billing_plan_rollover_cap",
        ),
    )
    interval: Mapped[str] = mapped_column(String(8), default="month")
    # What happens to a period's unused credits when the next period is paid: ``none`` (they
    # expire at the period's end), ``capped`` (up to ``rollover_cap`` carry over one more
    # period), ``full`` (all carry over, period after period, while the subscription lives).
    rollover: Mapped[str] = mapped_column(String(10), default="none")
    rollover_cap: Mapped[int | None] = mapped_column(BigInteger)

    @property
    def credits_per_period(self) -> int:
        return self.credits


class Package(CatalogueItem, db.Model):
    """A one-off purchase of ``credits``."""

    __tablename__ = "billing_packages"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="billing_package_price"),
        CheckConstraint("credits > 0", name="billing_package_credits"),
        CheckConstraint(
            "validity_days IS NULL OR validity_days > 0", name="billing_package_validity"
        ),
    )
    # Days the credits bought stay spendable; none: they never expire.
    validity_days: Mapped[int | None]


class BillingCustomer(db.Model):
    """The one Stripe customer of an organization, created on its first purchase."""

    __tablename__ = "billing_customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), unique=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Subscription(db.Model):
    """A Stripe subscription as the latest applied ``customer.subscription.*`` event left it."""

    __tablename__ = "billing_subscriptions"
    __table_args__ = (Index("ix_billing_subscriptions_org", "organization_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("billing_plans.id"))
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    stripe_item_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    canceled_at: Mapped[datetime | None]
    # Stripe's ``created`` (unix seconds) of the newest event applied: an older event that
    # arrives late is recorded but cannot roll the state back.
    last_event_created: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    plan: Mapped[Plan | None] = relationship()

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_SUBSCRIPTION_STATUSES


class Invoice(db.Model):
    """A subscription invoice as Stripe reported it; paid ones granted the plan's credits."""

    __tablename__ = "billing_invoices"
    __table_args__ = (Index("ix_billing_invoices_org_date", "organization_id", "invoice_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("billing_plans.id"))
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    number: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    billing_reason: Mapped[str | None] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    invoice_date: Mapped[datetime]
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    hosted_invoice_url: Mapped[str | None] = mapped_column(Text)
    invoice_pdf: Mapped[str | None] = mapped_column(Text)
    credits_granted: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    plan: Mapped[Plan | None] = relationship()


class Payment(db.Model):
    """One Checkout Session started from the portal, and what became of its payment."""

    __tablename__ = "billing_payments"
    __table_args__ = (
        CheckConstraint("mode IN ('payment', 'subscription')", name="billing_payment_mode"),
        CheckConstraint(
            "status IN ('open', 'processing', 'paid', 'failed', 'refunded', "
            "'partially_refunded', 'mismatch')",
            name="billing_payment_status",
        ),
        Index("ix_billing_payments_org", "organization_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    checkout_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    mode: Mapped[str] = mapped_column(String(16))
    package_id: Mapped[int | None] = mapped_column(ForeignKey("billing_packages.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("billing_plans.id"))
    # Fixed when the session is created, so a later price edit cannot change what was bought.
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    status: Mapped[str] = mapped_column(String(24), default="open")
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_credits: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None]
    fulfilled_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    package: Mapped[Package | None] = relationship()
    plan: Mapped[Plan | None] = relationship()


class StripeEvent(db.Model):
    """Every webhook event processed, once: the unique ``event_id`` turns a redelivery away."""

    __tablename__ = "stripe_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    event_created: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dispute(db.Model):
    """A chargeback on a package payment, as Stripe's ``charge.dispute.*`` events left it.

    While open, the payment's remaining credits are frozen (on hold, not spendable); ``won``
    releases them, ``lost`` claws the payment's credits back. ``status`` moves only forward.
    """

    __tablename__ = "billing_disputes"
    __table_args__ = (Index("ix_billing_disputes_org", "organization_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("billing_payments.id"))
    stripe_dispute_id: Mapped[str] = mapped_column(String(255), unique=True)
    charge_id: Mapped[str | None] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    frozen_credits: Mapped[int] = mapped_column(BigInteger, default=0)
    clawed_back_credits: Mapped[int] = mapped_column(BigInteger, default=0)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    payment: Mapped[Payment | None] = relationship()

    @property
    def outcome(self) -> str:
        """``open``, ``won`` or ``lost`` (an inquiry closed without a chargeback counts as won)."""
        if self.status == "lost":
            return "lost"
        return "open" if self.closed_at is None else "won"

    @property
    def label(self) -> str:
        return {"open": "disputed", "won": "dispute won", "lost": "dispute lost"}[self.outcome]
