"""The webhook endpoints API's contract, declared once: request bodies (validation and the
OpenAPI request schemas) and response shapes (``portal/credits/openapi.py`` serves both)."""

from __future__ import annotations

from typing import Any

from portal.contract.fields import Body, String, Strings
from portal.credits.responses import ID, MOMENT, NULLABLE_TEXT, TEXT, listing, shape
from portal.webhooks.guard import MAX_URL_LENGTH
from portal.webhooks.service import EVENT_TYPES

ENDPOINT_ID = r"^ep_[0-9a-f]{32}$"
# What ``guard.check_url`` takes apart, spelled out so the schema refuses what it refuses:
# http(s), a host of letters, digits, '-' and '.', a port of 0-65535, then no spaces.
PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
URL_PATTERN = (
    r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
    rf"(?::{PORT})?(?:[/?#][^\x00-\x20\x7f]*)?$"
)

CREATE_ENDPOINT = Body(
    {
        "url": String(
            "Where events are POSTed: a public http(s) URL (private, loopback and "
            "link-local addresses are refused).",
            max_length=MAX_URL_LENGTH,
            pattern=URL_PATTERN,
            pattern_message="must be an http or https URL with a host name or IPv4 address",
            required=True,
        ),
        "events": Strings(
            String("An event type.", enum=EVENT_TYPES),
            "Event types to receive; absent or null: all of them.",
            max_items=len(EVENT_TYPES),
            nullable=True,
        ),
        "description": String("Your note about this endpoint.", max_length=200, nullable=True),
    },
    description="A webhook endpoint. Events are signed per the Standard Webhooks spec.",
)
TEST_ENDPOINT = Body({})
ENDPOINT_PATH = String(
    "The endpoint's id (ep_…).",
    max_length=35,
    pattern=ENDPOINT_ID,
    pattern_message="is not a webhook endpoint id",
    required=True,
)

EVENTS = {
    "type": ["array", "null"],
    "items": {"type": "string", "enum": list(EVENT_TYPES)},
    "description": "Subscribed event types; null: all.",
}
ENDPOINT_FIELDS: dict[str, Any] = {
    "id": {"type": "string", "pattern": ENDPOINT_ID},
    "url": TEXT,
    "description": NULLABLE_TEXT,
    "events": EVENTS,
    "enabled": {
        "type": "boolean",
        "description": "false once every delivery failed for 3 days (owners are emailed).",
    },
    "disabled_reason": NULLABLE_TEXT,
    "created_at": MOMENT,
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "WebhookEndpoint": shape(**ENDPOINT_FIELDS),
    "NewWebhookEndpoint": shape(
        "The endpoint with its signing secret, shown only in this answer.",
        **ENDPOINT_FIELDS,
        secret={"type": "string", "pattern": "^whsec_", "description": "Shown once."},
    ),
    "WebhookEndpoints": listing("WebhookEndpoint"),
    "DeletedWebhookEndpoint": shape(
        id={"type": "string", "pattern": ENDPOINT_ID}, deleted={"type": "boolean", "const": True}
    ),
    "WebhookTest": shape(
        "The webhook.test event's first attempt (retried on failure like any event).",
        event_id={"type": "string", "description": "Its webhook-id header."},
        delivery_id=ID,
        succeeded={"type": "boolean"},
        status_code={"type": ["integer", "null"], "description": "null: no answer."},
        latency_ms={"type": ["integer", "null"]},
        error=NULLABLE_TEXT,
    ),
}


def endpoint_id(value: str) -> str:
    return ENDPOINT_PATH.parse(value, "endpoint_id")
