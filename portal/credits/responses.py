"""The shapes the credits API answers with, declared once: the OpenAPI document's response
schemas (``openapi.py``), which the test suite checks every API response against.

Objects are closed (``additionalProperties: false``), so a field added to a ``to_json`` and
not here fails the tests instead of drifting silently.
"""

from __future__ import annotations

from typing import Any

from portal.credits.models import GRANT_KINDS, LEDGER_KINDS
from portal.credits.queries import SUMMARY_GROUPS

CREDITS = {"type": "number", "description": "Credits: a decimal number with up to 6 places."}
NULLABLE_CREDITS = {"type": ["number", "null"]}
ID = {"type": "integer", "minimum": 1}
TEXT = {"type": "string"}
NULLABLE_TEXT = {"type": ["string", "null"]}
MOMENT = {"type": "string", "format": "date-time"}
NULLABLE_MOMENT = {"type": ["string", "null"], "format": "date-time"}


def shape(description: str = "", /, **properties: dict[str, Any]) -> dict[str, Any]:
    """A closed object whose every property is always present."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def listing(item: str, *, paged: bool = False) -> dict[str, Any]:
    fields: dict[str, Any] = {"data": {"type": "array", "items": ref(item)}}
    if paged:
        fields["next_cursor"] = {
            "type": ["string", "null"],
            "description": "Pass as cursor for the next page; null on the last page.",
        }
    return shape(**fields)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """``schema`` or null."""
    return {**schema, "type": [schema["type"], "null"], "description": description}


EXPIRY = shape(
    amount={**CREDITS, "description": "Credits that expire then, unless spent first."},
    expires_at=MOMENT,
)
RETURNED = shape(
    "Where refunded credits went: back into the grant they came from, or into a new grant "
    "(keeping the old expiry, or the refund grace period) if that one had expired.",
    grant_id=ID,
    amount=CREDITS,
    expires_at={**NULLABLE_MOMENT, "description": "null: never expires."},
)
DEDUCTION = shape(
    deduction_id=ID,
    feature_key=TEXT,
    quantity=CREDITS,
    credits_deducted=CREDITS,
    remaining_credits={**CREDITS, "description": "Available credits after the charge."},
)
LEDGER_ROW_FIELDS: dict[str, Any] = {
    "id": ID,
    "feature_key": NULLABLE_TEXT,
    "quantity": NULLABLE_CREDITS,
    "unit_price": NULLABLE_CREDITS,
    "department": NULLABLE_TEXT,
    "user": NULLABLE_TEXT,
    "description": NULLABLE_TEXT,
    "metadata": {"type": ["object", "null"]},
    "reservation_id": {"type": ["integer", "null"]},
    "created_at": MOMENT,
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Balance": shape(
        organization=TEXT,
        balance={
            **CREDITS,
            "description": "Credits in the organization's grants minus what it owes.",
        },
        reserved={**CREDITS, "description": "Held by open reservations."},
        available={**CREDITS, "description": "balance − reserved: what a deduct can use."},
        next_expiry=nullable(
            EXPIRY, "The soonest credits to expire and how many; null: none expire."
        ),
        on_hold={
            **CREDITS,
            "description": "Credits of a disputed payment, frozen until the dispute closes; "
            "not in balance.",
        },
        owed={
            **CREDITS,
            "description": "Credits clawed back after they were spent (a refunded or lost "
            "payment); the next credits to arrive pay it first.",
        },
    ),
    "Check": shape(
        has_enough={"type": "boolean"},
        required=CREDITS,
        available=CREDITS,
        reason={
            "type": ["string", "null"],
            "enum": ["insufficient_credits", "department_limit_exceeded", None],
        },
    ),
    "Deduction": DEDUCTION,
    "Batch": shape(
        deductions={"type": "array", "items": ref("Deduction")},
        credits_deducted=CREDITS,
        remaining_credits=CREDITS,
    ),
    "Refund": shape(
        refund_id=ID,
        deduction_id=ID,
        credits_refunded=CREDITS,
        remaining_credits=CREDITS,
        returned_to={"type": "array", "items": RETURNED},
    ),
    "Reservation": shape(
        reservation_id=ID, credits_reserved=CREDITS, expires_at=MOMENT, available=CREDITS
    ),
    "Capture": shape(
        reservation_id=ID,
        deduction_id=ID,
        credits_deducted=CREDITS,
        credits_released=CREDITS,
        remaining_credits=CREDITS,
    ),
    "Release": shape(reservation_id=ID, credits_released=CREDITS, available=CREDITS),
    "Pricing": shape(
        feature_key=TEXT,
        name=TEXT,
        category=TEXT,
        credits=CREDITS,
        unit=TEXT,
        description=NULLABLE_TEXT,
        active={"type": "boolean"},
    ),
    "LedgerRow": shape(
        "One balance change.",
        kind={"type": "string", "enum": list(LEDGER_KINDS)},
        amount={**CREDITS, "description": "Positive adds credits, negative takes them."},
        balance_after=CREDITS,
        refund_of={"type": ["integer", "null"], "description": "The deduction a refund is of."},
        **LEDGER_ROW_FIELDS,
    ),
    "UsageRow": shape(
        "One deduction and how much of it was refunded since.",
        credits=CREDITS,
        credits_refunded=CREDITS,
        **LEDGER_ROW_FIELDS,
    ),
    "UsageSummary": shape(
        data={
            "type": "array",
            "items": shape(key=NULLABLE_TEXT, credits=CREDITS, count={"type": "integer"}),
        },
        total=CREDITS,
        group_by={"type": "string", "enum": list(SUMMARY_GROUPS)},
    ),
    "Grant": shape(
        "Credits that entered the organization, burned in priority order (lowest first), "
        "then soonest expiry.",
        id=ID,
        kind={"type": "string", "enum": list(GRANT_KINDS)},
        amount={**CREDITS, "description": "Credits granted."},
        remaining={**CREDITS, "description": "Credits left to spend (not counting holds)."},
        priority={"type": "integer", "description": "Lower burns first."},
        expires_at={**NULLABLE_MOMENT, "description": "null: never expires."},
        description=NULLABLE_TEXT,
        created_at=MOMENT,
    ),
    "Department": shape(
        name=TEXT,
        monthly_limit={**NULLABLE_CREDITS, "description": "null: no limit."},
        used_this_month=CREDITS,
    ),
    "Features": listing("Pricing"),
    "UsagePage": listing("UsageRow", paged=True),
    "LedgerPage": listing("LedgerRow", paged=True),
    "GrantPage": listing("Grant", paged=True),
    "Departments": listing("Department"),
}
