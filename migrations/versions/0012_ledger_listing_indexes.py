"""Ledger listings by (created_at, id): indexes that serve them, and one less to write

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23

"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    # Plain CREATE/DROP INDEX: a SQLite batch "recreate" would drop the append-only triggers.
    op.create_index(
        "ix_ledger_org_created_id", "ledger_entries", ["organization_id", "created_at", "id"]
    )
    op.create_index(
        "ix_ledger_org_feature_created",
        "ledger_entries",
        ["organization_id", "feature_key", "created_at", "id"],
    )
    op.drop_index("ix_ledger_org_created", table_name="ledger_entries")
    op.drop_index("ix_ledger_org_feature_id", table_name="ledger_entries")
    # Nothing reads by (organization, kind, id) any more; every deduct paid to maintain it.
    op.drop_index("ix_ledger_org_kind_id", table_name="ledger_entries")


def downgrade():
    op.create_index("ix_ledger_org_kind_id", "ledger_entries", ["organization_id", "kind", "id"])
    op.create_index(
        "ix_ledger_org_feature_id", "ledger_entries", ["organization_id", "feature_key", "id"]
    )
    op.create_index("ix_ledger_org_created", "ledger_entries", ["organization_id", "created_at"])
    op.drop_index("ix_ledger_org_feature_created", table_name="ledger_entries")
    op.drop_index("ix_ledger_org_created_id", table_name="ledger_entries")
