"""POST /api/v1/credits/reservations, …/capture and …/release: holds and how they end."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from portal.timeutil import utcnow
from tests.conftest import assert_error, ledger_rows

PRICE = Decimal("1.5")
BALANCE = Decimal(30)


@pytest.fixture
def org(make_org, make_price):
    make_price("gen", PRICE)
    make_price("off", "1", active=False)
    return make_org(balance=BALANCE)


def reserve(api, org, **body):
    return api.post("/credits/reservations", org, json={"feature_key": "gen", **body})


def capture(api, org, reservation_id, **body):
    return api.post(f"/credits/reservations/{reservation_id}/capture", org, json=body)


def release(api, org, reservation_id):
    return api.post(f"/credits/reservations/{reservation_id}/release", org)


def balance(api, org):
    return api.get("/balance", org).json


def parse_time(text):
    return datetime.fromisoformat(text.removesuffix("Z"))


def test_reserve(api, org):
    quantity = Decimal(4)
    before = utcnow()
    r = reserve(api, org, quantity=quantity, expires_in=60)
    assert r.status_code == 201, r.json
    held = PRICE * quantity
    assert r.json == {
        "reservation_id": r.json["reservation_id"],
        "credits_reserved": held,
        "expires_at": r.json["expires_at"],
        "available": BALANCE - held,
    }
    expires_at = parse_time(r.json["expires_at"])
    assert before + timedelta(seconds=60) <= expires_at <= utcnow() + timedelta(seconds=60)
    assert balance(api, org) == {
        "organization": org.slug,
        "balance": BALANCE,
        "reserved": held,
        "available": BALANCE - held,
        "next_expiry": None,
        "on_hold": 0,
        "owed": 0,
    }


def test_reservation_defaults_to_one_unit_for_fifteen_minutes(api, org):
    before = utcnow()
    r = reserve(api, org)
    assert r.json["credits_reserved"] == PRICE
    expires_at = parse_time(r.json["expires_at"])
    assert before + timedelta(seconds=900) <= expires_at <= utcnow() + timedelta(seconds=900)


REFUSED_RESERVATIONS = [
    ({"quantity": BALANCE / PRICE + 1}, 402, "insufficient_credits"),
    ({"feature_key": "nope"}, 404, "feature_not_found"),
    ({"feature_key": "off"}, 404, "feature_not_found"),
    ({"expires_in": 86_401}, 422, "invalid_request"),
    ({"expires_in": 0}, 422, "invalid_request"),
    ({"expires_in": Decimal("1.5")}, 422, "invalid_request"),
    ({"expires_in": "soon"}, 422, "invalid_request"),
]


def test_refused_reservations_write_nothing(api, org, db_state, subtests):
    before = db_state()
    for body, status, code in REFUSED_RESERVATIONS:
        with subtests.test(**body):
            assert_error(reserve(api, org, **body), status, code)
    assert db_state() == before


def test_the_longest_hold_is_a_day(api, org):
    assert reserve(api, org, expires_in=86_400).status_code == 201


def test_capture(api, org):
    hold = reserve(api, org, quantity=3).json
    r = capture(api, org, hold["reservation_id"])
    assert r.status_code == 200, r.json
    assert r.json == {
        "reservation_id": hold["reservation_id"],
        "deduction_id": r.json["deduction_id"],
        "credits_deducted": hold["credits_reserved"],
        "credits_released": 0,
        "remaining_credits": BALANCE - hold["credits_reserved"],
    }
    assert balance(api, org)["reserved"] == 0
    row = ledger_rows(org.id)[-1]
    assert (row.id, row.kind, row.reservation_id) == (
        r.json["deduction_id"],
        "deduct",
        hold["reservation_id"],
    )


def test_capture_part_releases_the_rest(api, org, make_price):
    hold = reserve(api, org, quantity=3).json
    make_price("gen", "99")  # the hold keeps the price it was taken at
    used = Decimal("1.25")
    r = capture(api, org, hold["reservation_id"], quantity=used)
    assert r.status_code == 200
    assert r.json["credits_deducted"] == PRICE * used
    assert r.json["credits_released"] == hold["credits_reserved"] - PRICE * used
    assert r.json["remaining_credits"] == BALANCE - PRICE * used
    assert balance(api, org) == {
        "organization": org.slug,
        "balance": BALANCE - PRICE * used,
        "reserved": 0,
        "available": BALANCE - PRICE * used,
        "next_expiry": None,
        "on_hold": 0,
        "owed": 0,
    }
    deduction = api.get("/usage", org).json["data"][0]
    assert (deduction["id"], deduction["quantity"]) == (r.json["deduction_id"], used)


def test_bad_capture_quantity_writes_nothing(api, org, db_state, subtests):
    hold = reserve(api, org, quantity=3).json
    before = db_state()
    for quantity in (0, -1, "1", Decimal("0.0000001")):
        with subtests.test(quantity=quantity):
            r = capture(api, org, hold["reservation_id"], quantity=quantity)
            assert_error(r, 422, "invalid_request", field="quantity")
    # A well-formed quantity over the hold: the hold's state refuses it, a conflict.
    r = capture(api, org, hold["reservation_id"], quantity=Decimal("3.000001"))
    assert_error(r, 409, "quantity_exceeds_reservation", field="quantity", reserved=3)
    assert db_state() == before


def test_release(api, org):
    hold = reserve(api, org, quantity=2).json
    r = release(api, org, hold["reservation_id"])
    assert r.status_code == 200, r.json
    assert r.json == {
        "reservation_id": hold["reservation_id"],
        "credits_released": hold["credits_reserved"],
        "available": BALANCE,
    }
    assert balance(api, org)["reserved"] == 0


def test_a_closed_reservation_is_not_open(api, org, db_state, subtests):
    for first, status in ((capture, "captured"), (release, "released")):
        for second in (capture, release):
            with subtests.test(first=first.__name__, second=second.__name__):
                hold = reserve(api, org).json
                assert first(api, org, hold["reservation_id"]).status_code == 200
                before = db_state()
                r = second(api, org, hold["reservation_id"])
                assert assert_error(r, 409, "reservation_not_open")["status"] == status
                assert db_state() == before


def test_an_expired_reservation_is_not_open(api, org, expire_hold, subtests):
    for operation in (capture, release):
        with subtests.test(operation.__name__):
            hold = reserve(api, org, quantity=2).json
            expire_hold(hold["reservation_id"])
            r = operation(api, org, hold["reservation_id"])
            assert assert_error(r, 409, "reservation_not_open")["status"] == "expired"
            assert balance(api, org)["reserved"] == 0
            assert ledger_rows(org.id)[-1].kind == "grant"  # nothing was charged


def test_an_expired_hold_is_never_counted_in_available(api, org, expire_hold):
    lapsed = reserve(api, org, quantity=4).json
    kept = reserve(api, org, quantity=2).json
    expire_hold(lapsed["reservation_id"])
    held = kept["credits_reserved"]
    assert balance(api, org)["available"] == BALANCE - held
    check = api.post("/credits/check", org, json={"feature_key": "gen"}).json
    assert check["available"] == BALANCE - held
    # and in what every write reports back
    expire_hold(kept["reservation_id"])
    third = reserve(api, org).json
    assert third["available"] == BALANCE - third["credits_reserved"]
    fourth = reserve(api, org).json
    expire_hold(third["reservation_id"])
    deduct = api.post("/credits/deduct", org, json={"feature_key": "gen"}).json
    assert deduct["remaining_credits"] == BALANCE - PRICE - fourth["credits_reserved"]


def test_a_lapsed_hold_frees_its_credits_for_a_deduct(api, org, expire_hold):
    hold = reserve(api, org, quantity=BALANCE / PRICE).json  # everything held
    assert_error(
        api.post("/credits/deduct", org, json={"feature_key": "gen"}), 402, "insufficient_credits"
    )
    expire_hold(hold["reservation_id"])
    r = api.post("/credits/deduct", org, json={"feature_key": "gen"})
    assert (r.status_code, r.json["remaining_credits"]) == (201, BALANCE - PRICE)


def test_another_organizations_reservation_is_not_found(api, org, make_org, db_state):
    other = make_org(balance=10)
    hold = reserve(api, other).json
    before = db_state()
    for operation in (capture, release):
        for reservation_id in (hold["reservation_id"], 10**12):
            r = operation(api, org, reservation_id)
            assert_error(r, 404, "reservation_not_found")
    assert db_state() == before
