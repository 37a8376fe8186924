"""Credit grants through the service, without HTTP: burn order, what each deduction drew from
which grant, expiry (lazy at every access, and the sweep), holds across an expiry, refunds
back to their grants (debt, freezes and claw-backs: test_grants_debt.py). The ``clock``
fixture moves time; every test ends with ``assert_books`` (and the ``app`` fixture's
invariants)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.credits import service
from portal.credits.errors import InsufficientCredits
from portal.credits.models import CreditGrant
from portal.extensions import db
from tests.grants_helpers import (
    UNIT,
    assert_books,
    c,
    days,
    deduct,
    drawn,
    expiring_and_lasting,
    give,
    ledger,
    parts,
    reserve,
)


@pytest.fixture
def org(make_org, make_price):
    make_price(UNIT, 1, category="Text")
    return make_org(balance=0)


# --- burn order ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "priority", "source_type"),
    [
        ("signup_bonus", 10, "signup"),
        ("grant", 10, "admin"),
        ("subscription", 20, "plan"),
        ("purchase", 30, "package"),
        ("opening", 30, "opening"),
    ],
)
def test_each_kind_burns_at_its_default_priority(org, clock, kind, priority, source_type):
    grant = db.session.get(CreditGrant, give(org.id, c(1), kind))
    assert (grant.priority, grant.source_type, grant.expires_at) == (priority, source_type, None)
    assert_books(org.id, clock.now)


# Grants as (kind, priority, expires in days, created days before now); expected: burn order.
BURN_CASES = {
    "priority ascending": (
        [
            ("purchase", None, None, 0),
            ("subscription", None, None, 0),
            ("signup_bonus", None, None, 0),
        ],
        [2, 1, 0],
    ),
    "soonest expiry first, never last": (
        [("grant", None, None, 0), ("grant", None, 30, 0), ("grant", None, 5, 0)],
        [2, 1, 0],
    ),
    "priority before expiry": ([("purchase", None, 1, 0), ("grant", None, None, 0)], [1, 0]),
    "explicit priority": ([("signup_bonus", None, None, 0), ("purchase", 5, None, 0)], [1, 0]),
    "oldest first, not lowest id": (
        [("purchase", None, None, 0), ("purchase", None, None, 2), ("purchase", None, None, 1)],
        [1, 2, 0],
    ),
    "same expiry: oldest first": (
        [("grant", None, 9, 1), ("grant", None, 9, 3), ("grant", None, 9, 2)],
        [1, 2, 0],
    ),
    "all equal: id": ([("purchase", None, None, 0)] * 3, [0, 1, 2]),
}


@pytest.mark.parametrize("grants, order", BURN_CASES.values(), ids=BURN_CASES.keys())
def test_deductions_burn_grants_in_order(org, clock, grants, order):
    start = clock.now
    ids = []
    for kind, priority, expires_in, age in grants:
        clock.now = start - days(age)
        expires_at = None if expires_in is None else start + days(expires_in)
        ids.append(give(org.id, c(1), kind, expires_at=expires_at, priority=priority))
    clock.now = start
    one_by_one = [drawn(deduct(org, c(1)).deduction_id) for _ in ids]
    assert one_by_one == [[(ids[index], c(1))] for index in order]
    assert_books(org.id, clock.now)


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        (2, [(0, 2)]),
        (3, [(0, 3)]),
        (4, [(0, 3), (1, 1)]),
        (12, [(0, 3), (1, 4), (2, 5)]),
    ],
)
def test_a_deduction_records_what_it_took_from_which_grant(org, clock, cost, expected):
    ids = [
        give(org.id, c(n), kind) for n, kind in ((3, "grant"), (4, "subscription"), (5, "purchase"))
    ]
    result = deduct(org, c(cost))
    assert drawn(result.deduction_id) == [(ids[i], c(n)) for i, n in expected]
    for index, amount in expected:
        assert parts(ids[index]).get("consumed") == c(amount)
    assert_books(org.id, clock.now)


def test_a_hold_records_its_grants_and_its_capture_consumes_them(org, clock):
    first, second = give(org.id, c(3)), give(org.id, c(4), "purchase")
    hold = reserve(org, c(5))
    assert (parts(first), parts(second)) == ({"held": c(3)}, {"remaining": c(2), "held": c(2)})
    captured = service.capture(org.organization, hold.reservation_id, c(4))
    assert drawn(captured.deduction_id) == [(first, c(3)), (second, c(1))]
    assert parts(second) == {"remaining": c(3), "consumed": c(1)}
    assert_books(org.id, clock.now)


# --- expiry ----------------------------------------------------------------------------------


def access(org, how: str) -> int:
    """Touch the balance the way a caller would; returns the available credits it reported."""
    if how == "get_balance":
        return service.get_balance(org.organization).available
    if how == "check":
        result = service.check(org.organization, service.Spend(UNIT, c(6)))
        assert not result.has_enough
        return result.available
    if how in ("deduct", "reserve"):
        with pytest.raises(InsufficientCredits):  # 10 + 5 before the expiry, 5 now
            deduct(org, c(6)) if how == "deduct" else reserve(org, c(6))
        done = deduct(org, c(5)) if how == "deduct" else reserve(org, c(5))
        return c(5) if how == "deduct" else done.available + c(5)
    assert how == "sweep"
    assert service.expire_due() == c(10)
    return service.get_balance(org.organization).available


@pytest.mark.parametrize("how", ["get_balance", "check", "deduct", "reserve", "sweep"])
def test_an_expired_grant_is_never_available_even_before_a_sweep(org, clock, how):
    expiring, lasting = expiring_and_lasting(org, clock, lasting=5)
    clock.advance(days=1)  # expires_at <= now: expired at that very instant

    assert access(org, how) == c(5)

    assert parts(expiring) == {"expired": c(10)}
    (expiry,) = ledger(org.id, "expire")
    assert (expiry.grant_id, expiry.amount) == (expiring, -c(10))
    assert expiry.balance_after == c(5)
    assert "expired" not in parts(lasting)
    assert assert_books(org.id, clock.now).next_expiry is None


def test_credits_last_until_the_microsecond_they_expire(org, clock):
    ends = clock.now + days(3)
    give(org.id, c(2), expires_at=ends)
    clock.now = ends - timedelta(microseconds=1)
    balance = service.get_balance(org.organization)
    assert balance.available == c(2)
    assert (balance.next_expiry.amount, balance.next_expiry.expires_at) == (c(2), ends)
    clock.advance(microseconds=1)
    assert service.get_balance(org.organization).available == 0
    assert_books(org.id, clock.now)


def test_the_sweep_expires_what_is_due_once_each(org, make_org, clock):
    other = make_org(balance=0)
    soon = give(org.id, c(4), expires_at=clock.now + days(1))
    later = give(org.id, c(3), expires_at=clock.now + days(5))
    theirs = give(other.id, c(6), expires_at=clock.now + days(1))
    deduct(org, c(1))  # from ``soon``: only what is left expires
    clock.advance(days=2)

    assert service.expire_due() == c(3) + c(6)
    assert service.expire_due() == 0  # nothing twice
    assert (parts(soon), parts(later), parts(theirs)) == (
        {"consumed": c(1), "expired": c(3)},
        {"remaining": c(3)},
        {"expired": c(6)},
    )
    assert [(row.grant_id, row.amount) for row in ledger(org.id, "expire")] == [(soon, -c(3))]
    clock.advance(days=3)
    assert service.expire_due() == c(3)
    assert [row.grant_id for row in ledger(org.id, "expire")] == [soon, later]
    for who in (org, other):
        assert assert_books(who.id, clock.now).balance == 0


# --- holds across an expiry ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ending", "expiring_after"),
    [
        ("capture all", {"consumed": c(6), "expired": c(4)}),
        ("capture part", {"consumed": c(2), "expired": c(8)}),
        ("release", {"expired": c(10)}),
        ("lapse", {"expired": c(10)}),
    ],
)
def test_a_hold_keeps_expired_credits_capturable_until_it_ends(org, clock, ending, expiring_after):
    expiring, lasting = expiring_and_lasting(org, clock)
    hold = reserve(org, c(6))
    clock.advance(days=2)

    balance = service.get_balance(org.organization)  # the unheld 4 expire, the held 6 stay
    assert (balance.balance, balance.reserved, balance.available) == (c(16), c(6), c(10))
    assert parts(expiring) == {"held": c(6), "expired": c(4)}

    if ending == "capture all":
        service.capture(org.organization, hold.reservation_id)
    elif ending == "capture part":
        service.capture(org.organization, hold.reservation_id, c(2))
    elif ending == "release":
        service.release(org.organization, hold.reservation_id)
    else:
        clock.advance(days=2)
        service.get_balance(org.organization)

    assert parts(expiring) == expiring_after
    assert parts(lasting) == {"remaining": c(10)}
    assert assert_books(org.id, clock.now).available == c(10)
    expiries = [row.amount for row in ledger(org.id, "expire")]
    assert sum(expiries) == -expiring_after["expired"]


@pytest.mark.parametrize(
    ("captured", "expiring_after", "lasting_after"),
    [
        (11, {"consumed": c(10)}, {"remaining": c(9), "consumed": c(1)}),
        (5, {"consumed": c(5), "expired": c(5)}, {"remaining": c(10)}),
    ],
)
def test_a_capture_after_an_expiry_uses_the_hold_in_burn_order(
    org, clock, captured, expiring_after, lasting_after
):
    expiring, lasting = expiring_and_lasting(org, clock)
    hold = reserve(org, c(12))
    clock.advance(days=2)
    service.capture(org.organization, hold.reservation_id, c(captured))
    assert (parts(expiring), parts(lasting)) == (expiring_after, lasting_after)
    assert_books(org.id, clock.now)


# --- refunds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps",
    [
        [(10, [(2, 3), (1, 4), (0, 3)])],
        [(2, [(2, 2)]), (2, [(2, 1), (1, 1)]), (6, [(1, 3), (0, 3)])],
        [(1, [(2, 1)]), (9, [(2, 2), (1, 4), (0, 3)])],
    ],
    ids=["whole", "in three parts", "in two parts"],
)
def test_a_refund_gives_credits_back_last_taken_first(org, clock, steps):
    ids = [
        give(org.id, c(n), kind) for n, kind in ((3, "grant"), (4, "subscription"), (5, "purchase"))
    ]
    deduction = deduct(org, c(10))
    for amount, expected in steps:
        refund = service.refund(org.organization, deduction.deduction_id, c(amount))
        got = [(part.grant_id, part.amount, part.expires_at) for part in refund.returned_to]
        assert got == [(ids[i], c(n), None) for i, n in expected]
        sign = 1 if len(got) == 1 else -1  # one grant: named; several: negative allocations
        assert drawn(refund.refund_id) == [(grant_id, sign * n) for grant_id, n, _ in got]
    assert [parts(grant_id) for grant_id in ids] == [
        {"remaining": c(3), "consumed": c(3), "returned": c(3)},
        {"remaining": c(4), "consumed": c(4), "returned": c(4)},
        {"remaining": c(5), "consumed": c(3), "returned": c(3)},
    ]
    assert_books(org.id, clock.now)


@pytest.mark.parametrize("grace_days", [30, 7])
def test_a_refund_to_an_expired_grant_comes_back_as_a_new_grant(app, org, clock, grace_days):
    app.config["PORTAL_REFUND_GRACE_DAYS"] = grace_days
    expiring = give(org.id, c(5), "signup_bonus", expires_at=clock.now + days(1))
    lasting = give(org.id, c(10), "purchase")
    deduction = deduct(org, c(8))  # 5 of the bonus, then 3 purchased
    clock.advance(days=2)

    refund = service.refund(org.organization, deduction.deduction_id)

    back = [(part.grant_id, part.amount, part.expires_at) for part in refund.returned_to]
    assert back[0] == (lasting, c(3), None)
    new_id, amount, expires_at = back[1]
    assert (amount, expires_at) == (c(5), clock.now + days(grace_days))
    new = db.session.get(CreditGrant, new_id)
    assert (new.kind, new.priority, new.source_type, new.returned_from_id) == (
        "signup_bonus",
        10,
        "refund",
        expiring,
    )
    assert parts(expiring) == {"consumed": c(5)}  # not given back: it had expired
    assert parts(new_id) == {"remaining": c(5)}
    assert refund.remaining_credits == c(15)
    assert drawn(deduct(org, c(1)).deduction_id) == [(new_id, c(1))]  # the bonus burns first
    clock.advance(days=grace_days)
    assert assert_books(org.id, clock.now).available == c(10)
    assert parts(new_id) == {"consumed": c(1), "expired": c(4)}


def test_a_refunded_capture_goes_back_to_the_holds_grants(org, clock):
    first, second = give(org.id, c(3)), give(org.id, c(4), "purchase")
    hold = reserve(org, c(6))
    captured = service.capture(org.organization, hold.reservation_id, c(5))
    refund = service.refund(org.organization, captured.deduction_id, c(3))
    assert [(part.grant_id, part.amount) for part in refund.returned_to] == [
        (second, c(2)),
        (first, c(1)),
    ]
    assert (parts(first), parts(second)) == (
        {"remaining": c(1), "consumed": c(3), "returned": c(1)},
        {"remaining": c(4), "consumed": c(2), "returned": c(2)},
    )
    assert_books(org.id, clock.now)
