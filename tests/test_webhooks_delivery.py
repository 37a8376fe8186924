"""Delivery: signed per Standard Webhooks (verified with the ``standardwebhooks`` library),
retried on its schedule with the same webhook-id, given up, endpoints disabled after days of
failure (owners emailed), refused at send time for private addresses, never sent twice."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from sqlalchemy import func, select

from portal.credits import organizations
from portal.extensions import db
from portal.webhooks import delivery, dispatch, service
from portal.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.conftest import postgres_app, require_postgres
from tests.mail_helpers import text_body
from tests.webhook_helpers import Receiver, make_event

SCHEDULE = [5, 300, 1800, 7200, 18000, 36000]


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def org(app, make_org):
    app.config["PORTAL_WEBHOOKS_ALLOW_PRIVATE"] = True  # the receiver listens on 127.0.0.1
    return make_org(slug="acme")


def _endpoint(org, url, events=None):
    return service.create_endpoint(org.id, url, events)


def _attempts(delivery_id):
    return list(
        db.session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.id)
        )
    )


def _delivery(event):
    return db.session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.outbox_event_id == event.id)
    )


def test_delivery_is_signed_per_standard_webhooks(org, receiver, clock):
    new = _endpoint(org, receiver.url)
    event = make_event(org.id, "credits.granted", amount="10")
    report = delivery.deliver_due(clock())
    assert (report.claimed, report.succeeded, report.failed) == (1, 1, 0)
    (request,) = receiver.received
    assert request.verify(new.secret) == event.payload  # the library's check, not ours
    assert json.loads(request.body) == event.payload
    assert request.webhook_id == event.event_id
    assert request.headers["webhook-signature"].startswith("v1,")
    with pytest.raises(Exception, match="No matching signature"):
        request.verify(service.signing.new_secret())  # another secret does not verify it
    row = _delivery(event)
    assert (row.status, row.attempts, row.last_status_code) == ("succeeded", 1, 200)
    (attempt,) = _attempts(row.id)
    assert attempt.response_excerpt == "answer 200" and attempt.latency_ms is not None
    assert delivery.deliver_due(clock()).claimed == 0  # nothing left due


def test_failing_receiver_gets_the_same_event_again_on_schedule(org, receiver, clock):
    new = _endpoint(org, receiver.url)
    receiver.statuses = [500, 503, 404]
    event = make_event(org.id)
    row_id = _delivery(event).id
    waited = []
    for _ in range(3):
        assert delivery.deliver_due(clock()).failed == 1
        row = db.session.get(WebhookDelivery, row_id, populate_existing=True)
        waited.append(int((row.next_attempt_at - clock()).total_seconds()))
        assert delivery.deliver_due(clock()).claimed == 0  # not due before its time
        clock.advance(seconds=waited[-1])
    assert waited == SCHEDULE[:3]
    assert delivery.deliver_due(clock()).succeeded == 1
    ids = {request.webhook_id for request in receiver.received}
    assert ids == {event.event_id} and len(receiver.received) == 4
    for request in receiver.received:
        request.verify(new.secret)
    attempts = _attempts(row_id)
    assert [a.status_code for a in attempts] == [500, 503, 404, 200]
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
    assert attempts[0].error == "HTTP 500" and attempts[-1].error is None
    endpoint = db.session.get(WebhookEndpoint, new.endpoint.id, populate_existing=True)
    assert endpoint.failing_since is None and endpoint.enabled


def test_delivery_gives_up_after_the_last_retry(org, receiver, clock):
    _endpoint(org, receiver.url)
    receiver.statuses = [500] * 10
    row_id = _delivery(make_event(org.id)).id
    for wait in SCHEDULE:
        delivery.deliver_due(clock())
        clock.advance(seconds=wait)
    report = delivery.deliver_due(clock())
    assert report.given_up == 1
    row = db.session.get(WebhookDelivery, row_id, populate_existing=True)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 7, None)
    clock.advance(days=1)
    assert delivery.deliver_due(clock()).claimed == 0


def test_endpoint_failing_for_three_days_is_disabled_and_owners_emailed(
    org, receiver, clock, mailbox, make_user
):
    make_user("owner@example.com", org=org, role="owner")
    make_user("member@example.com", org=org, role="member")
    new = _endpoint(org, receiver.url)
    receiver.statuses = [500] * 100
    make_event(org.id)
    delivery.deliver_due(clock())
    clock.advance(days=2, hours=23)
    make_event(org.id)
    assert delivery.deliver_due(clock()).disabled == 0
    clock.advance(hours=1)
    make_event(org.id)
    report = delivery.deliver_due(clock())
    assert report.disabled == 1
    endpoint = db.session.get(WebhookEndpoint, new.endpoint.id, populate_existing=True)
    assert not endpoint.enabled and endpoint.disabled_at == clock()
    assert "failed since" in endpoint.disabled_reason
    (message,) = mailbox.to("owner@example.com")
    assert receiver.url in text_body(message) and "/settings/webhooks" in text_body(message)
    assert mailbox.to("member@example.com") == []
    # Disabled: no new deliveries, and its pending ones wait.
    sent = len(receiver.received)
    make_event(org.id)
    clock.advance(days=1)
    assert delivery.deliver_due(clock()).claimed == 0 and len(receiver.received) == sent


def test_a_grant_reaches_the_receiver_through_the_worker(app, org, receiver):
    """The whole path: the grant writes credits.granted with its commit (portal.outbox), the
    worker fans it out and delivers it, signed."""
    from portal.credits import service as credits
    from portal.outbox.worker import run_once

    secret = _endpoint(org, receiver.url, ["credits.granted"]).secret
    credits.grant(org.id, 5_000_000, "grant", description="Welcome back")
    tick = run_once(app)
    # Two: the organization's opening credits (make_org) and this grant.
    assert tick.delivered.succeeded == len(receiver.received) == 2
    payloads = [request.verify(secret) for request in receiver.received]
    assert {p["type"] for p in payloads} == {"credits.granted"}
    assert (
        "Welcome back" in json.dumps(payloads[-1])
        and payloads[-1]["data"]["organization"] == "acme"
    )


def test_fan_out_follows_subscriptions_once(org, make_org, receiver):
    everything = _endpoint(org, receiver.url)
    granted_only = _endpoint(org, receiver.url + "/granted", ["credits.granted"])
    deleted = _endpoint(org, receiver.url + "/deleted")
    service.delete_endpoint(org.id, deleted.endpoint.public_id)
    other = make_org(slug="other")
    _endpoint(other, receiver.url + "/other")
    event = make_event(org.id, "balance.low")
    targets = set(
        db.session.scalars(
            select(WebhookDelivery.endpoint_id).where(WebhookDelivery.outbox_event_id == event.id)
        )
    )
    assert targets == {everything.endpoint.id}
    granted = make_event(org.id, "credits.granted")
    assert dispatch.fan_out(granted, granted.created_at) == 0  # idempotent
    count = db.session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(WebhookDelivery.outbox_event_id == granted.id)
    )
    assert count == 2 and granted_only.endpoint.events == ["credits.granted"]
    test = make_event(org.id, "webhook.test")
    assert _delivery(test) is None  # only the test view targets an endpoint with it


def test_deleting_an_endpoint_stops_its_pending_deliveries(org, receiver, clock):
    new = _endpoint(org, receiver.url)
    receiver.statuses = [500]
    event = make_event(org.id)
    delivery.deliver_due(clock())
    service.delete_endpoint(org.id, new.endpoint.public_id)
    clock.advance(hours=1)
    assert delivery.deliver_due(clock()).claimed == 0
    assert _delivery(event).status == "failed" and len(receiver.received) == 1


def test_a_crashed_workers_claim_expires(org, receiver, clock):
    _endpoint(org, receiver.url)
    event = make_event(org.id)
    jobs = delivery._claim(clock(), 10)  # claimed, then the worker "dies" before sending
    assert len(jobs) == 1 and delivery.deliver_due(clock()).claimed == 0
    clock.advance(seconds=71)  # the 10 s timeout and the 60 s margin have passed
    assert delivery.deliver_due(clock()).succeeded == 1
    assert receiver.received[0].webhook_id == event.event_id


def test_private_addresses_are_refused_at_send_time(app, org, receiver, clock, monkeypatch):
    """Created while private addresses were allowed, or a public name that now resolves to a
    private address (DNS rebinding): the send is refused after resolution, nothing is sent."""
    _endpoint(org, receiver.url)
    _endpoint(org, "http://hooks.example.com:8080/x")
    make_event(org.id)
    app.config["PORTAL_WEBHOOKS_ALLOW_PRIVATE"] = False
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: (
            real("127.0.0.1", *a, **k) if host == "hooks.example.com" else real(host, *a, **k)
        ),
    )
    report = delivery.deliver_due(clock())
    assert (report.claimed, report.failed) == (2, 2)
    assert receiver.received == []
    errors = sorted(a.error for a in db.session.scalars(select(WebhookAttempt)))
    assert errors == [
        "refused: 127.0.0.1 is not a public address",
        "refused: hooks.example.com resolves to a non-public address (127.0.0.1)",
    ]


def test_a_redirect_is_not_followed(org, receiver, clock):
    _endpoint(org, receiver.url)
    receiver.statuses = [302]
    event = make_event(org.id)
    assert delivery.deliver_due(clock()).failed == 1
    (attempt,) = _attempts(_delivery(event).id)
    assert (attempt.status_code, attempt.error) == (302, "HTTP 302")
    assert len(receiver.received) == 1


def test_no_answer_is_a_failure_with_its_error(org, clock):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    _endpoint(org, f"http://127.0.0.1:{port}/nobody")
    event = make_event(org.id)
    assert delivery.deliver_due(clock()).failed == 1
    (attempt,) = _attempts(_delivery(event).id)
    assert attempt.status_code is None and attempt.error.startswith("ConnectError")


@pytest.mark.postgres_only
def test_concurrent_workers_never_send_an_attempt_twice(postgres_database):
    require_postgres()
    with (
        postgres_app(postgres_database, PORTAL_WEBHOOKS_ALLOW_PRIVATE=True) as app,
        Receiver() as receiver,
    ):
        organization = organizations.create_organization("acme", "Acme", 0)
        for n in range(4):
            service.create_endpoint(organization.id, f"{receiver.url}/{n}")
        events = [make_event(organization.id) for _ in range(10)]
        barrier = threading.Barrier(2)
        reports = []

        def work() -> None:
            with app.app_context():
                barrier.wait()
                while (report := delivery.deliver_due(limit=3)).claimed:
                    reports.append(report)
                db.session.remove()

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent = [(r.path, r.webhook_id) for r in receiver.received]
        assert len(sent) == len(set(sent)) == 40
        assert {webhook_id for _, webhook_id in sent} == {e.event_id for e in events}
        assert sum(r.succeeded for r in reports) == 40
