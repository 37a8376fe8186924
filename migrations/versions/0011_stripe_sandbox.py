"""stripe sandbox: objects, webhook deliveries, clock state, idempotency keys

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 16:40:00.000000

Hand-checked: only new ``sandbox_`` tables, so nothing is batch-recreated (a SQLite "recreate"
of ledger_entries would drop its append-only triggers). The offline Stripe sandbox owns these
tables; the product never reads them.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table('sandbox_objects',
    sa.Column('pk', BIGINT_PK, nullable=False),
    sa.Column('id', sa.String(length=80), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('customer', sa.String(length=80), nullable=True),
    sa.Column('lookup_key', sa.String(length=200), nullable=True),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('id'),
    sa.UniqueConstraint('lookup_key')
    )
    op.create_index('ix_sandbox_objects_customer', 'sandbox_objects', ['customer'], unique=False)
    op.create_index('ix_sandbox_objects_type_pk', 'sandbox_objects', ['type', 'pk'], unique=False)

    op.create_table('sandbox_deliveries',
    sa.Column('id', BIGINT_PK, nullable=False),
    sa.Column('event_id', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.Column('claim_token', sa.String(length=32), nullable=True),
    sa.Column('last_endpoint', sa.String(length=500), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name='sandbox_delivery_status'),
    sa.ForeignKeyConstraint(['event_id'], ['sandbox_objects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_sandbox_deliveries_event_id', 'sandbox_deliveries', ['event_id'], unique=False)
    op.create_index('ix_sandbox_deliveries_due', 'sandbox_deliveries', ['status', 'next_attempt_at'], unique=False)

    op.create_table('sandbox_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clock_offset', sa.BigInteger(), nullable=False),
    sa.Column('last_api_host_url', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )

    op.create_table('sandbox_idempotency_keys',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index('ix_sandbox_idempotency_keys_created_at', 'sandbox_idempotency_keys', ['created_at'], unique=False)


def downgrade():
    op.drop_index('ix_sandbox_idempotency_keys_created_at', table_name='sandbox_idempotency_keys')
    op.drop_table('sandbox_idempotency_keys')
    op.drop_table('sandbox_state')
    op.drop_index('ix_sandbox_deliveries_due', table_name='sandbox_deliveries')
    op.drop_index('ix_sandbox_deliveries_event_id', table_name='sandbox_deliveries')
    op.drop_table('sandbox_deliveries')
    op.drop_index('ix_sandbox_objects_type_pk', table_name='sandbox_objects')
    op.drop_index('ix_sandbox_objects_customer', table_name='sandbox_objects')
    op.drop_table('sandbox_objects')
