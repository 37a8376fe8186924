"""The OpenAPI 3.1 document of the JSON API, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from functools import cache
from typing import Any

NUMBER = {"type": "number", "description": "Credits: a decimal number with up to 6 places."}
QUANTITY = {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000, "default": 1}
STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: tuple[int, str]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, text in codes:
        responses[str(status)] = _json(_ref("Error"), text)
    return responses


IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": "Retry-safe key: a retry with the same body replays the first success "
    "(header Idempotent-Replayed: true); another body gives 422 idempotency_key_reused; "
    "a request still in flight gives 409 idempotency_key_in_use. Kept at least 24 hours.",
}
AUTH_ERRORS = ((401, "Missing, unknown or revoked API key (unauthorized)."),)
BODY_ERRORS = (
    (400, "Malformed JSON (invalid_json)."),
    (422, "A field is missing or invalid (invalid_request, with field)."),
)


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    if parameters:
        operation["parameters"] = parameters
    if public:
        operation["security"] = []
    return operation


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema or STRING,
        "description": description,
    }


LEDGER_FILTERS = [
    _query("from", "Start (inclusive): YYYY-MM-DD or ISO 8601 datetime."),
    _query("to", "End: a date includes that whole day; a datetime is exclusive."),
    _query("feature_key", "Only this feature."),
    _query("category", "Only features of this category."),
    _query("department", "Only this department."),
]
PAGING = [
    _query("limit", "Page size, 1-500 (default 50).", {"type": "integer"}),
    _query("cursor", "next_cursor of the previous page."),
]


@cache
def openapi_document() -> dict[str, Any]:
    error = _obj(
        {
            "error": _obj(
                {"code": STRING, "message": STRING},
                ["code", "message"],
            )
        },
        ["error"],
    )
    error["properties"]["error"]["additionalProperties"] = True
    schemas = {
        "Error": error,
        "Balance": _obj(
            {"organization": STRING, "balance": NUMBER, "reserved": NUMBER, "available": NUMBER},
            ["organization", "balance", "reserved", "available"],
        ),
        "Spend": _obj(
            {
                "feature_key": STRING,
                "quantity": QUANTITY,
                "department": STRING,
                "user": STRING,
                "description": STRING,
                "metadata": {"type": "object"},
            },
            ["feature_key"],
        ),
        "Check": _obj(
            {
                "has_enough": {"type": "boolean"},
                "required": NUMBER,
                "available": NUMBER,
                "reason": {
                    "type": ["string", "null"],
                    "enum": ["insufficient_credits", "department_limit_exceeded", None],
                },
            },
            ["has_enough", "required", "available"],
        ),
        "Deduction": _obj(
            {
                "deduction_id": {"type": "integer"},
                "feature_key": STRING,
                "quantity": NUMBER,
                "credits_deducted": NUMBER,
                "remaining_credits": {**NUMBER, "description": "Available credits after."},
            },
            ["deduction_id", "feature_key", "quantity", "credits_deducted", "remaining_credits"],
        ),
        "Refund": _obj(
            {
                "refund_id": {"type": "integer"},
                "deduction_id": {"type": "integer"},
                "credits_refunded": NUMBER,
                "remaining_credits": NUMBER,
            },
            ["refund_id", "deduction_id", "credits_refunded", "remaining_credits"],
        ),
        "Reservation": _obj(
            {
                "reservation_id": {"type": "integer"},
                "credits_reserved": NUMBER,
                "expires_at": {"type": "string", "format": "date-time"},
                "available": NUMBER,
            },
            ["reservation_id", "credits_reserved", "expires_at", "available"],
        ),
        "Capture": _obj(
            {
                "reservation_id": {"type": "integer"},
                "deduction_id": {"type": "integer"},
                "credits_deducted": NUMBER,
                "credits_released": NUMBER,
                "remaining_credits": NUMBER,
            },
            ["reservation_id", "deduction_id", "credits_deducted", "credits_released"],
        ),
        "Release": _obj(
            {
                "reservation_id": {"type": "integer"},
                "credits_released": NUMBER,
                "available": NUMBER,
            },
            ["reservation_id", "credits_released", "available"],
        ),
        "Pricing": _obj(
            {
                "feature_key": STRING,
                "name": STRING,
                "category": STRING,
                "credits": NUMBER,
                "unit": STRING,
                "description": NULLABLE_STRING,
                "active": {"type": "boolean"},
            },
            ["feature_key", "name", "category", "credits", "unit", "active"],
        ),
        "LedgerRow": _obj(
            {
                "id": {"type": "integer"},
                "kind": {
                    "type": "string",
                    "enum": [
                        "grant",
                        "purchase",
                        "subscription",
                        "signup_bonus",
                        "adjustment",
                        "deduct",
                        "refund",
                    ],
                },
                "amount": NUMBER,
                "balance_after": NUMBER,
                "feature_key": NULLABLE_STRING,
                "quantity": {"type": ["number", "null"]},
                "unit_price": {"type": ["number", "null"]},
                "department": NULLABLE_STRING,
                "user": NULLABLE_STRING,
                "description": NULLABLE_STRING,
                "metadata": {"type": ["object", "null"]},
                "created_at": {"type": "string", "format": "date-time"},
            },
            ["id", "kind", "amount", "balance_after", "created_at"],
        ),
        "UsageRow": _obj(
            {
                "id": {"type": "integer"},
                "feature_key": STRING,
                "quantity": NUMBER,
                "unit_price": NUMBER,
                "credits": NUMBER,
                "credits_refunded": NUMBER,
                "department": NULLABLE_STRING,
                "user": NULLABLE_STRING,
                "description": NULLABLE_STRING,
                "metadata": {"type": ["object", "null"]},
                "created_at": {"type": "string", "format": "date-time"},
            },
            ["id", "feature_key", "credits", "created_at"],
        ),
        "Department": _obj(
            {
                "name": STRING,
                "monthly_limit": {"type": ["number", "null"]},
                "used_this_month": NUMBER,
            },
            ["name", "monthly_limit", "used_this_month"],
        ),
    }

    def page_of(name: str) -> dict[str, Any]:
        return _obj(
            {"data": {"type": "array", "items": _ref(name)}, "next_cursor": NULLABLE_STRING},
            ["data", "next_cursor"],
        )

    reservation_id = {
        "name": "reservation_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }
    idem = [IDEMPOTENCY_HEADER]
    paths = {
        "/balance": {
            "get": _operation(
                "Balance, reserved and available credits of the key's organization",
                {"200": _json(_ref("Balance"), "The balance."), **_errors(*AUTH_ERRORS)},
            )
        },
        "/credits/check": {
            "post": _operation(
                "Would this spend succeed now? Writes nothing.",
                {
                    "200": _json(_ref("Check"), "The answer."),
                    **_errors(*AUTH_ERRORS, *BODY_ERRORS, (404, "feature_not_found")),
                },
                body=_obj(
                    {"feature_key": STRING, "quantity": QUANTITY, "department": STRING},
                    ["feature_key"],
                ),
            )
        },
        "/credits/deduct": {
            "post": _operation(
                "Charge credits per unit × quantity (rounded half-up to 6 places)",
                {
                    "201": _json(_ref("Deduction"), "Charged."),
                    **_errors(
                        *AUTH_ERRORS,
                        *BODY_ERRORS,
                        (
                            402,
                            "insufficient_credits (+required, available) or "
                            "department_limit_exceeded (+limit, used)",
                        ),
                        (404, "feature_not_found or department_not_found"),
                        (409, "idempotency_key_in_use"),
                    ),
                },
                body=_ref("Spend"),
                parameters=idem,
            )
        },
        "/credits/deduct-batch": {
            "post": _operation(
                "Charge several lines at once: all of them or none",
                {
                    "201": _json(
                        _obj(
                            {
                                "deductions": {"type": "array", "items": _ref("Deduction")},
                                "credits_deducted": NUMBER,
                                "remaining_credits": NUMBER,
                            },
                            ["deductions", "credits_deducted", "remaining_credits"],
                        ),
                        "Charged.",
                    ),
                    **_errors(
                        *AUTH_ERRORS,
                        *BODY_ERRORS,
                        (402, "insufficient_credits or department_limit_exceeded"),
                        (404, "feature_not_found or department_not_found"),
                        (409, "idempotency_key_in_use"),
                    ),
                },
                body=_obj(
                    {
                        "lines": {
                            "type": "array",
                            "items": _ref("Spend"),
                            "minItems": 1,
                            "maxItems": 100,
                        }
                    },
                    ["lines"],
                ),
                parameters=idem,
            )
        },
        "/credits/refund": {
            "post": _operation(
                "Refund all or part of one deduction",
                {
                    "200": _json(_ref("Refund"), "Refunded."),
                    **_errors(
                        *AUTH_ERRORS,
                        *BODY_ERRORS,
                        (404, "deduction_not_found"),
                        (409, "already_refunded or idempotency_key_in_use"),
                    ),
                },
                body=_obj(
                    {"deduction_id": {"type": "integer"}, "amount": NUMBER, "reason": STRING},
                    ["deduction_id"],
                ),
                parameters=idem,
            )
        },
        "/credits/reservations": {
            "post": _operation(
                "Hold credits until capture, release or expiry",
                {
                    "201": _json(_ref("Reservation"), "Held."),
                    **_errors(
                        *AUTH_ERRORS,
                        *BODY_ERRORS,
                        (402, "insufficient_credits"),
                        (404, "feature_not_found"),
                        (409, "idempotency_key_in_use"),
                    ),
                },
                body=_obj(
                    {
                        "feature_key": STRING,
                        "quantity": QUANTITY,
                        "expires_in": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 86_400,
                            "default": 900,
                        },
                    },
                    ["feature_key"],
                ),
                parameters=idem,
            )
        },
        "/credits/reservations/{reservation_id}/capture": {
            "post": _operation(
                "Charge all or part of a hold at the price it was taken at; release the rest",
                {
                    "200": _json(_ref("Capture"), "Captured."),
                    **_errors(
                        *AUTH_ERRORS,
                        *BODY_ERRORS,
                        (404, "reservation_not_found"),
                        (409, "reservation_not_open (captured, released or expired)"),
                    ),
                },
                body=_obj({"quantity": QUANTITY}),
                parameters=[reservation_id, *idem],
            )
        },
        "/credits/reservations/{reservation_id}/release": {
            "post": _operation(
                "Free a hold",
                {
                    "200": _json(_ref("Release"), "Released."),
                    **_errors(
                        *AUTH_ERRORS, (404, "reservation_not_found"), (409, "reservation_not_open")
                    ),
                },
                parameters=[reservation_id, *idem],
            )
        },
        "/features": {
            "get": _operation(
                "Active feature prices",
                {
                    "200": _json(
                        _obj({"data": {"type": "array", "items": _ref("Pricing")}}, ["data"]),
                        "Prices.",
                    ),
                    **_errors(*AUTH_ERRORS),
                },
            )
        },
        "/features/pricing": {
            "get": _operation(
                "The price of one feature (no authentication)",
                {
                    "200": _json(_ref("Pricing"), "The price."),
                    **_errors((404, "feature_not_found"), (422, "key is missing")),
                },
                parameters=[{**_query("key", "The feature key."), "required": True}],
                public=True,
            )
        },
        "/usage": {
            "get": _operation(
                "Deductions, newest first",
                {
                    "200": _json(page_of("UsageRow"), "A page."),
                    **_errors(*AUTH_ERRORS, (422, "Bad parameter (invalid_request).")),
                },
                parameters=[*LEDGER_FILTERS, *PAGING],
            )
        },
        "/usage/summary": {
            "get": _operation(
                "Net credits and deduction count per feature, category, day or department",
                {
                    "200": _json(
                        _obj(
                            {
                                "data": {
                                    "type": "array",
                                    "items": _obj(
                                        {
                                            "key": NULLABLE_STRING,
                                            "credits": NUMBER,
                                            "count": {"type": "integer"},
                                        }
                                    ),
                                },
                                "total": NUMBER,
                                "group_by": STRING,
                            },
                            ["data", "total"],
                        ),
                        "The summary.",
                    ),
                    **_errors(*AUTH_ERRORS, (422, "Bad parameter (invalid_request).")),
                },
                parameters=[
                    *LEDGER_FILTERS,
                    _query(
                        "group_by",
                        "feature (default), category, day or department",
                        {"type": "string", "enum": ["feature", "category", "day", "department"]},
                    ),
                ],
            )
        },
        "/transactions": {
            "get": _operation(
                "The ledger: every balance change, newest first, with the balance after each",
                {
                    "200": _json(page_of("LedgerRow"), "A page."),
                    **_errors(*AUTH_ERRORS, (422, "Bad parameter (invalid_request).")),
                },
                parameters=PAGING,
            )
        },
        "/departments": {
            "get": _operation(
                "Departments with their monthly limit and month-to-date use",
                {
                    "200": _json(
                        _obj({"data": {"type": "array", "items": _ref("Department")}}, ["data"]),
                        "Departments.",
                    ),
                    **_errors(*AUTH_ERRORS),
                },
            )
        },
        "/departments/{name}/limit": {
            "put": _operation(
                "Set or clear (null) a department's monthly limit; creates the department if new",
                {
                    "200": _json(_ref("Department"), "The department."),
                    **_errors(*AUTH_ERRORS, *BODY_ERRORS),
                },
                body=_obj({"monthly_limit": {"type": ["number", "null"]}}, ["monthly_limit"]),
                parameters=[{"name": "name", "in": "path", "required": True, "schema": STRING}],
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Credits portal API",
            "version": "1.0.0",
            "description": "Check, deduct, refund and reserve prepaid credits. Amounts are JSON "
            "numbers with up to 6 decimal places. Errors: "
            '{"error": {"code": "snake_case", "message": "..."}}.',
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"apiKey": []}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": paths,
    }
