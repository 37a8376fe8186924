"""The JSON API for other apps: parse → one service call → JSON. Errors render centrally."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from portal import limits
from portal.credits import idempotency, queries, schemas, service
from portal.credits.apikeys import authenticate
from portal.credits.errors import FeatureNotFound
from portal.credits.openapi import openapi_document
from portal.errors import InvalidRequest
from portal.webhooks import delivery as webhook_delivery
from portal.webhooks import schemas as webhook_schemas
from portal.webhooks import service as webhooks

bp = Blueprint("api", __name__, url_prefix="/api/v1")

PUBLIC_ENDPOINTS = {"api.feature_pricing", "api.openapi"}
MAX_KEY_LENGTH = 255


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(current_app.json.dumps(payload), status, mimetype="application/json")


@bp.before_request
@limits.guard_api
def require_api_key() -> None:
    if request.endpoint not in PUBLIC_ENDPOINTS:
        caller = authenticate(request.headers.get("Authorization"))
        g.api_key_id, g.organization = caller.key_id, caller.organization


def idempotent(status: int) -> Callable:
    """Honour ``Idempotency-Key``: replay a finished request, bind the key only on success."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            key = request.headers.get("Idempotency-Key")
            g.idempotency = None
            if key is None:
                return view(*args, **kwargs)
            key = key.strip()
            if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
                raise InvalidRequest("Idempotency-Key", "must be 1-255 printable characters")
            outcome = idempotency.claim(
                g.organization.id,
                key,
                idempotency.fingerprint(request.method, request.path, schemas.canonical_body()),
                status,
            )
            if isinstance(outcome, idempotency.Replay):
                response = Response(outcome.body, outcome.status, mimetype="application/json")
                response.headers["Idempotent-Replayed"] = "true"
                return response
            g.idempotency = outcome
            try:
                return view(*args, **kwargs)
            except Exception:
                # Failures inside a service free the key themselves; this covers the rest
                # (validation errors raised before any service call).
                outcome.abandon()
                raise

        return wrapper

    return decorate


@bp.get("/balance")
def balance() -> Response:
    return json_response(service.get_balance(g.organization).to_json())


@bp.post("/credits/check")
def check() -> Response:
    spend = schemas.spend(schemas.body(schemas.CHECK))
    return json_response(service.check(g.organization, spend).to_json())


@bp.post("/credits/deduct")
@idempotent(201)
def deduct() -> Response:
    spend = schemas.spend(schemas.body(schemas.SPEND))
    result = service.deduct(g.organization, spend, g.idempotency)
    return json_response(result.to_json(), 201)


@bp.post("/credits/deduct-batch")
@idempotent(201)
def deduct_batch() -> Response:
    lines = schemas.body(schemas.BATCH)["lines"]
    spends = [schemas.spend(line) for line in lines]
    result = service.deduct_batch(g.organization, spends, g.idempotency)
    return json_response(result.to_json(), 201)


@bp.post("/credits/refund")
@idempotent(200)
def refund() -> Response:
    values = schemas.body(schemas.REFUND)
    result = service.refund(
        g.organization, values["deduction_id"], values["amount"], values["reason"], g.idempotency
    )
    return json_response(result.to_json())


@bp.post("/credits/reservations")
@idempotent(201)
def reserve() -> Response:
    values = schemas.body(schemas.RESERVE)
    result = service.reserve(
        g.organization,
        values["feature_key"],
        values["quantity"],
        values["expires_in"],
        g.idempotency,
    )
    return json_response(result.to_json(), 201)


@bp.post("/credits/reservations/<int:reservation_id>/capture")
@idempotent(200)
def capture(reservation_id: int) -> Response:
    quantity = schemas.body(schemas.CAPTURE)["quantity"]
    result = service.capture(g.organization, reservation_id, quantity, g.idempotency)
    return json_response(result.to_json())


@bp.post("/credits/reservations/<int:reservation_id>/release")
@idempotent(200)
def release(reservation_id: int) -> Response:
    schemas.body(schemas.RELEASE)
    result = service.release(g.organization, reservation_id, g.idempotency)
    return json_response(result.to_json())


@bp.get("/features")
def features() -> Response:
    return json_response({"data": [price.to_json() for price in queries.active_features()]})


@bp.get("/features/pricing")
def feature_pricing() -> Response:
    key = schemas.query(schemas.PRICING_QUERY)["key"]
    price = queries.feature_by_key(key)
    if price is None:
        raise FeatureNotFound(key)
    return json_response(price.to_json())


def _ledger_filter(values: dict[str, Any]) -> queries.LedgerFilter:
    return queries.LedgerFilter(
        organization_id=g.organization.id,
        start=values["from"],
        end=values["to"],
        feature_key=values["feature_key"],
        category=values["category"],
        department=values["department"],
    )


def _page_response(page: queries.Page) -> Response:
    cursor = None if page.next_position is None else page.next_position.encode()
    return json_response({"data": page.rows, "next_cursor": cursor})


@bp.get("/usage")
def usage() -> Response:
    values = schemas.query(schemas.USAGE_QUERY)
    page = queries.usage_page(
        _ledger_filter(values), limit=values["limit"], before=schemas.cursor(values)
    )
    return _page_response(page)


@bp.get("/usage/summary")
def usage_summary() -> Response:
    values = schemas.query(schemas.SUMMARY_QUERY)
    group_by = values["group_by"]
    rows = queries.usage_summary(_ledger_filter(values), group_by)
    total = sum((row["credits"] for row in rows), start=0)
    return json_response({"data": rows, "total": total, "group_by": group_by})


@bp.get("/transactions")
def transactions() -> Response:
    values = schemas.query(schemas.TRANSACTIONS_QUERY)
    filters = queries.LedgerFilter(organization_id=g.organization.id)
    kinds = (values["kind"],) if values["kind"] else None
    page = queries.ledger_page(
        filters, kinds=kinds, limit=values["limit"], before=schemas.cursor(values)
    )
    return _page_response(page)


@bp.get("/credits/grants")
def grants() -> Response:
    values = schemas.query(schemas.GRANTS_QUERY)
    page = queries.grants_page(
        g.organization, values["status"], limit=values["limit"], before=schemas.cursor(values)
    )
    return _page_response(page)


@bp.get("/departments")
def departments() -> Response:
    rows = queries.list_departments(g.organization.id)
    return json_response({"data": [queries.department_json(row) for row in rows]})


@bp.put("/departments/<name>/limit")
def department_limit(name: str) -> Response:
    name = schemas.department_name(name)
    limit = schemas.body(schemas.DEPARTMENT_LIMIT)["monthly_limit"]
    department = service.set_department_limit(g.organization.id, name, limit)
    return json_response(queries.department_json(department))


@bp.get("/webhook-endpoints")
def webhook_endpoints() -> Response:
    rows = webhooks.list_endpoints(g.organization.id)
    return json_response({"data": [webhooks.endpoint_json(row) for row in rows]})


@bp.post("/webhook-endpoints")
def create_webhook_endpoint() -> Response:
    values = schemas.body(webhook_schemas.CREATE_ENDPOINT)
    new = webhooks.create_endpoint(
        g.organization.id, values["url"], values["events"], values["description"]
    )
    return json_response(webhooks.endpoint_json(new.endpoint, secret=new.secret), 201)


@bp.delete("/webhook-endpoints/<endpoint_id>")
def delete_webhook_endpoint(endpoint_id: str) -> Response:
    endpoint_id = webhook_schemas.endpoint_id(endpoint_id)
    endpoint = webhooks.delete_endpoint(g.organization.id, endpoint_id)
    return json_response({"id": endpoint.public_id, "deleted": True})


@bp.post("/webhook-endpoints/<endpoint_id>/test")
def test_webhook_endpoint(endpoint_id: str) -> Response:
    endpoint_id = webhook_schemas.endpoint_id(endpoint_id)
    schemas.body(webhook_schemas.TEST_ENDPOINT)
    return json_response(webhook_delivery.send_test(g.organization.id, endpoint_id))


@bp.get("/openapi.json")
def openapi() -> Response:
    return json_response(openapi_document())
