"""JSON that keeps money exact: ``Decimal`` renders as a plain JSON number, never via float."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import simplejson
from flask.json.provider import JSONProvider

from portal.timeutil import isoformat_z


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat_z(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ExactJSONProvider(JSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("default", _default)
        kwargs.setdefault("separators", (",", ":"))
        return simplejson.dumps(obj, use_decimal=True, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return simplejson.loads(s, use_decimal=True, **kwargs)


def dumps(obj: Any) -> str:
    """Compact JSON with exact decimals (as the API writes it), outside a request too."""
    return simplejson.dumps(obj, use_decimal=True, default=_default, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """JSON with every fractional number read back as an exact ``Decimal``."""
    return simplejson.loads(text, use_decimal=True)
