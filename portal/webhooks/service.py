"""An organization's webhook endpoints: create (the secret shown once), list, delete, test;
the delivery log and Resend. Every read and change is scoped to one organization: another
organization's endpoint or delivery is "not found", never "forbidden"."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from portal.credits import service as credits
from portal.credits.models import Organization
from portal.errors import Conflict, NotFound
from portal.extensions import db
from portal.outbox import new_event_id
from portal.outbox.models import OutboxEvent
from portal.timeutil import isoformat_z, utcnow
from portal.webhooks import guard, signing
from portal.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

EVENT_TYPES = (
    "balance.low",
    "balance.recovered",
    "credits.granted",
    "credits.expiring",
    "credits.expired",
    "payment.succeeded",
    "payment.failed",
    "spend_limit.reached",
    "auto_topup.succeeded",
    "auto_topup.failed",
    "auto_topup.capped",
    "webhook.test",
)
TEST_EVENT = "webhook.test"
MAX_ENDPOINTS = 20  # per organization: each event is sent to every one of them


class EndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"

    def __init__(self, public_id: str) -> None:
        super().__init__(f"No webhook endpoint '{public_id[:40]}'.", endpoint_id=public_id[:40])


class DeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"No webhook delivery {delivery_id}.")


class TooManyEndpoints(Conflict):
    code = "too_many_webhook_endpoints"

    def __init__(self) -> None:
        super().__init__(f"An organization can have at most {MAX_ENDPOINTS} webhook endpoints.")


@dataclass(frozen=True)
class NewEndpoint:
    endpoint: WebhookEndpoint
    secret: str


def endpoint_json(endpoint: WebhookEndpoint, *, secret: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": endpoint.public_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": isoformat_z(endpoint.created_at),
    }
    if secret is not None:
        data["secret"] = secret
    return data


def _active(organization_id: int):
    return select(WebhookEndpoint).where(
        WebhookEndpoint.organization_id == organization_id, WebhookEndpoint.deleted_at.is_(None)
    )


def list_endpoints(organization_id: int) -> list[WebhookEndpoint]:
    return list(db.session.scalars(_active(organization_id).order_by(WebhookEndpoint.id)))


def get_endpoint(organization_id: int, public_id: str) -> WebhookEndpoint:
    endpoint = db.session.scalar(
        _active(organization_id).where(WebhookEndpoint.public_id == public_id)
    )
    if endpoint is None:
        raise EndpointNotFound(public_id)
    return endpoint


def create_endpoint(
    organization_id: int,
    url: str,
    events: list[str] | None = None,
    description: str | None = None,
    user_id: int | None = None,
) -> NewEndpoint:
    guard.check_url(url)
    if len(list_endpoints(organization_id)) >= MAX_ENDPOINTS:
        raise TooManyEndpoints()
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        public_id="ep_" + uuid.uuid4().hex,
        organization_id=organization_id,
        url=url,
        description=description,
        events=sorted(set(events)) if events else None,
        secret=secret,
        enabled=True,
        created_by_user_id=user_id,
        created_at=utcnow(),
    )
    with credits.transaction():
        db.session.add(endpoint)
    return NewEndpoint(endpoint, secret)


def delete_endpoint(organization_id: int, public_id: str) -> WebhookEndpoint:
    """Soft delete (the delivery log keeps its endpoint); its pending deliveries stop."""
    with credits.transaction():
        endpoint = get_endpoint(organization_id, public_id)
        endpoint.deleted_at = utcnow()
        endpoint.enabled = False
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
            .values(status="failed", next_attempt_at=None, locked_until=None)
        )
    return endpoint


def queue_test(organization_id: int, public_id: str, now: datetime | None = None) -> int:
    """A ``webhook.test`` event to this one endpoint, due now; returns the delivery's id.

    Written already dispatched: fan-out would send it to no other endpoint anyway.
    """
    now = now or utcnow()
    with credits.transaction():
        endpoint = get_endpoint(organization_id, public_id)
        organization = db.session.get(Organization, organization_id)
        event_id = new_event_id()
        event = OutboxEvent(
            event_id=event_id,
            organization_id=organization_id,
            type=TEST_EVENT,
            payload={
                "type": TEST_EVENT,
                "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "data": {"organization": organization.slug, "endpoint_id": endpoint.public_id},
            },
            created_at=now,
            dispatched_at=now,
        )
        db.session.add(event)
        db.session.flush()
        delivery = new_delivery(endpoint.id, event.id, now)
        db.session.add(delivery)
        db.session.flush()
        return delivery.id


def new_delivery(endpoint_id: int, outbox_event_id: int, now: datetime) -> WebhookDelivery:
    """A delivery of one event to one endpoint, due ``now``."""
    return WebhookDelivery(
        endpoint_id=endpoint_id,
        outbox_event_id=outbox_event_id,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def own_delivery(organization_id: int, delivery_id: int) -> WebhookDelivery:
    delivery = db.session.scalar(
        select(WebhookDelivery)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookEndpoint.organization_id == organization_id,
            WebhookEndpoint.deleted_at.is_(None),
        )
    )
    if delivery is None:
        raise DeliveryNotFound(delivery_id)
    return delivery


@dataclass(frozen=True)
class LogRow:
    attempt: WebhookAttempt
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    event: OutboxEvent


def delivery_log(organization_id: int, limit: int = 50) -> list[LogRow]:
    """The newest attempts to this organization's endpoints (deleted ones included)."""
    rows = db.session.execute(
        select(WebhookAttempt, WebhookDelivery, WebhookEndpoint, OutboxEvent)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.outbox_event_id)
        .where(WebhookEndpoint.organization_id == organization_id)
        .order_by(WebhookAttempt.id.desc())
        .limit(limit)
    ).all()
    return [LogRow(*row) for row in rows]
