"""Billing test helpers: Stripe events built by hand and signed here, independently of the code.

The signature is computed as Stripe documents it (HMAC-SHA256 of ``"<t>.<payload>"`` with the
endpoint secret, header ``t=<t>,v1=<hex>``), not with the ``stripe`` library the portal uses
to verify, so a wrong verification cannot pass by agreeing with itself.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select

from portal.billing.models import BillingCustomer, Package, Payment, Plan, StripeEvent
from portal.extensions import db

SECRET = "whsec_sandbox_dev_secret"
_ids = itertools.count(1)
PERIOD = 30 * 86400
T0 = 1_790_000_000  # a fixed "now" for event timestamps; only their order matters


def new_id(prefix: str) -> str:
    return f"{prefix}_test{next(_ids):06d}"


def sign(payload: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def event(kind: str, obj: dict[str, Any], *, created: int = T0, event_id: str | None = None):
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "type": kind,
        "created": created,
        "livemode": False,
        "api_version": "2026-10-28.endive",
        "data": {"object": obj},
    }


def post_event(client, evt: dict[str, Any], *, secret: str = SECRET, timestamp=None, header=None):
    payload = json.dumps(evt)
    signature = header if header is not None else sign(payload, secret, timestamp)
    return client.post(
        "/stripe/webhook",
        data=payload,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


@dataclass
class Buyer:
    """An organization with a Stripe customer, as after its first checkout."""

    organization_id: int
    customer_id: str


def make_buyer(organization_id: int) -> Buyer:
    customer_id = new_id("cus")
    db.session.add(BillingCustomer(organization_id=organization_id, stripe_customer_id=customer_id))
    db.session.commit()
    return Buyer(organization_id, customer_id)


def open_checkout(buyer: Buyer, *, package=None, plan=None, credits: int = 0, cents: int = 0):
    """The Payment row ``start_checkout`` leaves behind; returns the session id."""
    session_id = new_id("cs")
    db.session.add(
        Payment(
            organization_id=buyer.organization_id,
            checkout_session_id=session_id,
            mode="payment" if package else "subscription",
            package_id=package.id if package else None,
            plan_id=plan.id if plan else None,
            credits=credits or (package.credits if package else 0),
            amount_cents=cents or (package.price_cents if package else plan.price_cents),
        )
    )
    db.session.commit()
    return session_id


def checkout_session(buyer: Buyer, session_id: str, **fields: Any) -> dict[str, Any]:
    mode = fields.pop("mode", "payment")
    key = fields.pop("lookup_key", "package_small")
    fields.setdefault("amount_total", _catalogue_price(Package if mode == "payment" else Plan, key))
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": mode,
        "customer": buyer.customer_id,
        "client_reference_id": str(buyer.organization_id),
        "metadata": {
            "organization_id": str(buyer.organization_id),
            ("package" if mode == "payment" else "plan"): key,
        },
        "payment_status": "paid",
        "status": "complete",
        "currency": "usd",
        "payment_intent": new_id("pi") if mode == "payment" else None,
        "subscription": None,
        **fields,
    }


def _catalogue_price(model: Any, lookup_key: str) -> int | None:
    """What the catalogue asks for the item: what Stripe charges for a checkout of it."""
    cents = db.session.scalar(select(model.price_cents).where(model.lookup_key == lookup_key))
    db.session.rollback()
    return cents


def price(lookup_key: str) -> dict[str, Any]:
    plan = db.session.scalar(select(Plan).where(Plan.lookup_key == lookup_key))
    return {
        "id": new_id("price"),
        "object": "price",
        "lookup_key": lookup_key,
        "unit_amount": plan.price_cents if plan else 0,
        "currency": "usd",
        "product": new_id("prod"),
        "recurring": {"interval": "month"},
    }


def subscription(buyer: Buyer, sub_id: str, *, status="active", plan="plan_starter", **fields):
    start = fields.pop("start", T0)
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": buyer.customer_id,
        "status": status,
        "cancel_at_period_end": fields.pop("cancel_at_period_end", False),
        "current_period_start": start,
        "current_period_end": start + PERIOD,
        "items": {"object": "list", "data": [{"id": f"si_{sub_id}", "price": price(plan)}]},
        "metadata": {"organization_id": str(buyer.organization_id), "plan": plan},
        **fields,
    }


def invoice(buyer: Buyer, sub_id: str, *, plan="plan_starter", reason="subscription_create", **f):
    start = f.pop("start", T0)
    invoice_id = f.pop("invoice_id", None) or new_id("in")
    paid = f.pop("paid", True)
    amount = f.pop("amount", 2900)
    return {
        "id": invoice_id,
        "object": "invoice",
        "number": f"TEST-{invoice_id[-6:]}",
        "customer": buyer.customer_id,
        "subscription": sub_id,
        "status": "paid" if paid else "open",
        "amount_paid": amount if paid else 0,
        "amount_due": amount,
        "currency": "usd",
        "created": start,
        "period_start": start,
        "period_end": start,
        "billing_reason": reason,
        "hosted_invoice_url": f"https://sandbox.example/_stripe/invoices/{invoice_id}",
        "invoice_pdf": f"https://sandbox.example/_stripe/invoices/{invoice_id}/pdf",
        "lines": {
            "object": "list",
            "data": [{"price": price(plan), "period": {"start": start, "end": start + PERIOD}}],
        },
        **f,
    }


def charge_refunded(payment_intent: str, *, amount: int, refunded: int, refunds: list[tuple]):
    """``refunds``: (refund id, amount, created) newest last."""
    return {
        "id": new_id("ch"),
        "object": "charge",
        "payment_intent": payment_intent,
        "amount": amount,
        "amount_refunded": refunded,
        "refunded": refunded >= amount,
        "invoice": None,
        "metadata": {},
        "refunds": {
            "object": "list",
            "data": [
                {"id": rid, "object": "refund", "amount": cents, "created": created}
                for rid, cents, created in reversed(refunds)
            ],
        },
    }


def dispute_object(
    payment_intent: str, dispute_id: str, charge: str, *, status="needs_response", amount=990
) -> dict[str, Any]:
    """A chargeback of the whole charge, as ``charge.dispute.*`` events carry it."""
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "currency": "usd",
        "charge": charge,
        "payment_intent": payment_intent,
        "created": T0,
        "reason": "fraudulent",
        "status": status,
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
    }


def recorded_events() -> int:
    count = db.session.scalar(select(func.count(StripeEvent.id)))
    db.session.rollback()
    return count


def deliver_at_once(base_url: str, events: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST every event from its own thread, all released by one barrier at the same moment."""
    barrier = threading.Barrier(len(events))

    def deliver(evt: dict[str, Any]) -> httpx.Response:
        payload = json.dumps(evt)
        with httpx.Client(base_url=base_url, timeout=60) as client:
            barrier.wait()
            return client.post(
                "/stripe/webhook",
                content=payload,
                headers={"Stripe-Signature": sign(payload), "Content-Type": "application/json"},
            )

    with ThreadPoolExecutor(max_workers=len(events)) as pool:
        return list(pool.map(deliver, events))
