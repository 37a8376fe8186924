"""Idempotency-Key: replays, reuse, in-flight keys, stale claims, and what binds a key."""

from datetime import timedelta
from decimal import Decimal

import pytest
import simplejson
from sqlalchemy import select

from portal.credits import idempotency, service
from portal.credits.models import IdempotencyRecord
from portal.extensions import db
from portal.timeutil import utcnow
from tests.conftest import assert_error, credits, ledger_rows

PRICE = Decimal(2)
REPLAYED = "Idempotent-Replayed"


@pytest.fixture
def org(make_org, make_price):
    make_price("gen", PRICE)
    make_price("cheap", "0.5")
    return make_org(balance=20)


def keyed(key):
    return {"Idempotency-Key": key}


def open_hold(api, org):
    return api.post("/credits/reservations", org, json={"feature_key": "gen"}).json


def deduction(api, org):
    return api.post("/credits/deduct", org, json={"feature_key": "gen"}).json


# Each idempotent endpoint: (path, body) built against a fresh organization.
ENDPOINTS = {
    "deduct": lambda api, org: ("/credits/deduct", {"feature_key": "gen", "quantity": 2}),
    "deduct-batch": lambda api, org: (
        "/credits/deduct-batch",
        {"lines": [{"feature_key": "gen"}, {"feature_key": "cheap", "quantity": 3}]},
    ),
    "refund": lambda api, org: (
        "/credits/refund",
        {"deduction_id": deduction(api, org)["deduction_id"], "amount": 1},
    ),
    "reserve": lambda api, org: ("/credits/reservations", {"feature_key": "gen"}),
    "capture": lambda api, org: (
        f"/credits/reservations/{open_hold(api, org)['reservation_id']}/capture",
        {"quantity": Decimal("0.5")},
    ),
    "release": lambda api, org: (
        f"/credits/reservations/{open_hold(api, org)['reservation_id']}/release",
        {},
    ),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_retry_replays_the_first_response_and_writes_nothing(api, org, db_state, endpoint):
    path, body = ENDPOINTS[endpoint](api, org)
    first = api.post(path, org, json=body, headers=keyed("retry-1"))
    assert first.status_code in (200, 201), first.json
    assert REPLAYED not in first.headers
    after_first = db_state()
    for _ in range(2):
        again = api.post(path, org, json=body, headers=keyed("retry-1"))
        assert (again.status_code, again.get_data()) == (first.status_code, first.get_data())
        assert again.headers[REPLAYED] == "true"
    assert db_state() == after_first


def test_a_replay_returns_the_first_answer_even_after_the_balance_moved(api, org):
    body = {"feature_key": "gen"}
    first = api.post("/credits/deduct", org, json=body, headers=keyed("k"))
    api.post("/credits/deduct", org, json=body)  # a different, unkeyed deduct
    again = api.post("/credits/deduct", org, json=body, headers=keyed("k"))
    assert again.json == first.json
    assert api.get("/balance", org).json["balance"] == first.json["remaining_credits"] - PRICE


OTHER_REQUESTS = [
    ("/credits/deduct", {"feature_key": "gen", "quantity": 3}),
    ("/credits/deduct", {"feature_key": "cheap"}),
    ("/credits/deduct", {"feature_key": "gen", "description": "other"}),
    ("/credits/reservations", {"feature_key": "gen"}),
]


def test_the_same_key_with_another_request_is_refused(api, org, db_state, subtests):
    first = api.post("/credits/deduct", org, json={"feature_key": "gen"}, headers=keyed("k"))
    assert first.status_code == 201
    before = db_state()
    for path, body in OTHER_REQUESTS:
        with subtests.test(path=path, body=body):
            r = api.post(path, org, json=body, headers=keyed("k"))
            assert_error(r, 422, "idempotency_key_reused")
    assert db_state() == before


def test_a_402_does_not_bind_the_key(api, make_org, make_price, db_state):
    make_price("gen", PRICE)
    org = make_org(balance=1)
    body = {"feature_key": "gen"}
    before = db_state()
    assert_error(
        api.post("/credits/deduct", org, json=body, headers=keyed("k")), 402, "insufficient_credits"
    )
    assert db_state() == before
    service.grant(org.id, credits(10), "purchase", description="top-up")
    r = api.post("/credits/deduct", org, json=body, headers=keyed("k"))
    assert r.status_code == 201
    assert REPLAYED not in r.headers
    assert r.json["remaining_credits"] == 1 + 10 - PRICE


def test_other_failures_do_not_bind_the_key_either(api, org, db_state, subtests):
    for key, failing, status in (
        ("invalid", {"feature_key": "gen", "quantity": 0}, 422),
        ("unknown", {"feature_key": "nope"}, 404),
    ):
        with subtests.test(status=status):
            before = db_state()
            r = api.post("/credits/deduct", org, json=failing, headers=keyed(key))
            assert r.status_code == status
            assert db_state() == before
            ok = api.post("/credits/deduct", org, json={"feature_key": "gen"}, headers=keyed(key))
            assert (ok.status_code, REPLAYED in ok.headers) == (201, False)


def claim_by_hand(org, key, body, age):
    """A pending claim as another request would leave it, ``age`` ago."""
    fingerprint = idempotency.fingerprint(
        "POST",
        "/api/v1/credits/deduct",
        simplejson.dumps(body, sort_keys=True, separators=(",", ":"), use_decimal=True),
    )
    moment = utcnow() - age
    db.session.add(
        IdempotencyRecord(
            organization_id=org.id,
            key=key,
            fingerprint=fingerprint,
            state="pending",
            lock_token="someone-else",
            locked_at=moment,
            created_at=moment,
        )
    )
    db.session.commit()


def test_a_key_still_in_flight_gets_409(api, org, db_state):
    body = {"feature_key": "gen"}
    claim_by_hand(org, "busy", body, timedelta(seconds=5))
    before = db_state()
    r = api.post("/credits/deduct", org, json=body, headers=keyed("busy"))
    assert_error(r, 409, "idempotency_key_in_use")
    assert db_state() == before


def test_a_stale_claim_is_taken_over(api, org):
    body = {"feature_key": "gen"}
    claim_by_hand(org, "stale", body, idempotency.STALE_CLAIM_AFTER + timedelta(seconds=1))
    r = api.post("/credits/deduct", org, json=body, headers=keyed("stale"))
    assert (r.status_code, REPLAYED in r.headers) == (201, False)
    record = db.session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == "stale"))
    assert record.state == "done"
    again = api.post("/credits/deduct", org, json=body, headers=keyed("stale"))
    assert (again.get_data(), again.headers[REPLAYED]) == (r.get_data(), "true")
    assert [row.kind for row in ledger_rows(org.id)] == ["grant", "deduct"]


def test_keys_are_per_organization(api, org, make_org):
    other = make_org(balance=20)
    body = {"feature_key": "gen"}
    mine = api.post("/credits/deduct", org, json=body, headers=keyed("shared"))
    theirs = api.post("/credits/deduct", other, json=body, headers=keyed("shared"))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert REPLAYED not in theirs.headers
    assert mine.json["deduction_id"] != theirs.json["deduction_id"]
    assert [row.kind for row in ledger_rows(other.id)] == ["grant", "deduct"]


def test_deduct_batch_is_all_or_nothing_and_idempotent_as_a_whole(
    api, make_org, make_price, db_state
):
    make_price("gen", PRICE)
    make_price("cheap", "0.5")
    org = make_org(balance=PRICE)
    body = {"lines": [{"feature_key": "gen"}, {"feature_key": "cheap"}]}
    before = db_state()
    r = api.post("/credits/deduct-batch", org, json=body, headers=keyed("batch"))
    assert_error(r, 402, "insufficient_credits", required=PRICE + Decimal("0.5"))
    assert db_state() == before  # the first line, which alone would fit, was not charged
    service.grant(org.id, credits(1), "grant", description="top-up")
    first = api.post("/credits/deduct-batch", org, json=body, headers=keyed("batch"))
    assert first.status_code == 201
    assert len(first.json["deductions"]) == 2
    after = db_state()
    again = api.post("/credits/deduct-batch", org, json=body, headers=keyed("batch"))
    assert (again.get_data(), again.headers[REPLAYED]) == (first.get_data(), "true")
    assert db_state() == after
    assert api.get("/balance", org).json["balance"] == PRICE + 1 - PRICE - Decimal("0.5")


def test_a_malformed_key_is_refused(api, org, db_state, subtests):
    before = db_state()
    for key in ("", "   ", "x" * 256, "tab\there"):
        with subtests.test(key=key[:10]):
            r = api.post("/credits/deduct", org, json={"feature_key": "gen"}, headers=keyed(key))
            assert_error(r, 422, "invalid_request", field="Idempotency-Key")
    assert db_state() == before


def test_finished_keys_are_kept_at_least_a_day(api, org):
    api.post("/credits/deduct", org, json={"feature_key": "gen"}, headers=keyed("fresh"))
    claim_by_hand(org, "old", {"feature_key": "gen"}, timedelta(hours=25))
    assert idempotency.purge_expired(timedelta(hours=1)) == 1  # clamped to 24 hours
    keys = db.session.scalars(select(IdempotencyRecord.key)).all()
    assert keys == ["fresh"]
