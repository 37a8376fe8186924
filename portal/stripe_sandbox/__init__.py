"""The offline Stripe sandbox: Stripe's side of the wire, served by the portal at ``/_stripe``.

With no ``STRIPE_SECRET_KEY`` the portal points the real ``stripe`` library here, so the product
code (``portal.billing``) runs unchanged against it and against Stripe. This package never
imports the product: the two meet only at Stripe's public API and its webhooks
(docs/billing-design.md).

Settings beyond ``portal.config`` (tests set them; the defaults suit a server):
``STRIPE_SANDBOX_WORKER`` (None: the delivery thread runs unless ``TESTING``),
``STRIPE_SANDBOX_RETRY_SECONDS`` (1.0: first retry delay, doubling),
``STRIPE_SANDBOX_POLL_SECONDS`` (0.5: how often the worker looks for due deliveries).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

TRUE_WORDS = ("1", "true", "yes", "on")


def sandbox_enabled(config: Mapping[str, Any]) -> bool:
    """``STRIPE_SANDBOX`` if set, else on exactly when there is no ``STRIPE_SECRET_KEY``."""
    explicit = config.get("STRIPE_SANDBOX")
    if explicit is None or explicit == "":
        return not config.get("STRIPE_SECRET_KEY")
    return explicit if isinstance(explicit, bool) else str(explicit).lower() in TRUE_WORDS


def _refuse_unsafe(config: Mapping[str, Any]) -> None:
    key = config.get("STRIPE_SECRET_KEY") or ""
    if key.startswith(("sk_live_", "rk_live_")):
        raise RuntimeError("The offline Stripe sandbox refuses to start alongside a live key.")
    if config.get("PORTAL_ENV") == "production" and config.get("STRIPE_SANDBOX") in (None, ""):
        # Test cards buy real credits here: a production portal must ask for that on purpose.
        raise RuntimeError(
            "PORTAL_ENV=production needs STRIPE_SECRET_KEY, or STRIPE_SANDBOX=1 to serve the "
            "offline Stripe sandbox (whose test cards buy credits for free) on purpose."
        )
    if not config.get("STRIPE_WEBHOOK_SECRET"):
        raise RuntimeError("The offline Stripe sandbox needs STRIPE_WEBHOOK_SECRET to sign.")


def register_sandbox(app: Flask) -> None:
    """Serve the sandbox's API and hosted pages at ``/_stripe`` and add its CLI commands."""
    from portal.extensions import csrf
    from portal.stripe_sandbox import api, hosted  # noqa: F401  (their routes join the blueprint)
    from portal.stripe_sandbox.blueprint import bp
    from portal.stripe_sandbox.cli import register_sandbox_commands

    _refuse_unsafe(app.config)
    app.register_blueprint(bp)  # /_stripe/v1/… /_stripe/checkout/<cs> /_stripe/portal/<bps> …
    csrf.exempt(bp)  # an API and another service's pages: their forms refuse cross-site posts
    register_sandbox_commands(app)
