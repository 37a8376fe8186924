"""/api/v1/webhook-endpoints: create (the secret once), list, delete, test; field errors; the
SSRF guard at creation. Every answer is checked against the OpenAPI document by the client."""

from __future__ import annotations

import socket

import pytest

from portal.webhooks.service import EVENT_TYPES
from tests.conftest import assert_error
from tests.webhook_helpers import Receiver

PUBLIC_IP = "93.184.216.34"


@pytest.fixture
def org(app, make_org):
    app.config["PORTAL_WEBHOOKS_ALLOW_PRIVATE"] = True  # the receiver listens on 127.0.0.1
    return make_org(slug="acme")


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def _create(api, org, **body):
    return api.post("/webhook-endpoints", org, json=body)


def test_create_list_delete(api, org, receiver):
    created = _create(
        api, org, url=receiver.url, events=["credits.granted", "balance.low"], description="Ops"
    )
    assert created.status_code == 201
    endpoint = created.json
    assert endpoint["secret"].startswith("whsec_") and endpoint["id"].startswith("ep_")
    assert endpoint["events"] == ["balance.low", "credits.granted"]
    assert (endpoint["url"], endpoint["description"], endpoint["enabled"]) == (
        receiver.url,
        "Ops",
        True,
    )
    everything = _create(api, org, url=receiver.url + "/all").json
    assert everything["events"] is None
    listed = api.get("/webhook-endpoints", org).json["data"]
    assert [e["id"] for e in listed] == [endpoint["id"], everything["id"]]
    assert all("secret" not in e for e in listed)  # shown once, at creation
    deleted = api.call("DELETE", f"/webhook-endpoints/{endpoint['id']}", org)
    assert deleted.status_code == 200 and deleted.json == {"id": endpoint["id"], "deleted": True}
    assert [e["id"] for e in api.get("/webhook-endpoints", org).json["data"]] == [everything["id"]]
    again = api.call("DELETE", f"/webhook-endpoints/{endpoint['id']}", org)
    assert_error(again, 404, "webhook_endpoint_not_found")


def test_test_event_is_sent_signed(api, org, receiver):
    endpoint = _create(api, org, url=receiver.url, events=["balance.low"]).json
    response = api.post(f"/webhook-endpoints/{endpoint['id']}/test", org, json={})
    assert response.status_code == 200, response.json
    assert response.json["succeeded"] and response.json["status_code"] == 200
    (request,) = receiver.received
    payload = request.verify(endpoint["secret"])
    assert payload["type"] == "webhook.test" and payload["data"]["organization"] == "acme"
    assert request.webhook_id == response.json["event_id"]


def test_failed_test_event_reports_it(api, org, receiver):
    receiver.statuses = [500]
    endpoint = _create(api, org, url=receiver.url).json
    response = api.post(f"/webhook-endpoints/{endpoint['id']}/test", org, json={})
    assert response.status_code == 200
    assert not response.json["succeeded"] and response.json["error"] == "HTTP 500"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": 5}, "url"),
        ({"url": "   "}, "url"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "https://user:pw@example.com/"}, "url"),
        ({"url": "https://example.com:99999/"}, "url"),
        ({"url": "https://example.com/" + "x" * 2_000}, "url"),
        ({"url": "https://example.com/", "events": ["credits.stolen"]}, "events[0]"),
        ({"url": "https://example.com/", "events": []}, "events"),
        ({"url": "https://example.com/", "events": "balance.low"}, "events"),
        ({"url": "https://example.com/", "description": "x" * 201}, "description"),
        ({"url": "https://example.com/", "secret": "whsec_mine"}, "secret"),
    ],
)
def test_create_field_errors(api, org, body, field):
    assert_error(_create(api, org, **body), 422, "invalid_request", field=field)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("DELETE", "/webhook-endpoints/ep_" + "0" * 32, 404, "webhook_endpoint_not_found"),
        ("POST", "/webhook-endpoints/ep_" + "0" * 32 + "/test", 404, "webhook_endpoint_not_found"),
        ("DELETE", "/webhook-endpoints/nope", 422, "invalid_request"),
        ("POST", "/webhook-endpoints/nope/test", 422, "invalid_request"),
    ],
)
def test_path_errors(api, org, method, path, status, code):
    assert_error(api.call(method, path, org, json={}), status, code)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_needs_an_api_key(api, org, method):
    response = api.call(method, "/webhook-endpoints", json={"url": "https://example.com/"})
    assert_error(response, 401, "unauthorized")


def test_all_event_types_are_accepted(api, org):
    created = _create(api, org, url="https://example.com/", events=list(EVENT_TYPES))
    assert created.status_code == 201 and created.json["events"] == sorted(EVENT_TYPES)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost:5000/hook",
        "http://api.localhost/hook",
        "http://internal.example/hook",  # a name that resolves to a private address
        "file:///etc/passwd",
        "gopher://example.com/",
    ],
)
def test_private_and_non_http_urls_are_refused(app, api, org, monkeypatch, url):
    app.config["PORTAL_WEBHOOKS_ALLOW_PRIVATE"] = False
    real = socket.getaddrinfo

    def fake_dns(host, *args, **kwargs):
        return real("10.0.0.7" if host == "internal.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    assert_error(_create(api, org, url=url), 422, "invalid_request", field="url")
    assert api.get("/webhook-endpoints", org).json["data"] == []


def test_public_urls_are_accepted_with_private_refused(app, api, org, monkeypatch):
    app.config["PORTAL_WEBHOOKS_ALLOW_PRIVATE"] = False
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real(PUBLIC_IP, *a, **k))
    for url in (f"https://{PUBLIC_IP}/hook", "https://hooks.example.com/credits"):
        assert _create(api, org, url=url).status_code == 201, url
