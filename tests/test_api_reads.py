"""Reads: features, pricing (public), usage, usage summary, transactions and departments."""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest

from portal.credits import queries, service
from portal.money import MICRO, micros_to_decimal
from portal.timeutil import month_start, utcnow
from tests.conftest import assert_error, credits, ledger_rows

PRICES = {"img": ("5", "Image Generation"), "chat": ("0.5", "Text"), "clip": ("2.25", "Video")}
# (feature, quantity, days ago, department)
HISTORY = [
    ("img", 2, 10, "Research"),
    ("chat", 3, 5, None),
    ("clip", 1, 5, "Marketing"),
    ("img", 1, 1, "Research"),
    ("chat", 4, 1, None),
]


@pytest.fixture
def org(make_org, make_price):
    for key, (price, category) in PRICES.items():
        make_price(key, price, category=category)
    make_price("retired", "1", category="Text", active=False)
    return make_org(balance=200)


def newest_first(rows):
    """The listings' order: newest first by time, then by id (imports sit where they happened)."""
    return sorted(rows, key=lambda row: (row.created_at, row.id), reverse=True)


@pytest.fixture
def history(api, org):
    """Deductions over the last ten days, one of them today and partly refunded."""
    departments = {
        name: service.set_department_limit(org.id, name, None).id
        for name in ("Research", "Marketing")
    }
    now = utcnow()
    entries = []
    for feature_key, quantity, days_ago, department in HISTORY:
        unit_price = credits(PRICES[feature_key][0])
        entries.append(
            service.HistoricEntry(
                "deduct",
                -unit_price * quantity,
                now - timedelta(days=days_ago),
                feature_key,
                unit_price,
                quantity * MICRO,
                departments.get(department),
                user_ref="ana",
            )
        )
    service.import_history(org.id, entries)
    today = api.post(
        "/credits/deduct",
        org,
        json={"feature_key": "clip", "quantity": 2, "department": "Research"},
    ).json
    api.post("/credits/refund", org, json={"deduction_id": today["deduction_id"], "amount": 1})
    return today


def deductions(org):
    return [row for row in ledger_rows(org.id) if row.kind == "deduct"]


def department_names(org):
    return {department.id: department.name for department in queries.list_departments(org.id)}


def get_all_pages(api, org, path, **params):
    """Follow next_cursor to the end; returns every row and how many pages it took."""
    rows, pages, cursor = [], 0, None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = api.get(path, org, query_string=query)
        assert r.status_code == 200, r.json
        rows += r.json["data"]
        pages += 1
        cursor = r.json["next_cursor"]
        if cursor is None:
            return rows, pages


# --- features ----------------------------------------------------------------------------------


def test_features_lists_active_prices(api, org):
    r = api.get("/features", org)
    assert r.status_code == 200
    expected = sorted(
        (
            {
                "feature_key": key,
                "name": key.capitalize(),
                "category": category,
                "credits": Decimal(price),
                "unit": "call",
                "description": None,
                "active": True,
            }
            for key, (price, category) in PRICES.items()
        ),
        key=lambda row: (row["category"], row["feature_key"]),
    )
    assert r.json == {"data": expected}


def test_feature_pricing_needs_no_key(api, org):
    price, category = PRICES["clip"]
    r = api.get("/features/pricing", query_string={"key": "clip"})
    assert r.status_code == 200
    assert r.json == {
        "feature_key": "clip",
        "name": "Clip",
        "category": category,
        "credits": Decimal(price),
        "unit": "call",
        "description": None,
        "active": True,
    }
    retired = api.get("/features/pricing", query_string={"key": "retired"})
    assert (retired.status_code, retired.json["active"]) == (200, False)


def test_feature_pricing_errors(api, org):
    assert_error(
        api.get("/features/pricing", query_string={"key": "nope"}), 404, "feature_not_found"
    )
    assert_error(api.get("/features/pricing"), 422, "invalid_request", field="key")


# --- usage -------------------------------------------------------------------------------------


def test_usage(api, org, history):
    r = api.get("/usage", org)
    assert r.status_code == 200
    assert r.json["next_cursor"] is None
    rows = deductions(org)
    assert [row["id"] for row in r.json["data"]] == [row.id for row in newest_first(rows)]
    newest = r.json["data"][0]
    assert newest == {
        "id": history["deduction_id"],
        "feature_key": "clip",
        "quantity": 2,
        "unit_price": Decimal(PRICES["clip"][0]),
        "credits": history["credits_deducted"],
        "credits_refunded": 1,
        "department": "Research",
        "user": None,
        "description": None,
        "metadata": None,
        "reservation_id": None,
        "created_at": newest["created_at"],
    }
    assert newest["created_at"].endswith("Z")
    oldest = r.json["data"][-1]
    feature_key, quantity, _, department = HISTORY[0]
    assert (oldest["feature_key"], oldest["quantity"], oldest["department"]) == (
        feature_key,
        quantity,
        department,
    )
    assert oldest["credits"] == Decimal(PRICES[feature_key][0]) * quantity


def usage_filters():
    """(query, predicate over a ledger row): each filter and what it must select."""
    now = utcnow()
    since = (now - timedelta(days=6)).date()
    until = (now - timedelta(days=2)).date()
    return [
        ({"feature_key": "img"}, lambda row, names: row.feature_key == "img"),
        ({"department": "Research"}, lambda row, names: names.get(row.department_id) == "Research"),
        ({"category": "Text"}, lambda row, names: row.feature_key == "chat"),
        ({"from": since.isoformat()}, lambda row, names: row.created_at.date() >= since),
        ({"to": until.isoformat()}, lambda row, names: row.created_at.date() <= until),
        (
            {"from": since.isoformat(), "to": until.isoformat(), "feature_key": "chat"},
            lambda row, names: (
                since <= row.created_at.date() <= until and row.feature_key == "chat"
            ),
        ),
    ]


def test_usage_filters(api, org, history):
    names = department_names(org)
    rows = deductions(org)
    for query, selects in usage_filters():
        r = api.get("/usage", org, query_string=query)
        assert r.status_code == 200, (query, r.json)
        expected = [row.id for row in newest_first(rows) if selects(row, names)]
        assert expected, query  # every filter selects something and leaves something out
        assert len(expected) < len(rows), query
        assert [row["id"] for row in r.json["data"]] == expected, query


def test_usage_pages_with_a_cursor(api, org, history):
    everything = api.get("/usage", org).json["data"]
    rows, pages = get_all_pages(api, org, "/usage", limit=2)
    assert rows == everything
    assert pages == -(-len(everything) // 2)
    filtered, _ = get_all_pages(api, org, "/usage", limit=1, feature_key="img")
    assert [row["id"] for row in filtered] == [
        row["id"] for row in everything if row["feature_key"] == "img"
    ]


BAD_USAGE_QUERIES = [
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": "aWQ6eA"}, "cursor"),  # "id:x"
    ({"from": "last week"}, "from"),
    ({"to": "2026-13-01"}, "to"),
    ({"department": "no/slashes"}, "department"),
]


def test_usage_refuses_bad_parameters(api, org, subtests):
    for query, field in BAD_USAGE_QUERIES:
        with subtests.test(**query):
            r = api.get("/usage", org, query_string=query)
            assert_error(r, 422, "invalid_request", field=field)


def test_usage_limit_bounds_are_inclusive(api, org, history):
    assert len(api.get("/usage", org, query_string={"limit": 1}).json["data"]) == 1
    assert api.get("/usage", org, query_string={"limit": 500}).status_code == 200


# --- usage summary -----------------------------------------------------------------------------


def expected_summary(org, group_by, since=None):
    names = department_names(org)
    keys = {
        "feature": lambda row: row.feature_key,
        "category": lambda row: PRICES[row.feature_key][1],
        "day": lambda row: row.created_at.date().isoformat(),
        "department": lambda row: names.get(row.department_id),
    }
    credits_by, count_by = defaultdict(int), defaultdict(int)
    for row in ledger_rows(org.id):
        if row.kind not in ("deduct", "refund") or (since and row.created_at.date() < since):
            continue
        key = keys[group_by](row)
        credits_by[key] -= row.amount
        count_by[key] += row.kind == "deduct"
    data = [
        {"key": key, "credits": micros_to_decimal(total), "count": count_by[key]}
        for key, total in credits_by.items()
    ]
    if group_by == "day":
        data.sort(key=lambda row: row["key"])
    else:
        data.sort(key=lambda row: (-row["credits"], row["key"] or ""))
    return data


def test_usage_summary(api, org, history, subtests):
    since = (utcnow() - timedelta(days=2)).date()
    for group_by in ("feature", "category", "day", "department"):
        with subtests.test(group_by=group_by):
            r = api.get("/usage/summary", org, query_string={"group_by": group_by})
            assert r.status_code == 200, r.json
            expected = expected_summary(org, group_by)
            assert r.json["data"] == expected
            assert r.json["total"] == sum(row["credits"] for row in expected)
            query = {"group_by": group_by, "from": since.isoformat()}
            recent = api.get("/usage/summary", org, query_string=query)
            assert recent.json["data"] == expected_summary(org, group_by, since)


def test_usage_summary_groups_by_feature_by_default(api, org, history):
    r = api.get("/usage/summary", org)
    assert r.json["data"] == expected_summary(org, "feature")


def test_usage_summary_refuses_an_unknown_grouping(api, org):
    r = api.get("/usage/summary", org, query_string={"group_by": "user"})
    assert_error(r, 422, "invalid_request", field="group_by")


# --- transactions ------------------------------------------------------------------------------


def test_transactions(api, org, history):
    rows, pages = get_all_pages(api, org, "/transactions", limit=3)
    ledger = newest_first(ledger_rows(org.id))
    assert pages == -(-len(ledger) // 3)
    assert [row["id"] for row in rows] == [row.id for row in ledger]
    assert [row["kind"] for row in rows] == [row.kind for row in ledger]
    assert {"grant", "deduct", "refund"} == {row["kind"] for row in rows}
    for row, entry in zip(rows, ledger, strict=True):
        assert row["amount"] == micros_to_decimal(entry.amount)
        assert row["balance_after"] == micros_to_decimal(entry.balance_after)
        assert row["created_at"].endswith("Z")
    refund = rows[0]
    assert (refund["kind"], refund["refund_of"]) == ("refund", history["deduction_id"])
    assert api.get("/balance", org).json["balance"] == rows[0]["balance_after"]


def test_transactions_limit_is_validated(api, org):
    assert_error(api.get("/transactions", org, query_string={"limit": 0}), 422, "invalid_request")


# --- departments -------------------------------------------------------------------------------


def test_departments(api, org, history):
    r = api.get("/departments", org)
    assert r.status_code == 200
    start = month_start(utcnow())
    names = department_names(org)
    used = defaultdict(int)
    for row in ledger_rows(org.id):
        if row.department_id and row.created_at >= start:
            used[names[row.department_id]] -= row.amount
    assert r.json == {
        "data": [
            {"name": name, "monthly_limit": None, "used_this_month": micros_to_decimal(used[name])}
            for name in ("Marketing", "Research")
        ]
    }


def test_put_department_limit(api, org):
    r = api.put("/departments/Data Science/limit", org, json={"monthly_limit": Decimal("12.5")})
    assert r.status_code == 200, r.json
    assert r.json == {
        "name": "Data Science",
        "monthly_limit": Decimal("12.5"),
        "used_this_month": 0,
    }
    api.post("/credits/deduct", org, json={"feature_key": "img", "department": "Data Science"})
    cleared = api.put("/departments/Data Science/limit", org, json={"monthly_limit": None})
    assert cleared.json == {
        "name": "Data Science",
        "monthly_limit": None,
        "used_this_month": Decimal(PRICES["img"][0]),
    }
    assert api.get("/departments", org).json["data"] == [cleared.json]


def test_a_zero_limit_stops_all_spending(api, org, db_state):
    assert api.put("/departments/Frozen/limit", org, json={"monthly_limit": 0}).status_code == 200
    before = db_state()
    r = api.post("/credits/deduct", org, json={"feature_key": "chat", "department": "Frozen"})
    assert_error(r, 402, "department_limit_exceeded", limit=0, used=0)
    assert db_state() == before


BAD_LIMITS = [
    ("Ops", {}, "monthly_limit"),
    ("Ops", {"monthly_limit": -1}, "monthly_limit"),
    ("Ops", {"monthly_limit": "10"}, "monthly_limit"),
    ("Ops", {"monthly_limit": Decimal("0.0000001")}, "monthly_limit"),
    ("Ops", {"monthly_limit": Decimal("1e30")}, "monthly_limit"),
    ("-Ops", {"monthly_limit": 1}, "name"),
]


def test_put_department_limit_refuses_bad_input(api, org, db_state, subtests):
    before = db_state()
    for name, body, field in BAD_LIMITS:
        with subtests.test(name=name, body=str(body)):
            r = api.put(f"/departments/{name}/limit", org, json=body)
            assert_error(r, 422, "invalid_request", field=field)
    assert db_state() == before
