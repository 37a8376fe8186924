"""Payments may be marked ``mismatch``: paid, but not what the catalogue sold

Revision ID: 0014_payment_mismatch
Revises: 0013_departments
Create Date: 2026-12-04

"""

from alembic import op

revision = "0014_payment_mismatch"
down_revision = "0013_departments"
branch_labels = None
depends_on = None

OLD = "status IN ('open', 'processing', 'paid', 'failed', 'refunded', 'partially_refunded')"
NEW = (
    "status IN ('open', 'processing', 'paid', 'failed', 'refunded', 'partially_refunded', "
    "'mismatch')"
)


def _replace_check(condition: str) -> None:
    # SQLite cannot alter a constraint: batch mode copies billing_payments (it has no triggers).
    with op.batch_alter_table("billing_payments", recreate="auto") as batch:
        batch.drop_constraint("billing_payment_status", type_="check")
        batch.create_check_constraint("billing_payment_status", condition)


def upgrade():
    _replace_check(NEW)


def downgrade():
    op.execute("UPDATE billing_payments SET status = 'failed' WHERE status = 'mismatch'")
    _replace_check(OLD)
