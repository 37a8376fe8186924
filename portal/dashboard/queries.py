"""Read models for the user dashboard: overview figures, chart series, top features."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from flask import current_app
from sqlalchemy import func, select

from portal.credits import rollup, service
from portal.credits.models import FeaturePrice, Organization, UsageRollup
from portal.credits.results import Expiry
from portal.extensions import db
from portal.money import parse_micros
from portal.timeutil import month_start, utcnow

CHART_RANGES = (7, 30, 90)


@dataclass(frozen=True)
class Overview:
    balance: int
    reserved: int
    used_this_month: int
    used_last_month: int
    low_balance_threshold: int
    next_expiry: Expiry | None = None  # the soonest credits to expire
    on_hold: int = 0  # frozen by an open dispute
    owed: int = 0  # clawed back after being spent; the next credits pay it

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    @property
    def low_balance(self) -> bool:
        return self.available < self.low_balance_threshold


def _used_between(organization_id: int, start: date, end: date | None = None) -> int:
    stmt = select(func.coalesce(func.sum(UsageRollup.credits), 0)).where(
        UsageRollup.organization_id == organization_id, UsageRollup.day >= start
    )
    if end is not None:
        stmt = stmt.where(UsageRollup.day < end)
    return int(db.session.scalar(stmt))


def overview(organization: Organization) -> Overview:
    rollup.refresh(organization.id)
    # The service's reading: expired grants and lapsed holds are swept before it counts.
    balance = service.get_balance(organization)
    this_month = month_start(utcnow()).date()
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    return Overview(
        balance=balance.balance,
        reserved=balance.reserved,
        next_expiry=balance.next_expiry,
        on_hold=balance.on_hold,
        owed=balance.owed,
        used_this_month=_used_between(organization.id, this_month),
        used_last_month=_used_between(organization.id, last_month, this_month),
        low_balance_threshold=parse_micros(
            str(current_app.config["PORTAL_LOW_BALANCE_THRESHOLD"]), allow_zero=True
        ),
    )


@dataclass(frozen=True)
class DailySeries:
    days: list[date]
    categories: list[str]
    values: dict[tuple[date, str], int]

    def total(self, day: date) -> int:
        return sum(self.values.get((day, category), 0) for category in self.categories)

    @property
    def grand_total(self) -> int:
        return sum(self.values.values())


def daily_usage(organization_id: int, days: int) -> DailySeries:
    """Net credits per day and category for the last ``days`` days (today included)."""
    today = utcnow().date()
    start = today - timedelta(days=days - 1)
    category = func.coalesce(FeaturePrice.category, "Other")
    rows = db.session.execute(
        select(UsageRollup.day, category.label("category"), func.sum(UsageRollup.credits))
        .outerjoin(FeaturePrice, FeaturePrice.feature_key == UsageRollup.feature_key)
        .where(UsageRollup.organization_id == organization_id, UsageRollup.day >= start)
        .group_by(UsageRollup.day, category)
    ).all()
    values: dict[tuple[date, str], int] = {}
    per_category: dict[str, int] = {}
    for day, name, credits in rows:
        day = day if isinstance(day, date) else date.fromisoformat(str(day))
        values[(day, name)] = values.get((day, name), 0) + int(credits)
        per_category[name] = per_category.get(name, 0) + int(credits)
    categories = sorted(per_category, key=lambda name: (-per_category[name], name))
    return DailySeries([start + timedelta(days=i) for i in range(days)], categories, values)


@dataclass(frozen=True)
class FeatureUse:
    feature_key: str
    name: str
    credits: int
    count: int


def top_features(organization_id: int, days: int, limit: int = 6) -> list[FeatureUse]:
    start = utcnow().date() - timedelta(days=days - 1)
    credits = func.sum(UsageRollup.credits)
    rows = db.session.execute(
        select(UsageRollup.feature_key, FeaturePrice.name, credits, func.sum(UsageRollup.count))
        .outerjoin(FeaturePrice, FeaturePrice.feature_key == UsageRollup.feature_key)
        .where(UsageRollup.organization_id == organization_id, UsageRollup.day >= start)
        .group_by(UsageRollup.feature_key, FeaturePrice.name)
        .order_by(credits.desc())
        .limit(limit)
    ).all()
    return [
        FeatureUse(key, name or key, int(total), int(count or 0))
        for key, name, total, count in rows
        if total
    ]
