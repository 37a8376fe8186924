"""Checkout Sessions and billing-portal sessions: created by the API, completed on hosted pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from portal.stripe_sandbox import catalog, disputes, events, payments, store, subscriptions
from portal.stripe_sandbox.errors import SandboxError
from portal.stripe_sandbox.params import Params, merge_metadata

MODES = ("payment", "subscription")
SESSION_LIFETIME = 24 * 3600
SESSION_ID_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"


def _absolute_url(p: Params, key: str, *, required: bool) -> str | None:
    url = p.string(key, required=required)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SandboxError(f"Not a valid URL: {key}", param=key)
    return url


def _line_item(p: Params, mode: str) -> tuple[dict[str, Any], int]:
    items = p.items("line_items")
    if len(items) != 1:
        raise SandboxError("The sandbox takes exactly one line item.", param="line_items")
    item = items[0].allow("price", "quantity")
    price = store.get("price", item.string("price", required=True), param=item.path("price"))
    quantity = item.integer("quantity", minimum=1) or 1
    data = price.data
    if not data["active"]:
        raise SandboxError(f"The price {data['id']} is not active.", param="line_items")
    if mode == "subscription" and data["type"] != "recurring":
        raise SandboxError(
            "You must provide at least one recurring price in `subscription` mode.",
            param="line_items",
        )
    if mode == "payment" and data["type"] == "recurring":
        raise SandboxError(
            "You specified `payment` mode but passed a recurring price.", param="line_items"
        )
    return data, quantity


def create_session(p: Params) -> dict[str, Any]:
    p.allow(
        "mode",
        "customer",
        "customer_email",
        "line_items",
        "success_url",
        "cancel_url",
        "client_reference_id",
        "metadata",
        "subscription_data",
        "payment_intent_data",
        "payment_method_types",
    )
    mode = p.string("mode", required=True, choices=MODES) or ""
    if any(kind != "card" for kind in p.strings("payment_method_types") or ()):
        raise SandboxError("The sandbox takes only card payments.", param="payment_method_types")
    customer = p.string("customer")
    if customer:
        store.get("customer", customer, param="customer")
    price, quantity = _line_item(p, mode)
    session_id = store.new_id("cs_test", 40)
    now = store.now()
    amount = price["unit_amount"] * quantity
    product = store.find(price["product"])
    session = {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "cancel_url": _absolute_url(p, "cancel_url", required=False),
        "client_reference_id": p.string("client_reference_id"),
        "created": now,
        "currency": price["currency"],
        "customer": customer,
        "customer_details": None,
        "customer_email": p.string("customer_email"),
        "expires_at": now + SESSION_LIFETIME,
        "invoice": None,
        "line_items": store.list_object(
            [
                {
                    "id": store.new_id("li"),
                    "object": "item",
                    "amount_subtotal": amount,
                    "amount_total": amount,
                    "currency": price["currency"],
                    "description": product.data["name"] if product else price["id"],
                    "price": price,
                    "quantity": quantity,
                }
            ],
            f"/v1/checkout/sessions/{session_id}/line_items",
        ),
        "livemode": False,
        "metadata": merge_metadata({}, p.metadata()),
        "mode": mode,
        "payment_intent": None,
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "status": "open",
        "subscription": None,
        "success_url": _absolute_url(p, "success_url", required=True),
        "ui_mode": "hosted",
        "url": f"{store.public_base()}/_stripe/checkout/{session_id}",
        # Not shown by the API (render drops "_" keys): what the payment will carry.
        "_subscription_metadata": merge_metadata(
            {}, p.sub("subscription_data").allow("metadata").metadata()
        ),
        "_payment_intent_metadata": merge_metadata(
            {}, p.sub("payment_intent_data").allow("metadata").metadata()
        ),
    }
    store.add(session)
    return session


def is_expired(session: dict[str, Any]) -> bool:
    return session["status"] == "expired" or (
        session["status"] == "open" and store.now() >= session["expires_at"]
    )


def success_redirect(session: dict[str, Any]) -> str:
    return session["success_url"].replace(SESSION_ID_PLACEHOLDER, session["id"])


def pay(session_id: str, card_number: str | None) -> str:
    """Pay an open session with a test card; returns where to send the browser.

    A declined card raises ``CardDeclined`` before anything is written; paying a session that
    is already complete (a second click on "Pay") just redirects again.
    """
    row = store.get("checkout.session", session_id, lock=True)
    session = store.doc(row)
    if session["status"] == "complete":
        return success_redirect(session)
    if is_expired(session):
        raise SandboxError("This Checkout Session has expired.", status=410)
    card = payments.check_card(card_number)
    customer = session["customer"] or _guest_customer(session["customer_email"])
    line = session["line_items"]["data"][0]
    price = store.get("price", line["price"]["id"]).data
    if session["mode"] == "payment":
        intent = payments.create_payment(
            amount=session["amount_total"],
            currency=session["currency"],
            customer=customer,
            card=card,
            metadata=session["_payment_intent_metadata"],
            description=line["description"],
        )
        session["payment_intent"] = intent["id"]
        charge_id = intent["latest_charge"]
    else:
        subscription, invoice = subscriptions.start(
            customer=customer,
            price=price,
            quantity=line["quantity"],
            metadata=session["_subscription_metadata"],
            card=card,
        )
        session.update(subscription=subscription["id"], invoice=invoice["id"])
        charge_id = invoice["charge"]
    email = session["customer_email"] or store.get("customer", customer).data.get("email")
    session.update(
        status="complete",
        payment_status="paid",
        customer=customer,
        customer_details={"email": email},
        url=None,
    )
    store.save(row, session)
    events.emit("checkout.session.completed", session)
    disputes.open_if_disputing(card, charge_id)
    return success_redirect(session)


def _guest_customer(email: str | None) -> str:
    """Stripe creates a customer when a session has none: do the same."""
    fields = {"email": email} if email else {}
    return catalog.create_customer(Params(fields))["id"]


def create_portal_session(p: Params) -> dict[str, Any]:
    p.allow("customer", "return_url")
    customer = store.get("customer", p.string("customer", required=True), param="customer")
    session_id = store.new_id("bps", 40)
    session = {
        "id": session_id,
        "object": "billing_portal.session",
        "configuration": "bpc_sandbox",
        "created": store.now(),
        "customer": customer.id,
        "flow": None,
        "livemode": False,
        "locale": None,
        "on_behalf_of": None,
        "return_url": _absolute_url(p, "return_url", required=False),
        "url": f"{store.public_base()}/_stripe/portal/{session_id}",
    }
    store.add(session)
    return session
