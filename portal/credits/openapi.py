"""The OpenAPI 3.1 document of the JSON API, served at ``/api/v1/openapi.json``.

Nothing here is written twice: request bodies and query parameters are the very definitions
``schemas.py`` validates with, response bodies are ``responses.py``'s shapes, and the error
responses list, per operation, every status and ``code`` the operation can answer with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from portal.contract.fields import Body, Field, Integer, Query
from portal.credits import schemas
from portal.credits.responses import SCHEMAS, ref
from portal.requestguard import MAX_HEADER_LENGTH, MAX_HEADERS, MAX_URL_LENGTH
from portal.webhooks import schemas as webhooks

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
REPLAYED = {
    "Idempotent-Replayed": {
        "description": "true when this is the stored answer to an earlier request with the "
        "same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[\x21-\x7e]"},
    "description": "Retry-safe key: a retry with the same body replays the first success "
    "(header Idempotent-Replayed: true); another body gives 422 idempotency_key_reused; "
    "a request still in flight gives 409 idempotency_key_in_use. Kept at least 24 hours.",
}
# What any request can meet before its view runs (portal/requestguard.py, the rate limiter,
# a database outage); 429 and 503 carry Retry-After.
ANY_REQUEST: dict[int, tuple[str, ...]] = {
    414: ("uri_too_long",),
    431: ("request_header_fields_too_large",),
    503: ("service_unavailable",),
}
STATUS_TEXT = {
    400: "The body is not valid JSON, or nests too deeply.",
    401: "Missing, unknown or revoked API key.",
    402: "Not enough credits, or over a department's monthly limit.",
    404: "Not found.",
    409: "A valid request that the current state refuses (already refunded, more than is "
    "left, a closed hold) or a request in flight with the same Idempotency-Key.",
    413: "The body is larger than the server accepts (1 MB by default).",
    414: f"The URL is longer than {MAX_URL_LENGTH:,} bytes.",
    422: "A field is missing or invalid (invalid_request names it in field), or the request "
    "cannot apply.",
    429: "Too many requests; retry after Retry-After seconds.",
    431: f"More than {MAX_HEADERS} headers, or one longer than {MAX_HEADER_LENGTH:,} bytes.",
    503: "The service is briefly unavailable; retry after Retry-After seconds.",
}


@dataclass(frozen=True)
class Operation:
    summary: str
    status: int
    response: str
    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    body: Body | None = None
    query: Query | None = None
    path: dict[str, Field] = field(default_factory=dict)
    idempotent: bool = False
    public: bool = False


RESERVATION = {"reservation_id": Integer("The reservation's id.", required=True)}
ENDPOINT = {"endpoint_id": webhooks.ENDPOINT_PATH}
SPENDING = {
    402: ("insufficient_credits", "department_limit_exceeded"),
    404: ("feature_not_found", "department_not_found"),
}
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("get", "/balance"): Operation(
        "Balance, reserved and available credits of the key's organization; the next credits "
        "to expire, credits on hold (disputed) and owed",
        200,
        "Balance",
    ),
    ("post", "/credits/check"): Operation(
        "Would this deduct succeed now? Writes nothing.",
        200,
        "Check",
        {404: ("feature_not_found", "department_not_found")},
        body=schemas.CHECK,
    ),
    ("post", "/credits/deduct"): Operation(
        "Charge credits per unit × quantity (rounded half-up to 6 places)",
        201,
        "Deduction",
        SPENDING,
        body=schemas.SPEND,
        idempotent=True,
    ),
    ("post", "/credits/deduct-batch"): Operation(
        "Charge several lines at once: all of them or none",
        201,
        "Batch",
        SPENDING,
        body=schemas.BATCH,
        idempotent=True,
    ),
    ("post", "/credits/refund"): Operation(
        "Refund all or part of one deduction",
        200,
        "Refund",
        {
            404: ("deduction_not_found",),
            409: ("already_refunded", "refund_exceeds_deduction"),
        },
        body=schemas.REFUND,
        idempotent=True,
    ),
    ("post", "/credits/reservations"): Operation(
        "Hold credits until capture, release or expiry",
        201,
        "Reservation",
        {402: ("insufficient_credits",), 404: ("feature_not_found",)},
        body=schemas.RESERVE,
        idempotent=True,
    ),
    ("post", "/credits/reservations/{reservation_id}/capture"): Operation(
        "Charge all or part of a hold at the price it was taken at; release the rest",
        200,
        "Capture",
        {
            404: ("reservation_not_found",),
            409: ("reservation_not_open", "quantity_exceeds_reservation"),
        },
        body=schemas.CAPTURE,
        path=RESERVATION,
        idempotent=True,
    ),
    ("post", "/credits/reservations/{reservation_id}/release"): Operation(
        "Free a hold",
        200,
        "Release",
        {404: ("reservation_not_found",), 409: ("reservation_not_open",)},
        body=schemas.RELEASE,
        path=RESERVATION,
        idempotent=True,
    ),
    ("get", "/features"): Operation("Active feature prices", 200, "Features"),
    ("get", "/features/pricing"): Operation(
        "The price of one feature (no API key needed)",
        200,
        "Pricing",
        {404: ("feature_not_found",)},
        query=schemas.PRICING_QUERY,
        public=True,
    ),
    ("get", "/usage"): Operation(
        "Deductions, newest first", 200, "UsagePage", query=schemas.USAGE_QUERY
    ),
    ("get", "/usage/summary"): Operation(
        "Net credits and deduction count per feature, category, day or department",
        200,
        "UsageSummary",
        query=schemas.SUMMARY_QUERY,
    ),
    ("get", "/transactions"): Operation(
        "The ledger: every balance change, newest first, with the balance after each",
        200,
        "LedgerPage",
        query=schemas.TRANSACTIONS_QUERY,
    ),
    ("get", "/credits/grants"): Operation(
        "The organization's grants (credits with their own priority and expiry), newest first",
        200,
        "GrantPage",
        query=schemas.GRANTS_QUERY,
    ),
    ("get", "/departments"): Operation(
        "Departments with their monthly limit and month-to-date use", 200, "Departments"
    ),
    ("put", "/departments/{name}/limit"): Operation(
        "Set or clear (null) a department's monthly limit; creates the department if new",
        200,
        "Department",
        body=schemas.DEPARTMENT_LIMIT,
        path={"name": schemas.DEPARTMENT_PATH},
    ),
    ("get", "/webhook-endpoints"): Operation(
        "The organization's webhook endpoints (without their secrets)", 200, "WebhookEndpoints"
    ),
    ("post", "/webhook-endpoints"): Operation(
        "Add a webhook endpoint; the answer holds its signing secret, shown only this once",
        201,
        "NewWebhookEndpoint",
        {409: ("too_many_webhook_endpoints",)},
        body=webhooks.CREATE_ENDPOINT,
    ),
    ("delete", "/webhook-endpoints/{endpoint_id}"): Operation(
        "Delete a webhook endpoint; its pending deliveries stop",
        200,
        "DeletedWebhookEndpoint",
        {404: ("webhook_endpoint_not_found",)},
        path=ENDPOINT,
    ),
    ("post", "/webhook-endpoints/{endpoint_id}/test"): Operation(
        "Send a webhook.test event to this endpoint now",
        200,
        "WebhookTest",
        {404: ("webhook_endpoint_not_found",)},
        body=webhooks.TEST_ENDPOINT,
        path=ENDPOINT,
    ),
}


def error_schema(codes: tuple[str, ...]) -> dict[str, Any]:
    """The one error shape, with ``code`` limited to what this response can say."""
    return {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(codes)},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "The field at fault."},
                },
                "additionalProperties": True,
            }
        },
    }


def error_codes(operation: Operation) -> dict[int, tuple[str, ...]]:
    """Every status and code ``operation`` can answer with besides its success."""
    codes: dict[int, set[str]] = {status: set(names) for status, names in ANY_REQUEST.items()}

    def add(status: int, *names: str) -> None:
        codes.setdefault(status, set()).update(names)

    for status, names in operation.errors.items():
        add(status, *names)
    if not operation.public:
        add(401, "unauthorized")
        add(429, "rate_limited")
    else:
        add(429, "rate_limited")
    if operation.body is not None:
        add(400, "invalid_json")
        add(413, "request_entity_too_large")
    if operation.body is not None or operation.query is not None or operation.path:
        add(422, "invalid_request")
    if operation.path:
        add(404, "not_found")
    if operation.idempotent:
        add(409, "idempotency_key_in_use")
        add(422, "idempotency_key_reused", "invalid_request")
    return {status: tuple(sorted(names)) for status, names in sorted(codes.items())}


def _responses(operation: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {
        "description": "Success.",
        "content": {"application/json": {"schema": ref(operation.response)}},
    }
    if operation.idempotent:
        success["headers"] = REPLAYED
    responses = {str(operation.status): success}
    for status, codes in error_codes(operation).items():
        response: dict[str, Any] = {
            "description": f"{STATUS_TEXT[status]} Codes: {', '.join(codes)}.",
            "content": {"application/json": {"schema": error_schema(codes)}},
        }
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response
    return responses


def _path_parameters(operation: Operation) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": spec.json_schema()}
        for name, spec in operation.path.items()
    ]


def _operation(operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {"summary": operation.summary, "responses": _responses(operation)}
    parameters = _path_parameters(operation)
    if operation.query is not None:
        parameters += operation.query.parameters()
    if operation.idempotent:
        parameters.append(IDEMPOTENCY_HEADER)
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        document["requestBody"] = {
            # Required when a field is: an absent body then cannot be a valid request.
            "required": any(spec.required for spec in operation.body.fields.values()),
            "content": {"application/json": {"schema": operation.body.json_schema()}},
        }
    if operation.public:
        document["security"] = []
    return document


@cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Credits portal API",
            "version": "1.0.0",
            "description": "Check, deduct, refund and reserve prepaid credits. Amounts are JSON "
            "numbers with up to 6 decimal places. Errors: "
            '{"error": {"code": "snake_case", "message": "..."}}. Unknown body fields are '
            "errors (422 invalid_request naming the field).",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"apiKey": []}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {**SCHEMAS, **webhooks.SCHEMAS},
        },
        "paths": paths,
    }
