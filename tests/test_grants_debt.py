"""Debt, freezes and claw-backs through the service, and expired credits on the paths that
take credits without the debit guard (claw-backs, debts, captures, releases, refunds): a
claw-back beyond what is left becomes debt that the next credits pay first; expired credits
never pay anything, and no reported ``available`` counts them. The ``clock`` fixture moves
time; every test ends with ``assert_books``."""

from __future__ import annotations

import pytest

from portal.credits import service
from portal.credits.errors import InsufficientCredits
from tests.grants_helpers import (
    UNIT,
    assert_books,
    c,
    clawback,
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
    """An organization without credits; ``UNIT`` costs one credit."""
    make_price(UNIT, 1, category="Text")
    return make_org(balance=0)


# --- debt, freezes and claw-backs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "taken", "owed", "other_after"),
    [
        (10, 10, 0, {"remaining": c(10)}),
        (30, 30, 0, {"consumed": c(10)}),
        (100, 100, 70, {"consumed": c(10)}),
        (150, 100, 70, {"consumed": c(10)}),  # never more than the payment bought
    ],
)
def test_a_clawback_beyond_what_is_left_becomes_debt(org, clock, amount, taken, owed, other_after):
    paid = give(org.id, c(100), "purchase", source_ref="checkout:cs_1")
    deduct(org, c(80))
    other = give(org.id, c(10))

    result = clawback(org, c(amount))

    assert (result.taken, result.forfeited, result.owed) == (c(taken), 0, c(owed))
    assert parts(paid)["clawed_back"] == c(min(amount, 20))
    assert parts(other) == other_after
    balance = assert_books(org.id, clock.now)
    assert (balance.balance, balance.owed) == (c(30) - c(taken), c(owed))
    if owed:
        with pytest.raises(InsufficientCredits):
            deduct(org, c(1))
        arriving = give(org.id, c(100), "purchase")  # pays the debt first
        assert parts(arriving) == {"remaining": c(100 - owed), "consumed": c(owed)}
        assert assert_books(org.id, clock.now).balance == c(100 - owed)
    with pytest.raises(service.DuplicateGrant):
        clawback(org, c(1))


@pytest.mark.parametrize("dispute", ["won", "lost"])
def test_a_disputed_payment_is_frozen_until_the_dispute_ends(org, clock, dispute):
    paid = give(org.id, c(50), "purchase", source_ref="checkout:cs_1")
    deduct(org, c(20))
    frozen = service.freeze(org.id, "checkout:cs_1", source_ref="dispute:dp_1", description="x")
    assert frozen == c(30)
    balance = assert_books(org.id, clock.now)
    assert (balance.balance, balance.on_hold) == (0, c(30))
    with pytest.raises(InsufficientCredits):
        deduct(org, c(1))
    if dispute == "won":
        service.unfreeze(org.id, "checkout:cs_1", source_ref="dispute:dp_1", description="x")
        assert parts(paid) == {"remaining": c(30), "consumed": c(20)}
        assert assert_books(org.id, clock.now).balance == c(30)
    else:
        result = clawback(org, c(50), "dispute:dp_1")
        assert (result.forfeited, result.taken, result.owed) == (c(30), c(20), c(20))
        assert parts(paid) == {"consumed": c(20), "clawed_back": c(30)}
        balance = assert_books(org.id, clock.now)
        assert (balance.balance, balance.on_hold, balance.owed) == (-c(20), 0, c(20))
    for verb in (service.freeze, service.unfreeze):
        if verb is service.unfreeze and dispute == "lost":
            continue
        with pytest.raises(service.DuplicateGrant):
            verb(org.id, "checkout:cs_1", source_ref="dispute:dp_1", description="again")


def test_a_negative_adjustment_with_debt_allowed_owes_the_rest(org, clock):
    grant = give(org.id, c(4))
    service.grant(
        org.id, -c(10), "adjustment", description="correction", allow_negative_balance=True
    )
    assert parts(grant) == {"consumed": c(4)}
    balance = assert_books(org.id, clock.now)
    assert (balance.balance, balance.owed) == (-c(6), c(6))
    assert [row.kind for row in ledger(org.id)] == ["grant", "adjustment"]


# --- expired credits on the paths that do not debit ------------------------------------------


@pytest.mark.parametrize("how", ["clawback", "adjustment"])
def test_expired_credits_never_pay_a_debt(org, clock, how):
    paid = give(org.id, c(100), "purchase", source_ref="checkout:cs_1")
    deduct(org, c(100))
    expiring = give(org.id, c(10), expires_at=clock.now + days(1))
    clock.advance(days=2)  # nothing has looked at the balance since

    if how == "clawback":
        assert clawback(org, c(100)).owed == c(100)
        assert parts(paid) == {"consumed": c(100)}
    else:
        service.grant(org.id, -c(100), "adjustment", description="x", allow_negative_balance=True)

    assert parts(expiring) == {"expired": c(10)}
    balance = assert_books(org.id, clock.now)
    assert (balance.balance, balance.owed) == (-c(100), c(100))


def test_unfrozen_credits_of_an_expired_grant_never_pay_a_debt(org, clock):
    spent = give(org.id, c(30), "purchase", source_ref="checkout:cs_2")
    deduct(org, c(30))
    disputed = give(
        org.id, c(50), "purchase", source_ref="checkout:cs_1", expires_at=clock.now + days(1)
    )
    service.freeze(org.id, "checkout:cs_1", source_ref="dispute:dp_1", description="opened")
    service.clawback(org.id, "checkout:cs_2", c(30), source_ref="refund:re_2", description="x")
    clock.advance(days=2)
    assert service.unfreeze(
        org.id, "checkout:cs_1", source_ref="dispute:dp_1", description="won"
    ) == c(50)
    assert parts(disputed) == {"expired": c(50)}  # expired while frozen: they pay nothing
    assert parts(spent) == {"consumed": c(30)}
    balance = assert_books(org.id, clock.now)
    assert (balance.balance, balance.owed) == (-c(30), c(30))


def test_expired_credits_cannot_be_frozen(org, clock):
    expiring = give(
        org.id, c(50), "purchase", source_ref="checkout:cs_1", expires_at=clock.now + days(1)
    )
    clock.advance(days=2)
    assert service.freeze(org.id, "checkout:cs_1", source_ref="dispute:dp_1", description="x") == 0
    assert parts(expiring) == {"expired": c(50)}
    assert assert_books(org.id, clock.now).on_hold == 0


def test_a_capture_pays_debt_without_charging_it_to_its_deduction(org, clock):
    give(org.id, c(20), "purchase", source_ref="checkout:cs_1")
    deduct(org, c(20))
    first, second = give(org.id, c(10)), give(org.id, c(10), "subscription")
    hold = reserve(org, c(20))
    assert clawback(org, c(20)).owed == c(20)  # all the rest is held

    captured = service.capture(org.organization, hold.reservation_id, c(12))

    assert drawn(captured.deduction_id) == [(first, c(10)), (second, c(2))]
    assert parts(second) == {"consumed": c(10)}  # 2 captured, the 8 released paid the debt
    assert service.get_balance(org.organization).owed == c(12)
    refund = service.refund(org.organization, captured.deduction_id)
    assert [(part.grant_id, part.amount) for part in refund.returned_to] == [
        (second, c(2)),
        (first, c(10)),
    ]
    balance = assert_books(org.id, clock.now)  # the 12 given back paid the rest of the debt
    assert (balance.balance, balance.owed) == (0, 0)


@pytest.mark.parametrize("how", ["refund", "capture", "release"])
def test_what_a_call_reports_available_never_counts_expired_credits(org, clock, how):
    expiring_and_lasting(org, clock, lasting=5)
    hold = reserve(org, c(12))  # 10 expiring, 2 purchased
    deduction = deduct(org, c(2))  # purchased
    service.release(org.organization, hold.reservation_id)
    hold = reserve(org, c(1))  # from the expiring grant, which keeps 9 unheld
    clock.advance(days=2)

    if how == "refund":
        reported = service.refund(org.organization, deduction.deduction_id).remaining_credits
        expected = c(5)
    elif how == "capture":
        reported = service.capture(org.organization, hold.reservation_id).remaining_credits
        expected = c(3)
    else:
        reported = service.release(org.organization, hold.reservation_id).available
        expected = c(3)

    assert reported == expected == assert_books(org.id, clock.now).available
