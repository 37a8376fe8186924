"""Hosted pages: checkout, the customer portal, invoices and their PDFs, as Stripe hosts them."""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from portal.extensions import db
from portal.stripe_sandbox import checkout, events, payments, store, subscriptions
from portal.stripe_sandbox.blueprint import bp, error_response, refuse_cross_site_post
from portal.stripe_sandbox.errors import CardDeclined, SandboxError
from portal.stripe_sandbox.models import SandboxObject
from portal.stripe_sandbox.pdf import invoice_pdf
from portal.stripe_sandbox.render import render

PORTAL_NOTICES = {
    "cancel_at_period_end": "Your plan will be canceled at the end of the billing period.",
    "renew": "Your plan will renew as usual.",
    "cancel_now": "Your plan has been canceled.",
    "switch": "Your plan has been changed. The new price applies from the next renewal.",
}


@bp.errorhandler(HTTPException)
def hosted_http_error(error: HTTPException):
    if request.path.startswith("/_stripe/v1/"):
        return error_response(SandboxError(error.description or "", status=error.code or 500))
    status = error.code or 500
    return message_page(error.name, error.description or "", status)


def message_page(title: str, message: str, status: int = 200, link: str | None = None):
    return render_template(
        "stripe_sandbox/message.html", title=title, message=message, link=link
    ), status


def _object_or_404(type_: str, object_id: str) -> dict[str, Any]:
    row = store.find(object_id)
    if row is None or row.type != type_:
        raise _NotFound()
    return render(row.data, ["line_items"] if type_ == "checkout.session" else [])


class _NotFound(HTTPException):
    code = 404
    name = "Not found"
    description = "This link is not valid, or has expired."


# --- checkout -------------------------------------------------------------------------------


def _checkout_page(session: dict[str, Any], error: str | None = None, status: int = 200):
    product_id = session["line_items"]["data"][0]["price"]["product"]
    product = store.find(product_id)
    return render_template(
        "stripe_sandbox/checkout.html",
        session=session,
        line=session["line_items"]["data"][0],
        product=product.data if product else {"name": product_id, "description": None},
        error=error,
    ), status


@bp.get("/checkout/<session_id>")
def checkout_page(session_id: str):
    session = _object_or_404("checkout.session", session_id)
    if session["status"] == "complete":
        return message_page(
            "Already paid",
            "This payment is complete.",
            link=checkout.success_redirect(session),
        )
    if checkout.is_expired(session):
        return message_page("Session expired", "This checkout session has expired.", 410)
    return _checkout_page(session)


@bp.post("/checkout/<session_id>")
def checkout_pay(session_id: str):
    refuse_cross_site_post()
    try:
        target = checkout.pay(session_id, request.form.get("card_number"))
        events.commit()
    except CardDeclined as declined:
        db.session.rollback()
        return _checkout_page(_object_or_404("checkout.session", session_id), declined.message, 402)
    except SandboxError as error:
        db.session.rollback()
        if error.status == 404:
            raise _NotFound() from error
        return message_page("Payment not possible", error.message, error.status)
    return redirect(target, 303)


# --- customer portal ------------------------------------------------------------------------


def _portal_context(portal_session: dict[str, Any]) -> dict[str, Any]:
    customer_id = portal_session["customer"]
    mine = SandboxObject.customer == customer_id
    live = [
        render(row.data)
        for row in reversed(store.all_of("subscription", mine))
        if row.data["status"] != "canceled"
    ]
    products = {row.id: row.data for row in store.all_of("product")}
    # The plans on offer: what ``flask stripe sync`` keeps under a lookup key, and is for sale.
    prices = [
        row.data
        for row in store.all_of("price")
        if row.data["active"]
        and row.data["type"] == "recurring"
        and row.data["lookup_key"]
        and products.get(row.data["product"], {}).get("active")
    ]
    invoices = [row.data for row in reversed(store.all_of("invoice", mine))][:12]
    return {
        "portal_session": portal_session,
        "customer": store.get("customer", customer_id).data,
        "subscriptions": live,
        "plans": sorted(prices, key=lambda price: (price["unit_amount"], price["id"])),
        "products": products,
        "invoices": invoices,
        "notice": PORTAL_NOTICES.get(request.args.get("notice", "")),
    }


@bp.get("/portal/<portal_session_id>")
def portal_page(portal_session_id: str):
    portal_session = _object_or_404("billing_portal.session", portal_session_id)
    return render_template("stripe_sandbox/portal.html", **_portal_context(portal_session))


@bp.post("/portal/<portal_session_id>")
def portal_action(portal_session_id: str):
    refuse_cross_site_post()
    portal_session = _object_or_404("billing_portal.session", portal_session_id)
    action = request.form.get("action", "")
    subscription_id = request.form.get("subscription", "")
    row = store.find(subscription_id)
    if action not in PORTAL_NOTICES or row is None or row.type != "subscription":
        return message_page("Not possible", "Unknown action or subscription.", 400)
    if row.data["customer"] != portal_session["customer"]:
        raise _NotFound()
    try:
        if action == "cancel_now":
            subscriptions.cancel(subscription_id)
        elif action == "switch":
            item_id = row.data["items"]["data"][0]["id"]
            price = request.form.get("price", "")
            subscriptions.update(subscription_id, item_id=item_id, price_id=price)
        else:
            subscriptions.update(
                subscription_id, cancel_at_period_end=action == "cancel_at_period_end"
            )
        events.commit()
    except SandboxError as error:
        db.session.rollback()
        return message_page("Not possible", error.message, 400)
    target = url_for(".portal_page", portal_session_id=portal_session_id, notice=action)
    return redirect(target, 303)


# --- invoices -------------------------------------------------------------------------------


@bp.get("/invoices/<invoice_id>")
def invoice_page(invoice_id: str):
    invoice = _object_or_404("invoice", invoice_id)
    customer = store.find(invoice["customer"])
    return render_template(
        "stripe_sandbox/invoice.html",
        invoice=invoice,
        customer=customer.data if customer else {},
        error=None,
        paid_now=request.args.get("paid") == "1",
    )


@bp.post("/invoices/<invoice_id>")
def invoice_pay(invoice_id: str):
    """Stripe's hosted invoice page lets a customer pay an open (failed) invoice by card."""
    refuse_cross_site_post()
    invoice = _object_or_404("invoice", invoice_id)
    if invoice["status"] == "open":
        try:
            card = payments.check_card(request.form.get("card_number"))
            subscriptions.recover(store.get("invoice", invoice_id, lock=True), card)
            events.commit()
        except CardDeclined as declined:
            db.session.rollback()
            customer = store.find(invoice["customer"])
            page = render_template(
                "stripe_sandbox/invoice.html",
                invoice=invoice,
                customer=customer.data if customer else {},
                error=declined.message,
                paid_now=False,
            )
            return page, 402
    return redirect(url_for(".invoice_page", invoice_id=invoice_id, paid="1"), 303)


@bp.get("/invoices/<invoice_id>/pdf")
def invoice_pdf_download(invoice_id: str):
    invoice = _object_or_404("invoice", invoice_id)
    response = Response(invoice_pdf(invoice), mimetype="application/pdf")
    filename = f"Invoice-{invoice['number']}.pdf"
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return response
