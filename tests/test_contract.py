"""The declared contract agrees with itself: what a body's JSON Schema (as published in the
OpenAPI document) accepts, its parser accepts, and the reverse; and the mismatches issue 8
found between the document and the code are gone."""

from __future__ import annotations

from decimal import Decimal

import pytest
from jsonschema import Draft202012Validator

from portal.credits import schemas
from portal.credits.openapi import OPERATIONS, error_codes, openapi_document
from portal.errors import InvalidRequest

SPEND_SAMPLES = [
    {"feature_key": "gen"},
    {"feature_key": "gen", "quantity": 1},
    {"feature_key": "gen", "quantity": Decimal("0.000001")},
    {"feature_key": "gen", "quantity": Decimal("0.0000001")},  # 7 places: refused by both
    {"feature_key": "gen", "quantity": Decimal("1.5000000")},  # 7 digits, 1 place: fine
    {"feature_key": "gen", "quantity": 1_000_000},
    {"feature_key": "gen", "quantity": 1_000_001},
    {"feature_key": "gen", "quantity": Decimal("1e30")},
    {"feature_key": "gen", "quantity": 0},
    {"feature_key": "gen", "quantity": -1},
    {"feature_key": "gen", "quantity": "1"},
    {"feature_key": ""},
    {"feature_key": " "},
    {"feature_key": "Gen"},
    {"feature_key": "gen", "department": "Support"},
    {"feature_key": "gen", "department": "Support "},
    {"feature_key": "gen", "department": ""},
    {"feature_key": "gen", "user": " "},
    {"feature_key": "gen", "user": "\x1c"},  # not whitespace to JSON Schema: kept
    {"feature_key": "gen", "user": "\t\n"},
    {"feature_key": "gen", "user": "a\x00"},
    {"feature_key": "gen", "description": "x" * 500},
    {"feature_key": "gen", "description": "x" * 501},
    {"feature_key": "gen", "metadata": {"a": [1, "b", None, True]}},
    {"feature_key": "gen", "metadata": {"a": {"b": {"c": {"d": 1}}}}},
    {"feature_key": "gen", "metadata": {"a": {"b": {"c": {"d": {"e": 1}}}}}},
    {"feature_key": "gen", "metadata": {"n": 10**16}},
    {"feature_key": "gen", "metadata": []},
    {"feature_key": "gen", "departmnet": "Support"},
    {"quantity": 1},
]
SAMPLES = [
    *((schemas.SPEND, body) for body in SPEND_SAMPLES),
    (schemas.BATCH, {"lines": [{"feature_key": "gen"}]}),
    (schemas.BATCH, {"lines": []}),
    (schemas.BATCH, {"lines": [{"feature_key": "gen"}] * 101}),
    (schemas.BATCH, {"lines": [{"feature_key": "gen", "x": 1}]}),
    (schemas.REFUND, {"deduction_id": 1}),
    (schemas.REFUND, {"deduction_id": 0}),
    (schemas.REFUND, {"deduction_id": 2**63 - 1}),
    (schemas.REFUND, {"deduction_id": 2**63}),
    (schemas.REFUND, {"deduction_id": Decimal("1.5")}),
    (schemas.REFUND, {"deduction_id": True}),
    (schemas.REFUND, {"deduction_id": 1, "amount": Decimal("0.5"), "reason": "late"}),
    (schemas.REFUND, {"deduction_id": 1, "credits": 2}),
    (schemas.RESERVE, {"feature_key": "gen", "expires_in": 86_400}),
    (schemas.RESERVE, {"feature_key": "gen", "expires_in": 86_401}),
    (schemas.RESERVE, {"feature_key": "gen", "expires_in": 0}),
    (schemas.CAPTURE, {}),
    (schemas.CAPTURE, {"quantity": Decimal("2.5")}),
    (schemas.RELEASE, {}),
    (schemas.RELEASE, {"reason": "x"}),
    (schemas.DEPARTMENT_LIMIT, {"monthly_limit": None}),
    (schemas.DEPARTMENT_LIMIT, {"monthly_limit": 0}),
    (schemas.DEPARTMENT_LIMIT, {}),
]


def accepted_by_parser(definition, body) -> bool:
    try:
        definition.parse(body)
    except InvalidRequest:
        return False
    return True


def as_json_value(value):
    """What jsonschema sees of a body: Decimals as the numbers JSON carries."""
    if isinstance(value, dict):
        return {key: as_json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json_value(item) for item in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@pytest.mark.parametrize(("definition", "body"), SAMPLES, ids=[str(b)[:60] for _, b in SAMPLES])
def test_the_schema_and_the_parser_agree(definition, body):
    validator = Draft202012Validator(definition.json_schema())
    assert validator.is_valid(as_json_value(body)) == accepted_by_parser(definition, body)


def test_the_document_uses_the_parsers_own_schemas():
    document = openapi_document()
    for (method, path), operation in OPERATIONS.items():
        published = document["paths"][path][method]
        if operation.body is not None:
            schema = published["requestBody"]["content"]["application/json"]["schema"]
            assert schema == operation.body.json_schema()
            assert schema["additionalProperties"] is False
        if operation.query is not None:
            names = {p["name"] for p in published["parameters"] if p["in"] == "query"}
            assert names == set(operation.query.fields)


def schema_of(method, path):
    body = openapi_document()["paths"][path][method]["requestBody"]
    return body["content"]["application/json"]["schema"]


def query_schema(path, name):
    parameters = openapi_document()["paths"][path]["get"]["parameters"]
    return next(p["schema"] for p in parameters if p["name"] == name)


def test_capture_defaults_to_the_whole_hold_and_says_so():
    quantity = schema_of("post", "/credits/reservations/{reservation_id}/capture")["properties"][
        "quantity"
    ]
    assert "default" not in quantity
    assert "whole reserved quantity" in quantity["description"]


@pytest.mark.parametrize("path", ["/usage", "/transactions"])
def test_limit_is_documented_as_the_code_takes_it(path):
    assert query_schema(path, "limit") == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 50,
    }
    with pytest.raises(InvalidRequest):
        schemas.USAGE_QUERY.parse({"limit": "0"})


def test_empty_feature_key_is_refused_and_documented_so():
    assert query_schema("/usage", "feature_key")["minLength"] == 1
    with pytest.raises(InvalidRequest):
        schemas.USAGE_QUERY.parse({"feature_key": ""})


def test_quantities_are_documented_with_six_places():
    quantity = schema_of("post", "/credits/deduct")["properties"]["quantity"]
    assert quantity["multipleOf"] == 0.000001
    assert (quantity["exclusiveMinimum"], quantity["maximum"]) == (0, 1_000_000)


def test_a_quantity_too_large_quotes_the_quantitys_maximum():
    with pytest.raises(InvalidRequest, match=r"at most 1,000,000$"):
        schemas.SPEND.parse({"feature_key": "gen", "quantity": Decimal("1e30")})


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_status_an_operation_can_answer_is_documented(method, path):
    operation = OPERATIONS[(method, path)]
    responses = openapi_document()["paths"][path][method]["responses"]
    statuses = {"414", "431", "429", "503"}
    statuses |= {"413", "400", "422"} if operation.body else set()
    statuses |= set() if operation.public else {"401"}
    assert statuses <= set(responses)
    for status in ("429", "503"):
        assert responses[status]["headers"]["Retry-After"]["required"] is True
    for status, codes in error_codes(operation).items():
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        assert schema["properties"]["error"]["properties"]["code"]["enum"] == list(codes)
