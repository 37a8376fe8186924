"""Every /api/v1 response a test receives is checked against the published OpenAPI document.

The ``client`` fixture's test client is a ``ContractCheckingClient``: the status must be one
the operation documents, the body must match that response's schema (error shape and code
included), and documented required headers (Retry-After) must be there. Requests to paths
or methods the document does not have (405s, unknown URLs) are left to their own tests.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from flask.testing import FlaskClient
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound

API_PREFIX = "/api/v1"


@cache
def contract() -> OpenAPI:
    from portal.credits.openapi import openapi_document

    document = dict(openapi_document())
    document["servers"] = [{"url": f"http://localhost{API_PREFIX}"}]
    return OpenAPI.from_dict(document)


class ContractViolation(AssertionError):
    pass


class AnsweredRequest(WerkzeugOpenAPIRequest):
    """The request a response answered; its body was consumed by the app and is not needed."""

    @property
    def body(self) -> bytes:
        return b""


def check_response(response: Any) -> None:
    request = response.request
    if not request.path.startswith(API_PREFIX + "/") or request.path.endswith("/openapi.json"):
        return
    result = contract().unmarshal_response(
        AnsweredRequest(request), WerkzeugOpenAPIResponse(response)
    )
    errors = [
        error for error in result.errors if not isinstance(error, PathNotFound | OperationNotFound)
    ]
    if errors:
        details = "; ".join(
            f"{type(e).__name__}: {e} {getattr(e, '__cause__', '')}" for e in errors
        )
        raise ContractViolation(
            f"{request.method} {request.full_path} -> {response.status_code} breaks the OpenAPI "
            f"document: {details}\n{response.get_data(as_text=True)[:500]}"
        )


class ContractCheckingClient(FlaskClient):
    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        check_response(response)
        return response
