"""billing: catalogue, Stripe customers, subscriptions, invoices, payments, webhook events

Revision ID: 0010
Revises: 0002
Create Date: 2026-11-23 16:02:15.894776

Hand-checked: only new tables, so nothing is batch-recreated (a SQLite "recreate" of
ledger_entries would drop its append-only triggers). The catalogue is seeded here from the
source documents so that a fresh clone can sell credits without ``flask demo``; the seed rows
are frozen in this file, as migrations must be.
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0002'
branch_labels = None
depends_on = None

MICRO = 1_000_000
PLANS = [
    # (lookup_key, name, price in cents, credits a month, description)
    ("plan_starter", "Starter", 2_900, 500, "For trying things out and small teams."),
    ("plan_professional", "Professional", 9_900, 2_000, "For teams shipping AI features."),
    ("plan_enterprise", "Enterprise", 29_900, 10_000, "For heavy, steady usage."),
]
PACKAGES = [
    ("package_small", "Small", 990, 100, "A quick top-up."),
    ("package_medium", "Medium", 3_990, 500, "A month of light use."),
    ("package_large", "Large", 14_990, 2_000, "For a busy month."),
    ("package_jumbo", "Jumbo", 34_990, 5_000, "The best price per credit."),
]


def _catalogue_columns():
    return [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('lookup_key', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('price_cents', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('credits', sa.BigInteger(), nullable=False),
        sa.Column('sort_order', sa.Integer(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('archived_at', sa.DateTime(), nullable=True),
        sa.Column('stripe_product_id', sa.String(length=255), nullable=True),
        sa.Column('stripe_price_id', sa.String(length=255), nullable=True),
        sa.Column('synced_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('lookup_key'),
    ]


def _seed(table, rows):
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    op.bulk_insert(table, [
        {
            'lookup_key': key, 'name': name, 'description': description,
            'price_cents': cents, 'currency': 'usd', 'credits': credits * MICRO,
            'sort_order': order, 'active': True, 'created_at': now, 'updated_at': now,
            **({'interval': 'month'} if 'interval' in table.c else {}),
        }
        for order, (key, name, cents, credits, description) in enumerate(rows, start=1)
    ])


def upgrade():
    plans = op.create_table('billing_plans',
    *_catalogue_columns(),
    sa.Column('interval', sa.String(length=8), nullable=False),
    sa.CheckConstraint('credits > 0', name='billing_plan_credits'),
    sa.CheckConstraint('price_cents >= 0', name='billing_plan_price'),
    )
    packages = op.create_table('billing_packages',
    *_catalogue_columns(),
    sa.CheckConstraint('credits > 0', name='billing_package_credits'),
    sa.CheckConstraint('price_cents >= 0', name='billing_package_price'),
    )
    op.create_table('stripe_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('event_created', sa.BigInteger(), nullable=True),
    sa.Column('outcome', sa.String(length=255), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('processed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    op.create_table('billing_customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('stripe_customer_id', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organization_id'),
    sa.UniqueConstraint('stripe_customer_id')
    )
    op.create_table('billing_invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=True),
    sa.Column('stripe_invoice_id', sa.String(length=255), nullable=False),
    sa.Column('stripe_subscription_id', sa.String(length=255), nullable=True),
    sa.Column('number', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('billing_reason', sa.String(length=64), nullable=True),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('invoice_date', sa.DateTime(), nullable=False),
    sa.Column('period_start', sa.DateTime(), nullable=True),
    sa.Column('period_end', sa.DateTime(), nullable=True),
    sa.Column('hosted_invoice_url', sa.Text(), nullable=True),
    sa.Column('invoice_pdf', sa.Text(), nullable=True),
    sa.Column('credits_granted', sa.BigInteger(), nullable=False),
    sa.Column('paid_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.ForeignKeyConstraint(['plan_id'], ['billing_plans.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('stripe_invoice_id')
    )
    op.create_index('ix_billing_invoices_org_date', 'billing_invoices', ['organization_id', 'invoice_date'], unique=False)
    op.create_index('ix_billing_invoices_stripe_subscription_id', 'billing_invoices', ['stripe_subscription_id'], unique=False)

    op.create_table('billing_payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('checkout_session_id', sa.String(length=255), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=True),
    sa.Column('plan_id', sa.Integer(), nullable=True),
    sa.Column('credits', sa.BigInteger(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
    sa.Column('stripe_subscription_id', sa.String(length=255), nullable=True),
    sa.Column('refunded_cents', sa.BigInteger(), nullable=False),
    sa.Column('refunded_credits', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('paid_at', sa.DateTime(), nullable=True),
    sa.Column('fulfilled_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("mode IN ('payment', 'subscription')", name='billing_payment_mode'),
    sa.CheckConstraint("status IN ('open', 'processing', 'paid', 'failed', 'refunded', 'partially_refunded')", name='billing_payment_status'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.ForeignKeyConstraint(['package_id'], ['billing_packages.id'], ),
    sa.ForeignKeyConstraint(['plan_id'], ['billing_plans.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('checkout_session_id')
    )
    op.create_index('ix_billing_payments_org', 'billing_payments', ['organization_id', 'id'], unique=False)
    op.create_index('ix_billing_payments_payment_intent_id', 'billing_payments', ['payment_intent_id'], unique=False)

    op.create_table('billing_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=True),
    sa.Column('stripe_subscription_id', sa.String(length=255), nullable=False),
    sa.Column('stripe_customer_id', sa.String(length=255), nullable=True),
    sa.Column('stripe_item_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('current_period_start', sa.DateTime(), nullable=True),
    sa.Column('current_period_end', sa.DateTime(), nullable=True),
    sa.Column('cancel_at_period_end', sa.Boolean(), nullable=False),
    sa.Column('canceled_at', sa.DateTime(), nullable=True),
    sa.Column('last_event_created', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.ForeignKeyConstraint(['plan_id'], ['billing_plans.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('stripe_subscription_id')
    )
    op.create_index('ix_billing_subscriptions_org', 'billing_subscriptions', ['organization_id', 'id'], unique=False)

    _seed(plans, PLANS)
    _seed(packages, PACKAGES)


def downgrade():
    op.drop_index('ix_billing_subscriptions_org', table_name='billing_subscriptions')
    op.drop_table('billing_subscriptions')
    op.drop_index('ix_billing_payments_payment_intent_id', table_name='billing_payments')
    op.drop_index('ix_billing_payments_org', table_name='billing_payments')
    op.drop_table('billing_payments')
    op.drop_index('ix_billing_invoices_stripe_subscription_id', table_name='billing_invoices')
    op.drop_index('ix_billing_invoices_org_date', table_name='billing_invoices')
    op.drop_table('billing_invoices')
    op.drop_table('billing_customers')
    op.drop_table('stripe_events')
    op.drop_table('billing_packages')
    op.drop_table('billing_plans')
