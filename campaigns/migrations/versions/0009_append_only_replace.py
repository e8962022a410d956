"""Append-only, closed against REPLACE: SQLite's ``INSERT OR REPLACE`` (and ``REPLACE INTO``,
and ``INSERT ... ON CONFLICT`` that would replace) deletes the row it collides with without
firing DELETE triggers (unless ``PRAGMA recursive_triggers`` is on, which nothing here sets),
so the triggers of 0002 and 0005 let a row of ``console_audit``, ``recording_access`` or
``purge_audit`` be rewritten. A BEFORE INSERT trigger now refuses any insert whose primary key
is already there, before SQLite resolves the conflict.

PostgreSQL needs nothing new: ``INSERT ... ON CONFLICT DO UPDATE`` fires the BEFORE UPDATE row
triggers of 0002/0005 (refused), ``TRUNCATE`` their BEFORE TRUNCATE triggers (refused); tests
show both (tests/test_append_only.py).

Revision ID: 0009
Revises: 0005
Create Date: 2026-11-27 10:00:00
"""
from alembic import op


revision = '0009'
down_revision = '0005'
branch_labels = None
depends_on = None

#: Every append-only table (0002: the vault's purge audit and access log; 0005: the console's audit log).
APPEND_ONLY = ("console_audit", "recording_access", "purge_audit")


def no_replace(table: str) -> str:
    return (f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id) "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in APPEND_ONLY:
        op.execute(no_replace(table))


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
