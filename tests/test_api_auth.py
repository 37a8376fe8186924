"""API keys on every endpoint, the error shape, malformed JSON and invalid fields."""

from decimal import Decimal

import pytest

from portal import create_app
from portal.credits import apikeys
from portal.credits.api import PUBLIC_ENDPOINTS
from tests.conftest import assert_error

API_PREFIX = "/api/v1"
PATH_ARGS = {"reservation_id": "1", "name": "Research"}


def api_routes():
    """(method, path) of every /api/v1 rule, read from the URL map itself."""
    url_map = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "TESTING": True}).url_map
    routes = []
    for rule in url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX):
            continue
        path = rule.rule.removeprefix(API_PREFIX)
        for name, value in PATH_ARGS.items():
            path = path.replace(f"<int:{name}>", value).replace(f"<{name}>", value)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append(pytest.param(method, path, rule.endpoint, id=f"{method} {rule.rule}"))
    return routes


ROUTES = api_routes()
PRIVATE_ROUTES = [route for route in ROUTES if route.values[2] not in PUBLIC_ENDPOINTS]


PRICE = Decimal("0.25")


@pytest.fixture
def org(make_org, make_price):
    make_price("gen", PRICE)
    return make_org(balance=10)


@pytest.fixture
def revoked_key(org):
    new = apikeys.create_api_key(org.id, "old key")
    apikeys.revoke_api_key(org.id, new.key.id)
    return new.secret


def test_the_url_map_has_the_contracts_endpoints():
    endpoints = {route.values[2] for route in ROUTES}
    assert len(PRIVATE_ROUTES) >= 13
    assert {"api.feature_pricing", "api.openapi"} <= endpoints


@pytest.mark.parametrize(("method", "path", "endpoint"), PRIVATE_ROUTES)
def test_every_authenticated_endpoint_refuses_a_missing_unknown_or_revoked_key(
    api, org, revoked_key, db_state, method, path, endpoint
):
    before = db_state()
    for authorization in (
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {org.api_key}",
        org.api_key,  # without the scheme
        "Bearer cpk_00000000_unknown",
        f"Bearer {org.api_key}x",
        f"Bearer {revoked_key}",
    ):
        headers = {} if authorization is None else {"Authorization": authorization}
        r = api.call(method, path, headers=headers, json={"feature_key": "gen"})
        assert_error(r, 401, "unauthorized")
    assert db_state() == before
    # ...while the organization's live key gets past authentication
    r = api.call(method, path, org, json={"feature_key": "gen", "monthly_limit": None})
    assert 200 <= r.status_code < 500 and r.status_code != 401, r.get_data(as_text=True)


def test_the_bearer_scheme_is_case_insensitive(api, org):
    r = api.get("/balance", headers={"Authorization": f"bearer {org.api_key}"})
    assert r.status_code == 200


def test_a_key_only_reaches_its_own_organization(api, org, make_org):
    other = make_org(balance=3)
    assert api.get("/balance", other).json["organization"] == other.slug
    assert api.get("/balance", org).json["organization"] == org.slug


ROUTING_ERRORS = [
    ("GET", "/nowhere", 404, "not_found"),
    ("GET", "/credits/deduct", 405, "method_not_allowed"),
    ("DELETE", "/balance", 405, "method_not_allowed"),
    ("POST", "/credits/reservations/abc/capture", 404, "not_found"),
]


def test_routing_errors_have_the_error_shape_too(api, org, subtests):
    for method, path, status, code in ROUTING_ERRORS:
        with subtests.test(method=method, path=path):
            assert_error(api.call(method, path, org), status, code)


BODY_ROUTES = [
    ("POST", "/credits/check"),
    ("POST", "/credits/deduct"),
    ("POST", "/credits/deduct-batch"),
    ("POST", "/credits/refund"),
    ("POST", "/credits/reservations"),
    ("POST", "/credits/reservations/1/capture"),
    ("POST", "/credits/reservations/1/release"),
    ("PUT", "/departments/Research/limit"),
]


MALFORMED = [
    '{"feature_key": "gen"',
    "{'feature_key': 'gen'}",
    '{"feature_key": "gen", "quantity": NaN}',
    '{"quantity": Infinity}',
    "[1, 2]",
    '"just a string"',
    "\xff\xfe",
]


def test_malformed_json_is_invalid_json_and_writes_nothing(api, org, db_state, subtests):
    before = db_state()
    for raw in MALFORMED:
        for method, path in BODY_ROUTES:
            with subtests.test(raw=raw, path=path):
                headers = {"Idempotency-Key": "malformed"}
                r = api.call(
                    method, path, org, data=raw, content_type="application/json", headers=headers
                )
                assert_error(r, 400, "invalid_json")
    assert db_state() == before


QUANTITY_ROUTES = ["/credits/check", "/credits/deduct", "/credits/reservations"]


INVALID_SPENDS = [
    ({}, "feature_key"),
    ({"feature_key": None}, "feature_key"),
    ({"feature_key": 5}, "feature_key"),
    ({"feature_key": ["gen"]}, "feature_key"),
    ({"feature_key": "  "}, "feature_key"),
    ({"feature_key": "gen", "quantity": "1"}, "quantity"),
    ({"feature_key": "gen", "quantity": True}, "quantity"),
    ({"feature_key": "gen", "quantity": [1]}, "quantity"),
    ({"feature_key": "gen", "quantity": {"n": 1}}, "quantity"),
    ({"feature_key": "gen", "quantity": 0}, "quantity"),
    ({"feature_key": "gen", "quantity": Decimal("0.000000")}, "quantity"),
    ({"feature_key": "gen", "quantity": -1}, "quantity"),
    ({"feature_key": "gen", "quantity": Decimal("-0.5")}, "quantity"),
    ({"feature_key": "gen", "quantity": Decimal("1000000.000001")}, "quantity"),
    ({"feature_key": "gen", "quantity": 10**7}, "quantity"),
    ({"feature_key": "gen", "quantity": Decimal("1e40")}, "quantity"),
    ({"feature_key": "gen", "quantity": Decimal("0.0000001")}, "quantity"),
    ({"feature_key": "gen", "quantity": Decimal("1.1234567")}, "quantity"),
]


def test_invalid_spends_name_the_field_and_write_nothing(api, org, db_state, subtests):
    before = db_state()
    for body, field in INVALID_SPENDS:
        for path in QUANTITY_ROUTES:
            with subtests.test(path=path, body=body):
                r = api.post(path, org, json=body, headers={"Idempotency-Key": "invalid"})
                error = assert_error(r, 422, "invalid_request", field=field)
                assert error["message"].startswith(f"{field}:")
    assert db_state() == before


INVALID_DEDUCT_FIELDS = [
    ({"department": 7}, "department"),
    ({"department": "no/slash"}, "department"),
    ({"user": 7}, "user"),
    ({"user": "u" * 256}, "user"),
    ({"description": ["x"]}, "description"),
    ({"description": "d" * 501}, "description"),
    ({"metadata": "text"}, "metadata"),
    ({"metadata": [1]}, "metadata"),
    ({"metadata": {"blob": "x" * 9000}}, "metadata"),
]


def test_invalid_deduct_fields_name_the_field_and_write_nothing(api, org, db_state, subtests):
    before = db_state()
    for body, field in INVALID_DEDUCT_FIELDS:
        with subtests.test(field=field, body=str(body)[:40]):
            r = api.post("/credits/deduct", org, json={"feature_key": "gen", **body})
            assert_error(r, 422, "invalid_request", field=field)
    assert db_state() == before


INVALID_BATCHES = [
    (None, "lines"),
    ("gen", "lines"),
    ([], "lines"),
    ([{"feature_key": "gen"}] * 101, "lines"),
    ([{"feature_key": "gen"}, "gen"], "lines[1]"),
    ([{"feature_key": "gen"}, {"quantity": 1}], "lines[1].feature_key"),
    ([{"feature_key": "gen", "quantity": -1}], "lines[0].quantity"),
]


def test_invalid_batches_name_the_field_and_write_nothing(api, org, db_state, subtests):
    before = db_state()
    for lines, field in INVALID_BATCHES:
        with subtests.test(field=field, lines=str(lines)[:40]):
            r = api.post("/credits/deduct-batch", org, json={"lines": lines})
            assert_error(r, 422, "invalid_request", field=field)
    assert db_state() == before


def test_the_largest_quantity_is_accepted(api, org):
    largest = 1_000_000
    r = api.post("/credits/check", org, json={"feature_key": "gen", "quantity": largest})
    assert (r.status_code, r.json["required"]) == (200, PRICE * largest)
