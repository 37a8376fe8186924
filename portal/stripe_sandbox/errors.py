"""Errors in Stripe's own shape, so the real ``stripe`` library raises its own exception classes."""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """An API error: ``{"error": {"type", "message", "param", "code"}}`` with an HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type_
        self.param = param
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param:
            error["param"] = self.param
        if self.code:
            error["code"] = self.code
        return {"error": error}


def no_such(kind: str, object_id: str, param: str = "id") -> SandboxError:
    """Stripe's wording for an unknown id: the library maps the 404 to InvalidRequestError."""
    return SandboxError(
        f"No such {kind}: '{object_id}'", status=404, param=param, code="resource_missing"
    )


class CardDeclined(SandboxError):
    """A test card that Stripe declines; hosted pages show the message, nothing is recorded."""

    def __init__(self, message: str, decline_code: str = "generic_decline") -> None:
        super().__init__(message, status=402, type_="card_error", code="card_declined")
        self.decline_code = decline_code
