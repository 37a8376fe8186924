"""Migration 0016_credit_grants on a filled database: every balance survives as grants.

A database migrated only to 0015_accounts is filled through that schema with raw SQL
(organizations with balances, their ledgers, open and closed holds, a negative balance), then
upgraded to head. Each positive balance must become one ``opening`` grant that never expires
(its open holds holding part of it, with their allocation rows), a negative balance debt, the
ledger must be untouched and still append-only, and the service must work on the result.
On SQLite and on a throwaway PostgreSQL database of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask_migrate import upgrade
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from portal import create_app
from portal.credits import service
from portal.credits.errors import InsufficientCredits
from portal.credits.models import CreditGrant, GrantAllocation, Organization
from portal.extensions import db
from portal.timeutil import utcnow
from tests.conftest import _pg_admin, _pg_url, assert_invariants, require_postgres
from tests.grants_helpers import UNIT, c, drawn, parts

BEFORE = "0015_accounts"
# slug: (ledger amounts, open holds, closed holds). Balances are what the ledgers sum to.
ACCOUNTS: dict[str, tuple[list[tuple[str, int]], list[int], list[int]]] = {
    "plain": ([("grant", c(120)), ("deduct", -c(20))], [], []),
    "holding": ([("purchase", c(50)), ("deduct", -c(10))], [c(15), c(5)], [c(7)]),
    "owing": ([("grant", c(10)), ("adjustment", -c(30))], [], []),
    "empty": ([], [], []),
}
# Before 0016 a claw-back could take the balance below what open holds kept (even below 0).
OVERHELD = {
    "overheld": ([("purchase", c(20)), ("adjustment", -c(15))], [c(8)], []),
    "negative-holding": ([("purchase", c(20)), ("adjustment", -c(25))], [c(8)], []),
}


@pytest.fixture
def accounts_spec() -> dict[str, tuple[list[tuple[str, int]], list[int], list[int]]]:
    return ACCOUNTS


@pytest.fixture
def server_timezone() -> str | None:
    return None  # the server's own


@pytest.fixture
def old_database(backend: str, tmp_path: Path, server_timezone: str | None) -> Iterator[str]:
    """An empty database of our own: a file, or a PostgreSQL database dropped after."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    require_postgres()
    name = f"portal_migration_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    if server_timezone:
        _pg_admin(f"ALTER DATABASE \"{name}\" SET timezone TO '{server_timezone}'")
    try:
        yield _pg_url(name)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def insert(table: str, **values: Any) -> int:
    names = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    sql = f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING id"
    return db.session.execute(text(sql), values).scalar_one()


def fill(now: datetime, spec: dict) -> dict[str, dict[str, Any]]:
    """Organizations, ledgers and holds written as the 0015 schema knew them."""
    insert(
        "feature_prices",
        feature_key=UNIT,
        name="Unit",
        category="Text",
        credits_per_unit=c(1),
        unit="call",
        active=True,
        created_at=now,
        updated_at=now,
    )
    accounts = {}
    for slug, (entries, open_holds, closed_holds) in spec.items():
        balance = sum(amount for _, amount in entries)
        org_id = insert(
            "organizations",
            slug=slug,
            name=slug,
            balance=balance,
            reserved=sum(open_holds),
            created_at=now - timedelta(days=90),
        )
        running = 0
        for offset, (kind, amount) in enumerate(entries):
            running += amount
            insert(
                "ledger_entries",
                organization_id=org_id,
                kind=kind,
                amount=amount,
                balance_after=running,
                feature_key=UNIT if kind == "deduct" else None,
                description="before grants",
                created_at=now - timedelta(days=60 - offset),
            )
        holds = {}
        for amount, status in [(a, "open") for a in open_holds] + [
            (a, "released") for a in closed_holds
        ]:
            hold_id = insert(
                "reservations",
                organization_id=org_id,
                feature_key=UNIT,
                unit_price=c(1),
                quantity=amount,
                amount=amount,
                status=status,
                expires_at=now + timedelta(hours=1),
                created_at=now - timedelta(minutes=5),
                closed_at=None if status == "open" else now,
            )
            holds[hold_id] = (amount, status)
        accounts[slug] = {"id": org_id, "balance": balance, "holds": holds}
    db.session.commit()
    return accounts


def ledger_snapshot() -> list[tuple]:
    rows = db.session.execute(
        text(
            "SELECT id, organization_id, kind, amount, balance_after, description, created_at "
            "FROM ledger_entries ORDER BY id"
        )
    ).all()
    db.session.rollback()
    return [tuple(row) for row in rows]


@pytest.fixture
def migrated(old_database: str, accounts_spec: dict) -> Iterator[tuple[dict[str, Any], list]]:
    """The filled database upgraded to head, its app context pushed: (the accounts as filled,
    the ledger before the upgrade)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": old_database, "TESTING": True})
    with app.app_context():
        upgrade(revision=BEFORE)
        accounts = fill(utcnow(), accounts_spec)
        before = ledger_snapshot()
        upgrade()
        try:
            yield accounts, before
            db.session.remove()
            assert_invariants()
        finally:
            db.session.remove()
            db.engine.dispose()


def grants_of(organization_id: int) -> list[CreditGrant]:
    return list(
        db.session.scalars(
            select(CreditGrant).where(CreditGrant.organization_id == organization_id)
        )
    )


def test_every_balance_becomes_an_opening_grant_or_debt(migrated):
    accounts, _before = migrated
    allocations = db.session.execute(
        select(GrantAllocation.reservation_id, GrantAllocation.grant_id, GrantAllocation.amount)
    ).all()
    mine = {row.reservation_id: (row.grant_id, row.amount) for row in allocations}
    for slug, account in accounts.items():
        org = db.session.get(Organization, account["id"])
        open_holds = {i: a for i, (a, status) in account["holds"].items() if status == "open"}
        held = sum(open_holds.values())
        assert (org.balance, org.reserved, org.next_expiry_at) == (account["balance"], held, None)
        assert org.debt == max(-account["balance"], 0), slug
        grants = grants_of(org.id)
        if account["balance"] <= 0:
            assert grants == [], slug
            continue
        (grant,) = grants
        assert (grant.kind, grant.priority, grant.source_type, grant.expires_at) == (
            "opening",
            30,
            "opening",
            None,
        )
        assert grant.amount == account["balance"], slug
        assert (grant.remaining, grant.held) == (account["balance"] - held, held), slug
        assert abs(grant.created_at - utcnow()) < timedelta(minutes=5)  # dated in UTC
        assert {i: mine[i] for i in open_holds} == {i: (grant.id, a) for i, a in open_holds.items()}
    assert all(row.ledger_entry_id is None for row in db.session.scalars(select(GrantAllocation)))
    closed = [i for a in accounts.values() for i, (_, s) in a["holds"].items() if s != "open"]
    assert not set(closed) & set(mine)


def test_the_ledger_is_untouched_and_still_append_only(migrated):
    _accounts, before = migrated
    assert ledger_snapshot() == before
    assert (
        db.session.execute(
            text("SELECT count(*) FROM ledger_entries WHERE grant_id IS NOT NULL")
        ).scalar_one()
        == 0
    )
    for statement in ("UPDATE ledger_entries SET amount = 0", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError):
            db.session.execute(text(statement))
        db.session.rollback()


def test_the_service_works_on_the_migrated_balances(migrated):
    accounts, _before = migrated
    plain, holding, owing = (
        db.session.get(Organization, accounts[s]["id"]) for s in ("plain", "holding", "owing")
    )
    (opening,) = grants_of(plain.id)
    deduction = service.deduct(plain, service.Spend(UNIT, c(30)))
    assert drawn(deduction.deduction_id) == [(opening.id, c(30))]
    assert deduction.remaining_credits == c(70)

    (held_by,) = grants_of(holding.id)
    first, second = sorted(i for i, (_, s) in accounts["holding"]["holds"].items() if s == "open")
    captured = service.capture(holding, first, c(12))
    assert drawn(captured.deduction_id) == [(held_by.id, c(12))]
    service.release(holding, second)
    assert parts(held_by.id) == {"remaining": c(28), "consumed": c(12)}
    assert service.refund(holding, captured.deduction_id).returned_to[0].grant_id == held_by.id

    with pytest.raises(InsufficientCredits):
        service.deduct(owing, service.Spend(UNIT, c(1)))
    arriving = service.grant(owing.id, c(50), "purchase", description="top-up").grant_id
    assert parts(arriving) == {"remaining": c(30), "consumed": c(20)}  # the debt paid first
    assert service.get_balance(owing).owed == 0


@pytest.mark.parametrize("accounts_spec", [OVERHELD])
@pytest.mark.parametrize("ending", ["capture", "release"])
def test_holds_beyond_the_balance_stay_held_and_the_rest_is_debt(migrated, ending):
    accounts, _before = migrated
    for slug, account in accounts.items():
        org = db.session.get(Organization, account["id"])
        (hold_id,) = account["holds"]
        (grant,) = grants_of(org.id)
        assert (grant.amount, grant.remaining, grant.held) == (c(8), 0, c(8)), slug
        assert org.debt == c(8) - account["balance"], slug
        assert org.balance == account["balance"]
        if ending == "capture":
            service.capture(org, hold_id)
            expected_debt = c(8) - account["balance"]
        else:
            service.release(org, hold_id)  # the 8 given back pay the debt
            expected_debt = max(-account["balance"], 0)
        balance = service.get_balance(org)
        assert (balance.owed, balance.reserved) == (expected_debt, 0), slug


@pytest.mark.parametrize("server_timezone", ["Asia/Tokyo"])  # SQLite's clock is always UTC
def test_opening_grants_are_dated_in_utc_whatever_the_servers_timezone(migrated):
    accounts, _before = migrated
    (grant,) = grants_of(accounts["plain"]["id"])
    assert abs(grant.created_at - utcnow()) < timedelta(minutes=5)
