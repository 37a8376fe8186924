"""Read models for the billing pages and the dashboard's plan card: no writes here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from portal.billing.models import (
    LIVE_SUBSCRIPTION_STATUSES,
    BillingCustomer,
    Dispute,
    Invoice,
    Payment,
    Plan,
    Subscription,
)
from portal.errors import NotFound
from portal.extensions import db
from portal.money import format_credits

HISTORY_LIMIT = 50


def live_subscription(organization_id: int) -> Subscription | None:
    """The organization's current subscription (newest, if Stripe ever left two alive)."""
    return db.session.scalar(
        select(Subscription)
        .where(
            Subscription.organization_id == organization_id,
            Subscription.status.in_(LIVE_SUBSCRIPTION_STATUSES),
        )
        .order_by(Subscription.id.desc())
        .limit(1)
    )


def plan_names(organization_ids: list[int]) -> dict[int, str]:
    """Each organization's live plan as the admin lists show it: "Starter", "Starter (past due)"."""
    if not organization_ids:
        return {}
    rows = db.session.execute(
        select(Subscription.organization_id, Subscription.status, Plan.name)
        .outerjoin(Plan, Plan.id == Subscription.plan_id)
        .where(
            Subscription.organization_id.in_(organization_ids),
            Subscription.status.in_(LIVE_SUBSCRIPTION_STATUSES),
        )
        .order_by(Subscription.organization_id, Subscription.id)
    ).all()
    names: dict[int, str] = {}
    for organization_id, status, name in rows:  # the newest live one wins, as on /billing
        label = name or "Subscription"
        names[organization_id] = label if status == "active" else f"{label} ({_words(status)})"
    return names


def _words(status: str) -> str:
    return status.replace("_", " ")


def subscription(row_id: int) -> Subscription:
    found = db.session.get(Subscription, row_id)
    if found is None:
        raise NotFound("No such subscription.")
    return found


@dataclass(frozen=True)
class PlanSummary:
    """The plan card: what the organization is on, and whether it needs attention."""

    name: str
    detail: str
    status: str
    plan_id: int | None = None
    renews_at: datetime | None = None
    cancel_at_period_end: bool = False

    @property
    def past_due(self) -> bool:
        return self.status in ("past_due", "unpaid")


PAY_AS_YOU_GO = PlanSummary("Pay as you go", "Prepaid credits, no subscription", "none")


def plan_summary(organization_id: int) -> PlanSummary:
    live = live_subscription(organization_id)
    if live is None:
        return PAY_AS_YOU_GO
    plan = live.plan
    name = plan.name if plan else "Subscription"
    monthly = f"{format_credits(plan.credits)} credits a month" if plan else "Monthly plan"
    end = live.current_period_end
    if live.status in ("past_due", "unpaid"):
        detail = f"{monthly} · payment failed"
    elif live.cancel_at_period_end:
        detail = f"{monthly} · ends {end:%Y-%m-%d}" if end else f"{monthly} · ending"
    else:
        detail = f"{monthly} · renews {end:%Y-%m-%d}" if end else monthly
    return PlanSummary(
        name, detail, live.status, live.plan_id, end, bool(live.cancel_at_period_end)
    )


def has_billing_account(organization_id: int) -> bool:
    return (
        db.session.scalar(
            select(BillingCustomer.id).where(BillingCustomer.organization_id == organization_id)
        )
        is not None
    )


def invoices(organization_id: int, limit: int = HISTORY_LIMIT) -> list[Invoice]:
    """Newest first."""
    return list(
        db.session.scalars(
            select(Invoice)
            .where(Invoice.organization_id == organization_id)
            .order_by(Invoice.invoice_date.desc(), Invoice.id.desc())
            .limit(limit)
        )
    )


def payments(organization_id: int, limit: int = HISTORY_LIMIT) -> list[Payment]:
    """Package purchases that got as far as a payment (abandoned checkouts are left out)."""
    return list(
        db.session.scalars(
            select(Payment)
            .where(
                Payment.organization_id == organization_id,
                Payment.mode == "payment",
                Payment.status != "open",
            )
            .order_by(Payment.id.desc())
            .limit(limit)
        )
    )


def disputes(organization_id: int, limit: int = HISTORY_LIMIT) -> list[Dispute]:
    """Chargebacks of the organization's payments, newest first."""
    return list(
        db.session.scalars(
            select(Dispute)
            .where(Dispute.organization_id == organization_id)
            .order_by(Dispute.opened_at.desc(), Dispute.id.desc())
            .limit(limit)
        )
    )


def by_payment(found: list[Dispute]) -> dict[int, Dispute]:
    """Each disputed package payment's newest dispute (``found`` is newest first)."""
    latest: dict[int, Dispute] = {}
    for dispute in found:
        if dispute.payment_id is not None:
            latest.setdefault(dispute.payment_id, dispute)
    return latest


@dataclass(frozen=True)
class CheckoutStatus:
    state: str  # "pending" until the webhook was processed, then "done" (or "failed")
    credits: int = 0
    what: str = ""


def checkout_status(organization_id: int, session_id: str) -> CheckoutStatus:
    """How far the webhook got with this organization's checkout (another's is not found)."""
    payment = db.session.scalar(
        select(Payment).where(
            Payment.checkout_session_id == session_id,
            Payment.organization_id == organization_id,
        )
    )
    if payment is None:
        raise NotFound("No such checkout for this organization.")
    if payment.mode == "payment":
        what = f"{payment.package.name} package" if payment.package else "Credit package"
        if payment.fulfilled_at is not None:
            return CheckoutStatus("done", payment.credits, what)
        if payment.status == "failed":
            return CheckoutStatus("failed", 0, what)
        return CheckoutStatus("pending", 0, what)
    what = f"{payment.plan.name} plan" if payment.plan else "Plan"
    if payment.stripe_subscription_id is None:
        return CheckoutStatus("pending", 0, what)
    first = db.session.scalar(
        select(Invoice)
        .where(
            Invoice.stripe_subscription_id == payment.stripe_subscription_id,
            Invoice.credits_granted > 0,
        )
        .order_by(Invoice.invoice_date, Invoice.id)
        .limit(1)
    )
    if first is None:
        return CheckoutStatus("pending", 0, what)
    return CheckoutStatus("done", first.credits_granted, what)
