"""JSON admin API: the pricing editor's operations and manual grants, for scripts.

Platform admins only, authenticated by the session cookie. Credits are JSON numbers, exact
both ways (``json_body`` keeps decimals; the app's JSON provider writes ``Decimal`` as is).
Errors have the one shape ``{"error": {"code", "message", "field"?}}``.

CSRF: the blueprint is exempt from Flask-WTF's form-token check, because JSON clients have no
form to carry one. Instead every POST and PATCH (and any DELETE with a body) must say
``Content-Type: application/json``: a cross-site HTML form can only send urlencoded,
multipart or text/plain bodies, and a cross-site ``fetch`` with a JSON content type needs a
CORS preflight, which this app never answers with permission. So a forged request cannot
reach a view that writes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from portal.auth.access import platform_admin_required
from portal.contract.fields import Amount, Body, Integer, Moment, String, check_text
from portal.contract.jsonbody import json_body
from portal.credits import manual, pricing
from portal.credits.models import FeaturePrice
from portal.credits.organizations import get_by_slug
from portal.errors import InvalidRequest, PortalError
from portal.extensions import csrf
from portal.money import MAX_MICROS

bp = Blueprint("admin_api", __name__, url_prefix="/api/admin")
csrf.exempt(bp)  # see the module docstring: the JSON content type stands in for the token

# JSON field -> the service's field; "credits" is micro-credits there.
JSON_FIELDS = {
    "feature_key": "feature_key",
    "name": "name",
    "category": "category",
    "credits": "credits_per_unit",
    "unit": "unit",
    "description": "description",
    "active": "active",
}


class UnsupportedMediaType(PortalError):
    status = 415
    code = "unsupported_media_type"


def json_request(view: Callable) -> Callable:
    """Refuse writes whose body is not declared as JSON (the CSRF defence above)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        has_body = request.method != "DELETE" or bool(request.get_data(cache=True))
        if has_body and not request.is_json:
            raise UnsupportedMediaType(
                "Send a JSON body with the header Content-Type: application/json."
            )
        return view(*args, **kwargs)

    return wrapper


def feature_json(price: FeaturePrice) -> dict[str, Any]:
    return {
        "id": price.id,
        **price.to_json(),
        "archived": price.archived_at is not None,
        "archived_at": price.archived_at,
        "created_at": price.created_at,
        "updated_at": price.updated_at,
    }


CREDITS = Amount("Credits per unit.", maximum=MAX_MICROS, allow_zero=True)


def _values(body: dict[str, Any]) -> dict[str, Any]:
    """The body's fields under the service's names; credits parsed to micro-credits.

    The pricing service validates each value; here unknown fields are refused, strings are
    checked for NUL and lone surrogates, and credits are bounded before conversion.
    """
    for name, value in body.items():
        if name not in JSON_FIELDS:
            raise InvalidRequest(name[:100], "is not a field of a feature price")
        if type(value) is str:
            check_text(value, name)
    values = {JSON_FIELDS[name]: value for name, value in body.items() if name != "credits"}
    if "credits" in body:
        if body["credits"] is None:
            raise InvalidRequest("credits", "must be a number")
        values["credits_per_unit"] = CREDITS.parse(body["credits"], "credits")
    return values


@bp.get("/feature-pricing")
@platform_admin_required
def list_features() -> ResponseReturnValue:
    """``?q=`` searches key, name, category and description; ``?status=`` as on the page."""
    prices = pricing.list_features(request.args.get("q", ""), request.args.get("status", "current"))
    return jsonify({"data": [feature_json(price) for price in prices]})


@bp.post("/feature-pricing")
@platform_admin_required
@json_request
def create_feature() -> ResponseReturnValue:
    values = _values(json_body())
    for required in ("feature_key", "name", "credits_per_unit"):
        if required not in values:
            raise InvalidRequest(pricing.PUBLIC_NAMES.get(required, required), "is required")
    draft = pricing.FeatureDraft(
        feature_key=values.pop("feature_key"),
        name=values.pop("name"),
        credits_per_unit=values.pop("credits_per_unit"),
        **{field: value for field, value in values.items() if value is not None},
    )
    price = pricing.create_feature(draft, user_id=current_user.id)
    response = jsonify(feature_json(price))
    response.status_code = 201
    response.headers["Location"] = url_for("admin_api.get_feature", price_id=price.id)
    return response


@bp.get("/feature-pricing/<int:price_id>")
@platform_admin_required
def get_feature(price_id: int) -> ResponseReturnValue:
    return jsonify(feature_json(pricing.get_feature(price_id)))


@bp.patch("/feature-pricing/<int:price_id>")
@platform_admin_required
@json_request
def update_feature(price_id: int) -> ResponseReturnValue:
    values = _values(json_body())
    feature_key = values.pop("feature_key", None)
    if feature_key is not None and feature_key != pricing.get_feature(price_id).feature_key:
        raise InvalidRequest(
            "feature_key", "cannot change (ledger rows name it); create a new feature instead"
        )
    price = pricing.update_feature(price_id, values, user_id=current_user.id)
    return jsonify(feature_json(price))


@bp.delete("/feature-pricing/<int:price_id>")
@platform_admin_required
@json_request
def delete_feature(price_id: int) -> ResponseReturnValue:
    """Deleted if never used, else archived; ``result`` says which."""
    removal = pricing.delete_feature(price_id, user_id=current_user.id)
    return jsonify({"result": removal.outcome, "feature": feature_json(removal.price)})


@bp.post("/feature-pricing/<int:price_id>/restore")
@platform_admin_required
@json_request
def restore_feature(price_id: int) -> ResponseReturnValue:
    """Un-archive a feature; it comes back inactive."""
    return jsonify(feature_json(pricing.restore_feature(price_id, user_id=current_user.id)))


# --- manual grants ---------------------------------------------------------------------------

# Bounds here are manual.ManualGrant's own, so the body is refused before anything converts it
# (a 100,000-digit amount) with the same words the CLI and the admin page use.
GRANT = Body(
    {
        "amount": Amount(
            "Credits to add; a negative amount takes them (an adjustment, in burn order).",
            maximum=manual.MAX_CREDITS,
            allow_negative=True,
            required=True,
        ),
        "reason": String("Why; shown in the ledger.", max_length=manual.MAX_REASON, required=True),
        "expires_in_days": Integer(
            "Expire this many days from now.", minimum=1, maximum=manual.MAX_EXPIRY_DAYS
        ),
        "expires_at": Moment("Expire at this moment: an ISO 8601 datetime, or a date (its start)."),
        "priority": Integer(
            "Burn order, lowest first (default 10).",
            minimum=manual.MIN_PRIORITY,
            maximum=manual.MAX_PRIORITY,
        ),
    }
)


@bp.post("/organizations/<slug>/grants")
@platform_admin_required
@json_request
def create_grant(slug: str) -> ResponseReturnValue:
    """``{amount, reason, expires_in_days? | expires_at?, priority?}`` → 201 with the grant
    (``id, kind, amount, remaining, priority, expires_at, description, created_at,
    source_type``). A negative amount makes no grant: 201 with its ``adjustment`` ledger row.
    Errors: 422 ``invalid_request`` (naming the field; both expiries, an expiry in the past,
    an expiry or priority on a negative amount), 402 ``insufficient_credits``, 404."""
    values = GRANT.parse(json_body())
    organization = get_by_slug(slug)
    wanted = manual.ManualGrant(
        values["amount"],
        values["reason"],
        values["expires_in_days"],
        expires_at=values["expires_at"],
        priority=values["priority"],
    )
    granted = manual.give(organization.id, wanted, user_id=current_user.id)
    response = jsonify(manual.granted_json(granted))
    response.status_code = 201
    return response
