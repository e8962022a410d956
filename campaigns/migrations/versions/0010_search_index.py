"""Transcript search read newest first: ``transcript_postings`` (gram, call time, transcript,
legs) replaces ``transcript_grams``; each leg's search text is written again with the one
normaliser (OpenCC traditional → simplified, Chinese numerals as digits), and every Chinese
character is indexed on its own as well as in bigrams.

The data step reads every transcript once (in batches of 500): on a large database it takes
a while (about 2,000 transcripts a second on one core).

Revision ID: 0010
Revises: 0004
Create Date: 2026-12-07 04:00:00
"""
from alembic import op
import sqlalchemy as sa
import campaigns.models


revision = '0010'
down_revision = '0004'
branch_labels = None
depends_on = None

BATCH = 500


def _transcripts():
    return sa.table('transcripts', sa.column('id', sa.Integer()), sa.column('document', sa.Text()),
                    sa.column('agent_text', sa.Text()), sa.column('debtor_text', sa.Text()),
                    sa.column('recorded_at', campaigns.models.UTCDateTime()))


def upgrade() -> None:
    op.create_table('transcript_postings',
    sa.Column('gram', sa.String(length=40), nullable=False),
    sa.Column('rank', sa.BigInteger(), nullable=False),
    sa.Column('transcript_id', sa.Integer(), nullable=False),
    sa.Column('legs', sa.SmallInteger(), nullable=False),
    sa.PrimaryKeyConstraint('gram', 'rank', 'transcript_id', name=op.f('pk_transcript_postings')),
    sqlite_with_rowid=False
    )
    from recordings import search_index
    from recordings.transcript import Transcript
    bind = op.get_bind()
    t = _transcripts()
    postings = sa.table('transcript_postings', sa.column('gram'), sa.column('rank'), sa.column('transcript_id'),
                        sa.column('legs'))
    last = 0
    while True:
        rows = bind.execute(sa.select(t.c.id, t.c.document, t.c.recorded_at).where(t.c.id > last)
                            .order_by(t.c.id).limit(BATCH)).all()
        if not rows:
            break
        index = []
        for row in rows:
            texts = search_index.leg_texts(Transcript.from_json(row.document))
            bind.execute(t.update().where(t.c.id == row.id)
                         .values(agent_text=texts['agent'], debtor_text=texts['debtor']))
            index += search_index.postings(row.id, row.recorded_at, texts['agent'], texts['debtor'])
        if index:
            bind.execute(postings.insert(), index)
        last = rows[-1].id
    op.drop_table('transcript_grams')


def downgrade() -> None:
    op.create_table('transcript_grams',
    sa.Column('gram', sa.String(length=40), nullable=False),
    sa.Column('transcript_id', sa.Integer(), nullable=False),
    sa.Column('leg', sa.SmallInteger(), nullable=False),
    sa.PrimaryKeyConstraint('gram', 'transcript_id', 'leg', name=op.f('pk_transcript_grams')),
    sqlite_with_rowid=False
    )
    # The bigram index 0004 wrote, from the texts as they are now.
    bind = op.get_bind()
    t = _transcripts()
    grams = sa.table('transcript_grams', sa.column('gram'), sa.column('transcript_id'), sa.column('leg'))
    last = 0
    while True:
        rows = bind.execute(sa.select(t.c.id, t.c.agent_text, t.c.debtor_text).where(t.c.id > last)
                            .order_by(t.c.id).limit(BATCH)).all()
        if not rows:
            break
        index = []
        for row in rows:
            for code, text in ((0, row.agent_text), (1, row.debtor_text)):
                found = set()
                for token in text.split():
                    if len(token) > 1 and '\u3400' <= token[0] <= '\u9fff':
                        found.update(token[i:i + 2] for i in range(len(token) - 1))
                    else:
                        found.add(token[:40])
                index += [{'gram': g, 'transcript_id': row.id, 'leg': code} for g in sorted(found)]
        if index:
            bind.execute(grams.insert(), index)
        last = rows[-1].id
    op.drop_table('transcript_postings')
