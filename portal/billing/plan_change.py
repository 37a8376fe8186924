"""Switching a live subscription to another plan: a preview to confirm, then the switch.

What the switch does, in Stripe and in the sandbox alike: the subscription's item moves to the
new price at once with ``proration_behavior: none``, so nothing is charged or refunded now; the
next renewal invoices the new price, and that paid invoice grants the new plan's credits
(``invoice.paid``). The current period keeps what was paid and granted for it.

A pending cancellation (``cancel_at_period_end``) is never dropped silently: the switch is
refused unless the person explicitly chose to resume the plan and switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from portal.billing import catalogue, gateway, queries
from portal.billing.cents import format_cents
from portal.billing.models import Plan, Subscription
from portal.billing.sync import sync_item
from portal.errors import Conflict
from portal.extensions import db
from portal.money import format_credits

RETURN_PATH = "billing"


class AlreadyOnPlan(Conflict):
    code = "already_on_plan"


class NoPlanToSwitch(Conflict):
    code = "no_subscription"


class CancellationPending(Conflict):
    """The plan is set to end; switching would resume it, which needs an explicit choice."""

    code = "cancellation_pending"


@dataclass(frozen=True)
class SwitchPreview:
    """What the confirmation page states before anything changes."""

    lookup_key: str
    current_name: str
    new_name: str
    price_cents: int
    currency: str
    credits: int
    renews_at: datetime | None
    cancel_pending: bool

    @property
    def price(self) -> str:
        return format_cents(self.price_cents, self.currency)


@dataclass(frozen=True)
class SwitchRequest:
    organization_id: int
    lookup_key: str
    # The person chose "resume and switch" over keeping a pending cancellation.
    replace_cancellation: bool = False


def _target(organization_id: int, lookup_key: str) -> tuple[Plan, Subscription]:
    plan = catalogue.find_for_sale("plan", lookup_key)
    live = queries.live_subscription(organization_id)
    if live is None:
        raise NoPlanToSwitch("There is no plan to switch: subscribe to one first.")
    if live.plan_id == plan.id:
        raise AlreadyOnPlan(f"You are on the {plan.name} plan already.")
    return plan, live


def _summary(plan: Plan, live: Subscription) -> SwitchPreview:
    return SwitchPreview(
        lookup_key=plan.lookup_key,
        current_name=live.plan.name if live.plan else "your current plan",
        new_name=plan.name,
        price_cents=plan.price_cents,
        currency=plan.currency,
        credits=plan.credits,
        renews_at=live.current_period_end,
        cancel_pending=bool(live.cancel_at_period_end),
    )


def preview(organization_id: int, lookup_key: str) -> SwitchPreview:
    """The switch as our copy of the subscription sees it (the switch itself asks Stripe)."""
    return _summary(*_target(organization_id, lookup_key))


def switch(request: SwitchRequest) -> str:
    """Move the live subscription to the plan; returns what to tell the person.

    Stripe's copy is read first: a switch or a cancellation made a moment ago (in the customer
    portal, say) may not have reached our copy yet.
    """
    plan, live = _target(request.organization_id, request.lookup_key)
    summary = _summary(plan, live)
    sub_id, plan_id, price_id = live.stripe_subscription_id, plan.id, plan.stripe_price_id
    db.session.rollback()  # no transaction open while Stripe (or the sandbox) is called
    if price_id is None:
        price_id = sync_item("plan", plan_id).price_id
    assert price_id is not None
    subscription = gateway.retrieve_subscription(sub_id)
    item = subscription["items"]["data"][0]
    if item["price"]["id"] == price_id:
        raise AlreadyOnPlan(f"You are on the {summary.new_name} plan already.")
    resume = bool(subscription.get("cancel_at_period_end"))
    if resume and not request.replace_cancellation:
        raise CancellationPending(
            f"Your plan is set to end{_on(summary.renews_at)}. Keep the cancellation, or "
            f"choose “Resume and switch” to stay subscribed on {summary.new_name}."
        )
    gateway.switch_subscription_price(sub_id, item["id"], price_id, resume=resume)
    resumed = " Your cancellation is withdrawn." if resume else ""
    return (
        f"Your plan changes to {summary.new_name} ({summary.price} a month, "
        f"{format_credits(summary.credits)} credits a month) from the next renewal"
        f"{_on(summary.renews_at)}; nothing is charged now.{resumed}"
    )


def _on(moment: datetime | None) -> str:
    return f" on {moment:%Y-%m-%d}" if moment else ""
