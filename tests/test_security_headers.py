"""Security headers on every kind of response; production adds HSTS and __Host- cookies."""

from __future__ import annotations

import pytest
from flask import abort

from portal import create_app
from portal.security import security_headers

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
EXPECTED = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


def assert_secured(response, *, hsts: bool = False) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get_all(name) == [value], name
    assert ("Strict-Transport-Security" in response.headers) is hsts


@pytest.fixture
def crashing(app):
    """An endpoint that fails, for the 500 page (routes must exist before the first request)."""

    def boom():
        raise RuntimeError("boom")

    app.add_url_rule("/_test/boom", "test_boom", boom)
    app.add_url_rule("/api/v1/_test/boom", "test_api_boom", boom)
    app.add_url_rule("/_test/teapot", "test_teapot", lambda: abort(418))
    return app


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/login", 200),  # page
        ("GET", "/dashboard", 302),  # redirect to the login page
        ("GET", "/api/v1/openapi.json", 200),  # API
        ("GET", "/api/v1/balance", 401),  # API error
        ("GET", "/api/v1/nope", 404),  # API 404 (JSON)
        ("GET", "/static/app.css", 200),  # static file
        ("GET", "/static/vendor/htmx-2.0.11.min.js", 200),
        ("GET", "/no-such-page", 404),  # HTML error page
        ("DELETE", "/login", 405),
        ("GET", "/_test/boom", 500),
        ("GET", "/api/v1/_test/boom", 500),
        ("GET", "/_test/teapot", 418),
        ("GET", "/_stripe/checkout/cs_missing", 404),  # the sandbox's hosted pages
        ("GET", "/_stripe/v1/customers", 401),  # the sandbox's REST API
        ("POST", "/stripe/webhook", 400),  # the webhook without a signature
    ],
)
def test_every_kind_of_response_carries_the_headers(client, crashing, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert_secured(response)


def test_csv_export_carries_the_headers(client, make_org, make_user, auth):
    org = make_org(slug="acme")
    make_user("owner@example.com", org=org)
    auth.login("owner@example.com")
    response = client.get("/usage.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert_secured(response)


def test_real_stripe_lets_forms_redirect_to_its_hosted_pages():
    """A form POST answered with a 303 to Stripe is blocked unless form-action lists Stripe."""
    headers = dict(security_headers({"STRIPE_SECRET_KEY": "sk_test_x"}))
    assert (
        "form-action 'self' https://checkout.stripe.com https://billing.stripe.com;"
        in headers["Content-Security-Policy"]
    )
    base = dict(security_headers({"PORTAL_BASE_URL": "https://credits.example.com/app"}))
    assert "form-action 'self' https://credits.example.com;" in base["Content-Security-Policy"]


@pytest.fixture
def production(app, monkeypatch):
    """The same database behind an app built with PORTAL_ENV=production."""
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "a-production-secret-for-tests")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_test")
    monkeypatch.setenv("STRIPE_SANDBOX", "1")
    live = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "WTF_CSRF_ENABLED": False,
            "PASSWORD_HASH_FAST": True,
        }
    )
    with live.app_context():
        yield live


def test_production_adds_hsts_and_host_prefixed_cookies(production, make_org, make_user):
    org = make_org(slug="acme")
    make_user("owner@example.com", org=org)
    client = production.test_client()
    page = client.get("/login", base_url="https://portal.example.com")
    assert_secured(page, hsts=True)
    assert page.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    response = client.post(
        "/login",
        data={"email": "owner@example.com", "password": "correct-horse-9", "remember": "y"},
        base_url="https://portal.example.com",
    )
    assert response.status_code == 302
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_all("Set-Cookie")}
    assert set(cookies) == {"__Host-session", "__Host-remember_token"}
    for cookie in cookies.values():
        attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
        assert "secure" in attributes and "path=/" in attributes and "httponly" in attributes
        assert not any(part.startswith("domain=") for part in attributes)


def test_development_cookies_keep_plain_names(client):
    response = client.get("/login")
    assert response.headers["Set-Cookie"].startswith("session=")
    assert_secured(response)
