"""Limits every request meets before a view reads it, answered in the caller's shape.

- Bodies: ``MAX_CONTENT_LENGTH`` (1 MB, ``PORTAL_MAX_CONTENT_LENGTH``), smaller for the Stripe
  webhook (256 KB, ``PORTAL_WEBHOOK_MAX_CONTENT_LENGTH``). A declared length over the limit is
  refused with 413 before any of the body is read; an undeclared (chunked) one stops at the
  limit as it is read.
- URLs over ``MAX_URL_LENGTH`` answer 414; on ``/api/`` paths, more than ``MAX_HEADERS``
  headers or one over ``MAX_HEADER_LENGTH`` answer 431. Both are below gunicorn's own limits
  (``gunicorn.conf.py``), so gunicorn's plain-text 400 is left only for requests beyond them.
- A query string carrying a NUL character is refused (PostgreSQL cannot store or compare
  one): 422 naming the parameter on ``/api/`` paths, a 400 page elsewhere.
- ``<int:…>`` URL parts are ids: at most 19 digits and 2**63 - 1, so a larger one is a 404
  instead of a database overflow.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from portal.contract.fields import MAX_ID
from portal.errors import InvalidRequest, PortalError

MAX_URL_LENGTH = 4_096  # gunicorn.conf.py: limit_request_line = 8190
MAX_HEADERS = 64  # gunicorn.conf.py: limit_request_fields = 100
MAX_HEADER_LENGTH = 4_096  # gunicorn.conf.py: limit_request_field_size = 8190
WEBHOOK_ENDPOINT = "stripe_webhooks.receive"


class BadQuery(PortalError):
    status = 400
    code = "bad_request"


class URITooLong(PortalError):
    status = 414
    code = "uri_too_long"


class HeadersTooLarge(PortalError):
    status = 431
    code = "request_header_fields_too_large"


class IdConverter(IntegerConverter):
    """``<int:…>``: a positive id that fits a BIGINT; anything longer does not match."""

    regex = r"\d{1,19}"

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def body_limits(getenv: Any) -> dict[str, int]:
    """The body-size settings, from the environment (``portal/config.py`` merges them)."""

    def number(name: str, default: int) -> int:
        raw = getenv(name)
        return default if raw in (None, "") else int(raw)

    return {
        "MAX_CONTENT_LENGTH": number("PORTAL_MAX_CONTENT_LENGTH", 1024 * 1024),
        "PORTAL_WEBHOOK_MAX_CONTENT_LENGTH": number(
            "PORTAL_WEBHOOK_MAX_CONTENT_LENGTH", 256 * 1024
        ),
        # Our forms are a few short fields; no page uploads files.
        "MAX_FORM_MEMORY_SIZE": 100_000,
        "MAX_FORM_PARTS": 100,
    }


def _check_query() -> None:
    raw = request.query_string
    if b"%00" not in raw and b"\x00" not in raw:
        return
    name = next(
        (key for key, value in request.args.items(multi=True) if "\x00" in key + value), "query"
    )
    if request.path.startswith("/api/"):
        raise InvalidRequest(name.replace("\x00", "")[:100] or "query", "must not contain NUL")
    raise BadQuery("The address contains a NUL character.")


def _check_headers() -> None:
    headers = request.headers
    if len(headers) > MAX_HEADERS:
        raise HeadersTooLarge(f"Send at most {MAX_HEADERS} headers.")
    for name, value in headers.items():
        if len(name) + len(value) > MAX_HEADER_LENGTH:
            raise HeadersTooLarge(
                f"The {name[:64]} header is longer than {MAX_HEADER_LENGTH} bytes."
            )


def guard_request() -> None:
    environ = request.environ
    uri_length = len(environ.get("RAW_URI") or request.full_path)
    if uri_length > MAX_URL_LENGTH:
        raise URITooLong(f"The address is longer than {MAX_URL_LENGTH} bytes.")
    if request.path.startswith("/api/"):
        _check_headers()
    if request.endpoint == WEBHOOK_ENDPOINT:
        request.max_content_length = current_app.config["PORTAL_WEBHOOK_MAX_CONTENT_LENGTH"]
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()  # refused before a byte of the body is read
    if request.query_string:
        _check_query()


def register_request_guard(app: Flask) -> None:
    """Install the id converter (before any blueprint adds rules) and the guard."""
    app.url_map.converters["int"] = IdConverter
    app.before_request(guard_request)
