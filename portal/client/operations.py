"""Every API operation as a ``Call``: the request to send and the result type to read back.

Both clients turn these into their public methods, so the contract of issue 2 (paths, bodies,
which calls carry an ``Idempotency-Key``) is written down once. Mutating calls get a fresh key
here, at the moment the *logical* call is made, and the client resends the very same ``Call``
on retries: that is what makes a retry safe.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any
from urllib.parse import quote

from portal.client._wire import API_PATH, Call
from portal.client.grants import Grant
from portal.client.results import (
    Balance,
    BatchDeduction,
    Capture,
    CheckResult,
    Deduction,
    DeductLine,
    Department,
    FeaturePrice,
    Page,
    Refund,
    Release,
    Reservation,
    Transaction,
    UsageRecord,
    UsageSummary,
)

Number = int | Decimal | str | float
API = API_PATH
# A float is sent as its shortest decimal form rounded half-up to the portal's 6 places.
FLOAT_PLACES = Decimal("0.000001")
DEFAULT_PAGE_SIZE = 100
LINE_FIELDS = frozenset(
    ("feature_key", "quantity", "department", "user", "description", "metadata")
)


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def number(value: Any, field: str) -> int | Decimal:
    """An exact number for the wire: ints and Decimals as given, numeric strings parsed.

    A float (``len(message) / 100``) goes through its shortest decimal form, ``repr``, so 0.1
    is sent as 0.1 and not as the binary 0.1000000000000000055…, then rounded half-up to 6
    places, the portal's precision (``1 / 3`` → 0.333333). A Decimal is never rounded: it is
    exact already, and the portal refuses more places than it keeps.
    """
    if isinstance(value, float):
        return _from_float(value, field)
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        kind = type(value).__name__
        raise TypeError(f"{field} must be an int, Decimal, float or numeric string, not {kind}")
    if isinstance(value, int):
        return value
    try:
        result = value if isinstance(value, Decimal) else Decimal(value.strip())
    except ArithmeticError:
        raise ValueError(f"{field} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"{field} must be finite, got {value!r}")
    return result


def _from_float(value: float, field: str) -> Decimal:
    if not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    with localcontext() as context:
        context.prec = 400  # room for any finite float's digits plus 6 places
        shortest = float.__repr__(value)  # a subclass (numpy.float64) may print itself otherwise
        return Decimal(shortest).quantize(FLOAT_PLACES, rounding=ROUND_HALF_UP).normalize()


def _key(idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return new_idempotency_key()
    # What an HTTP header can carry unchanged; the portal also caps the length at 255.
    if (
        not idempotency_key
        or idempotency_key != idempotency_key.strip()
        or not (idempotency_key.isascii() and idempotency_key.isprintable())
    ):
        raise ValueError(
            f"idempotency_key must be printable ASCII without surrounding spaces: "
            f"{idempotency_key!r}"
        )
    return idempotency_key


def _plain(reader: Any) -> Any:
    """Adapt a ``from_json(data)`` reader to the ``parse(payload, replayed)`` shape."""
    return lambda payload, _replayed: reader(payload)


def spend_body(
    feature_key: str,
    quantity: Number = 1,
    *,
    department: str | None = None,
    user: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"feature_key": feature_key, "quantity": number(quantity, "quantity")}
    optional = {"department": department, "user": user, "description": description}
    body.update({name: value for name, value in optional.items() if value is not None})
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return body


# --- reads --------------------------------------------------------------------------------------


def balance() -> Call[Balance]:
    return Call("GET", f"{API}/balance", _plain(Balance.from_json))


def check(
    feature_key: str, quantity: Number = 1, department: str | None = None
) -> Call[CheckResult]:
    body = spend_body(feature_key, quantity, department=department)
    return Call("POST", f"{API}/credits/check", _plain(CheckResult.from_json), body)


def pricing(feature_key: str) -> Call[FeaturePrice]:
    return Call(
        "GET",
        f"{API}/features/pricing",
        _plain(FeaturePrice.from_json),
        params={"key": feature_key},
    )


def features() -> Call[list[FeaturePrice]]:
    return Call(
        "GET",
        f"{API}/features",
        _plain(lambda data: [FeaturePrice.from_json(row) for row in data["data"]]),
    )


def _moment(value: date | datetime | str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    return value.isoformat() if isinstance(value, date) else value


def ledger_query(
    *,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    feature_key: str | None = None,
    category: str | None = None,
    department: str | None = None,
) -> dict[str, str]:
    """Query-string filters of /usage and /usage/summary (``from``/``to`` are dates or times)."""
    query = {
        "from": None if start is None else _moment(start),
        "to": None if end is None else _moment(end),
        "feature_key": feature_key,
        "category": category,
        "department": department,
    }
    return {name: value for name, value in query.items() if value is not None}


def _page(reader: Any) -> Any:
    return _plain(
        lambda data: Page(tuple(reader(row) for row in data["data"]), data.get("next_cursor"))
    )


def _paging(query: Mapping[str, str], page_size: int, cursor: str | None) -> dict[str, str]:
    params = {**query, "limit": str(page_size)}
    if cursor is not None:
        params["cursor"] = cursor
    return params


def usage_page(
    query: Mapping[str, str], page_size: int = DEFAULT_PAGE_SIZE, cursor: str | None = None
) -> Call[Page[UsageRecord]]:
    return Call(
        "GET",
        f"{API}/usage",
        _page(UsageRecord.from_json),
        params=_paging(query, page_size, cursor),
    )


def usage_summary(group_by: str, query: Mapping[str, str]) -> Call[UsageSummary]:
    return Call(
        "GET",
        f"{API}/usage/summary",
        _plain(UsageSummary.from_json),
        params={**query, "group_by": group_by},
    )


def transactions_page(
    page_size: int = DEFAULT_PAGE_SIZE, cursor: str | None = None, kind: str | None = None
) -> Call[Page[Transaction]]:
    return Call(
        "GET",
        f"{API}/transactions",
        _page(Transaction.from_json),
        params=_paging({} if kind is None else {"kind": kind}, page_size, cursor),
    )


GRANT_STATUSES = ("active", "expired", "all")


def grants_page(
    status: str = "active", page_size: int = DEFAULT_PAGE_SIZE, cursor: str | None = None
) -> Call[Page[Grant]]:
    """``status``: active (credits left, not expired), expired, or all."""
    if status not in GRANT_STATUSES:
        raise ValueError(f"status must be one of {', '.join(GRANT_STATUSES)}, not {status!r}")
    return Call(
        "GET",
        f"{API}/credits/grants",
        _page(Grant.from_json),
        params=_paging({"status": status}, page_size, cursor),
    )


def departments() -> Call[list[Department]]:
    return Call(
        "GET",
        f"{API}/departments",
        _plain(lambda data: [Department.from_json(row) for row in data["data"]]),
    )


def set_department_limit(name: str, monthly_limit: Number | None) -> Call[Department]:
    """PUT is idempotent by nature: resending it sets the same limit again."""
    limit = None if monthly_limit is None else number(monthly_limit, "monthly_limit")
    return Call(
        "PUT",
        f"{API}/departments/{quote(name, safe='')}/limit",
        _plain(Department.from_json),
        {"monthly_limit": limit},
    )


# --- writes: each carries an idempotency key ---------------------------------------------------


def deduct(
    feature_key: str,
    quantity: Number = 1,
    *,
    department: str | None = None,
    user: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Call[Deduction]:
    body = spend_body(
        feature_key,
        quantity,
        department=department,
        user=user,
        description=description,
        metadata=metadata,
    )
    return Call(
        "POST",
        f"{API}/credits/deduct",
        Deduction.from_json,
        body,
        idempotency_key=_key(idempotency_key),
    )


def _line_body(line: DeductLine | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(line, DeductLine):
        line = {
            "feature_key": line.feature_key,
            "quantity": line.quantity,
            "department": line.department,
            "user": line.user,
            "description": line.description,
            "metadata": line.metadata,
        }
    unknown = set(line) - LINE_FIELDS
    if unknown:
        raise TypeError(f"unknown deduct line fields: {', '.join(sorted(unknown))}")
    return spend_body(
        line["feature_key"],
        line.get("quantity", 1),
        department=line.get("department"),
        user=line.get("user"),
        description=line.get("description"),
        metadata=line.get("metadata"),
    )


def deduct_batch(
    lines: Iterable[DeductLine | Mapping[str, Any]], *, idempotency_key: str | None = None
) -> Call[BatchDeduction]:
    """All lines or none, idempotent as a whole (an AI call's input and output tokens, say)."""
    body = {"lines": [_line_body(line) for line in lines]}
    if not body["lines"]:
        raise ValueError("deduct_batch needs at least one line")
    return Call(
        "POST",
        f"{API}/credits/deduct-batch",
        BatchDeduction.from_json,
        body,
        idempotency_key=_key(idempotency_key),
    )


def refund(
    deduction_id: int,
    amount: Number | None = None,
    reason: str | None = None,
    *,
    idempotency_key: str | None = None,
) -> Call[Refund]:
    body: dict[str, Any] = {"deduction_id": deduction_id}
    if amount is not None:
        body["amount"] = number(amount, "amount")
    if reason is not None:
        body["reason"] = reason
    return Call(
        "POST",
        f"{API}/credits/refund",
        Refund.from_json,
        body,
        idempotency_key=_key(idempotency_key),
    )


def reserve(
    feature_key: str,
    quantity: Number = 1,
    *,
    expires_in: int | None = None,
    idempotency_key: str | None = None,
) -> Call[Reservation]:
    body = spend_body(feature_key, quantity)
    if expires_in is not None:
        body["expires_in"] = expires_in
    return Call(
        "POST",
        f"{API}/credits/reservations",
        Reservation.from_json,
        body,
        idempotency_key=_key(idempotency_key),
    )


def capture(
    reservation_id: int, quantity: Number | None = None, *, idempotency_key: str | None = None
) -> Call[Capture]:
    body = {} if quantity is None else {"quantity": number(quantity, "quantity")}
    return Call(
        "POST",
        f"{API}/credits/reservations/{int(reservation_id)}/capture",
        Capture.from_json,
        body,
        idempotency_key=_key(idempotency_key),
    )


def release(reservation_id: int, *, idempotency_key: str | None = None) -> Call[Release]:
    return Call(
        "POST",
        f"{API}/credits/reservations/{int(reservation_id)}/release",
        Release.from_json,
        {},
        idempotency_key=_key(idempotency_key),
    )
