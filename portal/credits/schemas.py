"""Parsing and validation of API input; every problem names its field and writes nothing."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import simplejson
from flask import request

from portal.credits.queries import Position
from portal.credits.service import Spend
from portal.errors import InvalidJSON, InvalidRequest
from portal.money import MICRO, AmountError, parse_micros

MAX_QUANTITY = 1_000_000 * MICRO
MAX_METADATA_BYTES = 8_192
DEPARTMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def json_body() -> dict[str, Any]:
    """The request body as a dict; decimals stay ``Decimal``. An empty body is ``{}``."""
    cached = getattr(request, "_portal_json", None)
    if cached is not None:
        return cached
    raw = request.get_data(cache=True)
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = simplejson.loads(
                raw, use_decimal=True, parse_constant=_reject_constant, object_pairs_hook=dict
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidJSON(f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidJSON("The body must be a JSON object.")
    request._portal_json = body  # type: ignore[attr-defined]
    return body


def canonical_body() -> str:
    return simplejson.dumps(json_body(), sort_keys=True, separators=(",", ":"), use_decimal=True)


def required_str(body: dict[str, Any], field: str, max_length: int = 100) -> str:
    value = body.get(field)
    if value is None:
        raise InvalidRequest(field, "is required")
    return _string(value, field, max_length)


def optional_str(body: dict[str, Any], field: str, max_length: int = 500) -> str | None:
    value = body.get(field)
    return None if value is None else _string(value, field, max_length)


def _string(value: Any, field: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    value = value.strip()
    if not value:
        raise InvalidRequest(field, "must not be empty")
    if len(value) > max_length:
        raise InvalidRequest(field, f"must be at most {max_length} characters")
    return value


def amount(
    body: dict[str, Any], field: str, *, maximum: int | None = None, allow_zero: bool = False
) -> int | None:
    """A positive decimal with at most 6 places, as micro-units; ``None`` when absent."""
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, int | Decimal) or isinstance(value, bool):
        raise InvalidRequest(field, "must be a number")
    try:
        micros = parse_micros(value, allow_zero=allow_zero)
    except AmountError as exc:
        raise InvalidRequest(field, str(exc)) from None
    if maximum is not None and micros > maximum:
        raise InvalidRequest(field, f"must be at most {maximum // MICRO:,}")
    return micros


def quantity(body: dict[str, Any], *, default: int | None = MICRO) -> int | None:
    value = amount(body, "quantity", maximum=MAX_QUANTITY)
    return default if value is None else value


def metadata(body: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("metadata", "must be an object")
    # Stored as JSON: decimals become strings there rather than floats, to stay exact.
    encoded = simplejson.dumps(value, use_decimal=True)
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise InvalidRequest("metadata", f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return simplejson.loads(encoded, parse_float=str)


def department_name(value: Any, field: str = "department") -> str:
    name = _string(value, field, 64)
    if not DEPARTMENT_NAME.match(name):
        raise InvalidRequest(field, "may contain letters, digits, spaces, '.', '_' and '-'")
    return name


def spend(body: dict[str, Any]) -> Spend:
    department = body.get("department")
    return Spend(
        feature_key=required_str(body, "feature_key"),
        quantity=quantity(body) or MICRO,
        department=None if department is None else department_name(department),
        user_ref=optional_str(body, "user", 255),
        description=optional_str(body, "description", 500),
        metadata=metadata(body),
    )


MAX_BATCH_LINES = 100


def spend_lines(body: dict[str, Any]) -> list[Spend]:
    """``{"lines": [spend, …]}``: 1 to 100 lines, each validated like a single deduct."""
    lines = body.get("lines")
    if not isinstance(lines, list) or not lines:
        raise InvalidRequest("lines", "must be a non-empty array of deductions")
    if len(lines) > MAX_BATCH_LINES:
        raise InvalidRequest("lines", f"must have at most {MAX_BATCH_LINES} entries")
    spends = []
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            raise InvalidRequest(f"lines[{index}]", "must be an object")
        try:
            spends.append(spend(line))
        except InvalidRequest as exc:
            field = exc.extra["field"]
            raise InvalidRequest(f"lines[{index}].{field}", exc.message.split(": ", 1)[1]) from None
    return spends


def integer(value: Any, field: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise InvalidRequest(field, "must be an integer")
    try:
        if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            raise ValueError
        number = int(value)
        if number != value and not isinstance(value, str):
            raise ValueError
    except ValueError:
        raise InvalidRequest(field, "must be an integer") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidRequest(field, f"must be {bound}")
    return number


def id_field(body: dict[str, Any], field: str) -> int:
    value = body.get(field)
    if value is None:
        raise InvalidRequest(field, "is required")
    if isinstance(value, str):
        raise InvalidRequest(field, "must be an integer")
    return integer(value, field)


# --- query strings ---------------------------------------------------------------------------


def query_moment(field: str, *, end: bool = False) -> datetime | None:
    """``from``/``to`` as a date (``to`` then covers that whole day) or an ISO datetime."""
    raw = request.args.get(field)
    if raw in (None, ""):
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            moment = datetime(day.year, day.month, day.day)
            return moment + timedelta(days=1) if end else moment
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(field, "must be a date (YYYY-MM-DD) or an ISO 8601 datetime") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def query_limit(default: int = 50, maximum: int = 500) -> int:
    raw = request.args.get("limit")
    return default if raw in (None, "") else integer(raw, "limit", maximum=maximum)


def query_cursor() -> Position | None:
    raw = request.args.get("cursor")
    if raw in (None, ""):
        return None
    try:
        return Position.decode(raw)
    except ValueError:
        raise InvalidRequest("cursor", "is not a cursor this API returned") from None
