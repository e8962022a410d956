"""Speech-to-text: the transcription queue, stored transcripts and their search index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 19:40:00
"""
from alembic import op
import sqlalchemy as sa
import campaigns.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('transcription_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('lease_expires_at', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('queued_at', campaigns.models.UTCDateTime(), nullable=False),
    sa.Column('started_at', campaigns.models.UTCDateTime(), nullable=True),
    sa.Column('finished_at', campaigns.models.UTCDateTime(), nullable=True),
    sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name=op.f('ck_transcription_jobs_state')),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_transcription_jobs_recording_id_recordings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcription_jobs')),
    sa.UniqueConstraint('recording_id', name=op.f('uq_transcription_jobs_recording_id'))
    )
    with op.batch_alter_table('transcription_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_transcription_jobs_state_lease', ['state', 'lease_expires_at'], unique=False)

    op.create_table('transcripts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=10), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.Column('agent_text', sa.Text(), nullable=False),
    sa.Column('debtor_text', sa.Text(), nullable=False),
    sa.Column('audio_seconds', sa.Numeric(precision=10, scale=2), nullable=True),
    sa.Column('speech_seconds', sa.Numeric(precision=10, scale=2), nullable=True),
    sa.Column('recorded_at', campaigns.models.UTCDateTime(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('created_at', campaigns.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_transcripts_agent_id_agents')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_transcripts_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_transcripts_recording_id_recordings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcripts')),
    sa.UniqueConstraint('recording_id', name=op.f('uq_transcripts_recording_id'))
    )
    with op.batch_alter_table('transcripts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transcripts_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_transcripts_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_transcripts_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('transcript_grams',
    sa.Column('gram', sa.String(length=40), nullable=False),
    sa.Column('transcript_id', sa.Integer(), nullable=False),
    sa.Column('leg', sa.SmallInteger(), nullable=False),
    sa.PrimaryKeyConstraint('gram', 'transcript_id', 'leg', name=op.f('pk_transcript_grams')),
    sqlite_with_rowid=False
    )


def downgrade() -> None:
    op.drop_table('transcript_grams')
    with op.batch_alter_table('transcripts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transcripts_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_transcripts_campaign_id'))
        batch_op.drop_index(batch_op.f('ix_transcripts_agent_id'))
    op.drop_table('transcripts')
    with op.batch_alter_table('transcription_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_transcription_jobs_state_lease')
    op.drop_table('transcription_jobs')
