"""Department names are unique per organization regardless of case, and found regardless of case.

"Marketing" and "marketing" are one department: the database refuses the second (a unique
index on ``(organization_id, lower(name))``), and every lookup (deduct, check, batch, limits,
usage filters) finds the stored department whatever the caller's case, and answers with the
name as stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from flask import current_app
from flask_migrate import upgrade
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from portal import create_app
from portal.credits import service
from portal.credits.errors import DepartmentExists, DepartmentLimitExceeded
from portal.credits.models import Department, LedgerEntry
from portal.extensions import db
from tests.conftest import _pg_admin, _pg_url, assert_error, credits, require_postgres


@pytest.fixture
def org(make_org, make_price):
    make_price("gen", 5)
    organization = make_org(balance=100)
    service.set_department_limit(organization.id, "Marketing", credits(12))
    return organization


def charged_department(deduction_id: int) -> str:
    return db.session.scalar(
        select(Department.name)
        .join(LedgerEntry, LedgerEntry.department_id == Department.id)
        .where(LedgerEntry.id == deduction_id)
    )


@pytest.mark.parametrize("spelling", ["marketing", "MARKETING", "mArKeTiNg"])
def test_deduct_finds_the_department_in_any_case_and_honours_its_limit(org, spelling):
    spend = service.Spend("gen", department=spelling)
    first = service.deduct(org.organization, spend)
    assert charged_department(first.deduction_id) == "Marketing"
    service.deduct(org.organization, service.Spend("gen", department="Marketing"))
    with pytest.raises(DepartmentLimitExceeded, match="'Marketing'"):  # 10 used of 12
        service.deduct(org.organization, spend)
    assert service.check(org.organization, spend).reason == "department_limit_exceeded"


def test_a_batch_with_two_spellings_charges_one_department(org):
    lines = [
        service.Spend("gen", department="marketing"),
        service.Spend("gen", department="Marketing"),
    ]
    result = service.deduct_batch(org.organization, lines)
    assert {charged_department(d.deduction_id) for d in result.lines} == {"Marketing"}
    (marketing,) = db.session.scalars(select(Department))
    assert marketing.used_this_month == credits(10)


def test_setting_a_limit_in_another_case_updates_the_stored_department(org):
    department = service.set_department_limit(org.id, "MARKETING", credits(50))
    assert (department.name, department.monthly_limit) == ("Marketing", credits(50))
    assert db.session.scalar(select(func.count()).select_from(Department)) == 1


def test_creating_a_department_in_another_case_is_refused(org):
    with pytest.raises(DepartmentExists, match="already exists"):
        service.create_department(org.id, "marketing", None)
    assert db.session.scalar(select(func.count()).select_from(Department)) == 1
    created = service.create_department(org.id, "Research", None)
    assert created.name == "Research"


def test_other_organizations_may_use_the_same_name(org, make_org):
    other = make_org()
    assert service.create_department(other.id, "marketing", None).name == "marketing"


def test_the_database_refuses_a_case_duplicate(org):
    """The index, not only the service: two concurrent creators cannot both win."""
    with pytest.raises(IntegrityError):
        db.session.execute(
            insert(Department).values(organization_id=org.id, name="marketing", used_this_month=0)
        )
    db.session.rollback()


def test_the_lookup_is_one_indexed_query(org, app):
    """The deduct hot path looks the department up through the (organization, lower(name))
    index, never by scanning the organization's departments."""
    statement = service.department_lookup(org.id, "marketing")
    compiled = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
    if app.config["BACKEND"] == "sqlite":
        plan = db.session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
        assert "uq_departments_org_lower_name" in " ".join(str(row) for row in plan)
    else:
        db.session.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table scans anyway
        plan = db.session.execute(text(f"EXPLAIN {compiled}")).scalars().all()
        assert "uq_departments_org_lower_name" in " ".join(plan)
        db.session.rollback()


# --- over HTTP ---------------------------------------------------------------------------------


def test_api_deduct_and_check_in_another_case(api, org):
    body = {"feature_key": "gen", "department": "marketing"}
    assert api.post("/credits/deduct", org, json=body).status_code == 201
    assert api.post("/credits/check", org, json=body).json["has_enough"] is True
    assert api.post("/credits/deduct", org, json=body).status_code == 201
    over = api.post("/credits/deduct", org, json=body)
    assert_error(over, 402, "department_limit_exceeded")
    assert "'Marketing'" in over.json["error"]["message"]
    rows = api.get("/usage?department=MARKETING", org).json["data"]
    assert [row["department"] for row in rows] == ["Marketing", "Marketing"]


def test_api_put_limit_in_another_case_answers_with_the_stored_name(api, org):
    response = api.put("/departments/marketing/limit", org, json={"monthly_limit": 40})
    assert response.status_code == 200 and response.json["name"] == "Marketing"
    listed = api.get("/departments", org).json["data"]
    assert [(d["name"], d["monthly_limit"]) for d in listed] == [("Marketing", 40)]


# --- the migration -----------------------------------------------------------------------------


MIGRATION = "0013_departments"


def alembic_config(app):
    return app.extensions["migrate"].migrate.get_config()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_before(request: pytest.FixtureRequest, tmp_path: Path):
    """An empty database migrated to the revision before the case-insensitive index."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    else:
        require_postgres()
        name = f"portal_migration_{tmp_path.name[-20:].replace('-', '_')}".lower()
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _pg_admin(f'CREATE DATABASE "{name}"')
        url = _pg_url(name)
        request.addfinalizer(lambda: _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        previous = ScriptDirectory.from_config(alembic_config(app)).get_revision(MIGRATION)
        upgrade(revision=previous.down_revision)
        yield app
        db.session.remove()
        db.engine.dispose()


def _old_departments(*names: str) -> None:
    db.session.execute(
        text(
            "INSERT INTO organizations (slug, name, balance, reserved, created_at) "
            "VALUES ('acme', 'Acme', 0, 0, CURRENT_TIMESTAMP)"
        )
    )
    for name in names:
        db.session.execute(
            text(
                "INSERT INTO departments (organization_id, name, used_this_month, created_at) "
                "VALUES (1, :name, 0, CURRENT_TIMESTAMP)"
            ),
            {"name": name},
        )
    db.session.commit()


def alembic_upgrade() -> None:
    """Alembic itself: Flask-Migrate's wrapper would turn the migration's error into an exit."""
    command.upgrade(alembic_config(current_app), MIGRATION)


def test_the_migration_refuses_to_guess_between_case_duplicates(database_before):
    """Merging would rewrite ledger rows (never allowed) and renaming would move a caller's
    charges to another department's limit, so the upgrade stops and says what to rename."""
    _old_departments("Marketing", "marketing", "Support")
    with pytest.raises(
        RuntimeError,
        match=r"differ only by case.*organization 1: 'Marketing' \(id 1\), 'marketing' \(id 2\)",
    ):
        alembic_upgrade()
    db.session.rollback()
    db.session.execute(text("UPDATE departments SET name = 'Marketing EU' WHERE id = 2"))
    db.session.commit()
    alembic_upgrade()
    with pytest.raises(IntegrityError):
        db.session.execute(
            text(
                "INSERT INTO departments (organization_id, name, used_this_month, created_at) "
                "VALUES (1, 'SUPPORT', 0, CURRENT_TIMESTAMP)"
            )
        )
    db.session.rollback()
