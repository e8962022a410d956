"""Which engine drives which Asterisk server (campaigns/server_leases.py): one lease per
server, taken over by a standby engine only once it has run out; and on which server each
attempt was dialled (``attempts.server``), so that each server's engine takes up only its own
calls after a crash.

Revision ID: 0011
Revises: 0001
Create Date: 2026-12-07 06:00:00
"""
from alembic import op
import sqlalchemy as sa
import campaigns.models


revision = '0011'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('server_leases',
    sa.Column('server', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('term', sa.Integer(), nullable=False),
    sa.Column('acquired_at', campaigns.models.UTCDateTime(), nullable=False),
    sa.Column('renewed_at', campaigns.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', campaigns.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('server', name=op.f('pk_server_leases'))
    )
    # A plain ADD COLUMN (no table rebuild: millions of attempts, and their triggers, stay).
    op.add_column('attempts', sa.Column('server', sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column('attempts', 'server')
    op.drop_table('server_leases')
