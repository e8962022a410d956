"""The hopper: each case's dial state per campaign (a cache of the policy's answer), the
campaigns' hopper clocks, and the attempt indexes the per-dial paths read.

Revision ID: 0008
Revises: 0003
Create Date: 2026-12-07 03:00:00
"""
from alembic import op
import sqlalchemy as sa
import campaigns.models


revision = '0008'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dial_states',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('days_past_due', sa.Integer(), nullable=False),
    sa.Column('zone', sa.String(length=64), nullable=False),
    sa.Column('eligible_at', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('valid_until', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('reopen_at', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('blocked_rule', sa.String(length=40), nullable=True),
    sa.Column('follow_up_kind', sa.String(length=20), nullable=True),
    sa.Column('follow_up_due_at', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('assigned_at', campaigns.models.UTCDateTime(), nullable=False),
    sa.Column('last_dialled_at', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('last_abandoned', sa.Boolean(), nullable=False),
    sa.Column('needs_agent_until', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('computed_at', campaigns.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id', 'case_id'], ['campaign_cases.campaign_id', 'campaign_cases.case_id'],
                            name=op.f('fk_dial_states_campaign_id_campaign_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'case_id', name=op.f('pk_dial_states'))
    )
    with op.batch_alter_table('dial_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dial_states_case_id'), ['case_id'], unique=False)
        batch_op.create_index('ix_dial_states_queue', ['campaign_id', 'phase', sa.text('amount_cents DESC'),
                                                       sa.text('days_past_due DESC'), 'case_id'], unique=False)
        batch_op.create_index('ix_dial_states_eligible', ['campaign_id', 'phase', 'eligible_at'], unique=False)
        batch_op.create_index('ix_dial_states_valid', ['campaign_id', 'phase', 'valid_until'], unique=False)
        batch_op.create_index('ix_dial_states_figures', ['campaign_id', 'phase', 'blocked_rule', 'eligible_at'],
                              unique=False)
    op.create_table('hopper_clocks',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('clock', campaigns.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_hopper_clocks_campaign_id_campaigns')),
    sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_hopper_clocks'))
    )
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index('ix_attempts_campaign_planned', ['campaign_id', 'planned_at'], unique=False)
        batch_op.create_index('ix_attempts_campaign_state', ['campaign_id', 'state'], unique=False)
    # Campaigns created before the hopper: every case is to be asked (DUE).
    op.execute(sa.text(
        "INSERT INTO dial_states (campaign_id, case_id, phase, amount_cents, days_past_due, zone, assigned_at, "
        "last_abandoned) SELECT cc.campaign_id, cc.case_id, 5, CAST(ROUND(c.amount_due * 100) AS BIGINT), "
        "c.days_past_due, COALESCE(c.timezone, p.timezone), c.created_at, FALSE "
        "FROM campaign_cases cc JOIN cases c ON c.id = cc.case_id JOIN campaigns p ON p.id = cc.campaign_id"))


def downgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_campaign_state')
        batch_op.drop_index('ix_attempts_campaign_planned')
    op.drop_table('hopper_clocks')
    with op.batch_alter_table('dial_states', schema=None) as batch_op:
        batch_op.drop_index('ix_dial_states_figures')
        batch_op.drop_index('ix_dial_states_valid')
        batch_op.drop_index('ix_dial_states_eligible')
        batch_op.drop_index('ix_dial_states_queue')
        batch_op.drop_index(batch_op.f('ix_dial_states_case_id'))
    op.drop_table('dial_states')
