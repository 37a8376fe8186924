"""Feature prices: what each feature key costs per unit, and the one service that changes them.

The CLI (``flask pricing set``), the admin pages and the admin JSON API all change prices here,
and every change is written as a ``PriceChange`` (who, when, old → new) in the same
transaction, so the history can never disagree with the prices. Ledger rows name features by
key, so a feature that was ever used is archived instead of deleted: the ledger must keep
explaining itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.auth.models import User
from portal.credits.models import (
    FEATURE_KEY_PATTERN,
    FeaturePrice,
    LedgerEntry,
    PriceChange,
    Reservation,
)
from portal.errors import Conflict, InvalidRequest, NotFound
from portal.extensions import db
from portal.money import MAX_MICROS
from portal.timeutil import utcnow

FEATURE_KEY = re.compile(FEATURE_KEY_PATTERN)

# What an admin may change on a feature; the key is not among them (ledger rows point at it).
EDITABLE = ("name", "category", "credits_per_unit", "unit", "description", "active")
TEXT_LIMITS = {"name": 200, "category": 100, "unit": 32, "description": 2000}
# Callers (forms, JSON) say "credits"; the column holds micro-credits as ``credits_per_unit``.
PUBLIC_NAMES = {"credits_per_unit": "credits"}
STATUSES = ("current", "active", "inactive", "archived", "all")
HISTORY_PAGE = 50


class FeatureKeyTaken(Conflict):
    code = "feature_key_taken"

    def __init__(self, feature_key: str, archived: bool = False) -> None:
        hint = " (archived: restore it instead)" if archived else ""
        super().__init__(
            f"A feature with the key '{feature_key}' already exists{hint}.", field="feature_key"
        )


class FeatureArchived(Conflict):
    code = "feature_archived"

    def __init__(self, feature_key: str) -> None:
        super().__init__(f"'{feature_key}' is archived; restore it before changing it.")


@dataclass(frozen=True)
class PriceSpec:
    """The CLI's create-or-update: fields left ``None`` keep their current value."""

    feature_key: str
    credits_per_unit: int
    name: str | None = None
    category: str | None = None
    unit: str | None = None
    description: str | None = None
    active: bool = True


@dataclass(frozen=True)
class FeatureDraft:
    """A new feature as an admin entered it."""

    feature_key: str
    name: str
    credits_per_unit: int
    category: str = "General"
    unit: str = "call"
    description: str | None = None
    active: bool = True


@dataclass(frozen=True)
class Removal:
    """What ``delete_feature`` did: a never-used feature is deleted, a used one archived."""

    outcome: Literal["deleted", "archived"]
    price: FeaturePrice

    @property
    def deleted(self) -> bool:
        return self.outcome == "deleted"


@dataclass(frozen=True)
class HistoryEntry:
    change: PriceChange
    actor: str | None  # the admin's email; None for the CLI and seed data


# --- validation: one set of rules for the CLI, the forms and the JSON API --------------------


def validate_feature_key(feature_key: Any) -> str:
    if not isinstance(feature_key, str):
        raise InvalidRequest("feature_key", "must be a string")
    if not FEATURE_KEY.match(feature_key) or len(feature_key) > 100:
        raise InvalidRequest(
            "feature_key", "must be lowercase_with_underscores (a-z, 0-9, '_'), max 100"
        )
    return feature_key


def humanize_key(feature_key: str) -> str:
    return feature_key.replace("_", " ").capitalize()


def _clean_text(field: str, value: Any) -> str | None:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    value = value.strip()
    if not value:
        if field == "description":
            return None
        raise InvalidRequest(field, "is required")
    if len(value) > TEXT_LIMITS[field]:
        raise InvalidRequest(field, f"must be at most {TEXT_LIMITS[field]} characters")
    return value


def _clean_credits(value: Any) -> int:
    # Amounts arrive already parsed to micro-credits (forms and JSON parse decimals exactly).
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest("credits", "must be a number")
    if value < 0:
        raise InvalidRequest("credits", "must not be negative")
    if value > MAX_MICROS:
        raise InvalidRequest("credits", "is too large")
    return value


def clean(field: str, value: Any) -> Any:
    """The validated, normalized value of one field, or ``InvalidRequest`` naming it."""
    if field == "feature_key":
        return validate_feature_key(value)
    if field == "credits_per_unit":
        return _clean_credits(value)
    if field == "active":
        if not isinstance(value, bool):
            raise InvalidRequest("active", "must be true or false")
        return value
    if field in TEXT_LIMITS:
        return _clean_text(field, value)
    raise InvalidRequest(PUBLIC_NAMES.get(field, field), "is not a field of a feature price")


# --- reads -----------------------------------------------------------------------------------


def get_feature(price_id: int) -> FeaturePrice:
    price = db.session.get(FeaturePrice, price_id)
    if price is None:
        raise NotFound(f"No feature price {price_id}.")
    return price


def _status_filter(status: str) -> list[Any]:
    if status not in STATUSES:
        raise InvalidRequest("status", f"must be one of {', '.join(STATUSES)}")
    archived = FeaturePrice.archived_at.is_not(None)
    return {
        "current": [~archived],
        "active": [~archived, FeaturePrice.active.is_(True)],
        "inactive": [~archived, FeaturePrice.active.is_(False)],
        "archived": [archived],
        "all": [],
    }[status]


def list_features(query: str = "", status: str = "current") -> list[FeaturePrice]:
    """Features in display order (category, name), filtered by status and a search text."""
    stmt = select(FeaturePrice).where(*_status_filter(status))
    query = query.strip()
    if query:
        columns = (
            FeaturePrice.feature_key,
            FeaturePrice.name,
            FeaturePrice.category,
            FeaturePrice.description,
        )
        # autoescape: '_' is in every key and must match itself, not any character.
        stmt = stmt.where(or_(*(col.icontains(query, autoescape=True) for col in columns)))
    return list(
        db.session.scalars(
            stmt.order_by(FeaturePrice.category, FeaturePrice.name, FeaturePrice.feature_key)
        )
    )


def status_counts() -> dict[str, int]:
    """How many features each status tab holds."""
    archived = FeaturePrice.archived_at.is_not(None)
    rows = db.session.execute(
        select(archived.label("archived"), FeaturePrice.active, func.count()).group_by(
            archived, FeaturePrice.active
        )
    ).all()
    counts = dict.fromkeys(STATUSES, 0)
    for is_archived, active, count in rows:
        counts["all"] += count
        if is_archived:
            counts["archived"] += count
        else:
            counts["current"] += count
            counts["active" if active else "inactive"] += count
    return counts


def categories() -> list[str]:
    return list(
        db.session.scalars(select(FeaturePrice.category).distinct().order_by(FeaturePrice.category))
    )


def is_used(feature_key: str) -> bool:
    """Has any ledger row or hold ever named this key? Then it must never disappear."""
    in_ledger = db.session.scalar(select(exists().where(LedgerEntry.feature_key == feature_key)))
    return bool(
        in_ledger
        or db.session.scalar(select(exists().where(Reservation.feature_key == feature_key)))
    )


def history(
    feature_key: str | None = None, *, before_id: int | None = None, limit: int = HISTORY_PAGE
) -> tuple[list[HistoryEntry], int | None]:
    """Changes newest first (of one key, or all), and the id to continue below (or None)."""
    stmt = select(PriceChange, User.email).outerjoin(User, User.id == PriceChange.user_id)
    if feature_key is not None:
        stmt = stmt.where(PriceChange.feature_key == feature_key)
    if before_id is not None:
        stmt = stmt.where(PriceChange.id < before_id)
    rows = db.session.execute(stmt.order_by(PriceChange.id.desc()).limit(limit + 1)).all()
    entries = [HistoryEntry(change, email) for change, email in rows[:limit]]
    return entries, (entries[-1].change.id if len(rows) > limit else None)


# --- changes ---------------------------------------------------------------------------------


def _snapshot(price: FeaturePrice) -> dict[str, Any]:
    return {field: getattr(price, field) for field in EDITABLE}


def _record(
    price: FeaturePrice, action: str, changes: dict[str, list[Any]], user_id: int | None
) -> None:
    db.session.add(
        PriceChange(
            feature_price_id=price.id,
            feature_key=price.feature_key,
            action=action,
            changes=changes,
            user_id=user_id,
        )
    )


def _apply(price: FeaturePrice, values: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Set the values that differ and return them as ``{field: [old, new]}``."""
    changes: dict[str, list[Any]] = {}
    for field, value in values.items():
        old = getattr(price, field)
        if old != value:
            changes[field] = [old, value]
            setattr(price, field, value)
    return changes


def _insert(price: FeaturePrice, user_id: int | None) -> FeaturePrice:
    """Insert a new feature with its "created" record, in one transaction."""
    changes = {field: [None, getattr(price, field)] for field in EDITABLE}
    try:
        db.session.add(price)
        db.session.flush()  # the id, for the record
        _record(price, "created", changes, user_id)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        # Another admin created the same key between our check and our insert.
        taken = db.session.scalar(
            select(FeaturePrice).where(FeaturePrice.feature_key == price.feature_key)
        )
        if taken is not None:
            raise FeatureKeyTaken(price.feature_key, taken.archived_at is not None) from None
        raise
    return price


def _ensure_key_free(feature_key: str) -> None:
    taken = db.session.scalar(select(FeaturePrice).where(FeaturePrice.feature_key == feature_key))
    if taken is not None:
        raise FeatureKeyTaken(feature_key, taken.archived_at is not None)


def create_feature(draft: FeatureDraft, *, user_id: int | None) -> FeaturePrice:
    """Add a feature and record it; a key in use (archived ones included) is refused."""
    feature_key = validate_feature_key(draft.feature_key)
    values = {field: clean(field, getattr(draft, field)) for field in EDITABLE}
    _ensure_key_free(feature_key)
    return _insert(FeaturePrice(feature_key=feature_key, **values), user_id)


def update_feature(
    price_id: int, values: Mapping[str, Any], *, user_id: int | None
) -> FeaturePrice:
    """Change some of ``EDITABLE``; unchanged values record nothing, archived ones refuse."""
    cleaned = {field: clean(field, value) for field, value in values.items()}
    price = get_feature(price_id)
    if price.archived_at is not None:
        raise FeatureArchived(price.feature_key)
    changes = _apply(price, cleaned)
    if changes:
        if set(changes) == {"active"}:
            action = "activated" if price.active else "deactivated"
        else:
            action = "updated"
        _record(price, action, changes, user_id)
    db.session.commit()
    return price


def set_active(price_id: int, active: bool, *, user_id: int | None) -> FeaturePrice:
    return update_feature(price_id, {"active": active}, user_id=user_id)


def delete_feature(price_id: int, *, user_id: int | None) -> Removal:
    """Delete a feature nobody ever used; archive (inactive, kept) one the ledger names."""
    price = get_feature(price_id)
    if is_used(price.feature_key):
        if price.archived_at is None:
            changes = {"archived": [False, True]}
            if price.active:
                changes["active"] = [True, False]
            price.active = False
            price.archived_at = utcnow()
            _record(price, "archived", changes, user_id)
            db.session.commit()
        return Removal("archived", price)
    snapshot = _snapshot(price)
    # The history of a deleted feature stays, found by its key; its row id goes away.
    db.session.execute(
        update(PriceChange)
        .where(PriceChange.feature_price_id == price.id)
        .values(feature_price_id=None)
        .execution_options(synchronize_session=False)
    )
    db.session.add(
        PriceChange(
            feature_price_id=None,
            feature_key=price.feature_key,
            action="deleted",
            changes={field: [value, None] for field, value in snapshot.items()},
            user_id=user_id,
        )
    )
    db.session.delete(price)
    db.session.commit()
    return Removal("deleted", price)


def restore_feature(price_id: int, *, user_id: int | None) -> FeaturePrice:
    """Bring an archived feature back, inactive, so nobody is charged before an admin says so."""
    price = get_feature(price_id)
    if price.archived_at is not None:
        price.archived_at = None
        _record(price, "restored", {"archived": [True, False]}, user_id)
        db.session.commit()
    return price


def set_price(spec: PriceSpec, *, user_id: int | None = None) -> FeaturePrice:
    """Create or update the price of ``spec.feature_key``; unspecified fields keep their value.

    This is the CLI's upsert (and the demo's seed): it also brings an archived key back.
    """
    feature_key = validate_feature_key(spec.feature_key)
    values: dict[str, Any] = {
        "credits_per_unit": clean("credits_per_unit", spec.credits_per_unit),
        "active": clean("active", spec.active),
    }
    for field in ("name", "category", "unit", "description"):
        value = getattr(spec, field)
        if value is not None:
            values[field] = clean(field, value)
    price = db.session.scalar(select(FeaturePrice).where(FeaturePrice.feature_key == feature_key))
    if price is None:
        values.setdefault("name", humanize_key(feature_key))
        values.setdefault("category", "General")
        values.setdefault("unit", "call")
        values.setdefault("description", None)
        return _insert(FeaturePrice(feature_key=feature_key, **values), user_id)
    changes = _apply(price, values)
    if price.archived_at is not None:
        price.archived_at = None
        changes["archived"] = [True, False]
    if changes:
        _record(price, "updated", changes, user_id)
    db.session.commit()
    return price
