"""Agent presence (console <-> engine), the engine's live figures, and appointments.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:30:00
"""
from alembic import op
import sqlalchemy as sa
import campaigns.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_presence',
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('requested', sa.String(length=20), nullable=False),
    sa.Column('requested_reason', sa.String(length=40), nullable=True),
    sa.Column('requested_at', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('state_since', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('call_id', sa.String(length=63), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_presence_agent_id_agents')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_agent_presence_campaign_id_campaigns')),
    sa.PrimaryKeyConstraint('agent_id', name=op.f('pk_agent_presence'))
    )
    op.create_table('engine_status',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=20), nullable=False),
    sa.Column('dial_level', sa.Numeric(precision=6, scale=2), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('agents', sa.Integer(), nullable=False),
    sa.Column('updated_at', campaigns.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_engine_status_campaign_id_campaigns')),
    sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_engine_status'))
    )
    op.create_table('appointments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('phone_id', sa.Integer(), nullable=True),
    sa.Column('at', campaigns.models.UTCDateTime(), nullable=False),
    sa.Column('requested_by', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('recorded_by', sa.String(length=100), nullable=False),
    sa.Column('recorded_at', campaigns.models.UTCDateTime(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('kept_attempt_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], name=op.f('fk_appointments_attempt_id_attempts')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_appointments_case_id_cases')),
    sa.ForeignKeyConstraint(['kept_attempt_id'], ['attempts.id'], name=op.f('fk_appointments_kept_attempt_id_attempts')),
    sa.ForeignKeyConstraint(['phone_id'], ['phones.id'], name=op.f('fk_appointments_phone_id_phones')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appointments'))
    )
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_appointments_case_id'), ['case_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_appointments_case_id'))
    op.drop_table('appointments')
    op.drop_table('engine_status')
    op.drop_table('agent_presence')
