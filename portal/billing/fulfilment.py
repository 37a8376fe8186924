"""What each Stripe event changes: payments, subscriptions, invoices, and which credits to grant.

Handlers only stage changes in the session and say which change of credits (if any) completes
the event (``outcomes.Credit``); ``service.process_event`` records the event and commits
everything at once. Plan periods are closed here too (``credits.close_plan_period``,
``end_plan_credits``), inside that same transaction. Rows an event touches are read ``FOR
UPDATE`` (on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes writers), so two
events about the same payment or subscription take turns, and each sees what the other left.

- Package credits: ``checkout.session.completed`` when paid, or
  ``checkout.session.async_payment_succeeded``; once per session (``checkout:<cs_id>``).
- Plan credits: ``invoice.paid``, once per invoice (``invoice:<in_id>``), the first included;
  never from the checkout event. Paying a period closes the earlier ones: their unused plan
  credits expire or carry over by the plan's rollover policy. Periods are Stripe's (the
  invoice's line period), so the sandbox's test clock moves them as real time would.
- Package credits expire ``validity_days`` after payment when the package says so.
- Subscription state: ``customer.subscription.*``, ordered by the event's ``created``; the
  end (``deleted``) keeps the plan credits until the end of the period paid for, no longer.
- ``invoice.payment_failed``: the subscription is past due.
- Refunds and disputes: ``portal.billing.chargebacks``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from portal.billing import chargebacks
from portal.billing import stripe_data as sd
from portal.billing.matching import catalogue_mismatch, is_amount
from portal.billing.models import BillingCustomer, Invoice, Package, Payment, Plan, Subscription
from portal.billing.outcomes import Credit, Event, Outcome, RetryLater, locked
from portal.credits import service as credits
from portal.credits.models import Organization
from portal.extensions import db
from portal.money import format_credits
from portal.outbox import events
from portal.timeutil import utcnow

__all__ = ["HANDLERS", "Credit", "Event", "Outcome", "RetryLater", "apply"]

PAID = ("paid", "no_payment_required")
# Invoices that pay for a period; a proration or one-off invoice grants no plan credits.
GRANTING_REASONS = (None, "subscription_create", "subscription_cycle")


def _organization(customer_id: str | None, metadata: dict[str, str]) -> int | None:
    """Whose event this is: the customer we created, else the organization we put in metadata."""
    if customer_id:
        found = db.session.scalar(
            select(BillingCustomer.organization_id).where(
                BillingCustomer.stripe_customer_id == customer_id
            )
        )
        if found:
            return found
    raw = str(metadata.get("organization_id") or "")
    if raw.isdigit() and db.session.get(Organization, int(raw)) is not None:
        return int(raw)
    return None


def _plan_for_price(price: Any) -> Plan | None:
    """By lookup key, then price id, then product id (a re-priced plan keeps its product)."""
    if not price:
        return None
    if isinstance(price, str):
        return db.session.scalar(select(Plan).where(Plan.stripe_price_id == price))
    for column, value in (
        (Plan.lookup_key, price.get("lookup_key")),
        (Plan.stripe_price_id, price.get("id")),
        (Plan.stripe_product_id, sd.object_id(price.get("product"))),
    ):
        if value and (plan := db.session.scalar(select(Plan).where(column == value))):
            return plan
    return None


def _ignore(event: Event) -> Outcome:
    return Outcome(f"ignored: {event['type']} is not handled")


# --- checkout sessions -----------------------------------------------------------------------


def _checkout_payment(session: sd.Obj) -> Payment | None:
    """Our row for the session; one is made from its metadata if the portal did not start it."""
    payment = locked(Payment, Payment.checkout_session_id, session["id"])
    if payment is not None:
        return payment
    meta = sd.metadata(session)
    named = meta.get("organization_id") or session.get("client_reference_id")
    organization_id = _organization(
        sd.object_id(session.get("customer")), {"organization_id": named}
    )
    mode = session.get("mode")
    if organization_id is None or mode not in ("payment", "subscription"):
        return None
    package = plan = None
    if mode == "payment":
        package = db.session.scalar(
            select(Package).where(Package.lookup_key == meta.get("package"))
        )
        if package is None:
            return None  # no way to know what it bought
    else:
        plan = db.session.scalar(select(Plan).where(Plan.lookup_key == meta.get("plan")))
    payment = Payment(
        organization_id=organization_id,
        checkout_session_id=session["id"],
        mode=mode,
        package=package,
        plan=plan,
        credits=package.credits if package else 0,
        # What the catalogue asks today; the session's own amount is checked against it.
        amount_cents=package.price_cents if package else session.get("amount_total") or 0,
        currency=package.currency if package else session.get("currency") or "usd",
        status="open",
    )
    db.session.add(payment)
    return payment


def on_checkout_session(event: Event) -> Outcome:
    session = event["data"]["object"]
    payment = _checkout_payment(session)
    if payment is None:
        return Outcome("ignored: not a portal checkout")
    now = utcnow()
    if payment.mode == "subscription":
        if event["type"] == "checkout.session.completed":
            payment.stripe_subscription_id = sd.object_id(session.get("subscription"))
            if payment.status == "open" and session.get("payment_status") in PAID:
                payment.status, payment.paid_at = "paid", now
        return Outcome("subscription checkout: plan credits come from invoice.paid")
    payment.payment_intent_id = sd.object_id(session.get("payment_intent")) or (
        payment.payment_intent_id
    )
    if payment.status == "mismatch":
        return Outcome("mismatch already recorded: nothing granted", alert=True)
    if payment.fulfilled_at is not None:
        return Outcome("already fulfilled")
    mismatch = catalogue_mismatch(payment, session)
    if mismatch is not None:
        # Signed by Stripe, but not what we sold: grant nothing, and leave it for a human.
        payment.status = "mismatch"
        if is_amount(session.get("amount_total")):
            payment.amount_cents = session["amount_total"]  # what was actually paid
        return Outcome(f"mismatch: {mismatch}; nothing granted", alert=True)
    if event["type"] == "checkout.session.async_payment_failed":
        payment.status = "failed"
        events.checkout_failed(payment, event["id"])
        return Outcome("payment failed: nothing granted")
    paid = event["type"] == "checkout.session.async_payment_succeeded" or (
        session.get("payment_status") in PAID
    )
    if not paid:
        if payment.status == "open":
            payment.status = "processing"
        return Outcome("awaiting an asynchronous payment")
    payment.status, payment.fulfilled_at = "paid", now
    payment.paid_at = payment.paid_at or now
    events.checkout_paid(payment)
    name = payment.package.name if payment.package else "Credit"
    return Outcome(
        f"granted {format_credits(payment.credits)} credits",
        Credit(
            payment.organization_id,
            payment.credits,
            "purchase",
            f"checkout:{session['id']}",
            f"{name} package: {format_credits(payment.credits)} credits",
            {"checkout_session": session["id"], "payment_intent": payment.payment_intent_id},
            terms=credits.GrantTerms(expires_at=_package_expiry(payment)),
        ),
    )


def _package_expiry(payment: Payment) -> datetime | None:
    """Bought credits last the package's validity from the payment; by default, forever."""
    days = payment.package.validity_days if payment.package else None
    return payment.paid_at + timedelta(days=days) if days and payment.paid_at else None


# --- subscriptions ---------------------------------------------------------------------------


def _apply_subscription(row: Subscription, sub: sd.Obj, status: str) -> None:
    item = sd.subscription_item(sub)
    plan = _plan_for_price(item.get("price"))
    if plan is not None:
        row.plan_id = plan.id
    row.status = status
    row.stripe_customer_id = sd.object_id(sub.get("customer")) or row.stripe_customer_id
    row.stripe_item_id = item.get("id") or row.stripe_item_id
    start, end = sd.subscription_period(sub)
    row.current_period_start = start or row.current_period_start
    row.current_period_end = end or row.current_period_end
    row.cancel_at_period_end = bool(sub.get("cancel_at_period_end"))
    row.canceled_at = sd.at(sub.get("canceled_at") or sub.get("ended_at"))


def on_subscription(event: Event) -> Outcome:
    sub = event["data"]["object"]
    organization_id = _organization(sd.object_id(sub.get("customer")), sd.metadata(sub))
    if organization_id is None:
        return Outcome("ignored: unknown customer")
    created, kind = int(event["created"]), event["type"].rsplit(".", 1)[1]
    row = locked(Subscription, Subscription.stripe_subscription_id, sub["id"])
    status = "canceled" if kind == "deleted" else sub.get("status") or "active"
    if row is None:
        row = Subscription(
            organization_id=organization_id, stripe_subscription_id=sub["id"], status=status
        )
        db.session.add(row)
    elif row.status == "canceled":
        return Outcome("ignored: the subscription has ended")  # an end is final
    elif (
        kind != "deleted"
        and row.last_event_created is not None
        # ``created`` has one-second resolution: an equal "updated" still applies, but
        # "created" never overwrites a state some later event already set.
        and (kind == "created" or created < row.last_event_created)
    ):
        return Outcome("ignored: older than the state already applied")
    _apply_subscription(row, sub, status)
    row.last_event_created = max(created, row.last_event_created or 0)
    if kind == "deleted":
        return _end_plan_credits(organization_id, row, sub, created)
    return Outcome(f"subscription {row.status}")


def _end_plan_credits(
    organization_id: int, row: Subscription, sub: sd.Obj, created: int
) -> Outcome:
    """The subscription ended: its plan credits last until the end of the period paid for (a
    cancellation now keeps them until then); ended at that end, they expire now."""
    ended_at = sd.at(sub.get("ended_at") or sub.get("canceled_at") or created)
    expired = credits.end_plan_credits(
        organization_id, row.stripe_subscription_id, row.current_period_end, ended_at
    )
    if expired:
        return Outcome(f"subscription canceled: {format_credits(expired)} plan credits expired")
    return Outcome("subscription canceled: plan credits last until the period's end")


# --- invoices --------------------------------------------------------------------------------


def _invoice_context(invoice: sd.Obj) -> tuple[int | None, str | None, Subscription | None]:
    meta = sd.invoice_metadata(invoice) or sd.metadata(invoice)
    organization_id = _organization(sd.object_id(invoice.get("customer")), meta)
    sub_id = sd.invoice_subscription(invoice)
    row = locked(Subscription, Subscription.stripe_subscription_id, sub_id) if sub_id else None
    return organization_id, sub_id, row


def _invoice_row(
    invoice: sd.Obj, organization_id: int, plan: Plan | None, sub_id: str | None
) -> Invoice:
    row = locked(Invoice, Invoice.stripe_invoice_id, invoice["id"])
    if row is None:
        row = Invoice(
            organization_id=organization_id,
            stripe_invoice_id=invoice["id"],
            status="open",
            invoice_date=sd.at(invoice.get("created")) or utcnow(),
        )
        db.session.add(row)
    row.stripe_subscription_id = sub_id or row.stripe_subscription_id
    row.plan_id = plan.id if plan else row.plan_id
    row.number = invoice.get("number") or row.number
    row.billing_reason = invoice.get("billing_reason") or row.billing_reason
    row.currency = invoice.get("currency") or row.currency
    row.period_start, row.period_end = sd.invoice_period(invoice)
    row.hosted_invoice_url = invoice.get("hosted_invoice_url") or row.hosted_invoice_url
    row.invoice_pdf = invoice.get("invoice_pdf") or row.invoice_pdf
    return row


def _stub_subscription(
    organization_id: int, sub_id: str, plan: Plan | None, invoice: sd.Obj
) -> Subscription:
    """An invoice event came first: keep what it tells; the subscription's events refine it."""
    start, end = sd.invoice_period(invoice)
    row = Subscription(
        organization_id=organization_id,
        stripe_subscription_id=sub_id,
        stripe_customer_id=sd.object_id(invoice.get("customer")),
        plan_id=plan.id if plan else None,
        status="active",
        current_period_start=start,
        current_period_end=end,
    )
    db.session.add(row)
    return row


def on_invoice_paid(event: Event) -> Outcome:
    invoice = event["data"]["object"]
    organization_id, sub_id, subscription = _invoice_context(invoice)
    if organization_id is None:
        return Outcome("ignored: unknown customer")
    plan = _plan_for_price(sd.invoice_price(invoice)) or (
        subscription.plan if subscription else None
    )
    row = _invoice_row(invoice, organization_id, plan, sub_id)
    row.status = "paid"
    row.amount_cents = invoice.get("amount_paid", invoice.get("total")) or 0
    paid_at = (invoice.get("status_transitions") or {}).get("paid_at")
    row.paid_at = row.paid_at or sd.at(paid_at) or utcnow()
    events.invoice_paid(row, plan)
    if sub_id and subscription is None:
        _stub_subscription(organization_id, sub_id, plan, invoice)
    if sub_id is None or invoice.get("billing_reason") not in GRANTING_REASONS:
        return Outcome("invoice stored: it grants no plan credits")
    if row.credits_granted:
        return Outcome("already granted")
    if plan is None:
        raise RetryLater(f"No plan matches invoice {invoice['id']}: sync the catalogue.")
    row.credits_granted = plan.credits
    start, end = row.period_start, row.period_end
    # This period is paid: the earlier ones' unused plan credits expire or carry over now.
    expired = credits.close_plan_period(organization_id, sub_id, start, end)
    period = f", {start:%Y-%m-%d} to {end:%Y-%m-%d}" if start and end else ""
    closed = f"; {format_credits(expired)} unused plan credits expired" if expired else ""
    return Outcome(
        f"granted {format_credits(plan.credits)} plan credits{closed}",
        Credit(
            organization_id,
            plan.credits,
            "subscription",
            f"invoice:{invoice['id']}",
            f"{plan.name} plan{period}",
            {
                "invoice": invoice["id"],
                "subscription": sub_id,
                "plan": plan.lookup_key,
                # What a dispute of this invoice's payment names (``chargebacks``).
                "payment_intent": sd.object_id(invoice.get("payment_intent")),
                "charge": sd.object_id(invoice.get("charge")),
            },
            terms=credits.GrantTerms(
                expires_at=credits.plan_credit_expiry(end, plan.rollover),
                subscription_ref=sub_id,
                period_start=start,
                period_end=end,
                rollover=plan.rollover,
                rollover_cap=plan.rollover_cap,
            ),
        ),
    )


def on_invoice_payment_failed(event: Event) -> Outcome:
    invoice = event["data"]["object"]
    organization_id, sub_id, subscription = _invoice_context(invoice)
    if organization_id is None:
        return Outcome("ignored: unknown customer")
    plan = _plan_for_price(sd.invoice_price(invoice)) or (
        subscription.plan if subscription else None
    )
    row = _invoice_row(invoice, organization_id, plan, sub_id)
    if row.status != "paid":  # a late failure never un-pays an invoice
        row.status = invoice.get("status") or "open"
        row.amount_cents = invoice.get("amount_due", invoice.get("total")) or 0
        events.invoice_payment_failed(row, plan, event["id"])
    if sub_id is None:
        return Outcome("invoice payment failed")
    if subscription is None:
        subscription = _stub_subscription(organization_id, sub_id, plan, invoice)
    created = int(event["created"])
    last = subscription.last_event_created
    if subscription.status != "canceled" and (last is None or created >= last):
        subscription.status, subscription.last_event_created = "past_due", created
    return Outcome(f"invoice payment failed: subscription {subscription.status}")


HANDLERS: dict[str, Callable[[Event], Outcome]] = {
    "checkout.session.completed": on_checkout_session,
    "checkout.session.async_payment_succeeded": on_checkout_session,
    "checkout.session.async_payment_failed": on_checkout_session,
    "customer.subscription.created": on_subscription,
    "customer.subscription.updated": on_subscription,
    "customer.subscription.deleted": on_subscription,
    "invoice.paid": on_invoice_paid,
    "invoice.payment_failed": on_invoice_payment_failed,
    "charge.refunded": chargebacks.on_charge_refunded,
    "charge.dispute.created": chargebacks.on_dispute,
    "charge.dispute.closed": chargebacks.on_dispute,
}


def apply(event: Event) -> Outcome:
    return HANDLERS.get(event["type"], _ignore)(event)
