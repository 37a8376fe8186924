"""Sending: claim due deliveries, send each outside any transaction, record what happened.

A claim is a lease: ``locked_until`` is set in a short transaction (PostgreSQL: the rows are
picked with ``FOR UPDATE SKIP LOCKED``, so two workers never claim the same delivery), then
the HTTP request runs with no transaction open, then a second short transaction records the
attempt. A worker that dies mid-send leaves a lease that expires, and the delivery is due again.
Every attempt of a delivery, scheduled or a Resend, carries the event's ``webhook-id``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from flask import current_app
from sqlalchemy import func, or_, select

from portal import mail
from portal.auth.models import Membership, User
from portal.credits import service as credits
from portal.credits.models import Organization
from portal.errors import Conflict
from portal.extensions import db
from portal.outbox.models import OutboxEvent
from portal.timeutil import utcnow
from portal.webhooks import guard, signing
from portal.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from portal.webhooks.service import own_delivery, queue_test

EXCERPT_LENGTH = 200
LEASE_MARGIN = timedelta(seconds=60)  # beyond the send timeout: a live send never loses it
USER_AGENT = "credits-portal-webhooks/1"


@dataclass
class DeliveryReport:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0  # attempts that failed (retried later, or given up)
    given_up: int = 0  # deliveries that used their last retry
    disabled: int = 0  # endpoints disabled after failing for days


@dataclass(frozen=True)
class Job:
    delivery_id: int
    url: str
    secret: str
    event_id: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: int | None
    error: str | None
    excerpt: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryInFlight(Conflict):
    code = "webhook_delivery_in_flight"

    def __init__(self) -> None:
        super().__init__("This delivery is being sent right now; try again in a minute.")


def retry_schedule() -> list[int]:
    """Seconds to wait after the 1st, 2nd, … failed attempt; past the list, give up."""
    raw = current_app.config.get("PORTAL_WEBHOOK_RETRY_SCHEDULE") or ""
    return [int(part) for part in str(raw).split(",") if part.strip()]


def _timeout() -> float:
    return float(current_app.config.get("PORTAL_WEBHOOK_TIMEOUT_SECONDS") or 10)


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=_timeout()) + LEASE_MARGIN


def body_of(event: OutboxEvent) -> bytes:
    """The payload as stored, serialized once: the bytes that are signed are the bytes sent."""
    return event.body.encode()


def _job(delivery: WebhookDelivery) -> Job:
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    event = db.session.get(OutboxEvent, delivery.outbox_event_id)
    return Job(delivery.id, endpoint.url, endpoint.secret, event.event_id, body_of(event))


def _claim(now: datetime, limit: int) -> list[Job]:
    due = (
        select(WebhookDelivery)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now),
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.deleted_at.is_(None),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=WebhookDelivery)
    with credits.transaction():
        deliveries = list(db.session.scalars(due))
        for delivery in deliveries:
            delivery.locked_until = _lease(now)
        return [_job(delivery) for delivery in deliveries]


def send(job: Job) -> Outcome:
    """POST the signed event; any 2xx is a success, redirects are not followed."""
    timestamp = int(time.time())  # the real send time: receivers check it against their clock
    headers = {**signing.headers(job.secret, job.event_id, timestamp, job.body)}
    headers["user-agent"] = USER_AGENT
    started = time.monotonic()
    try:
        target, extra, extensions = guard.pinned_target(job.url)
        with (
            httpx.Client(timeout=_timeout(), follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST",
                target,
                content=job.body,
                headers={**headers, **extra},
                extensions=extensions,
            ) as response,
        ):
            excerpt = b""
            for chunk in response.iter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_LENGTH:
                    break
    except guard.RefusedAddress as exc:
        return Outcome(None, None, f"refused: {exc}"[:500], None)
    except httpx.HTTPError as exc:
        latency = int((time.monotonic() - started) * 1000)
        return Outcome(None, latency, f"{type(exc).__name__}: {exc}"[:500], None)
    latency = int((time.monotonic() - started) * 1000)
    text = excerpt[:EXCERPT_LENGTH].decode("utf-8", "replace")
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return Outcome(response.status_code, latency, error, text or None)


def _owners_messages(endpoint: WebhookEndpoint) -> list[mail.Email]:
    organization = db.session.get(Organization, endpoint.organization_id)
    owners = db.session.scalars(
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == endpoint.organization_id, Membership.role == "owner")
    ).all()
    url = mail.absolute_url("settings.webhooks_page")
    return [
        mail.compose(
            email,
            f"Webhook endpoint disabled: {endpoint.url[:80]}",
            "webhook_disabled",
            endpoint=endpoint,
            organization=organization,
            url=url,
        )
        for email in owners
    ]


def _disable_after() -> timedelta:
    return timedelta(days=float(current_app.config.get("PORTAL_WEBHOOK_DISABLE_AFTER_DAYS") or 3))


def record(job: Job, outcome: Outcome, now: datetime, trigger: str, report: DeliveryReport) -> None:
    """Write the attempt; schedule the next one, give up, or disable the endpoint."""
    with credits.transaction():
        delivery = db.session.get(
            WebhookDelivery, job.delivery_id, with_for_update=True, populate_existing=True
        )
        endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id, populate_existing=True)
        delivery.attempts += 1
        db.session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                attempt=delivery.attempts,
                status_code=outcome.status_code,
                latency_ms=outcome.latency_ms,
                error=outcome.error,
                response_excerpt=outcome.excerpt,
                trigger=trigger,
                created_at=now,
            )
        )
        delivery.last_attempt_at = now
        delivery.last_status_code = outcome.status_code
        delivery.locked_until = None
        if outcome.ok:
            report.succeeded += 1
            delivery.status = "succeeded"
            delivery.next_attempt_at = None
            endpoint.failing_since = None
            return
        report.failed += 1
        if trigger == "schedule" and delivery.status == "pending":
            scheduled = db.session.scalar(
                select(func.count())
                .select_from(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery.id, WebhookAttempt.trigger == trigger)
            )
            schedule = retry_schedule()
            if scheduled <= len(schedule):
                delivery.next_attempt_at = now + timedelta(seconds=schedule[scheduled - 1])
            else:
                delivery.status = "failed"
                delivery.next_attempt_at = None
                report.given_up += 1
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        elif endpoint.enabled and now - endpoint.failing_since >= _disable_after():
            endpoint.enabled = False
            endpoint.disabled_at = now
            endpoint.disabled_reason = (
                f"Every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC."
            )
            report.disabled += 1
            messages = _owners_messages(endpoint)
            credits.after_commit(lambda: mail.send(messages))


def deliver_due(now: datetime | None = None, limit: int = 50) -> DeliveryReport:
    """Send every due delivery (up to ``limit``) once; the counts of what happened."""
    now = now or utcnow()
    report = DeliveryReport()
    jobs = _claim(now, limit)
    report.claimed = len(jobs)
    for job in jobs:
        record(job, send(job), now, "schedule", report)
    return report


def send_now(
    organization_id: int, delivery_id: int, *, trigger: str = "resend", now: datetime | None = None
) -> WebhookAttempt:
    """Send one of this organization's deliveries at once (Resend, the test event): same
    ``webhook-id`` as every earlier attempt. The newest attempt is returned."""
    now = now or utcnow()
    with credits.transaction():
        delivery = own_delivery(organization_id, delivery_id)
        db.session.refresh(delivery, with_for_update=True)
        if delivery.locked_until is not None and delivery.locked_until > now:
            raise DeliveryInFlight()
        delivery.locked_until = _lease(now)
        job = _job(delivery)
    record(job, send(job), now, trigger, DeliveryReport())
    return db.session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.id.desc())
        .limit(1)
    ).one()


def send_test(organization_id: int, public_id: str) -> dict[str, object]:
    """Queue a ``webhook.test`` to the endpoint and make its first attempt now."""
    delivery_id = queue_test(organization_id, public_id)
    attempt = send_now(organization_id, delivery_id, trigger="schedule")
    event_id = db.session.scalar(
        select(OutboxEvent.event_id)
        .join(WebhookDelivery, WebhookDelivery.outbox_event_id == OutboxEvent.id)
        .where(WebhookDelivery.id == delivery_id)
    )
    return {
        "event_id": event_id,
        "delivery_id": delivery_id,
        "succeeded": attempt.status_code is not None and 200 <= attempt.status_code < 300,
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
    }
