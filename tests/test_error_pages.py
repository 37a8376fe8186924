"""Error pages wear the site layout (and stay up without a user or a database); favicon;
the inline price edit's Escape hook; long text that must not widen tables."""

from __future__ import annotations

import pytest
from flask import abort, g
from sqlalchemy.exc import OperationalError

from portal.extensions import login_manager
from portal.limits import RateLimited
from tests.html_scan import inline_code, scan

LAYOUT = '<link rel="stylesheet" href="/static/app.css">'
ICON = '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'


@pytest.fixture
def aborting(app):
    """GET /_test/abort/<status> answers that status (routes exist before the first request)."""
    app.add_url_rule("/_test/abort/<int:status>", "test_abort", lambda status: abort(status))

    def boom():
        raise RuntimeError("boom")

    app.add_url_rule("/_test/boom", "test_boom", boom)

    def rate_limited():
        raise RateLimited("Too many sign-ups from your network.", retry_after=30)

    def outage():
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    app.add_url_rule("/_test/limited", "test_limited", rate_limited)
    app.add_url_rule("/_test/outage", "test_outage", outage)
    return app


def assert_styled(response, status: int, heading: str) -> str:
    html = response.get_data(as_text=True)
    assert response.status_code == status and response.mimetype == "text/html"
    assert LAYOUT in html and ICON in html and 'class="topbar"' in html
    assert f'<h1 id="error-title">{heading}</h1>' in html
    assert inline_code(html) == []
    return html


@pytest.mark.parametrize(
    "status, heading",
    [
        (403, "Not allowed"),
        (404, "Page not found"),
        (405, "Method not allowed"),
        (429, "Too many requests"),
        (500, "Something went wrong"),
        (503, "Temporarily unavailable"),
    ],
)
def test_error_pages_use_the_site_layout(client, aborting, status, heading):
    assert_styled(client.get(f"/_test/abort/{status}"), status, heading)


def test_rate_limit_and_database_outage_pages_are_styled(client, aborting):
    limited = client.get("/_test/limited")
    html = assert_styled(limited, 429, "Too many requests")
    assert "Too many sign-ups from your network. Try again in 30 seconds." in html
    assert limited.headers["Retry-After"] == "30"
    outage = client.get("/_test/outage")
    assert_styled(outage, 503, "Temporarily unavailable")
    assert outage.headers["Retry-After"]


def test_unknown_page_and_wrong_method_are_styled(client):
    assert_styled(client.get("/no-such-page"), 404, "Page not found")
    response = client.delete("/login")
    assert_styled(response, 405, "Method not allowed")
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


@pytest.mark.csrf
def test_csrf_failure_is_a_styled_400_that_says_what_to_do(client, make_org, make_user, auth):
    response = client.post("/login", data={"email": "a@example.com", "password": "x"})
    html = assert_styled(response, 400, "This form expired")
    assert "nothing was changed" in html


def test_error_pages_stand_without_a_user_or_a_database(
    client, aborting, make_org, make_user, auth, monkeypatch
):
    org = make_org(slug="acme")
    make_user("owner@example.com", org=org)
    auth.login("owner@example.com")
    assert "Log out" in client.get("/_test/abort/404").get_data(as_text=True)  # full layout

    def database_down(user_id: str):
        raise ConnectionError("database is down")

    monkeypatch.setattr(login_manager, "_user_callback", database_down)
    for path in ("/_test/abort/404", "/_test/boom", "/_test/abort/503"):
        g.pop("_login_user", None)  # the tests' app context outlives requests: drop the cache
        html = client.get(path).get_data(as_text=True)
        assert LAYOUT in html and "Log out" not in html, path  # the bare layout
        assert 'name="csrf-token"' not in html


def test_5xx_pages_never_load_the_user(client, aborting, make_org, make_user, auth, monkeypatch):
    org = make_org(slug="acme")
    make_user("owner@example.com", org=org)
    auth.login("owner@example.com")
    calls = []
    monkeypatch.setattr(login_manager, "_user_callback", lambda user_id: calls.append(user_id))
    g.pop("_login_user", None)
    assert client.get("/_test/abort/503").status_code == 503
    assert calls == []


def test_favicon(client):
    redirect = client.get("/favicon.ico")
    assert redirect.status_code in (301, 308) and redirect.location.endswith("/static/favicon.svg")
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert ICON in client.get("/login").get_data(as_text=True)


def test_escape_cancels_an_inline_price_edit_through_its_cancel_link(
    client, make_price, make_user, auth
):
    price = make_price("seedream_text_to_image")
    make_user("root@example.com", admin=True)
    auth.login("root@example.com")
    html = client.get(f"/admin/feature-pricing/{price.id}/edit", headers={"HX-Request": "true"})
    cancel = [
        e for e in scan(html.get_data(as_text=True)).elements if "data-cancel-edit" in e.attrs
    ]
    assert len(cancel) == 1
    assert cancel[0].attrs["hx-get"] == f"/admin/feature-pricing/{price.id}/row"
    assert cancel[0].attrs["hx-target"] == f"#price-{price.id}"
    app_js = client.get("/static/app.js").get_data(as_text=True)
    assert '"Escape"' in app_js and "[data-cancel-edit]" in app_js
