"""The request body as JSON, parsed so that no body can cost more than its own length.

Numbers stay exact (``Decimal``), and a literal too long to convert safely is kept as an
``OversizedNumber`` that every field refuses by name. Nesting is bounded: a body 1,000 levels
deep is refused as ``invalid_json`` instead of exhausting the interpreter's stack.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import simplejson
from flask import request

from portal.contract.fields import MAX_NUMBER_LITERAL, OversizedNumber
from portal.errors import InvalidJSON

MAX_DEPTH = 16


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _int(text: str) -> int | OversizedNumber:
    return int(text) if len(text) <= MAX_NUMBER_LITERAL else OversizedNumber(text)


def _decimal(text: str) -> Decimal | OversizedNumber:
    return Decimal(text) if len(text) <= MAX_NUMBER_LITERAL else OversizedNumber(text)


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value``, walked without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(raw: bytes) -> Any:
    """Decode ``raw``; ``InvalidJSON`` for anything that is not bounded, well-formed JSON."""
    try:
        value = simplejson.loads(
            raw,
            parse_int=_int,
            parse_float=_decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=dict,
        )
    except RecursionError:
        raise InvalidJSON(f"The body nests deeper than {MAX_DEPTH} levels.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJSON(f"The body is not valid JSON: {exc}") from None
    # Only a body with many brackets can nest deeply: most bodies skip the walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise InvalidJSON(f"The body nests deeper than {MAX_DEPTH} levels.")
    return value


def json_body() -> dict[str, Any]:
    """The request body as a dict, parsed once per request. An empty body is ``{}``."""
    cached = getattr(request, "_portal_json", None)
    if cached is not None:
        return cached
    raw = request.get_data(cache=True)
    body = parse_json(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise InvalidJSON("The body must be a JSON object.")
    request._portal_json = body  # type: ignore[attr-defined]
    return body


def canonical_body() -> str:
    """The body in one spelling (sorted keys, no spaces), for idempotency fingerprints."""
    return simplejson.dumps(json_body(), sort_keys=True, separators=(",", ":"), use_decimal=True)
