"""Accounts: session versions, email verification, single-use account links, revocable invitations

Revision ID: 0015_accounts
Revises: 0014_payment_mismatch
Create Date: 2026-12-04

"""

import sqlalchemy as sa
from alembic import op

revision = "0015_accounts"
down_revision = "0014_payment_mismatch"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN (no batch "recreate"): SQLite cannot drop ``users`` while others point at it.
    op.add_column("users", sa.Column("email_verified_at", sa.DateTime(), nullable=True))
    op.add_column(
        "users", sa.Column("session_version", sa.Integer(), nullable=False, server_default="1")
    )
    if op.get_bind().dialect.name == "sqlite":  # SQLite takes a reference only inline
        op.execute(
            "ALTER TABLE users ADD COLUMN signup_organization_id INTEGER "
            "REFERENCES organizations (id)"
        )
    else:
        op.add_column("users", sa.Column("signup_organization_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_users_signup_organization_id",
            "users",
            "organizations",
            ["signup_organization_id"],
            ["id"],
        )
    # Everyone who signed up before verification existed already had their bonus.
    op.execute("UPDATE users SET email_verified_at = created_at")
    op.add_column("invitations", sa.Column("revoked_at", sa.DateTime(), nullable=True))
    op.create_table(
        "account_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "purpose IN ('password_reset', 'email_verify', 'email_change')",
            name="account_token_purpose",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_account_tokens_user_id", "account_tokens", ["user_id"])


def downgrade():
    op.drop_index("ix_account_tokens_user_id", table_name="account_tokens")
    op.drop_table("account_tokens")
    with op.batch_alter_table("invitations") as batch_op:
        batch_op.drop_column("revoked_at")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_users_signup_organization_id", "users", type_="foreignkey")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("signup_organization_id")
        batch_op.drop_column("session_version")
        batch_op.drop_column("email_verified_at")
