"""Fan-out: one outbox event becomes one delivery per subscribed endpoint of its organization."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from portal.extensions import db
from portal.outbox.models import OutboxEvent
from portal.webhooks.models import WebhookDelivery, WebhookEndpoint
from portal.webhooks.service import TEST_EVENT, new_delivery


def subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return endpoint.events is None or event_type in endpoint.events


def fan_out(event: OutboxEvent, now: datetime) -> int:
    """Create the event's deliveries, due ``now``, in the caller's transaction; the number made.

    Idempotent: an endpoint that already has a delivery of this event gets no second one (the
    unique constraint backs this up). ``webhook.test`` goes only to the endpoint it targets,
    which ``service.queue_test`` gives its delivery directly.
    """
    if event.organization_id is None or event.type == TEST_EVENT:
        return 0
    endpoints = db.session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.organization_id == event.organization_id,
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.deleted_at.is_(None),
        )
    ).all()
    existing = set(
        db.session.scalars(
            select(WebhookDelivery.endpoint_id).where(WebhookDelivery.outbox_event_id == event.id)
        )
    )
    made = 0
    for endpoint in endpoints:
        if endpoint.id in existing or not subscribed(endpoint, event.type):
            continue
        db.session.add(new_delivery(endpoint.id, event.id, now))
        made += 1
    db.session.flush()
    return made
