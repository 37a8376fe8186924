"""The REST subset at ``/_stripe/v1``: the URL map, in Stripe's own paths, and nothing else.

Each view is parse → one operation → the document; ``api_view`` owns auth and the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request

from portal.stripe_sandbox import catalog, checkout, disputes, payments, store, subscriptions
from portal.stripe_sandbox.blueprint import api_view, bp, error_response
from portal.stripe_sandbox.errors import SandboxError
from portal.stripe_sandbox.models import SandboxObject
from portal.stripe_sandbox.params import Params
from portal.stripe_sandbox.render import render, render_list

Doc = dict[str, Any]


def _retrieve(type_: str, object_id: str, p: Params) -> Doc:
    p.allow()
    return render(store.get(type_, object_id).data, p.expand())


def _list(
    type_: str,
    url: str,
    p: Params,
    conditions: tuple[Any, ...] = (),
    where: Callable[[Doc], bool] | None = None,
) -> Doc:
    rows, has_more = store.page(
        type_,
        *conditions,
        where=where,
        limit=p.integer("limit", minimum=1),
        starting_after=p.string("starting_after"),
        ending_before=p.string("ending_before"),
    )
    return render_list(rows, url, has_more, p.expand())


# --- customers ------------------------------------------------------------------------------


@bp.post("/v1/customers")
@api_view
def customers_create(p: Params) -> Doc:
    return render(catalog.create_customer(p), p.expand())


@bp.get("/v1/customers")
@api_view
def customers_list(p: Params) -> Doc:
    conditions, where = catalog.customer_filter(p)
    return _list("customer", "/v1/customers", p, conditions, where)


@bp.get("/v1/customers/<customer_id>")
@api_view
def customers_retrieve(p: Params, customer_id: str) -> Doc:
    return _retrieve("customer", customer_id, p)


@bp.post("/v1/customers/<customer_id>")
@api_view
def customers_update(p: Params, customer_id: str) -> Doc:
    return render(catalog.update_customer(customer_id, p), p.expand())


# --- products and prices --------------------------------------------------------------------


@bp.post("/v1/products")
@api_view
def products_create(p: Params) -> Doc:
    return render(catalog.create_product(p), p.expand())


@bp.get("/v1/products")
@api_view
def products_list(p: Params) -> Doc:
    conditions, where = catalog.product_filter(p)
    return _list("product", "/v1/products", p, conditions, where)


@bp.get("/v1/products/<product_id>")
@api_view
def products_retrieve(p: Params, product_id: str) -> Doc:
    return _retrieve("product", product_id, p)


@bp.post("/v1/products/<product_id>")
@api_view
def products_update(p: Params, product_id: str) -> Doc:
    return render(catalog.update_product(product_id, p), p.expand())


@bp.post("/v1/prices")
@api_view
def prices_create(p: Params) -> Doc:
    return render(catalog.create_price(p), p.expand())


@bp.get("/v1/prices")
@api_view
def prices_list(p: Params) -> Doc:
    conditions, where = catalog.price_filter(p)
    return _list("price", "/v1/prices", p, conditions, where)


@bp.get("/v1/prices/<price_id>")
@api_view
def prices_retrieve(p: Params, price_id: str) -> Doc:
    return _retrieve("price", price_id, p)


@bp.post("/v1/prices/<price_id>")
@api_view
def prices_update(p: Params, price_id: str) -> Doc:
    return render(catalog.update_price(price_id, p), p.expand())


# --- checkout and the customer portal -------------------------------------------------------


@bp.post("/v1/checkout/sessions")
@api_view
def checkout_sessions_create(p: Params) -> Doc:
    return render(checkout.create_session(p), p.expand())


@bp.get("/v1/checkout/sessions/<session_id>")
@api_view
def checkout_sessions_retrieve(p: Params, session_id: str) -> Doc:
    return _retrieve("checkout.session", session_id, p)


@bp.get("/v1/checkout/sessions/<session_id>/line_items")
@api_view
def checkout_sessions_line_items(p: Params, session_id: str) -> Doc:
    p.allow("limit", "starting_after", "ending_before")
    session = render(store.get("checkout.session", session_id).data, ["line_items"])
    return session["line_items"]


@bp.post("/v1/billing_portal/sessions")
@api_view
def billing_portal_sessions_create(p: Params) -> Doc:
    return render(checkout.create_portal_session(p), p.expand())


# --- subscriptions and invoices -------------------------------------------------------------


def _by_customer(p: Params, *names: str) -> tuple[Any, ...]:
    p.allow("customer", "limit", "starting_after", "ending_before", *names)
    customer = p.string("customer")
    return () if customer is None else (SandboxObject.customer == customer,)


@bp.get("/v1/subscriptions")
@api_view
def subscriptions_list(p: Params) -> Doc:
    conditions = _by_customer(p, "status", "price")
    status, price = p.string("status") or "all_live", p.string("price")

    def keep(subscription: Doc) -> bool:
        live = subscription["status"] != "canceled"
        status_ok = live if status == "all_live" else status in ("all", subscription["status"])
        item_price = subscription["items"]["data"][0]["price"]["id"]
        return status_ok and (price is None or item_price == price)

    return _list("subscription", "/v1/subscriptions", p, conditions, keep)


@bp.get("/v1/subscriptions/<subscription_id>")
@api_view
def subscriptions_retrieve(p: Params, subscription_id: str) -> Doc:
    return _retrieve("subscription", subscription_id, p)


@bp.post("/v1/subscriptions/<subscription_id>")
@api_view
def subscriptions_update(p: Params, subscription_id: str) -> Doc:
    return render(subscriptions.update_from_params(subscription_id, p), p.expand())


@bp.delete("/v1/subscriptions/<subscription_id>")
@api_view
def subscriptions_cancel(p: Params, subscription_id: str) -> Doc:
    p.allow("invoice_now", "prorate")
    return render(subscriptions.cancel(subscription_id), p.expand())


@bp.get("/v1/invoices")
@api_view
def invoices_list(p: Params) -> Doc:
    conditions = _by_customer(p, "subscription", "status")
    subscription, status = p.string("subscription"), p.string("status")

    def keep(invoice: Doc) -> bool:
        return (subscription is None or invoice["subscription"] == subscription) and (
            status is None or invoice["status"] == status
        )

    return _list("invoice", "/v1/invoices", p, conditions, keep)


@bp.get("/v1/invoices/<invoice_id>")
@api_view
def invoices_retrieve(p: Params, invoice_id: str) -> Doc:
    return _retrieve("invoice", invoice_id, p)


# --- payments, refunds, disputes, events -----------------------------------------------------


@bp.get("/v1/payment_intents/<intent_id>")
@api_view
def payment_intents_retrieve(p: Params, intent_id: str) -> Doc:
    return _retrieve("payment_intent", intent_id, p)


@bp.get("/v1/charges/<charge_id>")
@api_view
def charges_retrieve(p: Params, charge_id: str) -> Doc:
    return _retrieve("charge", charge_id, p)


@bp.post("/v1/refunds")
@api_view
def refunds_create(p: Params) -> Doc:
    return render(payments.refund(p), p.expand())


@bp.get("/v1/refunds/<refund_id>")
@api_view
def refunds_retrieve(p: Params, refund_id: str) -> Doc:
    return _retrieve("refund", refund_id, p)


@bp.get("/v1/disputes")
@api_view
def disputes_list(p: Params) -> Doc:
    p.allow("charge", "payment_intent", "limit", "starting_after", "ending_before")
    charge, intent = p.string("charge"), p.string("payment_intent")

    def keep(dispute: Doc) -> bool:
        return charge in (None, dispute["charge"]) and intent in (None, dispute["payment_intent"])

    return _list("dispute", "/v1/disputes", p, where=keep)


@bp.get("/v1/disputes/<dispute_id>")
@api_view
def disputes_retrieve(p: Params, dispute_id: str) -> Doc:
    return _retrieve("dispute", dispute_id, p)


@bp.post("/v1/disputes/<dispute_id>/close")
@api_view
def disputes_close(p: Params, dispute_id: str) -> Doc:
    p.allow()
    # Closing through the API is the merchant accepting the dispute: it is lost.
    return render(disputes.close(dispute_id, "lost"), p.expand())


@bp.get("/v1/events")
@api_view
def events_list(p: Params) -> Doc:
    p.allow("type", "limit", "starting_after", "ending_before")
    type_ = p.string("type")
    return _list("event", "/v1/events", p, where=lambda e: type_ in (None, e["type"]))


@bp.get("/v1/events/<event_id>")
@api_view
def events_retrieve(p: Params, event_id: str) -> Doc:
    return _retrieve("event", event_id, p)


@bp.route("/v1/<path:rest>", methods=["GET", "POST", "DELETE", "PUT", "PATCH"])
def unrecognized(rest: str):
    """Stripe's answer to a path outside the subset, rather than the portal's 404 page."""
    message = f"Unrecognized request URL ({request.method}: /v1/{rest})."
    return error_response(SandboxError(message, status=404))
