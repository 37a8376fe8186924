"""The database itself refuses to rewrite history: ledger_entries is append-only."""

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from portal.credits.models import LedgerEntry
from portal.extensions import db
from tests.conftest import ledger_rows

STATEMENTS = {
    "update amount": "UPDATE ledger_entries SET amount = amount + 1 WHERE id = :id",
    "update description": "UPDATE ledger_entries SET description = 'edited' WHERE id = :id",
    "delete one": "DELETE FROM ledger_entries WHERE id = :id",
    "delete all": "DELETE FROM ledger_entries WHERE id = :id OR id <> :id",
}


def test_raw_sql_cannot_change_or_remove_ledger_rows(make_org, db_state, subtests):
    org = make_org(balance=5)
    entry = ledger_rows(org.id)[0]
    before = db_state()
    for name, statement in STATEMENTS.items():
        with subtests.test(name), db.engine.connect() as connection:
            with pytest.raises(DBAPIError, match="append-only"):
                connection.execute(text(statement), {"id": entry.id})
                connection.commit()
            connection.rollback()
    assert db_state() == before
    assert [(row.id, row.amount, row.description) for row in ledger_rows(org.id)] == [
        (entry.id, entry.amount, entry.description)
    ]


def test_raw_sql_may_still_append(make_org):
    org = make_org(balance=5)
    first = ledger_rows(org.id)[0]
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ledger_entries (organization_id, kind, amount, balance_after, "
                "created_at) SELECT organization_id, 'adjustment', 0, balance_after, created_at "
                "FROM ledger_entries WHERE id = :id"
            ),
            {"id": first.id},
        )
    assert [row.amount for row in ledger_rows(org.id)] == [first.amount, 0]


def test_the_orm_refuses_too(make_org):
    org = make_org(balance=5)
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.organization_id == org.id))
    original = entry.description
    entry.description = "edited"
    with pytest.raises(RuntimeError, match="append-only"):
        db.session.flush()
    db.session.rollback()
    db.session.delete(entry)
    with pytest.raises(RuntimeError, match="append-only"):
        db.session.flush()
    db.session.rollback()
    assert [row.description for row in ledger_rows(org.id)] == [original]
