"""``POST /stripe/webhook``: the raw body and its signature to the billing service, one answer.

Verifying, recording the event once and applying it all happen in
``portal.billing.service.receive_webhook``; refusals are ``PortalError``s and answer in the
JSON error shape (400 for a body that is not a readable Stripe event, so Stripe stops retrying).
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from portal.billing import service

bp = Blueprint("stripe_webhooks", __name__)


@bp.post("/stripe/webhook")
def receive() -> ResponseReturnValue:
    receipt = service.receive_webhook(request.get_data(), request.headers.get("Stripe-Signature"))
    return jsonify({"received": True, "event": receipt.event_id, "outcome": receipt.outcome})
