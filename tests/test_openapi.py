"""GET /api/v1/openapi.json: a valid OpenAPI document that covers the whole URL map."""

import re

import pytest
from openapi_spec_validator import validate

from portal import create_app

API_PREFIX = "/api/v1"


def fetch(client):
    r = client.get(f"{API_PREFIX}/openapi.json")  # public: no key needed
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    return r.json


@pytest.fixture(scope="module")
def plain_app():
    """The document needs no database, so most checks share one app instead of two per test."""
    return create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "TESTING": True})


@pytest.fixture(scope="module")
def document(plain_app):
    return fetch(plain_app.test_client())


def test_openapi_document_is_valid(client):
    document = fetch(client)
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": API_PREFIX}]


def documented_operations(document):
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def routed_operations(app):
    operations = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX) or rule.endpoint == "api.openapi":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(API_PREFIX))
        operations |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return operations


def test_every_api_rule_is_documented_and_nothing_else(plain_app, document):
    routed = routed_operations(plain_app)
    assert routed, "the URL map has no /api/v1 rules"
    assert routed == documented_operations(document)


def test_path_parameters_are_declared(document):
    for path, item in document["paths"].items():
        for name in re.findall(r"{(\w+)}", path):
            for operation in item.values():
                declared = {(p["name"], p["in"]) for p in operation.get("parameters", [])}
                assert (name, "path") in declared, path


# The success status and error codes of the contract table (issue 2, section 4).
CONTRACT = {
    ("GET", "/balance"): ("200", []),
    ("POST", "/credits/check"): ("200", ["feature_not_found"]),
    ("POST", "/credits/deduct"): (
        "201",
        ["insufficient_credits", "department_limit_exceeded", "feature_not_found"],
    ),
    ("POST", "/credits/refund"): ("200", ["deduction_not_found", "already_refunded"]),
    ("POST", "/credits/reservations"): ("201", ["insufficient_credits", "feature_not_found"]),
    ("POST", "/credits/reservations/{reservation_id}/capture"): ("200", ["reservation_not_open"]),
    ("POST", "/credits/reservations/{reservation_id}/release"): ("200", ["reservation_not_open"]),
    ("GET", "/features"): ("200", []),
    ("GET", "/features/pricing"): ("200", ["feature_not_found"]),
    ("GET", "/usage"): ("200", []),
    ("GET", "/usage/summary"): ("200", []),
    ("GET", "/transactions"): ("200", []),
    ("GET", "/credits/grants"): ("200", []),
    ("GET", "/departments"): ("200", []),
    ("PUT", "/departments/{name}/limit"): ("200", []),
}


@pytest.mark.parametrize(("method", "path"), CONTRACT)
def test_contract_statuses_and_codes_are_documented(document, method, path):
    success, codes = CONTRACT[(method, path)]
    operation = document["paths"][path][method.lower()]
    assert success in operation["responses"]
    described = " ".join(response["description"] for response in operation["responses"].values())
    for code in codes:
        assert code in described, code
    public = operation.get("security") == []
    assert public == (path == "/features/pricing")
    if not public:
        assert "401" in operation["responses"]


def test_idempotent_operations_declare_the_header(document):
    for path in ("/credits/deduct", "/credits/refund", "/credits/reservations"):
        parameters = document["paths"][path]["post"]["parameters"]
        assert ("Idempotency-Key", "header") in {(p["name"], p["in"]) for p in parameters}
