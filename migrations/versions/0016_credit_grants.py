"""Credit grants: every credit sits in a grant with its own priority and expiry

Each organization's balance becomes one ``opening`` grant that never expires (its open holds
keep holding it); a negative balance (a claw-back already spent) becomes debt. The ledger learns
the kinds ``opening``, ``expire``, ``clawback``, ``freeze`` and ``unfreeze`` and which grant a
row concerns; plans learn their rollover policy, packages their validity, and disputes are kept.

Revision ID: 0016_credit_grants
Revises: 0015_accounts
Create Date: 2026-12-04

"""

import warnings
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0016_credit_grants"
down_revision = "0015_accounts"
branch_labels = None
depends_on = None

OLD_KINDS = ("grant", "purchase", "subscription", "signup_bonus", "adjustment", "deduct", "refund")
NEW_KINDS = (
    *OLD_KINDS[:5],
    "opening",
    "deduct",
    "refund",
    "expire",
    "clawback",
    "freeze",
    "unfreeze",
)
GRANT_KINDS = ("grant", "purchase", "subscription", "signup_bonus", "adjustment", "opening")
APPEND_ONLY_MESSAGE = "ledger entries are append-only"
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _kinds(kinds) -> str:
    return "kind IN ({})".format(", ".join(f"'{kind}'" for kind in kinds))


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _replace_ledger_kinds(kinds, *, add_grant_column: bool) -> None:
    if _sqlite():
        # Batch mode copies the table, which drops its append-only triggers: put them back.
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS ledger_entries_no_{action}")
        with warnings.catch_warnings(), op.batch_alter_table(
            "ledger_entries", recreate="always"
        ) as batch:
            # Reflecting the tables ledger_entries points at meets the expression index on
            # departments (lower(name)); batch mode does not copy that table, so it is moot.
            warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
            batch.drop_constraint("ledger_kind", type_="check")
            batch.create_check_constraint("ledger_kind", _kinds(kinds))
            if add_grant_column:
                batch.add_column(sa.Column("grant_id", BIGINT_ID, nullable=True))
                batch.create_foreign_key(
                    "fk_ledger_entries_grant", "credit_grants", ["grant_id"], ["id"]
                )
            else:
                batch.drop_column("grant_id")
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{action.lower()} BEFORE {action} "
                f"ON ledger_entries BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
        return
    op.drop_constraint("ledger_kind", "ledger_entries", type_="check")
    op.create_check_constraint("ledger_kind", "ledger_entries", _kinds(kinds))
    if add_grant_column:
        op.add_column("ledger_entries", sa.Column("grant_id", sa.BigInteger(), nullable=True))
        op.create_foreign_key(
            "fk_ledger_entries_grant", "ledger_entries", "credit_grants", ["grant_id"], ["id"]
        )
    else:
        op.drop_column("ledger_entries", "grant_id")


def _add_catalogue_columns() -> None:
    rollover_check = "rollover IN ('none', 'capped', 'full')"
    cap_check = (
        "(rollover = 'capped') = (rollover_cap IS NOT NULL) AND "
        "(rollover_cap IS NULL OR rollover_cap > 0)"
    )
    validity_check = "validity_days IS NULL OR validity_days > 0"
    if _sqlite():
        # Others point at these tables, so no batch copy: SQLite takes a CHECK inline instead.
        op.execute(
            "ALTER TABLE billing_plans ADD COLUMN rollover VARCHAR(10) NOT NULL DEFAULT 'none' "
            f"CONSTRAINT billing_plan_rollover CHECK ({rollover_check})"
        )
        op.execute(
            "ALTER TABLE billing_plans ADD COLUMN rollover_cap BIGINT "
            f"CONSTRAINT billing_plan_rollover_cap CHECK ({cap_check})"
        )
        op.execute(
            "ALTER TABLE billing_packages ADD COLUMN validity_days INTEGER "
            f"CONSTRAINT billing_package_validity CHECK ({validity_check})"
        )
        return
    op.add_column(
        "billing_plans",
        sa.Column("rollover", sa.String(10), nullable=False, server_default="none"),
    )
    op.add_column("billing_plans", sa.Column("rollover_cap", sa.BigInteger(), nullable=True))
    op.create_check_constraint("billing_plan_rollover", "billing_plans", rollover_check)
    op.create_check_constraint("billing_plan_rollover_cap", "billing_plans", cap_check)
    op.add_column("billing_packages", sa.Column("validity_days", sa.Integer(), nullable=True))
    op.create_check_constraint("billing_package_validity", "billing_packages", validity_check)


def _create_grant_tables() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("id", BIGINT_ID, primary_key=True),
        sa.Column(
            "organization_id", sa.Integer(), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("held", "consumed", "returned", "expired", "clawed_back", "frozen")
        ),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("effective_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("source_type", sa.String(20), nullable=False),
        sa.Column("source_ref", sa.String(255), nullable=True),
        sa.Column("subscription_ref", sa.String(255), nullable=True),
        sa.Column("period_start", sa.DateTime(), nullable=True),
        sa.Column("period_end", sa.DateTime(), nullable=True),
        sa.Column("rollover", sa.String(10), nullable=True),
        sa.Column("rollover_cap", sa.BigInteger(), nullable=True),
        sa.Column("carryovers", sa.Integer(), nullable=False),
        sa.Column("returned_from_id", BIGINT_ID, sa.ForeignKey("credit_grants.id"), nullable=True),
        sa.Column("created_by_user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("amount > 0", name="grant_amount_positive"),
        sa.CheckConstraint(
            "remaining >= 0 AND held >= 0 AND consumed >= 0 AND returned >= 0 "
            "AND expired >= 0 AND clawed_back >= 0 AND frozen >= 0",
            name="grant_parts_nonnegative",
        ),
        sa.CheckConstraint(
            "amount = remaining + held + consumed - returned + expired + clawed_back + frozen",
            name="grant_adds_up",
        ),
        sa.CheckConstraint(_kinds(GRANT_KINDS), name="grant_kind"),
    )
    op.create_index(
        "ix_credit_grants_burn",
        "credit_grants",
        ["organization_id", "priority", "expires_at", "created_at", "id"],
        postgresql_where=sa.text("remaining > 0"),
        sqlite_where=sa.text("remaining > 0"),
    )
    op.create_index(
        "ix_credit_grants_org_created", "credit_grants", ["organization_id", "created_at", "id"]
    )
    op.create_index("ix_credit_grants_source", "credit_grants", ["source_ref"])
    op.create_index("ix_credit_grants_subscription", "credit_grants", ["subscription_ref"])


def _create_allocations_and_disputes() -> None:
    op.create_table(
        "grant_allocations",
        sa.Column("id", BIGINT_ID, primary_key=True),
        sa.Column("grant_id", BIGINT_ID, sa.ForeignKey("credit_grants.id"), nullable=False),
        sa.Column("ledger_entry_id", BIGINT_ID, sa.ForeignKey("ledger_entries.id"), nullable=True),
        sa.Column("reservation_id", BIGINT_ID, sa.ForeignKey("reservations.id"), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_grant_allocations_entry", "grant_allocations", ["ledger_entry_id"])
    op.create_index("ix_grant_allocations_reservation", "grant_allocations", ["reservation_id"])
    op.create_index("ix_grant_allocations_grant", "grant_allocations", ["grant_id"])
    op.create_table(
        "billing_disputes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "organization_id", sa.Integer(), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("payment_id", sa.Integer(), sa.ForeignKey("billing_payments.id"), nullable=True),
        sa.Column("stripe_dispute_id", sa.String(255), nullable=False, unique=True),
        sa.Column("charge_id", sa.String(255), nullable=True),
        sa.Column("payment_intent_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("frozen_credits", sa.BigInteger(), nullable=False),
        sa.Column("clawed_back_credits", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_billing_disputes_org", "billing_disputes", ["organization_id", "id"])


def _open_balances_as_grants() -> None:
    """Every organization's balance becomes one ``opening`` grant; its open holds hold it.

    Before grants, a claw-back could leave the balance below what open holds kept (or below
    zero): the grant then holds all the holds keep, and the difference is debt, so that
    ``balance = remaining + held − debt`` from the first moment.
    """
    bind = op.get_bind()
    # Naive UTC, as every timestamp the portal writes; CURRENT_TIMESTAMP would be the
    # PostgreSQL server's local time, and the burn order reads created_at.
    now = datetime.now(UTC).replace(tzinfo=None)
    organizations = bind.execute(
        sa.text("SELECT id, balance, reserved FROM organizations ORDER BY id")
    ).all()
    for organization_id, balance, reserved in organizations:
        held = max(reserved, 0)
        amount = max(balance, held)
        debt = amount - balance
        if debt:
            bind.execute(
                sa.text("UPDATE organizations SET debt = :debt WHERE id = :id"),
                {"debt": debt, "id": organization_id},
            )
        if amount <= 0:
            continue
        grant_id = bind.execute(
            sa.text(
                "INSERT INTO credit_grants (organization_id, kind, amount, remaining, held, "
                "consumed, returned, expired, clawed_back, frozen, priority, effective_at, "
                "description, source_type, carryovers, created_at) VALUES (:org, 'opening', "
                ":amount, :remaining, :held, 0, 0, 0, 0, 0, 30, :now, "
                "'Balance before credit grants', 'opening', 0, :now) RETURNING id"
            ),
            {
                "org": organization_id,
                "amount": amount,
                "remaining": amount - held,
                "held": held,
                "now": now,
            },
        ).scalar_one()
        bind.execute(
            sa.text(
                "INSERT INTO grant_allocations (grant_id, reservation_id, amount, created_at) "
                "SELECT :grant_id, id, amount, :now FROM reservations "
                "WHERE organization_id = :org AND status = 'open'"
            ),
            {"grant_id": grant_id, "org": organization_id, "now": now},
        )


def upgrade():
    op.add_column(
        "organizations", sa.Column("debt", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("organizations", sa.Column("next_expiry_at", sa.DateTime(), nullable=True))
    _create_grant_tables()
    _replace_ledger_kinds(NEW_KINDS, add_grant_column=True)
    _create_allocations_and_disputes()
    _add_catalogue_columns()
    _open_balances_as_grants()


def downgrade():
    op.drop_table("billing_disputes")
    op.drop_table("grant_allocations")
    # The ledger is append-only: with rows of the new kinds, the old CHECK refuses (on purpose).
    _replace_ledger_kinds(OLD_KINDS, add_grant_column=False)
    op.drop_table("credit_grants")
    for table, column in (
        ("billing_packages", "validity_days"),
        ("billing_plans", "rollover_cap"),
        ("billing_plans", "rollover"),
        ("organizations", "next_expiry_at"),
        ("organizations", "debt"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
