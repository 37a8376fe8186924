"""Feature prices: what each feature key costs per unit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select

from portal.credits.models import FEATURE_KEY_PATTERN, FeaturePrice
from portal.errors import InvalidRequest
from portal.extensions import db

FEATURE_KEY = re.compile(FEATURE_KEY_PATTERN)


@dataclass(frozen=True)
class PriceSpec:
    feature_key: str
    credits_per_unit: int
    name: str | None = None
    category: str | None = None
    unit: str | None = None
    description: str | None = None
    active: bool = True


def validate_feature_key(feature_key: str) -> str:
    if not FEATURE_KEY.match(feature_key) or len(feature_key) > 100:
        raise InvalidRequest(
            "feature_key", "must be lowercase_with_underscores (a-z, 0-9, '_'), max 100"
        )
    return feature_key


def humanize_key(feature_key: str) -> str:
    return feature_key.replace("_", " ").capitalize()


def set_price(spec: PriceSpec) -> FeaturePrice:
    """Create or update the price of ``spec.feature_key``; unspecified fields keep their value."""
    validate_feature_key(spec.feature_key)
    if spec.credits_per_unit < 0:
        raise InvalidRequest("credits", "must not be negative")
    price = db.session.scalar(
        select(FeaturePrice).where(FeaturePrice.feature_key == spec.feature_key)
    )
    if price is None:
        price = FeaturePrice(
            feature_key=spec.feature_key,
            name=spec.name or humanize_key(spec.feature_key),
            category=spec.category or "General",
            unit=spec.unit or "call",
        )
        db.session.add(price)
    price.credits_per_unit = spec.credits_per_unit
    price.active = spec.active
    price.archived_at = None
    for field in ("name", "category", "unit", "description"):
        value = getattr(spec, field)
        if value is not None:
            setattr(price, field, value)
    db.session.commit()
    return price
