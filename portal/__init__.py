"""The credits portal: prepaid credits for AI features, priced, held, spent and sold."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

# Flask and the database stack are imported inside the functions below, not here: other apps
# install ``portal.client`` alone, and importing it runs this file first.

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides the environment (tests pass their database)."""
    from flask import Flask

    from portal.config import load_config
    from portal.database import engine_options
    from portal.errors import register_errorhandlers
    from portal.jsonio import ExactJSONProvider
    from portal.requestguard import register_request_guard
    from portal.security import register_security_headers
    from portal.templating import register_template_helpers

    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.json = ExactJSONProvider(app)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(load_config(app.instance_path))
    if config:
        app.config.update(config)
    app.config.setdefault(
        "SQLALCHEMY_ENGINE_OPTIONS",
        engine_options(app.config["SQLALCHEMY_DATABASE_URI"], app.config["SQLITE_BUSY_TIMEOUT_MS"]),
    )
    register_request_guard(app)  # before the blueprints: it installs the id converter
    register_extensions(app)
    register_template_helpers(app)
    register_blueprints(app)
    register_limits(app)
    register_errorhandlers(app)
    register_commands(app)
    register_server_timing(app)
    register_security_headers(app)  # every response: pages, API, static, errors, sandbox
    return app


def register_server_timing(app: Flask) -> None:
    """A ``Server-Timing`` header on every response: the app's own time, for benchmarks and
    for anyone looking at a slow page in the browser's network panel."""
    import time

    from flask import g

    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def add_server_timing(response):
        started = g.get("request_started")
        if started is not None:
            elapsed_ms = (time.perf_counter() - started) * 1000
            response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.2f}"
        return response


def register_extensions(app: Flask) -> None:
    import portal.models  # noqa: F401  (every table known before migrations run)
    from portal.database import register_database
    from portal.extensions import csrf, db, login_manager, migrate
    from portal.mail import init_mail

    db.init_app(app)
    register_database(app, db)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.session_protection = "strong"
    init_mail(app)  # SMTP, or the log when MAIL_SERVER is unset


def register_blueprints(app: Flask) -> None:
    """The whole URL map, in one place."""
    from portal.admin.api import bp as admin_api_bp
    from portal.admin.views import bp as admin_bp
    from portal.auth.account_views import bp as account_bp
    from portal.auth.views import bp as auth_bp
    from portal.billing.admin import bp as billing_admin_bp
    from portal.billing.views import bp as billing_bp
    from portal.billing.webhooks import bp as stripe_webhooks_bp
    from portal.credits.api import bp as api_bp
    from portal.dashboard.views import bp as dashboard_bp
    from portal.extensions import csrf
    from portal.settings.views import bp as settings_bp
    from portal.stripe_sandbox import register_sandbox, sandbox_enabled

    # Browsers ask for /favicon.ico wherever a page names no icon (JSON, CSV, downloads).
    app.add_url_rule("/favicon.ico", "favicon", redirect_to="/static/favicon.svg")
    app.register_blueprint(auth_bp)  # /signup /login /logout /invite/<token> /orgs/switch
    app.register_blueprint(account_bp)  # /forgot-password /reset-password/<token>
    # /verify-email/<token> /verify-email/resend /settings/account[/password|/email[/<token>]]
    app.register_blueprint(dashboard_bp)  # / /dashboard /usage /usage.csv /transactions
    app.register_blueprint(settings_bp)  # /settings/api-keys /settings/departments …
    app.register_blueprint(admin_bp)  # /admin/feature-pricing /admin/organizations
    app.register_blueprint(admin_api_bp)  # /api/admin/feature-pricing
    app.register_blueprint(api_bp)  # /api/v1/…
    csrf.exempt(api_bp)  # API keys, not cookies, authenticate it: nothing for CSRF to steal
    app.register_blueprint(billing_bp)  # /billing /billing/checkout /billing/success …
    app.register_blueprint(billing_admin_bp)  # /admin/billing (plans and packages)
    app.register_blueprint(stripe_webhooks_bp)  # POST /stripe/webhook
    csrf.exempt(stripe_webhooks_bp)  # Stripe's signature, not a cookie, authenticates it
    if sandbox_enabled(app.config):  # no STRIPE_SECRET_KEY: the offline Stripe, /_stripe/…
        register_sandbox(app)  # its REST subset and hosted pages; CSRF-exempt (own checks)
    if "billing" not in app.config.setdefault("PORTAL_AREAS", ()):
        app.config["PORTAL_AREAS"] = (*app.config["PORTAL_AREAS"], "billing")  # the nav link


def register_limits(app: Flask) -> None:
    """Rate limits (portal/limits.py): after the blueprints, whose marked views it wraps."""
    from portal import limits

    limits.init_app(app)


def register_commands(app: Flask) -> None:
    from portal.auth.cli import register_user_commands
    from portal.billing.cli import register_billing_commands
    from portal.credits.cli import register_credits_commands
    from portal.demo import register_demo_command
    from portal.outbox.cli import register_worker_command

    register_credits_commands(app)
    register_user_commands(app)
    register_demo_command(app)
    register_billing_commands(app)  # flask stripe sync
    register_worker_command(app)  # flask worker [--once]
