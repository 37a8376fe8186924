"""Every GET page of the URL map, with its path parameters filled from the live demo data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask
from sqlalchemy import select
from werkzeug.routing import IntegerConverter, Rule

from portal import create_app
from portal.billing.models import Plan
from portal.credits.models import FeaturePrice
from portal.extensions import db

# Not documents a person opens, so not crawled; each says where it is checked instead.
SKIPPED_PREFIXES = {
    "/api/": "the JSON API: its headers are in tests/test_security_headers.py, its shapes in "
    "the API tests",
    "/_stripe/v1/": "the sandbox's Stripe REST API: JSON for the stripe library, not a page",
}
SKIPPED_ENDPOINTS = {
    "static": "files: every crawled page fails on a subresource that does not load",
    "favicon": "a redirect to static/favicon.svg (tests/test_error_pages.py)",
    "dashboard.usage_csv": "a CSV download (tests/test_dashboard.py), not a document",
    "stripe_sandbox.invoice_pdf_download": "a PDF download, not a document",
}
# A parameter this module cannot fill from the data still gets a page visit: what a person
# with a stale or mistyped link sees (a styled 404 or an "invalid link" page).
UNKNOWN = {"int": "999999999", "default": "e2e-unknown"}
QUERIES = {"billing.success": "session_id", "billing.success_status": "session_id"}


@dataclass(frozen=True)
class PageRef:
    endpoint: str
    path: str


def skip_reason(rule: Rule) -> str | None:
    if "GET" not in (rule.methods or ()):
        return "not a GET"
    if rule.endpoint in SKIPPED_ENDPOINTS:
        return SKIPPED_ENDPOINTS[rule.endpoint]
    return next(
        (why for prefix, why in SKIPPED_PREFIXES.items() if rule.rule.startswith(prefix)), None
    )


def demo_values(database_url: str) -> dict[str, str]:
    """Ids of the demo data, read from the live portal's database in this process."""
    app: Flask = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        price = db.session.scalars(
            select(FeaturePrice).where(FeaturePrice.archived_at.is_(None)).order_by(FeaturePrice.id)
        ).first()
        plan = db.session.scalars(select(Plan).order_by(Plan.id)).first()
        values = {"slug": "demo", "kinds": "plans"}
        if price is not None:
            values |= {"price_id": str(price.id), "feature_key": price.feature_key}
        if plan is not None:
            values["item_id"] = str(plan.id)
        db.engine.dispose()
    return values


def crawl_list(database_url: str, values: Mapping[str, str]) -> list[PageRef]:
    """Every GET page, in URL-map order, with parameters from ``values`` (or UNKNOWN)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    pages, seen = [], set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if skip_reason(rule):
            continue
        arguments: dict[str, str | int] = {}
        for name in rule.arguments:
            integer = isinstance(rule._converters.get(name), IntegerConverter)
            value = values.get(name, UNKNOWN["int" if integer else "default"])
            arguments[name] = int(value) if integer else value
        path = rule.build(arguments)[1]  # type: ignore[index]
        if (query := QUERIES.get(rule.endpoint)) and query in values:
            path += f"?{query}={values[query]}"
        if path not in seen:
            seen.add(path)
            pages.append(PageRef(rule.endpoint, path))
    return pages


# The longest unbroken text people can give each column: nothing here may widen a table.
LONG_KEY = "k" * 100
LONG_DEPARTMENT = "D" * 64
LONG_USER = "u" * 200
LONG_EMAIL = f"{'e' * 64}@{'long' * 20}.example"


def seed_long_text(database_url: str) -> None:
    """A priced feature, a department, a charge, a grant, a member and a key with the longest
    texts."""
    from portal.auth import service as people
    from portal.credits import pricing, service
    from portal.credits.apikeys import create_api_key
    from portal.credits.models import Organization
    from portal.credits.results import Spend
    from portal.money import MICRO
    from portal.timeutil import utcnow

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        organization = db.session.scalar(select(Organization).where(Organization.slug == "demo"))
        pricing.set_price(
            pricing.PriceSpec(LONG_KEY, MICRO, name="N" * 200, category="C" * 100, unit="call")
        )
        service.set_department_limit(organization.id, LONG_DEPARTMENT, 1000 * MICRO)
        service.deduct(
            organization,
            Spend(LONG_KEY, department=LONG_DEPARTMENT, user_ref=LONG_USER, description="d" * 200),
        )
        expires_at = utcnow() + timedelta(days=3)  # a grant whose reason is as long as allowed
        service.grant(
            organization.id,
            MICRO,
            "grant",
            description="r" * 500,
            terms=service.GrantTerms(expires_at=expires_at),
        )
        user = people.create_user(LONG_EMAIL, "long-text-password-1")
        people.add_membership(user, organization.id, "member")
        create_api_key(organization.id, "K" * 100)
        db.session.remove()
        db.engine.dispose()
