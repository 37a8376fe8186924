"""JSON values to exact Python ones: every amount a ``Decimal``, every time aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def to_decimal(value: Any) -> Decimal:
    """JSON numbers arrive as ``int`` or ``Decimal`` (parsed with ``parse_float=Decimal``)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"expected a JSON number, got {value!r}")


def optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


def to_datetime(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def optional_datetime(value: Any) -> datetime | None:
    return None if value is None else to_datetime(value)
