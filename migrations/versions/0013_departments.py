"""Department names unique per organization regardless of case

Revision ID: 0013_departments
Revises: 0012
Create Date: 2026-12-04

"""

import sqlalchemy as sa
from alembic import op

# A named id: other 0013 migrations of the same issue (accounts, billing) branch from 0012 too.
revision = "0013_departments"
down_revision = "0012"
branch_labels = None
depends_on = None

INDEX = "uq_departments_org_lower_name"


def upgrade():
    # Existing names that differ only by case cannot be resolved here without a guess: merging
    # them would rewrite ledger rows (which are never updated), and renaming one would silently
    # move the charges its callers send to the other department and its limit. Stop and say
    # which rows to rename (a department row may be renamed; the ledger points at its id).
    clashes = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT d.organization_id, d.id, d.name FROM departments d"
                " WHERE EXISTS (SELECT 1 FROM departments o"
                "  WHERE o.organization_id = d.organization_id"
                "   AND lower(o.name) = lower(d.name) AND o.id <> d.id)"
                " ORDER BY d.organization_id, lower(d.name), d.id"
            )
        )
        .all()
    )
    if clashes:
        listed: dict[int, list[str]] = {}
        for organization_id, department_id, name in clashes:
            listed.setdefault(organization_id, []).append(f"{name!r} (id {department_id})")
        details = "; ".join(
            f"organization {org}: {', '.join(names)}" for org, names in listed.items()
        )
        raise RuntimeError(
            "Department names must be unique regardless of case, but these differ only by "
            f"case: {details}. Rename all but one of each group (UPDATE departments SET name = "
            "'…' WHERE id = …) and run the upgrade again; nothing was changed."
        )
    # Plain CREATE INDEX on both databases (a SQLite batch "recreate" of the table is not
    # needed for an index). lower() agrees on both: department names are ASCII only.
    op.create_index(
        INDEX, "departments", ["organization_id", sa.text("lower(name)")], unique=True
    )


def downgrade():
    op.drop_index(INDEX, table_name="departments")
