"""Declarative fields: one definition validates a value and emits its JSON Schema.

A ``Body`` is a dict of named fields. ``Body.parse`` checks a decoded JSON object: unknown
fields are refused, every number is bounded *before* anything converts it (``int()`` of
``Decimal("1e1000000")`` runs for minutes; ``adjusted()`` answers at once), strings may not
carry NUL or lone surrogates (PostgreSQL refuses both). ``Body.json_schema`` describes exactly
that, so the OpenAPI document cannot promise what the parser refuses, or the reverse.

Every problem is an ``InvalidRequest`` naming its field (``lines[2].quantity``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import simplejson

from portal.errors import InvalidRequest
from portal.money import MICRO, PLACES, micros_to_decimal

MAX_ID = 2**63 - 1  # the largest BIGINT: ids beyond it name no row
# A JSON number literal longer than this is refused unread: no field takes one so long.
MAX_NUMBER_LITERAL = 40
_SURROGATE = re.compile("[\ud800-\udfff]")
# No NUL, at least one non-space character: what ``String`` checks for free text, as a pattern.
# Whitespace spelled out: Python's str.strip() and ECMA's \s (JSON Schema) disagree on others.
WHITESPACE = " \t\n\r\x0b\x0c"
TEXT_PATTERN = r"^[^\x00]*[^\x00\t\n\r\x0b\x0c ][^\x00]*$"
_QUANT = Decimal(1).scaleb(-PLACES)


def start_of_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def end_of_day(day: date) -> datetime:
    """The first moment after ``day``; the calendar's last day ends at ``datetime.max``."""
    if day == date.max:
        return datetime.max
    return start_of_day(day) + timedelta(days=1)


class OversizedNumber(str):
    """A number literal too long to convert safely; every field refuses it."""


def check_text(value: str, name: str) -> None:
    """Refuse what no column can store: NUL characters and lone surrogates."""
    if "\x00" in value or (not value.isascii() and _SURROGATE.search(value)):
        raise InvalidRequest(name, "must not contain NUL characters or lone surrogates")


def _plain(number: int | Decimal) -> int | float | Decimal:
    """A bound as JSON Schema writes it: a whole number stays an integer."""
    return int(number) if number == int(number) else number


class Field:
    """A named value's rules; ``None`` (JSON null) counts as absent unless ``nullable``."""

    json_type = "string"

    def __init__(
        self, description: str = "", *, required: bool = False, nullable: bool = False
    ) -> None:
        self.description = description
        self.required = required
        self.nullable = nullable
        self.default: Any = None

    def parse(self, value: Any, name: str) -> Any:
        raise NotImplementedError

    def parse_text(self, value: str, name: str) -> Any:
        """The value as a query string spells it (a string)."""
        return self.parse(value, name)

    def json_schema(self) -> dict[str, Any]:
        return {"type": self.json_type}

    def document(self) -> dict[str, Any]:
        """The JSON Schema of this field with its description (and null when allowed)."""
        schema = self.json_schema()
        if self.nullable:
            schema["type"] = [schema["type"], "null"]
        if self.description:
            schema["description"] = self.description
        return schema


class String(Field):
    """Text of 1 to ``max_length`` characters.

    With ``pattern`` the value must match it as sent. Without one the text is stripped and must
    not end up empty; the schema says the same (a non-space character, no NUL).
    """

    def __init__(
        self,
        description: str = "",
        *,
        max_length: int = 100,
        pattern: str | None = None,
        pattern_message: str = "has an invalid format",
        enum: tuple[str, ...] | None = None,
        required: bool = False,
        nullable: bool = False,
        default: str | None = None,
    ) -> None:
        super().__init__(description, required=required, nullable=nullable)
        self.max_length = max_length
        self.pattern = pattern
        self.regex = re.compile(pattern) if pattern else None
        self.pattern_message = pattern_message
        self.enum = enum
        self.default = default

    def parse(self, value: Any, name: str) -> str:
        if type(value) is not str:
            raise InvalidRequest(name, "must be a string")
        if len(value) > self.max_length:
            raise InvalidRequest(name, f"must be at most {self.max_length} characters")
        check_text(value, name)
        if self.enum is not None:
            if value not in self.enum:
                raise InvalidRequest(name, f"must be one of {', '.join(self.enum)}")
            return value
        if self.regex is not None:
            if not self.regex.match(value):
                raise InvalidRequest(name, self.pattern_message)
            return value
        text = value.strip(WHITESPACE)
        if not text:
            raise InvalidRequest(name, "must not be empty")
        return text

    def json_schema(self) -> dict[str, Any]:
        if self.enum is not None:
            choices: dict[str, Any] = {"type": "string", "enum": list(self.enum)}
            if self.default is not None:
                choices["default"] = self.default
            return choices
        schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": self.max_length}
        schema["pattern"] = self.pattern or TEXT_PATTERN
        if self.default is not None:
            schema["default"] = self.default
        return schema


class Amount(Field):
    """A JSON number with at most 6 decimal places, returned as integer micro-units.

    ``allow_negative`` admits -maximum … maximum (a manual adjustment that takes credits)."""

    json_type = "number"

    def __init__(
        self,
        description: str = "",
        *,
        maximum: int,
        allow_zero: bool = False,
        allow_negative: bool = False,
        required: bool = False,
        nullable: bool = False,
        default: int | None = None,
    ) -> None:
        super().__init__(description, required=required, nullable=nullable)
        self.maximum = maximum  # micro-units
        self.allow_zero = allow_zero
        self.allow_negative = allow_negative
        self.default = default
        self._max_decimal = micros_to_decimal(maximum)
        # Decimal.adjusted() is the exponent of the leading digit: 999 -> 2.
        self._max_adjusted = self._max_decimal.adjusted()

    def _too_large(self, name: str, *, negative: bool = False) -> InvalidRequest:
        if negative:
            return InvalidRequest(name, f"must be at least -{self._max_decimal:,f}")
        return InvalidRequest(name, f"must be at most {self._max_decimal:,f}")

    def parse(self, value: Any, name: str) -> int:
        kind = type(value)
        if kind is int:
            if value > self._max_decimal:
                raise self._too_large(name)
            micros = value * MICRO
        elif kind is Decimal:
            if not value.is_finite():
                raise InvalidRequest(name, "must be a finite number")
            if value.adjusted() > self._max_adjusted:  # bounded before any conversion
                raise self._too_large(name, negative=self.allow_negative and value < 0)
            # Exact: at most ~19 digits once bounded, far inside Decimal's 28-digit precision.
            quantized = value.quantize(_QUANT)
            if quantized != value:
                raise InvalidRequest(name, f"must have at most {PLACES} decimal places")
            micros = int(quantized.scaleb(PLACES))
        elif kind is OversizedNumber:
            raise InvalidRequest(
                name, f"must be a number of at most {MAX_NUMBER_LITERAL} characters"
            )
        else:
            raise InvalidRequest(name, "must be a number")
        if abs(micros) > self.maximum:
            if micros < 0 and not self.allow_negative:
                raise InvalidRequest(name, "must not be negative")
            raise self._too_large(name, negative=micros < 0)
        if micros < 0 and not self.allow_negative:
            raise InvalidRequest(name, "must not be negative")
        if micros == 0 and not self.allow_zero:
            raise InvalidRequest(name, "must be greater than zero")
        return micros

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "number"}
        if self.allow_negative:
            schema["minimum"] = -_plain(self._max_decimal)
            if not self.allow_zero:
                schema["not"] = {"const": 0}
        else:
            schema["minimum" if self.allow_zero else "exclusiveMinimum"] = 0
        schema["maximum"] = _plain(self._max_decimal)
        schema["multipleOf"] = float(Decimal(1).scaleb(-PLACES))
        if self.default is not None:
            schema["default"] = _plain(micros_to_decimal(self.default))
        return schema


class Integer(Field):
    """A whole number within ``[minimum, maximum]``; in a query string, ASCII digits."""

    json_type = "integer"

    def __init__(
        self,
        description: str = "",
        *,
        minimum: int = 1,
        maximum: int = MAX_ID,
        required: bool = False,
        default: int | None = None,
    ) -> None:
        super().__init__(description, required=required)
        self.minimum = minimum
        self.maximum = maximum
        self.default = default
        self._max_digits = max(len(str(maximum)), len(str(minimum)))

    def parse_text(self, value: str, name: str) -> int:
        """A query string's digits, bounded before ``int()``."""
        digits = value[1:] if value.startswith("-") else value
        if not (digits.isascii() and digits.isdigit()):
            raise self._not_integer(name)
        if len(digits) > self._max_digits:
            raise self._out_of_range(name)
        return self.parse(int(value), name)

    def parse(self, value: Any, name: str) -> int:
        kind = type(value)
        if kind is int:
            pass
        elif kind is Decimal:
            if not value.is_finite():
                raise self._not_integer(name)
            if value.adjusted() >= self._max_digits:  # bounded before int()
                raise self._out_of_range(name)
            if value != value.to_integral_value():
                raise self._not_integer(name)
            value = int(value)
        elif kind is OversizedNumber:
            raise self._out_of_range(name)
        else:
            raise self._not_integer(name)
        if not self.minimum <= value <= self.maximum:
            raise self._out_of_range(name)
        return value

    @staticmethod
    def _not_integer(name: str) -> InvalidRequest:
        return InvalidRequest(name, "must be an integer")

    def _out_of_range(self, name: str) -> InvalidRequest:
        return InvalidRequest(name, f"must be between {self.minimum} and {self.maximum}")

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "integer",
            "minimum": self.minimum,
            "maximum": self.maximum,
        }
        if self.default is not None:
            schema["default"] = self.default
        return schema


class JsonObject(Field):
    """Free-form data (``metadata``): bounded in size, depth and number magnitude."""

    json_type = "object"

    def __init__(
        self,
        description: str = "",
        *,
        max_bytes: int = 8_192,
        max_depth: int = 4,
        max_number: int = 10**15,
    ) -> None:
        super().__init__(description)
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_number = max_number
        self._max_adjusted = len(str(max_number)) - 1

    def parse(self, value: Any, name: str) -> dict[str, Any]:
        if type(value) is not dict:
            raise InvalidRequest(name, "must be an object")
        # Iterative, so a deep value cannot exhaust the stack while it is refused.
        pending: list[tuple[Any, int]] = [(value, 1)]
        while pending:
            item, depth = pending.pop()
            if isinstance(item, dict | list):
                if depth > self.max_depth:
                    raise InvalidRequest(name, f"must nest at most {self.max_depth} levels")
                if isinstance(item, dict):
                    for key in item:
                        check_text(key, name)
                    children = item.values()
                else:
                    children = item
                pending.extend((child, depth + 1) for child in children)
            elif type(item) is str:
                check_text(item, name)
            elif type(item) is OversizedNumber:
                raise InvalidRequest(name, "holds a number that is too long")
            elif (type(item) is int and not -self.max_number <= item <= self.max_number) or (
                # adjusted() first: abs() of Decimal("1E+999999999") overflows the context
                type(item) is Decimal
                and (item.adjusted() > self._max_adjusted or abs(item) > self.max_number)
            ):
                raise InvalidRequest(name, f"numbers must be at most {self.max_number:,} in size")
        # Stored as JSON: decimals become strings there rather than floats, to stay exact.
        encoded = simplejson.dumps(value, use_decimal=True)
        if len(encoded.encode()) > self.max_bytes:
            raise InvalidRequest(name, f"must be at most {self.max_bytes:,} bytes as JSON")
        return simplejson.loads(encoded, parse_float=str)

    def _value_schema(self, depth: int) -> dict[str, Any]:
        scalars: list[dict[str, Any]] = [
            {"type": "string", "pattern": r"^[^\x00]*$"},
            {"type": "number", "minimum": -self.max_number, "maximum": self.max_number},
            {"type": "boolean"},
            {"type": "null"},
        ]
        if depth <= self.max_depth:  # a container here would be at level ``depth``
            inner = self._value_schema(depth + 1)
            scalars += [
                {"type": "array", "items": inner},
                {"type": "object", "additionalProperties": inner, **self._names()},
            ]
        return {"anyOf": scalars}

    @staticmethod
    def _names() -> dict[str, Any]:
        return {"propertyNames": {"pattern": r"^[^\x00]*$"}}

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": self._value_schema(2),
            **self._names(),
        }


class Body:
    """A JSON object of known fields; anything else in it is an error naming the field."""

    def __init__(self, fields: Mapping[str, Field], *, description: str = "") -> None:
        self.fields = dict(fields)
        self.description = description
        self._items = tuple(self.fields.items())

    def parse(self, data: Any, prefix: str = "") -> dict[str, Any]:
        if type(data) is not dict:
            raise InvalidRequest(prefix.rstrip(".") or "body", "must be a JSON object")
        for name in data:
            if name not in self.fields:
                raise InvalidRequest(prefix + name[:100], "is not a field of this request")
        values: dict[str, Any] = {}
        for name, field in self._items:
            value = data.get(name)
            if value is None:
                if field.required and (name not in data or not field.nullable):
                    raise InvalidRequest(prefix + name, "is required")
                values[name] = field.default
            else:
                values[name] = field.parse(value, prefix + name)
        return values

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: field.document() for name, field in self._items},
            "additionalProperties": False,
        }
        required = [name for name, field in self._items if field.required]
        if required:
            schema["required"] = required
        if self.description:
            schema["description"] = self.description
        return schema


class Array(Field):
    """A JSON array of 1 to ``max_items`` objects, each a ``Body``; errors say which item."""

    json_type = "array"

    def __init__(
        self, items: Body, description: str = "", *, max_items: int, required: bool = False
    ) -> None:
        super().__init__(description, required=required)
        self.items = items
        self.max_items = max_items

    def parse(self, value: Any, name: str) -> list[dict[str, Any]]:
        if type(value) is not list or not value:
            raise InvalidRequest(name, "must be a non-empty array")
        if len(value) > self.max_items:
            raise InvalidRequest(name, f"must have at most {self.max_items} entries")
        return [self.items.parse(item, f"{name}[{index}].") for index, item in enumerate(value)]

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": self.items.json_schema(),
            "minItems": 1,
            "maxItems": self.max_items,
        }


class Strings(Field):
    """A JSON array of 1 to ``max_items`` strings, each checked by ``item``."""

    json_type = "array"

    def __init__(
        self,
        item: String,
        description: str = "",
        *,
        max_items: int,
        required: bool = False,
        nullable: bool = False,
    ) -> None:
        super().__init__(description, required=required, nullable=nullable)
        self.item = item
        self.max_items = max_items

    def parse(self, value: Any, name: str) -> list[str]:
        if type(value) is not list or not value:
            raise InvalidRequest(name, "must be a non-empty array")
        if len(value) > self.max_items:
            raise InvalidRequest(name, f"must have at most {self.max_items} entries")
        return [self.item.parse(entry, f"{name}[{index}]") for index, entry in enumerate(value)]

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": self.item.json_schema(),
            "minItems": 1,
            "maxItems": self.max_items,
        }


class Moment(Field):
    """A query's ``from``/``to``: a date (``end`` then covers that whole day) or an ISO datetime.

    Returned as naive UTC. Moments past the calendar's ends clamp to them instead of failing.
    """

    def __init__(self, description: str = "", *, end: bool = False) -> None:
        super().__init__(description)
        self.end = end

    def parse(self, value: Any, name: str) -> datetime:
        if type(value) is not str:
            raise InvalidRequest(name, "must be a string")
        text = value.upper()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                return end_of_day(day) if self.end else start_of_day(day)
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(
                name, "must be a date (YYYY-MM-DD) or an ISO 8601 datetime"
            ) from None
        if parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            return datetime.min if parsed.year == 1 else datetime.max

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}]}


class Query(Body):
    """Query-string parameters: like a ``Body`` of strings, but other parameters are ignored
    unless ``strict`` (then an unknown parameter is an error naming it, as in a body)."""

    def __init__(
        self, fields: Mapping[str, Field], *, description: str = "", strict: bool = False
    ) -> None:
        super().__init__(fields, description=description)
        self.strict = strict

    def parse(self, data: Any, prefix: str = "") -> dict[str, Any]:
        if self.strict:
            for name in data:
                if name not in self.fields:
                    raise InvalidRequest(name[:100], "is not a parameter of this request")
                if hasattr(data, "getlist") and len(data.getlist(name)) > 1:
                    raise InvalidRequest(name, "must be given once")
        values: dict[str, Any] = {}
        for name, field in self._items:
            value = data.get(name)
            if value is None:
                if field.required:
                    raise InvalidRequest(name, "is required")
                values[name] = field.default
            else:
                values[name] = field.parse_text(value, name)
        return values

    def parameters(self) -> list[dict[str, Any]]:
        """The OpenAPI ``parameters`` list of this query."""
        return [
            {
                "name": name,
                "in": "query",
                "required": field.required,
                "schema": field.json_schema(),
                "description": field.description,
            }
            for name, field in self._items
        ]
