"""Webhook delivery: sign like Stripe, claim each due delivery once, retry with backoff.

Any number of processes (the server's workers, ``flask stripe deliver``) may drain the outbox at
once: a delivery is taken with a conditional UPDATE that only one of them can win, and held by a
lease, so each attempt is made by exactly one process. No transaction is held open during the
HTTP call: on SQLite it would hold the write lock the receiving portal needs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from flask import current_app
from sqlalchemy import or_, select, update

from portal.extensions import db
from portal.stripe_sandbox import store
from portal.stripe_sandbox.models import SandboxDelivery, SandboxObject
from portal.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE = timedelta(seconds=60)
TIMEOUT_SECONDS = 10.0
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks; offline sandbox)"


def signature_header(payload: str, secret: str, timestamp: int | None = None) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "t.payload">``: what ``stripe.Webhook`` verifies."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def endpoint_url() -> str | None:
    """``STRIPE_SANDBOX_WEBHOOK_URL``, else the portal's ``/stripe/webhook`` on its known host.

    ``PORTAL_BASE_URL`` wins over the host of the last API call because anyone holding the
    (public) test key could call the API with a forged ``Host`` header.
    """
    config = current_app.config
    if config.get("STRIPE_SANDBOX_WEBHOOK_URL"):
        return config["STRIPE_SANDBOX_WEBHOOK_URL"]
    base = config.get("PORTAL_BASE_URL") or store.last_api_host()
    return f"{base.rstrip('/')}/stripe/webhook" if base else None


def retry_delay(attempts: int) -> float:
    """1 s, 2 s, 4 s … after the 1st, 2nd, 3rd failure (``STRIPE_SANDBOX_RETRY_SECONDS`` = 1)."""
    base = float(current_app.config.get("STRIPE_SANDBOX_RETRY_SECONDS", 1.0))
    return base * 2 ** (attempts - 1)


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.delivered) + len(self.retrying) + len(self.failed)


def _due(now_: object, limit: int) -> list[int]:
    query = (
        select(SandboxDelivery.id)
        .where(
            SandboxDelivery.status == "pending",
            SandboxDelivery.next_attempt_at <= now_,
            or_(SandboxDelivery.claimed_until.is_(None), SandboxDelivery.claimed_until < now_),
        )
        .order_by(SandboxDelivery.id)
        .limit(limit)
    )
    ids = list(db.session.scalars(query))
    db.session.rollback()  # end the read: on SQLite every transaction holds the write lock
    return ids


def _claim(delivery_id: int) -> str | None:
    """Take the delivery for one attempt, or None if another process has it."""
    token, now_ = secrets.token_hex(16), utcnow()
    result = db.session.execute(
        update(SandboxDelivery)
        .where(
            SandboxDelivery.id == delivery_id,
            SandboxDelivery.status == "pending",
            SandboxDelivery.next_attempt_at <= now_,
            or_(SandboxDelivery.claimed_until.is_(None), SandboxDelivery.claimed_until < now_),
        )
        .values(claimed_until=now_ + LEASE, claim_token=token)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return token if result.rowcount == 1 else None


def _finish(delivery_id: int, token: str, **values: object) -> None:
    db.session.execute(
        update(SandboxDelivery)
        .where(SandboxDelivery.id == delivery_id, SandboxDelivery.claim_token == token)
        .values(claimed_until=None, claim_token=None, **values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _post(client: httpx.Client, url: str, payload: str) -> tuple[int | None, str | None]:
    secret = current_app.config["STRIPE_WEBHOOK_SECRET"]
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "Stripe-Signature": signature_header(payload, secret),
    }
    try:
        response = client.post(url, content=payload.encode(), headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    error = None if response.is_success else response.text[:500]
    return response.status_code, error


def deliver_one(delivery_id: int, client: httpx.Client, report: DeliveryReport) -> None:
    token = _claim(delivery_id)
    if token is None:
        return
    url = endpoint_url()
    delivery = db.session.get(SandboxDelivery, delivery_id)
    event = db.session.scalar(select(SandboxObject).where(SandboxObject.id == delivery.event_id))
    event_id, payload = event.id, json.dumps(event.data, indent=2)
    attempts = delivery.attempts + 1
    db.session.rollback()
    if url is None:
        log.warning("stripe sandbox: no webhook endpoint known yet; set PORTAL_BASE_URL")
        _finish(delivery_id, token)  # not an attempt: wait for a host to be known
        return
    status, error = _post(client, url, payload)
    values: dict[str, object] = {
        "attempts": attempts,
        "last_endpoint": url,
        "last_status": status,
        "last_error": error,
    }
    if status is not None and 200 <= status < 300:
        values.update(status="delivered", delivered_at=utcnow())
        report.delivered.append(event_id)
    elif attempts >= MAX_ATTEMPTS:
        values.update(status="failed")
        report.failed.append(event_id)
    else:
        values.update(next_attempt_at=utcnow() + timedelta(seconds=retry_delay(attempts)))
        report.retrying.append(event_id)
    _finish(delivery_id, token, **values)


def deliver_due(limit: int = 100, client: httpx.Client | None = None) -> DeliveryReport:
    """One pass over what is due now, oldest first: Stripe's order, barring retries."""
    report = DeliveryReport()
    own_client = client is None
    client = client or httpx.Client(timeout=TIMEOUT_SECONDS)
    try:
        for delivery_id in _due(utcnow(), limit):
            deliver_one(delivery_id, client, report)
    finally:
        if own_client:
            client.close()
    return report
