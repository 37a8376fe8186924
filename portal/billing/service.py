"""Buying: Checkout Sessions for packages and plans, plan changes, the customer portal.

Nothing here grants credits: that happens only when Stripe's webhook says the money arrived
(``portal.billing.fulfilment``). Reads happen first, then the transaction is ended before any
call to Stripe (on SQLite an open transaction holds the write lock, and the sandbox serving
those calls writes too); what Stripe answered is then written and committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.billing import catalogue, gateway, queries
from portal.billing.catalogue import Kind
from portal.billing.models import BillingCustomer, Payment
from portal.billing.sync import sync_item
from portal.credits.models import Organization
from portal.errors import Conflict, InvalidRequest
from portal.extensions import db

SUCCESS_PATH = "billing/success?session_id={CHECKOUT_SESSION_ID}"
RETURN_PATH = "billing"


class AlreadyOnPlan(Conflict):
    code = "already_on_plan"


class NothingToManage(Conflict):
    code = "no_billing_account"


@dataclass(frozen=True)
class Purchase:
    """What a manager chose on the billing page: one package or one plan, by lookup key."""

    organization_id: int
    user_id: int | None
    kind: Kind
    lookup_key: str

    @classmethod
    def from_form(
        cls, organization_id: int, user_id: int | None, form: Mapping[str, str]
    ) -> Purchase:
        package, plan = form.get("package", "").strip(), form.get("plan", "").strip()
        if bool(package) == bool(plan):
            raise InvalidRequest("package", "choose one package or one plan")
        kind: Kind = "package" if package else "plan"
        return cls(organization_id, user_id, kind, package or plan)


@dataclass(frozen=True)
class Next:
    """Where the browser goes next, and what to tell the user when it is back on our pages."""

    url: str
    message: str | None = None


def _end_transaction() -> None:
    db.session.rollback()


def start_checkout(purchase: Purchase) -> Next:
    """A Checkout Session for a package or a first plan; an existing plan is switched instead."""
    item = catalogue.find_for_sale(purchase.kind, purchase.lookup_key)
    if purchase.kind == "plan":
        live = queries.live_subscription(purchase.organization_id)
        if live is not None:
            return _switch_plan(live.id, item.id)
    item_id, price_id = item.id, item.stripe_price_id
    credits, cents, currency = item.credits, item.price_cents, item.currency
    customer_id = _customer_id(purchase.organization_id)
    _end_transaction()
    if price_id is None:  # never synced, or re-priced since: mirror it in Stripe now
        price_id = sync_item(purchase.kind, item_id).price_id
    assert price_id is not None
    base = gateway.base_url()
    page = gateway.create_checkout_session(
        gateway.CheckoutRequest(
            mode="payment" if purchase.kind == "package" else "subscription",
            customer_id=customer_id,
            price_id=price_id,
            success_url=base + SUCCESS_PATH,
            cancel_url=base + RETURN_PATH,
            organization_id=purchase.organization_id,
            metadata={purchase.kind: purchase.lookup_key},
        )
    )
    db.session.add(
        Payment(
            organization_id=purchase.organization_id,
            user_id=purchase.user_id,
            checkout_session_id=page.id,
            mode="payment" if purchase.kind == "package" else "subscription",
            package_id=item_id if purchase.kind == "package" else None,
            plan_id=item_id if purchase.kind == "plan" else None,
            credits=credits,
            amount_cents=cents,
            currency=currency,
        )
    )
    db.session.commit()
    return Next(page.url)


def _customer_id(organization_id: int) -> str:
    """The organization's one Stripe customer, created (and remembered at once) on first use.

    Remembered in its own commit: the customer exists at Stripe whether or not this checkout
    is finished, and the next purchase must reuse it.
    """
    existing = db.session.scalar(
        select(BillingCustomer.stripe_customer_id).where(
            BillingCustomer.organization_id == organization_id
        )
    )
    if existing:
        return existing
    organization = db.session.get(Organization, organization_id)
    assert organization is not None
    name, created = organization.name, int(organization.created_at.timestamp())
    _end_transaction()
    customer_id = gateway.create_customer(organization_id, name, created)
    db.session.add(BillingCustomer(organization_id=organization_id, stripe_customer_id=customer_id))
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent first purchase remembered one first: use that one
        db.session.rollback()
        return db.session.scalar(
            select(BillingCustomer.stripe_customer_id).where(
                BillingCustomer.organization_id == organization_id
            )
        )
    return customer_id


def _switch_plan(subscription_row_id: int, plan_id: int) -> Next:
    """Move the live subscription to another plan from its next period (Stripe bills it then
    and ``invoice.paid`` grants the new plan's credits); the webhook updates our copy.

    Stripe's copy is read first: a switch made a moment ago may not have reached us yet.
    """
    subscription = queries.subscription(subscription_row_id)
    plan = catalogue.get_item("plan", plan_id)
    sub_id, name = subscription.stripe_subscription_id, plan.name
    price_id, renews = plan.stripe_price_id, subscription.current_period_end
    _end_transaction()
    if price_id is None:
        price_id = sync_item("plan", plan_id).price_id
    assert price_id is not None
    item = gateway.retrieve_subscription(sub_id)["items"]["data"][0]
    if item["price"]["id"] == price_id:
        raise AlreadyOnPlan(f"You are on the {name} plan already.")
    gateway.switch_subscription_price(sub_id, item["id"], price_id)
    when = f" on {renews:%Y-%m-%d}" if renews else ""
    return Next(
        gateway.base_url() + RETURN_PATH,
        f"Your plan changes to {name} at the next renewal{when}.",
    )


def open_billing_portal(organization_id: int) -> Next:
    """A customer-portal session (payment methods, invoices, cancelling) for the organization."""
    customer_id = db.session.scalar(
        select(BillingCustomer.stripe_customer_id).where(
            BillingCustomer.organization_id == organization_id
        )
    )
    if customer_id is None:
        raise NothingToManage("Nothing to manage yet: buy a package or subscribe to a plan first.")
    _end_transaction()
    page = gateway.create_portal_session(customer_id, gateway.base_url() + RETURN_PATH)
    return Next(page.url)
