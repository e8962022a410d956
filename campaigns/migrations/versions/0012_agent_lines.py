"""The agent's persistent line as the console shows it (``agent_presence.line``: calling,
up, down, lost; empty when the campaign rings the agent's phone per debtor), written by the
engine with the agent's state.

Revision ID: 0012
Revises: 0003
Create Date: 2026-12-07 12:30:00
"""
from alembic import op
import sqlalchemy as sa
import campaigns.models


revision = '0012'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('agent_presence', sa.Column('line', sa.String(length=10), nullable=True))
    op.add_column('agent_presence', sa.Column('line_since', campaigns.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column('agent_presence', 'line_since')
    op.drop_column('agent_presence', 'line')
