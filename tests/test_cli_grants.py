"""``flask credits grant`` with expiry and priority, and ``flask credits expire``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.credits import service
from portal.timeutil import utcnow
from tests.conftest import balance_row, credits, ledger_rows, newest_grant


def invoke(runner, *args) -> str:
    result = runner.invoke(args=[str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.output


def fails(runner, *args) -> str:
    result = runner.invoke(args=[str(arg) for arg in args])
    assert result.exit_code != 0, result.output
    return result.output


@pytest.fixture
def org(make_org):
    return make_org(balance=10, slug="acme")


def test_grant_without_expiry_never_expires(runner, org):
    output = invoke(runner, "credits", "grant", "acme", "2.5", "--reason", "goodwill")
    made = newest_grant(org.id)
    assert (made.kind, made.amount, made.expires_at, made.priority) == (
        "grant",
        credits("2.5"),
        None,
        10,
    )
    assert f"granted 2.5 credits (grant #{made.id}, priority 10, never expires)" in output
    assert output.strip().endswith("acme: balance 12.5 credits.")


def test_grant_expiring_in_days_with_a_priority(runner, org):
    before = utcnow()
    output = invoke(
        runner,
        "credits",
        "grant",
        "acme",
        "1,000",
        "--reason",
        "launch",
        "--expires-in-days",
        7,
        "--priority",
        0,
    )
    made = newest_grant(org.id)
    assert made.priority == 0 and made.amount == credits(1000)
    assert before + timedelta(days=7) <= made.expires_at <= utcnow() + timedelta(days=7)
    assert "priority 0, expires " in output


def test_grant_expiring_at_a_moment(runner, org):
    moment = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    stamp = moment.isoformat() + "+00:00"
    invoke(runner, "credits", "grant", "acme", "4", "--reason", "x", "--expires-at", stamp)
    assert newest_grant(org.id).expires_at == moment
    # A date alone is its start, in UTC; another offset is converted.
    day = (utcnow() + timedelta(days=5)).date()
    invoke(runner, "credits", "grant", "acme", "1", "--reason", "x", "--expires-at", day)
    assert newest_grant(org.id).expires_at.isoformat() == f"{day}T00:00:00"
    later = moment.replace(tzinfo=None).isoformat() + "+02:00"
    invoke(runner, "credits", "grant", "acme", "1", "--reason", "x", "--expires-at", later)
    assert newest_grant(org.id).expires_at == moment - timedelta(hours=2)


def test_a_negative_amount_stays_an_adjustment_in_burn_order(runner, org):
    service.grant(
        org.id, credits(3), "grant", description="first", terms=service.GrantTerms(priority=0)
    )
    output = invoke(runner, "credits", "grant", "acme", "--reason", "correction", "--", "-4")
    row = ledger_rows(org.id)[-1]
    assert (row.kind, row.amount) == ("adjustment", -credits(4))
    assert newest_grant(org.id).remaining == 0  # priority 0 went first
    assert "took 4 credits (adjustment)" in output and balance_row(org.id) == (credits(9), 0)


SOON = (utcnow() + timedelta(days=2)).date().isoformat()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expires-in-days", 3, "--expires-at", SOON], "not both"),
        (["--expires-at", "2001-01-01"], "--expires-at: must be in the future"),
        (["--expires-at", "soon"], "--expires-at: must be a date"),
        (["--expires-at", "2999-01-01"], "--expires-at: must be within ten years"),
        (["--expires-in-days", 0], "--expires-in-days: must be between 1 and 3650"),
        (["--expires-in-days", "x"], "is not a valid integer"),
        (["--priority", 1001], "--priority: must be between 0 and 1000"),
        (["--priority", -1], "--priority: must be between 0 and 1000"),
        (["--reason", "   "], "--reason: is required"),
    ],
)
def test_grant_option_errors(runner, org, db_state, args, message):
    before = db_state()
    output = fails(runner, "credits", "grant", "acme", "5", "--reason", "x", *args)
    assert message in output
    assert db_state() == before


@pytest.mark.parametrize("option", [["--expires-in-days", 3], ["--priority", 2]])
def test_a_negative_amount_takes_no_expiry_or_priority(runner, org, db_state, option):
    before = db_state()
    output = fails(runner, "credits", "grant", "acme", "--reason", "x", *option, "--", "-1")
    assert "applies only to credits added" in output
    assert db_state() == before


def test_expire_sweeps_every_organization_due(runner, make_org):
    first, second, untouched = make_org(balance=1), make_org(balance=1), make_org(balance=1)
    past = utcnow() - timedelta(minutes=1)
    for target, amount in ((first, "2"), (first, "0.5"), (second, "3")):
        service.grant(
            target.id,
            credits(amount),
            "grant",
            description="Trial",
            terms=service.GrantTerms(expires_at=past),
        )
    output = invoke(runner, "credits", "expire")
    assert output.strip() == "Expired 5.5 credits in 2 organizations."
    assert [balance_row(org.id)[0] for org in (first, second, untouched)] == [credits(1)] * 3
    expired = [row for row in ledger_rows(first.id) if row.kind == "expire"]
    assert sorted(row.amount for row in expired) == [-credits(2), -credits("0.5")]
    assert invoke(runner, "credits", "expire").strip() == "Expired 0 credits in 0 organizations."


def test_expire_says_organization_once(runner, org):
    service.grant(
        org.id,
        credits(1),
        "grant",
        description="Trial",
        terms=service.GrantTerms(expires_at=utcnow() - timedelta(seconds=1)),
    )
    assert invoke(runner, "credits", "expire").strip() == "Expired 1 credit in 1 organization."
