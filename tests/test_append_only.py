"""The append-only tables (console_audit, recording_access, purge_audit) refuse every way of
rewriting a row, not only UPDATE and DELETE: SQLite's INSERT OR REPLACE / REPLACE INTO / upsert
(migration 0009), PostgreSQL's INSERT ... ON CONFLICT DO UPDATE and TRUNCATE (the triggers of
0002 and 0005). On both databases; new rows still go in."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from agent_console import accounts
from agent_console.schema import AuditEntry
from campaigns.db import sessions, transaction
from campaigns.models import PurgeAudit, RecordingAccess
from helpers import NOW, seed

TABLES = {
    "console_audit": ("username", "'forged'"),
    "recording_access": ("accessed_by", "'forged'"),
    "purge_audit": ("purged_by", "'forged'"),
}


def _rows(factory, root: Path) -> dict[str, int]:
    """One row in each append-only table; their ids."""
    ids = seed(factory, root)
    with transaction(factory) as s:
        accounts.audit(s, NOW, "sign_in", "ok", username="alice")
        s.add(RecordingAccess(accessed_at=NOW, accessed_by="quinn", reason="qa review", action="play",
                              recording_id=ids["recording"], sha256="0" * 64))
        s.add(PurgeAudit(purged_at=NOW, purged_by="nightly", recording_id=ids["recording"], call_id="old-west-1",
                         path="2026/11/24/old-west-1.wav", sha256="0" * 64, bytes=10, action="deleted",
                         recorded_at=NOW - dt.timedelta(days=800), retain_until=NOW))
    with sessions(factory.kw["bind"])() as s:
        return {"console_audit": s.scalar(select(func.max(AuditEntry.id))),
                "recording_access": s.scalar(select(RecordingAccess.id)),
                "purge_audit": s.scalar(select(PurgeAudit.id))}


def _snapshot(engine) -> dict[str, list]:
    with engine.connect() as conn:
        return {table: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
                for table in TABLES}


def _rewrites(dialect: str, table: str, row_id: int) -> list[str]:
    column, value = TABLES[table]
    columns = [c for c in _columns(table) if c != column]
    listed = ", ".join(columns + [column])
    chosen = ", ".join(columns + [value])
    copy = f"SELECT {chosen} FROM {table} WHERE id = {row_id}"
    if dialect == "sqlite":
        return [f"INSERT OR REPLACE INTO {table} ({listed}) {copy}",
                f"REPLACE INTO {table} ({listed}) {copy}",
                f"INSERT INTO {table} ({listed}) {copy} ON CONFLICT (id) DO UPDATE SET {column} = excluded.{column}",
                f"UPDATE OR REPLACE {table} SET {column} = {value}",
                f"UPDATE {table} SET {column} = {value}",
                f"DELETE FROM {table}"]
    return [f"INSERT INTO {table} ({listed}) {copy} ON CONFLICT (id) DO UPDATE SET {column} = excluded.{column}",
            f"TRUNCATE {table}",
            f"TRUNCATE {table} CASCADE",
            f"UPDATE {table} SET {column} = {value}",
            f"DELETE FROM {table}"]


def _columns(table: str) -> list[str]:
    from campaigns.tables import metadata
    return [c.name for c in metadata.tables[table].columns]


def test_no_statement_rewrites_an_append_only_row(database, tmp_path):
    factory = sessions(database)
    ids = _rows(factory, tmp_path / "vault")
    before = _snapshot(database)
    dialect = database.dialect.name
    tried = 0
    for table, row_id in ids.items():
        for statement in _rewrites(dialect, table, row_id):
            with pytest.raises(Exception, match="append-only"):
                with database.begin() as conn:
                    conn.execute(text(statement))
            tried += 1
    assert tried == 18 if dialect == "sqlite" else tried == 15
    assert _snapshot(database) == before


def test_new_rows_still_go_in_and_a_harmless_conflict_changes_nothing(database, tmp_path):
    factory = sessions(database)
    ids = _rows(factory, tmp_path / "vault")
    with transaction(factory) as s:
        accounts.audit(s, NOW + dt.timedelta(seconds=1), "sign_in", "failed", username="(unknown)")
    before = _snapshot(database)
    if database.dialect.name == "postgresql":  # DO NOTHING rewrites nothing: allowed, and nothing changes
        column, value = TABLES["console_audit"]
        columns = [c for c in _columns("console_audit") if c != column]
        with database.begin() as conn:
            conn.execute(text(f"INSERT INTO console_audit ({', '.join(columns + [column])}) "
                              f"SELECT {', '.join(columns + [value])} FROM console_audit "
                              f"WHERE id = {ids['console_audit']} ON CONFLICT (id) DO NOTHING"))
        assert _snapshot(database) == before
    with sessions(database)() as s:
        assert s.scalars(select(AuditEntry.result).order_by(AuditEntry.id)).all()[-2:] == ["ok", "failed"]
