"""portal.credits.service without HTTP: every change and refusal; refusals write nothing."""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from portal.credits import service
from portal.credits.errors import (
    AlreadyRefunded,
    DeductionNotFound,
    DepartmentLimitExceeded,
    DepartmentNotFound,
    FeatureNotFound,
    InsufficientCredits,
    QuantityExceedsReservation,
    RefundExceedsDeduction,
    ReservationNotFound,
    ReservationNotOpen,
)
from portal.credits.models import Department, Reservation
from portal.extensions import db
from portal.money import MICRO, cost_micros, micros_to_decimal
from portal.timeutil import month_key, utcnow
from tests.conftest import balance_row, credits, ledger_rows

PRICE = "2.5"


def spend(feature_key="gen", quantity="1", **fields):
    return service.Spend(feature_key, credits(quantity), **fields)


@pytest.fixture
def priced(make_price):
    make_price("gen", PRICE, category="Image Generation")
    make_price("tiny", "0.001", category="Text")
    make_price("off", "1", active=False)


@pytest.fixture
def org(make_org, priced):
    return make_org(balance=100)


def department(org_id, name="Research", limit=None):
    return service.set_department_limit(org_id, name, None if limit is None else credits(limit))


# --- deduct ----------------------------------------------------------------------------------


def test_deduct_charges_price_times_quantity_and_records_it(org):
    before, _ = balance_row(org.id)
    research = department(org.id)
    quantity = "3.5"
    cost = cost_micros(credits(PRICE), credits(quantity))

    result = service.deduct(
        org.organization,
        spend(
            quantity=quantity,
            department="Research",
            user_ref="ana@example.com",
            description="a render",
            metadata={"job": "42"},
        ),
    )

    assert (result.feature_key, result.quantity, result.credits_deducted) == (
        "gen",
        credits(quantity),
        cost,
    )
    assert balance_row(org.id) == (before - cost, 0)
    assert result.remaining_credits == before - cost
    row = ledger_rows(org.id)[-1]
    assert row.id == result.deduction_id
    assert (row.kind, row.amount, row.balance_after) == ("deduct", -cost, before - cost)
    assert (row.unit_price, row.quantity, row.department_id) == (
        credits(PRICE),
        credits(quantity),
        research.id,
    )
    assert (row.user_ref, row.description, row.meta) == (
        "ana@example.com",
        "a render",
        {"job": "42"},
    )


def test_three_deducts_of_a_thousandth_leave_exactly_three_thousandths_less(org):
    before, _ = balance_row(org.id)
    for _ in range(3):
        service.deduct(org.organization, spend("tiny"))
    after, _ = balance_row(org.id)
    assert micros_to_decimal(before) - micros_to_decimal(after) == Decimal("0.003")


def test_deduct_keeps_the_price_it_was_charged_at(org, make_price):
    first = service.deduct(org.organization, spend())
    make_price("gen", "7")
    second = service.deduct(org.organization, spend())
    rows = {row.id: row for row in ledger_rows(org.id)}
    assert rows[first.deduction_id].unit_price == credits(PRICE)
    assert rows[second.deduction_id].unit_price == credits("7")
    assert second.credits_deducted == credits("7")


def test_deduct_may_spend_exactly_what_is_available(make_org, priced):
    org = make_org(balance=PRICE)
    result = service.deduct(org.organization, spend())
    assert result.remaining_credits == 0
    assert balance_row(org.id) == (0, 0)


REFUSED_DEDUCTS = [
    # (what, spend, error); 5 of the 100 credits are held by then
    ("more than available", spend(quantity="38.000001"), InsufficientCredits),
    ("held credits", spend(quantity="39"), InsufficientCredits),
    ("unknown feature", spend("nope"), FeatureNotFound),
    ("inactive feature", spend("off"), FeatureNotFound),
    ("unknown department", spend(department="Nobody"), DepartmentNotFound),
    ("department limit", spend(department="Capped"), DepartmentLimitExceeded),
]


def test_a_refused_deduct_writes_nothing(org, db_state, subtests):
    department(org.id, "Capped", limit="1")
    service.reserve(org.organization, "gen", credits("2"), 900)
    for what, request, error in REFUSED_DEDUCTS:
        with subtests.test(what):
            before = db_state()
            with pytest.raises(error):
                service.deduct(org.organization, request)
            assert db_state() == before


def test_insufficient_credits_names_what_was_required_and_available(org):
    service.reserve(org.organization, "gen", credits("4"), 900)
    balance, reserved = balance_row(org.id)
    quantity = "38"
    with pytest.raises(InsufficientCredits) as refused:
        service.deduct(org.organization, spend(quantity=quantity))
    assert refused.value.extra == {
        "required": micros_to_decimal(cost_micros(credits(PRICE), credits(quantity))),
        "available": micros_to_decimal(balance - reserved),
    }


# --- department limits -----------------------------------------------------------------------


def test_department_limit_counts_month_to_date_use(org, db_state):
    department(org.id, "Marketing", limit="6")
    service.deduct(org.organization, spend(department="Marketing"))  # 2.5 used
    service.deduct(org.organization, spend(department="Marketing"))  # 5 used
    service.deduct(org.organization, spend())  # no department: not counted
    before = db_state()
    with pytest.raises(DepartmentLimitExceeded) as refused:
        service.deduct(org.organization, spend(department="Marketing"))
    assert refused.value.extra["limit"] == Decimal("6")
    assert refused.value.extra["used"] == 2 * Decimal(PRICE)
    assert db_state() == before
    # The remaining 1 of the limit still fits a smaller spend.
    service.deduct(org.organization, spend("tiny", "1000", department="Marketing"))


def test_a_department_without_limit_only_counts(org):
    department(org.id, "Research")
    for _ in range(3):
        service.deduct(org.organization, spend(department="Research"))
    research = service.find_department(org.id, "Research")
    db.session.refresh(research)
    assert research.used_in(month_key(utcnow())) == 3 * credits(PRICE)


def test_last_months_use_does_not_count_against_this_month(org):
    capped = department(org.id, "Support", limit=PRICE)
    service.deduct(org.organization, spend(department="Support"))
    last_month = month_key(utcnow().replace(day=1) - timedelta(days=1))
    db.session.execute(
        update(Department).where(Department.id == capped.id).values(usage_month=last_month)
    )
    db.session.commit()
    service.deduct(org.organization, spend(department="Support"))  # the counter rolled over


def test_set_department_limit_creates_updates_and_clears(org):
    created = department(org.id, "Ops", limit="10")
    assert created.monthly_limit == credits("10")
    updated = department(org.id, "Ops", limit="0.5")
    assert (updated.id, updated.monthly_limit) == (created.id, credits("0.5"))
    assert department(org.id, "Ops").monthly_limit is None


# --- refund ----------------------------------------------------------------------------------


def test_refund_defaults_to_everything_still_refundable(org):
    deduction = service.deduct(org.organization, spend(quantity="2"))
    charged, _ = balance_row(org.id)
    result = service.refund(org.organization, deduction.deduction_id, reason="bad output")
    assert result.credits_refunded == deduction.credits_deducted
    assert balance_row(org.id) == (charged + deduction.credits_deducted, 0)
    row = ledger_rows(org.id)[-1]
    assert (row.id, row.kind, row.amount, row.refund_of_id, row.description) == (
        result.refund_id,
        "refund",
        deduction.credits_deducted,
        deduction.deduction_id,
        "bad output",
    )


def test_partial_refunds_never_exceed_the_deduction(org, db_state):
    deduction = service.deduct(org.organization, spend(quantity="2"))  # 5 credits
    first = credits("1.5")
    service.refund(org.organization, deduction.deduction_id, first)
    refundable = deduction.credits_deducted - first
    before = db_state()
    with pytest.raises(RefundExceedsDeduction) as refused:
        service.refund(org.organization, deduction.deduction_id, refundable + 1)
    assert refused.value.extra["refundable"] == micros_to_decimal(refundable)
    assert db_state() == before
    rest = service.refund(org.organization, deduction.deduction_id)
    assert rest.credits_refunded == refundable
    before = db_state()
    with pytest.raises(AlreadyRefunded):
        service.refund(org.organization, deduction.deduction_id, 1)
    assert db_state() == before


def test_refund_only_finds_this_organizations_deductions(org, make_org, db_state):
    other = make_org(balance=10)
    theirs = service.deduct(other.organization, spend())
    grant_id = ledger_rows(org.id)[0].id
    before = db_state()
    for deduction_id in (theirs.deduction_id, grant_id, 10**9):
        with pytest.raises(DeductionNotFound):
            service.refund(org.organization, deduction_id)
    assert db_state() == before


def test_refund_gives_department_use_back(org):
    department(org.id, "Capped", limit=PRICE)
    deduction = service.deduct(org.organization, spend(department="Capped"))
    with pytest.raises(DepartmentLimitExceeded):
        service.deduct(org.organization, spend(department="Capped"))
    service.refund(org.organization, deduction.deduction_id)
    service.deduct(org.organization, spend(department="Capped"))


# --- reservations ----------------------------------------------------------------------------


def test_reserve_holds_credits_without_moving_the_balance(org):
    before, _ = balance_row(org.id)
    quantity = "4"
    hold = service.reserve(org.organization, "gen", credits(quantity), 120)
    amount = cost_micros(credits(PRICE), credits(quantity))
    assert hold.credits_reserved == amount
    assert balance_row(org.id) == (before, amount)
    assert hold.available == before - amount
    assert timedelta(seconds=119) < hold.expires_at - utcnow() <= timedelta(seconds=120)
    assert service.get_balance(org.organization).available == before - amount


def test_a_refused_reservation_writes_nothing(org, db_state):
    before = db_state()
    with pytest.raises(InsufficientCredits):
        service.reserve(org.organization, "gen", credits("40.4"), 900)
    with pytest.raises(FeatureNotFound):
        service.reserve(org.organization, "off", credits("1"), 900)
    assert db_state() == before


def test_capture_all_charges_the_hold(org):
    before, _ = balance_row(org.id)
    hold = service.reserve(org.organization, "gen", credits("2"), 900)
    result = service.capture(org.organization, hold.reservation_id)
    assert (result.credits_deducted, result.credits_released) == (hold.credits_reserved, 0)
    assert balance_row(org.id) == (before - hold.credits_reserved, 0)
    assert result.remaining_credits == before - hold.credits_reserved
    row = ledger_rows(org.id)[-1]
    assert (row.id, row.kind, row.amount, row.reservation_id) == (
        result.deduction_id,
        "deduct",
        -hold.credits_reserved,
        hold.reservation_id,
    )


def test_capture_part_at_the_held_price_releases_the_rest(org, make_price):
    before, _ = balance_row(org.id)
    hold = service.reserve(org.organization, "gen", credits("4"), 900)
    make_price("gen", "100")  # a price change after the hold does not apply to it
    used = credits("1.5")
    result = service.capture(org.organization, hold.reservation_id, used)
    cost = cost_micros(credits(PRICE), used)
    assert result.credits_deducted == cost
    assert result.credits_released == hold.credits_reserved - cost
    assert balance_row(org.id) == (before - cost, 0)


def test_capture_more_than_reserved_is_a_conflict_and_writes_nothing(org, db_state):
    hold = service.reserve(org.organization, "gen", credits("2"), 900)
    before = db_state()
    with pytest.raises(QuantityExceedsReservation) as refused:
        service.capture(org.organization, hold.reservation_id, credits("2.000001"))
    assert refused.value.extra["field"] == "quantity"
    assert db_state() == before


def test_release_frees_the_hold(org):
    before, _ = balance_row(org.id)
    hold = service.reserve(org.organization, "gen", credits("2"), 900)
    result = service.release(org.organization, hold.reservation_id)
    assert result.credits_released == hold.credits_reserved
    assert result.available == before
    assert balance_row(org.id) == (before, 0)


def test_a_closed_reservation_cannot_close_again(org, db_state, subtests):
    for first, status in (("capture", "captured"), ("release", "released")):
        for second in ("capture", "release"):
            with subtests.test(first=first, second=second):
                hold = service.reserve(org.organization, "gen", credits("1"), 900)
                getattr(service, first)(org.organization, hold.reservation_id)
                before = db_state()
                with pytest.raises(ReservationNotOpen) as refused:
                    getattr(service, second)(org.organization, hold.reservation_id)
                assert refused.value.extra["status"] == status
                assert db_state() == before


def test_an_expired_hold_is_released_and_cannot_be_closed(org, expire_hold, subtests):
    before, _ = balance_row(org.id)
    for operation in (service.capture, service.release):
        with subtests.test(operation.__name__):
            hold = service.reserve(org.organization, "gen", credits("2"), 900)
            expire_hold(hold.reservation_id)
            with pytest.raises(ReservationNotOpen) as refused:
                operation(org.organization, hold.reservation_id)
            assert refused.value.extra["status"] == "expired"
            assert balance_row(org.id) == (before, 0)
            assert db.session.get(Reservation, hold.reservation_id).status == "expired"


def test_an_expired_hold_is_never_counted_in_available(make_org, priced, expire_hold):
    org = make_org(balance=10)
    hold = service.reserve(org.organization, "gen", credits("3"), 900)  # 7.5 of 10 held
    expire_hold(hold.reservation_id)
    assert service.get_balance(org.organization).available == credits(10)
    check = service.check(org.organization, spend(quantity="4"))  # 10 needed
    assert (check.has_enough, check.available) == (True, credits(10))


def test_a_deduct_may_use_credits_of_an_expired_hold(make_org, priced, expire_hold):
    org = make_org(balance=10)
    hold = service.reserve(org.organization, "gen", credits("3"), 900)
    expire_hold(hold.reservation_id)
    result = service.deduct(org.organization, spend(quantity="4"))
    assert result.remaining_credits == 0
    assert balance_row(org.id) == (0, 0)


def test_available_after_a_deduct_ignores_an_expired_hold(make_org, priced, expire_hold):
    org = make_org(balance=10)
    hold = service.reserve(org.organization, "gen", credits("2"), 900)
    expire_hold(hold.reservation_id)
    result = service.deduct(org.organization, spend())
    assert result.remaining_credits == credits(10) - credits(PRICE)


def test_another_organizations_reservation_is_not_found(org, make_org, db_state):
    other = make_org(balance=10)
    hold = service.reserve(other.organization, "gen", credits("1"), 900)
    before = db_state()
    for operation in (service.capture, service.release):
        with pytest.raises(ReservationNotFound):
            operation(org.organization, hold.reservation_id)
    assert db_state() == before


# --- check -----------------------------------------------------------------------------------


CHECKS = [
    # (quantity, department, has_enough, reason); a price of 2.5, 100 credits, a limit of 2.5
    ("1", None, True, None),
    ("40", None, True, None),
    ("40.000001", None, False, "insufficient_credits"),
    ("1", "Capped", True, None),
    ("2", "Capped", False, "department_limit_exceeded"),
]


def test_check_answers_without_writing(org, db_state, subtests):
    department(org.id, "Capped", limit=PRICE)
    balance, reserved = balance_row(org.id)
    before = db_state()
    for quantity, department_name, has_enough, reason in CHECKS:
        with subtests.test(quantity=quantity, department=department_name):
            result = service.check(
                org.organization, spend(quantity=quantity, department=department_name)
            )
            assert (result.has_enough, result.reason) == (has_enough, reason)
            assert result.required == cost_micros(credits(PRICE), credits(quantity))
            assert result.available == balance - reserved
    for feature_key in ("nope", "off"):
        with pytest.raises(FeatureNotFound):
            service.check(org.organization, spend(feature_key))
    assert db_state() == before


# --- grants ----------------------------------------------------------------------------------


def test_grant_adds_credits_with_one_ledger_row(org, subtests):
    amount = credits("12.345678")
    for kind in ("grant", "purchase", "subscription", "signup_bonus", "adjustment"):
        with subtests.test(kind):
            before, _ = balance_row(org.id)
            entry_id = service.grant(org.id, amount, kind, description="top-up").entry_id
            assert balance_row(org.id) == (before + amount, 0)
            row = ledger_rows(org.id)[-1]
            assert (row.id, row.kind, row.amount, row.balance_after) == (
                entry_id,
                kind,
                amount,
                before + amount,
            )


def test_a_grant_from_one_outside_event_happens_once(org, db_state):
    service.grant(org.id, credits(50), "purchase", description="pack", source_ref="cs_1")
    before = db_state()
    with pytest.raises(service.DuplicateGrant):
        service.grant(org.id, credits(50), "purchase", description="pack", source_ref="cs_1")
    assert db_state() == before


def test_a_negative_adjustment_needs_available_credits(org, db_state):
    balance, _ = balance_row(org.id)
    before = db_state()
    with pytest.raises(InsufficientCredits):
        service.grant(org.id, -(balance + 1), "adjustment", description="too much")
    assert db_state() == before
    service.grant(org.id, -balance, "adjustment", description="all of it")
    assert balance_row(org.id) == (0, 0)


@pytest.mark.allow_negative_balance
def test_a_clawback_may_take_the_balance_below_zero(org):
    balance, _ = balance_row(org.id)
    service.grant(
        org.id,
        -(balance + MICRO),
        "adjustment",
        description="refunded",
        allow_negative_balance=True,
    )
    assert balance_row(org.id) == (-MICRO, 0)


def test_grant_refuses_wrong_kinds_and_signs(org, db_state):
    before = db_state()
    for amount, kind in ((MICRO, "deduct"), (-MICRO, "grant"), (MICRO, "bonus")):
        with pytest.raises(ValueError):
            service.grant(org.id, amount, kind, description="wrong")
    assert db_state() == before


# --- import_history --------------------------------------------------------------------------


def test_import_history_appends_in_time_order(make_org, priced):
    org = make_org(balance=0)
    research = department(org.id)
    now = utcnow()
    cost = credits(PRICE)
    entries = [
        service.HistoricEntry("deduct", -cost, now, "gen", cost, MICRO, research.id),
        service.HistoricEntry("grant", credits(20), now - timedelta(days=40)),
        service.HistoricEntry("deduct", -cost, now - timedelta(days=35), "gen", cost, MICRO),
    ]
    assert service.import_history(org.id, entries) == len(entries)
    rows = ledger_rows(org.id)
    assert [row.kind for row in rows] == ["grant", "deduct", "deduct"]
    assert [row.balance_after for row in rows] == [
        credits(20),
        credits(20) - cost,
        credits(20) - 2 * cost,
    ]
    assert balance_row(org.id) == (credits(20) - 2 * cost, 0)
    db.session.refresh(research)
    assert research.used_in(month_key(utcnow())) == cost  # only this month's use counts


def test_a_refused_import_writes_nothing(org, db_state):
    start = utcnow() - timedelta(days=2)
    below_zero = [
        service.HistoricEntry("grant", credits(1), start),
        service.HistoricEntry("deduct", -credits(102), start + timedelta(hours=1)),
    ]
    unknown_kind = [
        service.HistoricEntry("grant", credits(1), start),
        service.HistoricEntry("bogus", credits(1), start + timedelta(hours=1)),
    ]
    before = db_state()
    with pytest.raises(InsufficientCredits):
        service.import_history(org.id, below_zero)
    with pytest.raises(ValueError):
        service.import_history(org.id, unknown_kind)
    assert db_state() == before


def test_import_history_of_nothing_writes_nothing(org, db_state):
    before = db_state()
    assert service.import_history(org.id, []) == 0
    assert db_state() == before


def test_reservations_table_agrees_with_reserved(org):
    holds = [service.reserve(org.organization, "gen", credits(q), 900) for q in ("1", "2", "3")]
    service.release(org.organization, holds[1].reservation_id)
    open_total = sum(
        db.session.scalars(
            select(Reservation.amount).where(
                Reservation.organization_id == org.id, Reservation.status == "open"
            )
        )
    )
    assert (
        balance_row(org.id)[1]
        == open_total
        == holds[0].credits_reserved + holds[2].credits_reserved
    )
