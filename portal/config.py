"""Settings from the environment, read in one place.

Every setting has a safe default for a developer machine; production refuses to start on the
development secret so that a forgotten ``SECRET_KEY`` cannot sign real sessions.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from portal.requestguard import body_limits

DEV_SECRET_KEY = "dev-only-secret-key-change-me"
# Signs the offline Stripe sandbox's webhooks (and verifies them) on a developer machine.
DEV_STRIPE_WEBHOOK_SECRET = "whsec_sandbox_dev_secret"


def normalize_database_url(url: str) -> str:
    """Accept the usual ``postgresql://user@host:port/db`` form and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _bool_env(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    return default if not raw else raw in ("1", "true", "yes", "on")


def mail_settings() -> dict[str, Any]:
    """SMTP through Flask-Mailman; with no ``MAIL_SERVER`` messages go to the log instead."""
    server = os.environ.get("MAIL_SERVER") or None
    return {
        "MAIL_SERVER": server,
        "MAIL_PORT": _int_env("MAIL_PORT", 25),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": _bool_env("MAIL_USE_TLS", False),
        "MAIL_DEFAULT_SENDER": os.environ.get("MAIL_DEFAULT_SENDER")
        or "Credits portal <no-reply@localhost>",
        "MAIL_TIMEOUT": 10,
        "MAIL_BACKEND": "smtp" if server else "portal.mail.LoggingEmailBackend",
    }


def load_config(instance_path: str) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables."""
    env = os.environ.get("PORTAL_ENV", "development")
    default_db = "sqlite:///" + str(Path(instance_path) / "portal.sqlite3")
    secret = os.environ.get("SECRET_KEY") or ""
    cookie_prefix = "__Host-" if env == "production" else ""
    if not secret:
        if env == "production":
            raise RuntimeError("SECRET_KEY must be set when PORTAL_ENV=production")
        secret = DEV_SECRET_KEY
    return {
        "PORTAL_ENV": env,
        "SECRET_KEY": secret,
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(
            os.environ.get("DATABASE_URL") or default_db
        ),
        "PORTAL_SIGNUP_CREDITS": os.environ.get("PORTAL_SIGNUP_CREDITS", "100"),
        # Credit lifecycle: the sign-up bonus lasts this long; a refunded part whose grant has
        # expired comes back as a grant this many days long; carried-over plan credits wait
        # this long past their period for the renewal to be paid.
        # Set but empty means never, as 0 does (unset: 30 days).
        "PORTAL_SIGNUP_CREDITS_EXPIRE_DAYS": int(
            os.environ.get("PORTAL_SIGNUP_CREDITS_EXPIRE_DAYS", "30").strip() or 0
        ),
        "PORTAL_REFUND_GRACE_DAYS": _int_env("PORTAL_REFUND_GRACE_DAYS", 30),
        "PORTAL_PLAN_RENEWAL_GRACE_HOURS": _int_env("PORTAL_PLAN_RENEWAL_GRACE_HOURS", 72),
        # On: the sign-up bonus waits until the new user follows the link mailed to them.
        "PORTAL_SIGNUP_REQUIRE_VERIFICATION": _bool_env("PORTAL_SIGNUP_REQUIRE_VERIFICATION", True),
        # ``flask worker``: the pause between two ticks when nothing is due.
        "PORTAL_WORKER_POLL_SECONDS": float(
            os.environ.get("PORTAL_WORKER_POLL_SECONDS", "1").strip() or 1
        ),
        "PORTAL_LOW_BALANCE_THRESHOLD": os.environ.get("PORTAL_LOW_BALANCE_THRESHOLD", "20"),
        # Outbound webhooks: seconds to wait after each failed attempt (then give up), the send
        # timeout, days of failure that disable an endpoint, and whether private/loopback
        # addresses may be endpoints (off in production: SSRF; tests and local development).
        "PORTAL_WEBHOOK_RETRY_SCHEDULE": os.environ.get("PORTAL_WEBHOOK_RETRY_SCHEDULE")
        or "5,300,1800,7200,18000,36000",
        "PORTAL_WEBHOOK_TIMEOUT_SECONDS": _int_env("PORTAL_WEBHOOK_TIMEOUT_SECONDS", 10),
        "PORTAL_WEBHOOK_DISABLE_AFTER_DAYS": _int_env("PORTAL_WEBHOOK_DISABLE_AFTER_DAYS", 3),
        "PORTAL_WEBHOOKS_ALLOW_PRIVATE": _bool_env("PORTAL_WEBHOOKS_ALLOW_PRIVATE", False),
        # __Host-: the browser only accepts them Secure, for Path=/ and with no Domain, so
        # no sibling subdomain can plant or overwrite them (production runs on HTTPS).
        "SESSION_COOKIE_NAME": f"{cookie_prefix}session",
        "REMEMBER_COOKIE_NAME": f"{cookie_prefix}remember_token",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env == "production",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": env == "production",
        "REMEMBER_COOKIE_DURATION": timedelta(days=30),
        "SQLITE_BUSY_TIMEOUT_MS": _int_env("SQLITE_BUSY_TIMEOUT_MS", 30_000),
        # Unset: billing talks to the offline Stripe sandbox served at /_stripe.
        "STRIPE_SECRET_KEY": os.environ.get("STRIPE_SECRET_KEY") or None,
        "STRIPE_WEBHOOK_SECRET": os.environ.get("STRIPE_WEBHOOK_SECRET")
        or (None if env == "production" else DEV_STRIPE_WEBHOOK_SECRET),
        # Where browsers and Stripe reach the portal; unset: the current request's host.
        "PORTAL_BASE_URL": os.environ.get("PORTAL_BASE_URL") or None,
        # Unset: the sandbox runs exactly when STRIPE_SECRET_KEY is unset; "1" forces it on.
        "STRIPE_SANDBOX": os.environ.get("STRIPE_SANDBOX") or None,
        # Where the sandbox POSTs webhooks; unset: PORTAL_BASE_URL (or API host) + /stripe/webhook
        "STRIPE_SANDBOX_WEBHOOK_URL": os.environ.get("STRIPE_SANDBOX_WEBHOOK_URL") or None,
        # Request body limits (413 beyond them): MAX_CONTENT_LENGTH and the webhook's own.
        **body_limits(os.environ.get),
        # Rate limits (portal/limits.py). Without Redis the counters are per process.
        "RATELIMIT_ENABLED": _bool_env("RATELIMIT_ENABLED", True),
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI")
        or os.environ.get("REDIS_URL")
        or "memory://",
        "PORTAL_LOGIN_RATE_LIMIT": os.environ.get("PORTAL_LOGIN_RATE_LIMIT")
        or "10 per minute;100 per hour",
        "PORTAL_SIGNUP_RATE_LIMIT": os.environ.get("PORTAL_SIGNUP_RATE_LIMIT") or "5 per hour",
        "PORTAL_API_RATE_LIMIT": os.environ.get("PORTAL_API_RATE_LIMIT") or "6000 per minute",
        "PORTAL_API_UNAUTHENTICATED_RATE_LIMIT": os.environ.get(
            "PORTAL_API_UNAUTHENTICATED_RATE_LIMIT"
        )
        or "60 per minute",
        # Proxies in front of the portal that append to X-Forwarded-For; 0: trust the socket.
        "PORTAL_TRUSTED_PROXIES": _int_env("PORTAL_TRUSTED_PROXIES", 0),
        **mail_settings(),
    }
