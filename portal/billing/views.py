"""Billing pages: plans and packages, checkout, the success page, and Manage billing.

Everyone in the organization sees the page; owners and admins buy. The success page only
reads: credits arrive through the webhook, and the page polls until they have.
"""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from portal.auth.access import manager_required, member_required
from portal.billing import catalogue, gateway, plan_change, queries, service
from portal.billing.cents import format_cents, per_credit
from portal.credits import service as credits
from portal.errors import PortalError

bp = Blueprint("billing", __name__, url_prefix="/billing")
bp.add_app_template_filter(format_cents, "cents")
bp.add_app_template_global(per_credit, "per_credit")
bp.add_app_template_global(catalogue.credit_rule, "credit_rule")


def _render_index(status: int = 200) -> ResponseReturnValue:
    organization_id = g.membership.organization_id
    disputes = queries.disputes(organization_id)
    return render_template(
        "billing/index.html",
        plan=queries.plan_summary(organization_id),
        plans=catalogue.for_sale("plan"),
        packages=catalogue.for_sale("package"),
        invoices=queries.invoices(organization_id),
        payments=queries.payments(organization_id),
        disputes=disputes,
        payment_disputes=queries.by_payment(disputes),
        balance=credits.get_balance(g.membership.organization),
        has_account=queries.has_billing_account(organization_id),
        sandbox=gateway.sandbox_mode(),
    ), status


@bp.get("")
@member_required
def index() -> ResponseReturnValue:
    return _render_index()


@bp.post("/checkout")
@manager_required
def checkout() -> ResponseReturnValue:
    """Form field ``package`` or ``plan`` (a lookup key) -> 303 to Stripe's hosted checkout."""
    try:
        purchase = service.Purchase.from_form(
            g.membership.organization_id, current_user.id, request.form
        )
        step = service.start_checkout(purchase)
    except PortalError as exc:
        flash(exc.message, "error")
        return _render_index(exc.status)
    if step.message:
        flash(step.message, "success")
    return redirect(step.url, 303)


@bp.get("/plans/<lookup_key>/switch")
@manager_required
def confirm_switch(lookup_key: str) -> ResponseReturnValue:
    """The confirmation step of a plan switch: price, credits, when, and any pending cancel."""
    try:
        summary = plan_change.preview(g.membership.organization_id, lookup_key)
    except PortalError as exc:
        flash(exc.message, "error")
        return _render_index(exc.status)
    return render_template("billing/switch.html", switch=summary)


@bp.post("/plans/<lookup_key>/switch")
@manager_required
def switch_plan(lookup_key: str) -> ResponseReturnValue:
    """Switch after confirming; ``replace_cancellation=1`` also resumes a plan set to end."""
    try:
        message = plan_change.switch(
            plan_change.SwitchRequest(
                g.membership.organization_id,
                lookup_key,
                replace_cancellation=request.form.get("replace_cancellation") == "1",
            )
        )
    except PortalError as exc:
        flash(exc.message, "error")
        return _render_index(exc.status)
    flash(message, "success")
    return redirect(url_for("billing.index"), 303)


@bp.post("/portal")
@manager_required
def manage() -> ResponseReturnValue:
    """Manage billing: Stripe's customer portal (payment method, invoices, cancelling)."""
    try:
        step = service.open_billing_portal(g.membership.organization_id)
    except PortalError as exc:
        flash(exc.message, "error")
        return _render_index(exc.status)
    return redirect(step.url, 303)


def _status() -> tuple[str, queries.CheckoutStatus]:
    session_id = request.args.get("session_id", "")
    return session_id, queries.checkout_status(g.membership.organization_id, session_id)


@bp.get("/success")
@member_required
def success() -> ResponseReturnValue:
    session_id, status = _status()
    return render_template("billing/success.html", session_id=session_id, status=status, attempt=0)


@bp.get("/success/status")
@member_required
def success_status() -> ResponseReturnValue:
    """The status box alone: htmx swaps it in every second until the webhook was applied."""
    session_id, status = _status()
    attempt = request.args.get("attempt", default=0, type=int)
    return render_template(
        "billing/_checkout_status.html", session_id=session_id, status=status, attempt=attempt
    )
