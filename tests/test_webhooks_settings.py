"""The webhooks settings page: owners and admins list, add (the secret shown once), test and
delete endpoints, read the delivery log and Resend (a new attempt, the same webhook-id)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.webhooks import delivery, service
from portal.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.webhook_helpers import Receiver, make_event


@pytest.fixture
def owner(app, make_org, make_user, auth):
    app.config["PORTAL_WEBHOOKS_ALLOW_PRIVATE"] = True  # the receiver listens on 127.0.0.1
    org = make_org(slug="acme")
    make_user("owner@example.com", org=org, role="owner")
    auth.login("owner@example.com")
    return org


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def _secret(page: str) -> str | None:
    found = re.search(r'data-testid="new-webhook-secret">([^<]+)<', page)
    return found.group(1) if found else None


def test_add_shows_the_secret_once_and_it_signs(client, owner, receiver):
    response = client.post(
        "/settings/webhooks",
        data={"url": receiver.url, "description": "Ops", "events": ["balance.low"]},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/settings/webhooks"
    page = client.get("/settings/webhooks")
    assert page.headers["Cache-Control"] == "no-store"
    secret = _secret(page.get_data(as_text=True))
    assert secret.startswith("whsec_")
    reloaded = client.get("/settings/webhooks").get_data(as_text=True)
    assert receiver.url in reloaded and "balance.low" in reloaded and "Ops" in reloaded
    assert _secret(reloaded) is None and secret not in reloaded
    (endpoint,) = service.list_endpoints(owner.id)
    assert endpoint.events == ["balance.low"]
    tested = client.post(f"/settings/webhooks/{endpoint.public_id}/test")
    assert tested.status_code == 303
    assert "delivered (HTTP 200)" in client.get("/settings/webhooks").get_data(as_text=True)
    assert receiver.received[0].verify(secret)["type"] == "webhook.test"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"url": ""}, "This field is required"),
        ({"url": "ftp://example.com/"}, "must be an http or https URL"),
        ({"url": "https://example.com/", "events": ["credits.stolen"]}, "is not a valid choice"),
    ],
)
def test_add_errors(client, owner, data, message):
    response = client.post("/settings/webhooks", data=data)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert service.list_endpoints(owner.id) == []


def test_private_urls_are_refused_on_the_page(app, client, owner):
    app.config["PORTAL_WEBHOOKS_ALLOW_PRIVATE"] = False
    response = client.post("/settings/webhooks", data={"url": "http://169.254.169.254/"})
    assert response.status_code == 422
    assert "private, loopback or local" in response.get_data(as_text=True)


def test_delete(client, owner, receiver):
    endpoint = service.create_endpoint(owner.id, receiver.url).endpoint
    response = client.post(f"/settings/webhooks/{endpoint.public_id}/delete")
    assert response.status_code == 303
    page = client.get("/settings/webhooks").get_data(as_text=True)
    assert "deleted; nothing more is sent" in page and "No endpoints yet" in page
    assert client.post(f"/settings/webhooks/{endpoint.public_id}/delete").status_code == 404


def test_delivery_log_and_resend_keep_the_webhook_id(client, owner, receiver, clock):
    secret = service.create_endpoint(owner.id, receiver.url).secret
    receiver.statuses = [500]
    event = make_event(owner.id, "credits.granted")
    delivery.deliver_due(clock())
    page = client.get("/settings/webhooks").get_data(as_text=True)
    assert "credits.granted" in page and event.event_id in page and "HTTP 500" in page
    assert "Resend" in page
    row = db.session.scalar(select(WebhookDelivery))
    response = client.post(f"/settings/webhooks/deliveries/{row.id}/resend")
    assert response.status_code == 303
    page = client.get("/settings/webhooks").get_data(as_text=True)
    assert "Resent: delivered (HTTP 200)" in page and "(resend)" in page
    attempts = list(db.session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)))
    assert [(a.attempt, a.trigger, a.status_code) for a in attempts] == [
        (1, "schedule", 500),
        (2, "resend", 200),
    ]
    assert [r.webhook_id for r in receiver.received] == [event.event_id] * 2
    for request in receiver.received:
        request.verify(secret)
    row = db.session.get(WebhookDelivery, row.id, populate_existing=True)
    assert row.status == "succeeded"
    clock.advance(hours=1)
    assert delivery.deliver_due(clock()).claimed == 0  # the retry is no longer due


def test_members_cannot_manage_webhooks(client, make_org, make_user, auth):
    org = make_org(slug="acme")
    make_user("m@example.com", org=org, role="member")
    auth.login("m@example.com")
    assert client.get("/settings/webhooks").status_code == 403
    assert (
        client.post("/settings/webhooks", data={"url": "https://example.com/"}).status_code == 403
    )
    assert 'href="/settings/webhooks"' not in client.get("/settings/departments").get_data(
        as_text=True
    )


def test_admins_manage_webhooks(client, make_org, make_user, auth):
    org = make_org(slug="acme")
    make_user("a@example.com", org=org, role="admin")
    auth.login("a@example.com")
    page = client.get("/settings/webhooks")
    assert page.status_code == 200 and "No deliveries yet" in page.get_data(as_text=True)
