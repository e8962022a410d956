"""The schema: the migrations build exactly the models, on SQLite and on PostgreSQL."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from campaigns.db import migrate, sessions, transaction
from campaigns.models import Base, Batch, Case, Client

UTC = dt.timezone.utc


def test_migrations_build_exactly_the_models(database):
    with database.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert {"cases", "phones", "attempts", "recordings", "dispositions", "promises_to_pay"} <= set(
        inspect(database).get_table_names())


def test_migrate_twice_changes_nothing(database):
    migrate(database)
    with database.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0001"


def test_times_are_utc_and_money_is_exact(database):
    shanghai = dt.timezone(dt.timedelta(hours=8))
    at = dt.datetime(2026, 11, 25, 9, 0, 0, tzinfo=shanghai)
    with transaction(sessions(database)) as s:
        client = Client(code="ICBC-SZ", name="工商银行深圳分行", created_at=at)
        s.add(client)
        s.flush()
        batch = Batch(client_id=client.id, name="b1", file_name="b1.csv", sha256="0" * 64, rows=1, imported_at=at)
        s.add(batch)
        s.flush()
        s.add(Case(client_id=client.id, batch_id=batch.id, reference="C1", debtor_name="李伟",
                   amount_due=Decimal("12345.67"), days_past_due=31, created_at=at, extra={"卡号": "6222"}))
    with sessions(database)() as s:
        case = s.query(Case).one()
        assert case.created_at == at and case.created_at.tzinfo == UTC
        assert case.created_at.hour == 1  # 09:00 in Shanghai is 01:00 UTC
        assert case.amount_due == Decimal("12345.67")
        assert case.extra == {"卡号": "6222"} and case.status == "new"


def test_naive_times_are_refused(sqlite_db):
    with pytest.raises(Exception, match="naive datetime"):
        with transaction(sessions(sqlite_db)) as s:
            s.add(Client(code="X", name="x", created_at=dt.datetime(2026, 1, 1)))
