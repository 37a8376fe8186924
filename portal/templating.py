"""Template filters and globals: money formatting lives here, next to ``_macros.html``."""

from __future__ import annotations

from flask import Flask

from portal.auth.access import current_membership
from portal.credits.labels import grant_source, grant_state, kind_label
from portal.money import format_credits, micros_to_decimal


def credits_filter(micros: int | None, places: int | None = None, raw: bool = False) -> str:
    """Micro-credits as text: ``1234500000`` -> ``1,234.5`` (``raw``: ``1234.5``)."""
    if micros is None:
        return "—"
    if raw:
        return str(micros_to_decimal(micros))
    return format_credits(micros, places)


def register_template_helpers(app: Flask) -> None:
    app.add_template_filter(credits_filter, "credits")
    app.add_template_global(current_membership)
    app.add_template_filter(kind_label, "ledger_kind")
    app.add_template_filter(grant_source, "grant_source")
    app.add_template_filter(grant_state, "grant_state")
