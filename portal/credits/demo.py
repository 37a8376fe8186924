"""``flask demo``: a priced catalogue and an organization with 90 days of realistic usage."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from portal.credits import apikeys, organizations, pricing, service
from portal.credits.catalogue import DEFAULT_PRICES
from portal.credits.models import Organization
from portal.extensions import db
from portal.money import MICRO, cost_micros, format_credits, parse_micros
from portal.timeutil import month_key, utcnow

DEMO_SLUG = "demo"
# Features the demo company uses, with how often (weight) and typical quantity range.
DEMO_MIX = [
    ("seedream_text_to_image", 30, (1, 1)),
    ("generate_video", 4, (5, 30)),
    ("kling_image_to_video", 3, (1, 1)),
    ("ai_chat", 40, (1, 12)),
    ("text_generation", 12, (1, 8)),
    ("generate_voice", 6, (1, 1)),
    ("file_processing", 8, (1, 40)),
    ("execute_workflow", 5, (1, 1)),
    ("claude_3_5_sonnet_input_1k_tokens", 10, (1, 300)),
    ("claude_3_5_sonnet_output_1k_tokens", 10, (1, 60)),
    ("youtube_sync", 3, (1, 1)),
]
# The package the demo company bought each month (the billing catalogue's Large).
DEMO_PACKAGE, DEMO_PACKAGE_CREDITS = "package_large", 2_000 * MICRO
DEPARTMENTS = [("Marketing", 2_000), ("Research", None), ("Support", 600)]
# History keeps a limited department below this share of its monthly limit, so that the
# README's examples charging "Marketing" are never refused, on any day of the month.
LIMIT_HEADROOM_PERCENT = 80
USERS = ["ana@demo.example", "ben@demo.example", "chen@demo.example", "dee@demo.example"]


@dataclass(frozen=True)
class DemoResult:
    organization: Organization
    api_key: str | None
    created: bool
    entries: int


def ensure_prices() -> int:
    """Create the catalogue's prices that do not exist yet; never overwrite an admin's edit."""
    existing = set(db.session.scalars(select(pricing.FeaturePrice.feature_key)))
    created = 0
    for key, name, category, credits, unit, description in DEFAULT_PRICES:
        if key in existing:
            continue
        pricing.set_price(
            pricing.PriceSpec(
                key, parse_micros(credits, allow_zero=True), name, category, unit, description
            )
        )
        created += 1
    return created


DEMO_PROMOTION_CREDITS = 250 * MICRO
DEMO_PROMOTION_DAYS = 20


def create_demo(days: int = 90, seed: int = 7) -> DemoResult:
    ensure_prices()
    existing = db.session.scalar(select(Organization).where(Organization.slug == DEMO_SLUG))
    if existing is not None:
        return DemoResult(existing, None, False, 0)
    organization = organizations.create_organization(DEMO_SLUG, "Demo Company")
    limits = {
        service.set_department_limit(
            organization.id, name, None if limit is None else limit * MICRO
        ).id: limit
        for name, limit in DEPARTMENTS
    }
    department_ids = list(limits)
    department_use: dict[tuple[int, str], int] = {}
    prices = {
        price.feature_key: price.credits_per_unit
        for price in db.session.scalars(select(pricing.FeaturePrice))
    }
    rng = random.Random(seed)
    now = utcnow()
    start = now - timedelta(days=days)
    entries = [
        service.HistoricEntry("opening", 20_000 * MICRO, start, description="Opening balance"),
    ]
    for month in range(days // 30):
        # Shaped as a real fulfilment writes it (``billing.fulfilment``): keyed by its checkout
        # session, whose payment ``portal.demo`` records for the billing page.
        session_id = f"cs_demo_{organization.id}_{month + 1}"
        entries.append(
            service.HistoricEntry(
                "purchase",
                DEMO_PACKAGE_CREDITS,
                start + timedelta(days=30 * month + 29, hours=9),
                description=f"Large package: {format_credits(DEMO_PACKAGE_CREDITS)} credits",
                source_ref=f"checkout:{session_id}",
                metadata={"checkout_session": session_id, "package": DEMO_PACKAGE},
            )
        )
    keys, weights = zip(*[(key, weight) for key, weight, _ in DEMO_MIX], strict=True)
    ranges = {key: qty for key, _, qty in DEMO_MIX}
    for day in range(days):
        date = start + timedelta(days=day + 1)
        weekday_factor = 0.45 if date.weekday() >= 5 else 1.0
        calls = int((18 + day * 0.35) * weekday_factor * rng.uniform(0.75, 1.25))
        for _ in range(calls):
            key = rng.choices(keys, weights)[0]
            low, high = ranges[key]
            quantity = rng.randint(low, high) * MICRO
            moment = date.replace(hour=0, minute=0) + timedelta(seconds=rng.randint(0, 86_399))
            if moment >= now:
                continue
            cost = cost_micros(prices[key], quantity)
            department_id = rng.choice([*department_ids, None])
            if department_id is not None and limits[department_id] is not None:
                month = (department_id, month_key(moment))
                if (
                    department_use.get(month, 0) + cost
                    > limits[department_id] * MICRO * LIMIT_HEADROOM_PERCENT // 100
                ):
                    department_id = None  # spent without a department instead
                else:
                    department_use[month] = department_use.get(month, 0) + cost
            entries.append(
                service.HistoricEntry(
                    "deduct",
                    -cost,
                    moment,
                    feature_key=key,
                    unit_price=prices[key],
                    quantity=quantity,
                    department_id=department_id,
                    user_ref=rng.choice(USERS),
                )
            )
    count = service.import_history(organization.id, entries)
    # A promotion that burns first and runs out soon: the dashboard's "expire on" line.
    service.grant(
        organization.id,
        DEMO_PROMOTION_CREDITS,
        "grant",
        description="Launch promotion",
        source_ref=f"demo:promotion:{organization.id}",
        terms=service.GrantTerms(expires_at=now + timedelta(days=DEMO_PROMOTION_DAYS)),
    )
    key = apikeys.create_api_key(organization.id, "Demo key")
    return DemoResult(organization, key.secret, True, count)
