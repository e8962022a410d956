"""Every table of the database, in one place: the modules that declare them, imported for
their tables. Alembic's environment (campaigns/migrations/env.py, run by ``campaigns.db.migrate``)
and the test that compares the migrations with the tables read ``metadata`` from here.

Nothing else imports this module: the campaign's code needs only campaigns/models.py, and
must not load the console's or the transcription workers' modules by importing it. It is the
one module under campaigns/ that imports agent_console/ (tests/test_structure.py says so).
"""
from __future__ import annotations

from agent_console import schema as console_tables  # noqa: F401  teams, accounts, sessions, audit
from recordings import qa_schema as qa_tables  # noqa: F401  findings, QA verdicts and samples, proposals
from recordings import transcripts as transcript_tables  # noqa: F401  transcripts, their queue and search index

from . import models as campaign_tables  # noqa: F401  cases, campaigns, attempts, the vault, the hopper
from . import server_leases as lease_tables  # noqa: F401  which engine drives which Asterisk server
from .schema import Base

metadata = Base.metadata
