"""Hostile input to the JSON API: each is refused in milliseconds, in the error shape, and
writes nothing (issue 8: numbers too big to convert, unknown fields, NUL and surrogates, deep
nesting, ids past BIGINT, costs past the column range, far dates, oversized bodies)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.conftest import assert_error
from tests.web_helpers import Web

HUGE = "1" + "0" * 100_000  # a 100,001-digit integer literal


@pytest.fixture
def org(make_org, make_price):
    make_price("gen", "1.25")
    return make_org(balance=50)


@pytest.fixture
def deduction(api, org):
    r = api.post("/credits/deduct", org, json={"feature_key": "gen"})
    assert r.status_code == 201, r.json
    return r.json["deduction_id"]


@pytest.fixture
def hold(api, org):
    r = api.post("/credits/reservations", org, json={"feature_key": "gen", "quantity": 2})
    assert r.status_code == 201, r.json
    return r.json["reservation_id"]


def post_raw(api, path, org, raw: str):
    return api.post(path, org, data=raw.encode(), content_type="application/json")


# (path, raw JSON body, the field the error names)
HOSTILE_NUMBERS = [
    ("/credits/refund", '{"deduction_id": 1e1000000}', "deduction_id"),
    ("/credits/refund", '{"deduction_id": 1E+999999999}', "deduction_id"),
    ("/credits/refund", f'{{"deduction_id": {HUGE}}}', "deduction_id"),
    ("/credits/refund", '{"deduction_id": 9223372036854775808}', "deduction_id"),
    ("/credits/refund", '{"deduction_id": 1, "amount": 1e1000000}', "amount"),
    ("/credits/reservations", '{"feature_key": "gen", "expires_in": 1e1000000}', "expires_in"),
    ("/credits/reservations", f'{{"feature_key": "gen", "expires_in": {HUGE}}}', "expires_in"),
    ("/credits/reservations", '{"feature_key": "gen", "quantity": 1E+999999999}', "quantity"),
    ("/credits/deduct", '{"feature_key": "gen", "quantity": 1e1000000}', "quantity"),
    ("/credits/deduct", '{"feature_key": "gen", "quantity": 1e-1000000}', "quantity"),
    ("/credits/deduct", f'{{"feature_key": "gen", "quantity": {HUGE}}}', "quantity"),
    ("/credits/deduct", f'{{"feature_key": "gen", "metadata": {{"n": {HUGE}}}}}', "metadata"),
    ("/credits/deduct", '{"feature_key": "gen", "metadata": {"n": 1E+999999999}}', "metadata"),
    ("/credits/check", '{"feature_key": "gen", "quantity": 1e1000000}', "quantity"),
    (
        "/credits/deduct-batch",
        '{"lines": [{"feature_key": "gen", "quantity": 1e1000000}]}',
        "lines[0].quantity",
    ),
]


@pytest.mark.parametrize(("path", "raw", "field"), HOSTILE_NUMBERS)
def test_numbers_too_big_to_convert_are_refused_at_once(api, org, db_state, path, raw, field):
    before = db_state()
    # CPU time of this process (the app runs in it), so other load on the machine cannot
    # fail the test; before the fix one such body cost minutes.
    started = time.process_time()
    r = post_raw(api, path, org, raw)
    elapsed = time.process_time() - started
    assert_error(r, 422, "invalid_request", field=field)
    assert elapsed < 0.5, f"{elapsed:.2f} s of CPU to refuse one body"
    assert db_state() == before


def test_capture_refuses_a_huge_quantity_at_once(api, org, hold):
    r = post_raw(api, f"/credits/reservations/{hold}/capture", org, '{"quantity": 1e1000000}')
    assert_error(r, 422, "invalid_request", field="quantity")


@pytest.mark.parametrize(
    "path",
    [
        "/credits/reservations/9223372036854775808/capture",
        "/credits/reservations/9223372036854775808/release",
        "/credits/reservations/%s/capture" % ("9" * 40),
    ],
)
def test_ids_past_bigint_in_paths_are_not_found(api, org, path):
    assert_error(api.post(path, org, json={}), 404, "not_found")


def test_ids_past_bigint_on_admin_paths_are_not_found(client):
    web = Web(client)
    web.login_admin()
    r = client.get("/api/admin/feature-pricing/9223372036854775808")
    assert_error(r, 404, "not_found")


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 1000 + "]" * 1000,
        '{"feature_key": "gen", "metadata": ' + '{"a": ' * 1000 + "1" + "}" * 1001,
        '{"feature_key": "gen", "metadata": ' + '{"a": ' * 100 + "1" + "}" * 101,
    ],
)
def test_deeply_nested_json_is_invalid_json(api, org, db_state, raw):
    before = db_state()
    assert_error(post_raw(api, "/credits/deduct", org, raw), 400, "invalid_json")
    assert db_state() == before


# Raw JSON, so lone surrogates (which Python's own encoder would escape differently) go as sent.
TEXT_BODIES = [
    ('{"feature_key": "gen", "user": "a\\u0000b"}', "user"),
    ('{"feature_key": "gen", "description": "\\ud800"}', "description"),
    ('{"feature_key": "gen", "department": "Sup\\u0000port"}', "department"),
    ('{"feature_key": "g\\u0000en"}', "feature_key"),
    ('{"feature_key": "gen", "metadata": {"note": "x\\u0000"}}', "metadata"),
    ('{"feature_key": "gen", "metadata": {"x\\u0000": 1}}', "metadata"),
    ('{"feature_key": "gen", "metadata": {"list": ["\\udfff"]}}', "metadata"),
]


@pytest.mark.parametrize(("raw", "field"), TEXT_BODIES)
def test_nul_and_lone_surrogates_in_strings_are_refused(api, org, db_state, raw, field):
    before = db_state()
    assert_error(post_raw(api, "/credits/deduct", org, raw), 422, "invalid_request", field=field)
    assert db_state() == before


def test_nul_in_a_refund_reason_is_refused(api, org, deduction):
    raw = f'{{"deduction_id": {deduction}, "reason": "\\u0000"}}'
    assert_error(post_raw(api, "/credits/refund", org, raw), 422, "invalid_request", field="reason")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/features/pricing?key=a%00b", "key"),
        ("/features/pricing?key=%ED%A0%80", "key"),  # a lone surrogate, UTF-8 encoded
        ("/usage?feature_key=%00", "feature_key"),
        ("/usage?category=x%00", "category"),
        ("/usage/summary?department=%00", "department"),
        ("/transactions?cursor=%00", "cursor"),
    ],
)
def test_nul_and_surrogates_in_api_query_strings_are_refused(api, org, path, field):
    assert_error(api.get(path, org), 422, "invalid_request", field=field)


@pytest.fixture
def member(client, org):
    web = Web(client)
    web.login_member(org.id)
    return web


@pytest.mark.parametrize("path", ["/usage?feature=%00", "/usage.csv?category=%00"])
def test_nul_in_page_query_strings_is_a_400_page(client, member, path):
    r = client.get(path)
    assert r.status_code == 400
    assert r.mimetype == "text/html"


@pytest.mark.parametrize(
    "path",
    ["/admin/feature-pricing?q=%00", "/admin/organizations?q=%00", "/admin/organizations?q=a%00"],
)
def test_nul_in_admin_search_is_a_400_page(client, path):
    Web(client).login_admin()
    r = client.get(path)
    assert r.status_code == 400
    assert r.mimetype == "text/html"


def test_to_the_last_day_of_the_calendar(api, org, deduction, member, client):
    r = api.get("/usage?to=9999-12-31", org)
    assert r.status_code == 200, r.json
    assert [row["id"] for row in r.json["data"]] == [deduction]
    assert api.get("/usage/summary?to=9999-12-31", org).status_code == 200
    assert client.get("/usage?end=9999-12-31").status_code == 200
    csv = client.get("/usage.csv?end=9999-12-31")
    assert csv.status_code == 200
    assert len(csv.get_data(as_text=True).strip().splitlines()) == 2  # header and the row


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z"]
)
def test_datetimes_at_the_ends_of_the_calendar(api, org, moment):
    for name in ("from", "to"):
        assert api.get("/usage", org, query_string={name: moment}).status_code == 200


@pytest.fixture
def dear(make_price):
    make_price("dear", "1000000")  # a million credits per unit


COSTLY = [
    ("/credits/deduct", {"feature_key": "dear", "quantity": 1_000_000}, "quantity"),
    ("/credits/check", {"feature_key": "dear", "quantity": 1_000_000}, "quantity"),
    ("/credits/reservations", {"feature_key": "dear", "quantity": 1_000_000}, "quantity"),
    (
        "/credits/deduct-batch",
        {"lines": [{"feature_key": "gen"}, {"feature_key": "dear", "quantity": 1_000_000}]},
        "lines[1].quantity",
    ),
]


@pytest.mark.parametrize(("path", "body", "field"), COSTLY)
def test_a_cost_past_the_column_range_is_the_quantitys_fault(
    api, org, dear, db_state, path, body, field
):
    before = db_state()
    assert_error(api.post(path, org, json=body), 422, "invalid_request", field=field)
    assert db_state() == before


def test_capture_cannot_cost_more_than_its_hold(api, org, hold):
    r = api.post(f"/credits/reservations/{hold}/capture", org, json={"quantity": 1_000_000})
    assert_error(r, 409, "quantity_exceeds_reservation", field="quantity")


# --- unknown fields ---------------------------------------------------------------------------

UNKNOWN = [
    ("/credits/deduct", {"feature_key": "gen", "departmnet": "Support"}, "departmnet"),
    ("/credits/check", {"feature_key": "gen", "qty": 2}, "qty"),
    ("/credits/deduct-batch", {"lines": [{"feature_key": "gen"}], "dry_run": True}, "dry_run"),
    ("/credits/deduct-batch", {"lines": [{"feature_key": "gen", "x": 1}]}, "lines[0].x"),
    ("/credits/refund", {"deduction_id": "OWN", "credits": 2}, "credits"),
    ("/credits/reservations", {"feature_key": "gen", "expires": 60}, "expires"),
    ("/credits/reservations/HOLD/capture", {"quantity": 1, "amount": 1}, "amount"),
    ("/credits/reservations/HOLD/release", {"reason": "done"}, "reason"),
]


@pytest.mark.parametrize(("path", "body", "field"), UNKNOWN)
def test_unknown_fields_are_refused_by_name(api, org, deduction, hold, db_state, path, body, field):
    body = {name: deduction if value == "OWN" else value for name, value in body.items()}
    path = path.replace("HOLD", str(hold))
    before = db_state()
    error = assert_error(api.post(path, org, json=body), 422, "invalid_request", field=field)
    assert field in error["message"]
    assert db_state() == before


def test_unknown_field_on_a_department_limit(api, org, db_state):
    before = db_state()
    r = api.put("/departments/Support/limit", org, json={"monthly_limit": 5, "limit": 5})
    assert_error(r, 422, "invalid_request", field="limit")
    assert db_state() == before


def test_unknown_and_hostile_fields_on_the_admin_api(client):
    Web(client).login_admin()
    body = {"feature_key": "x_ray", "name": "X", "credits": 1, "price": 2}
    r = client.post("/api/admin/feature-pricing", json=body)
    assert_error(r, 422, "invalid_request", field="price")
    raw = '{"feature_key": "x_ray", "name": "X\\u0000", "credits": 1}'
    r = client.post("/api/admin/feature-pricing", data=raw, content_type="application/json")
    assert_error(r, 422, "invalid_request", field="name")
    raw = '{"feature_key": "x_ray", "name": "X", "credits": 1e1000000}'
    r = client.post("/api/admin/feature-pricing", data=raw, content_type="application/json")
    assert_error(r, 422, "invalid_request", field="credits")


# --- sizes ------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_in_the_json_shape(api, org, db_state):
    before = db_state()
    raw = '{"feature_key": "gen", "description": "%s"}' % ("x" * (1024 * 1024))
    assert_error(post_raw(api, "/credits/deduct", org, raw), 413, "request_entity_too_large")
    assert db_state() == before


def test_a_login_body_over_the_limit_is_a_413_page(client):
    r = client.post("/login", data={"email": "a@example.com", "password": "x" * (1024 * 1024)})
    assert r.status_code == 413
    assert r.mimetype == "text/html"


def test_the_webhook_has_a_smaller_limit(client):
    r = client.post(
        "/stripe/webhook", data=b"{" + b" " * (300 * 1024) + b"}", content_type="application/json"
    )
    assert_error(r, 413, "request_entity_too_large")


def test_body_limits_come_from_the_environment(monkeypatch, database_url):
    from portal import create_app

    monkeypatch.setenv("PORTAL_MAX_CONTENT_LENGTH", "1000")
    monkeypatch.setenv("PORTAL_WEBHOOK_MAX_CONTENT_LENGTH", "500")
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True})
    assert app.config["MAX_CONTENT_LENGTH"] == 1000
    assert app.config["PORTAL_WEBHOOK_MAX_CONTENT_LENGTH"] == 500
    r = app.test_client().post("/api/v1/credits/deduct", data=b"x" * 1001)
    assert_error(r, 413, "request_entity_too_large")


def test_an_overlong_url_is_414_in_the_json_shape(api, org):
    r = api.get("/usage?category=" + "x" * 5000, org)
    assert_error(r, 414, "uri_too_long")


@pytest.mark.parametrize(
    "headers",
    [{"X-Padding": "x" * 5000}, {f"X-Pad-{n}": "x" for n in range(70)}],
    ids=["one long header", "many headers"],
)
def test_overlong_headers_are_431_in_the_json_shape(api, org, headers):
    assert_error(api.get("/balance", org, headers=headers), 431, "request_header_fields_too_large")


def test_quantities_keep_exact_decimals(api, org):
    r = api.post(
        "/credits/check", org, json={"feature_key": "gen", "quantity": Decimal("0.000001")}
    )
    assert r.status_code == 200, r.json
