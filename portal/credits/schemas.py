"""What the credits API accepts, declared once: these definitions validate every body and query
and are the request schemas of the OpenAPI document (``portal/credits/openapi.py``).

Every problem names its field and writes nothing; unknown body fields are errors.
"""

from __future__ import annotations

from typing import Any

from flask import request

from portal.contract.fields import (
    Amount,
    Array,
    Body,
    Integer,
    JsonObject,
    Moment,
    Query,
    String,
)
from portal.contract.jsonbody import canonical_body, json_body
from portal.credits.models import FEATURE_KEY_PATTERN, LEDGER_KINDS
from portal.credits.queries import GRANT_STATUSES, SUMMARY_GROUPS, Position
from portal.credits.results import MAX_CHARGE, Spend
from portal.money import MICRO

__all__ = ["canonical_body", "json_body"]

MAX_QUANTITY = 1_000_000 * MICRO
MAX_METADATA_BYTES = 8_192
MAX_BATCH_LINES = 100
# A monthly limit above any sum a month of charges could reach; keeps sums inside a BIGINT.
MAX_MONTHLY_LIMIT = 1_000 * MAX_CHARGE
# Starts and ends with a letter, digit, '.', '_' or '-' (so no name hides a trailing space).
DEPARTMENT_NAME = r"^[A-Za-z0-9](?:[A-Za-z0-9 _.\-]{0,62}[A-Za-z0-9_.\-])?$"
DEPARTMENT_MESSAGE = "may contain letters, digits, spaces, '.', '_' and '-' (not at the ends)"


def feature_key(description: str, *, required: bool = True) -> String:
    return String(
        description,
        max_length=100,
        pattern=FEATURE_KEY_PATTERN,
        pattern_message="must be a feature key: lowercase letters and digits, '_' between words",
        required=required,
    )


def department(description: str, *, required: bool = False) -> String:
    return String(
        description,
        max_length=64,
        pattern=DEPARTMENT_NAME,
        pattern_message=DEPARTMENT_MESSAGE,
        required=required,
    )


def quantity(description: str, *, default: int | None) -> Amount:
    return Amount(description, maximum=MAX_QUANTITY, default=default)


SPEND_FIELDS = {
    "feature_key": feature_key("The priced feature to charge for."),
    "quantity": quantity("Units, up to 6 decimal places.", default=MICRO),
    "department": department("Charge against this department's monthly limit."),
    "user": String("Your reference for the end user.", max_length=255),
    "description": String("Free text for the ledger.", max_length=500),
    "metadata": JsonObject(
        f"Free-form data kept with the ledger row: at most {MAX_METADATA_BYTES:,} bytes as "
        "JSON; decimals are kept as strings.",
        max_bytes=MAX_METADATA_BYTES,
    ),
}
SPEND = Body(SPEND_FIELDS, description="One charge: feature × quantity.")
CHECK = Body(SPEND_FIELDS, description="A deduct body; nothing is charged.")
BATCH = Body(
    {
        "lines": Array(
            SPEND,
            f"1 to {MAX_BATCH_LINES} charges; all of them or none.",
            max_items=MAX_BATCH_LINES,
            required=True,
        )
    }
)
REFUND = Body(
    {
        "deduction_id": Integer("The deduction to refund.", required=True),
        "amount": Amount("Credits to refund (default: all that is left).", maximum=MAX_CHARGE),
        "reason": String("Why, for the ledger.", max_length=500),
    }
)
RESERVE = Body(
    {
        "feature_key": feature_key("The priced feature to hold credits for."),
        "quantity": quantity("Units to hold at today's price.", default=MICRO),
        "expires_in": Integer(
            "Seconds until the hold lapses.", minimum=1, maximum=86_400, default=900
        ),
    }
)
CAPTURE = Body(
    {"quantity": quantity("Units used (default: the whole reserved quantity).", default=None)}
)
RELEASE = Body({})
DEPARTMENT_LIMIT = Body(
    {
        "monthly_limit": Amount(
            "Credits per calendar month (UTC), or null for no limit.",
            maximum=MAX_MONTHLY_LIMIT,
            allow_zero=True,
            required=True,
            nullable=True,
        )
    }
)
DEPARTMENT_PATH = department("The department's name.", required=True)

LEDGER_FILTERS = {
    "from": Moment("Start (inclusive): YYYY-MM-DD or an ISO 8601 datetime."),
    "to": Moment("End: a date includes that whole day; a datetime is exclusive.", end=True),
    "feature_key": feature_key("Only this feature.", required=False),
    "category": String("Only features of this category.", max_length=100),
    "department": department("Only this department."),
}
PAGING = {
    "limit": Integer("Page size.", minimum=1, maximum=500, default=50),
    "cursor": String(
        "next_cursor of the previous page.",
        max_length=40,
        pattern=Position.PATTERN,
        pattern_message="is not a cursor this API returned",
    ),
}
USAGE_QUERY = Query({**LEDGER_FILTERS, **PAGING})
SUMMARY_QUERY = Query(
    {
        **LEDGER_FILTERS,
        "group_by": String("How to group.", enum=SUMMARY_GROUPS, default="feature"),
    }
)
TRANSACTIONS_QUERY = Query({"kind": String("Only rows of this kind.", enum=LEDGER_KINDS), **PAGING})
GRANTS_QUERY = Query(
    {
        "status": String(
            "active: credits left (or held by a reservation) and not expired; expired: past "
            "its expiry; all: every grant.",
            enum=GRANT_STATUSES,
            default="active",
        ),
        **PAGING,
    },
    strict=True,
)
PRICING_QUERY = Query({"key": feature_key("The feature key.")})


def body(definition: Body) -> dict[str, Any]:
    """This request's JSON body, checked against ``definition``."""
    return definition.parse(json_body())


def query(definition: Query) -> dict[str, Any]:
    """This request's query string, checked against ``definition``."""
    return definition.parse(request.args)


def spend(values: dict[str, Any]) -> Spend:
    return Spend(
        feature_key=values["feature_key"],
        quantity=values["quantity"],
        department=values["department"],
        user_ref=values["user"],
        description=values["description"],
        metadata=values["metadata"],
    )


def cursor(values: dict[str, Any]) -> Position | None:
    raw = values["cursor"]
    return None if raw is None else Position.decode(raw)


def department_name(value: str, field: str = "name") -> str:
    return DEPARTMENT_PATH.parse(value, field)
