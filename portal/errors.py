"""One hierarchy of domain errors and the handlers that turn them into responses.

Services raise ``PortalError`` children; API views let them propagate and the handler renders
``{"error": {"code", "message", ...extra}}``. Browser pages get friendly HTML instead.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from flask import Flask, Response, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException


class PortalError(Exception):
    """Base of every error the portal reports to a caller on purpose."""

    status = 400
    code = "bad_request"
    # Seconds the caller should wait before trying again (429, 503): sent as ``Retry-After``.
    retry_after: int | None = None

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class InvalidRequest(PortalError):
    status = 422
    code = "invalid_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class InvalidJSON(PortalError):
    status = 400
    code = "invalid_json"


class Unauthorized(PortalError):
    status = 401
    code = "unauthorized"


class Forbidden(PortalError):
    status = 403
    code = "forbidden"


class NotFound(PortalError):
    status = 404
    code = "not_found"


class Conflict(PortalError):
    status = 409
    code = "conflict"


class Unprocessable(PortalError):
    status = 422
    code = "unprocessable"


class PaymentRequired(PortalError):
    status = 402
    code = "payment_required"


class ServiceUnavailable(PortalError):
    status = 503
    code = "service_unavailable"
    retry_after = 5


def is_database_outage(exc: Exception) -> bool:
    """A lost or refused database connection (a pool timeout, an unopenable SQLite file):
    the request was fine, the moment was not, so the caller is told to retry."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency; SQLite-only installs
        return False
    return isinstance(exc, psycopg.OperationalError)


def wants_json() -> bool:
    """API paths and JSON-preferring clients get JSON errors; browsers get pages."""
    if request.path.startswith(("/api/", "/_stripe/", "/stripe/")):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and not request.accept_mimetypes.accept_html


def error_response(code: str, message: str, status: int, **extra: Any) -> Response:
    response = jsonify({"error": {"code": code, "message": message, **extra}})
    response.status_code = status
    return response


def _http_code(exc: HTTPException) -> str:
    name = (exc.name or "error").lower().replace(" ", "_").replace("-", "_")
    return "".join(ch for ch in name if ch.isalnum() or ch == "_")


def portal_error_response(exc: PortalError) -> Response:
    if wants_json():
        response = jsonify(exc.to_dict())
        response.status_code = exc.status
    else:
        response = make_response(
            render_template("error.html", status=exc.status, message=exc.message), exc.status
        )
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _outage_response() -> Response:
    from portal.extensions import db

    # The connection is gone; don't leave the session holding it (rolling back fails too).
    with suppress(Exception):
        db.session.rollback()
    outage = ServiceUnavailable("The database is unavailable. Please try again shortly.")
    try:
        return portal_error_response(outage)
    except Exception:  # the page's layout may load current_user: the database again
        response = make_response(f"<!doctype html><title>503</title><p>{outage.message}</p>")
        response.status_code = outage.status
        response.headers["Retry-After"] = str(outage.retry_after)
        return response


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(PortalError)
    def handle_portal_error(exc: PortalError):
        return portal_error_response(exc)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        status = exc.code or 500
        if wants_json():
            message = exc.description or exc.name
            response = error_response(_http_code(exc), message, status)
            if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
                response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
            return response
        return render_template("error.html", status=status, message=exc.description), status

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        if is_database_outage(exc):
            app.logger.error("database unavailable on %s %s: %s", request.method, request.path, exc)
            return _outage_response()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return error_response("internal_error", "An unexpected error occurred.", 500)
        return render_template("error.html", status=500, message=None), 500
