"""The schema: the migrations build exactly the tables (every module's, campaigns/tables.py),
on SQLite and on PostgreSQL."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from campaigns.db import migrate, sessions, transaction
from campaigns.models import Batch, Case, Client
from campaigns.tables import metadata

UTC = dt.timezone.utc


def test_migrations_build_exactly_the_models(database):
    with database.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert {"cases", "phones", "attempts", "recordings", "dispositions", "promises_to_pay"} <= set(
        inspect(database).get_table_names())


def test_migrate_twice_changes_nothing(database):
    migrate(database)
    from alembic.script import ScriptDirectory

    from campaigns.db import alembic_config
    heads = set(ScriptDirectory.from_config(alembic_config(str(database.url))).get_heads())
    with database.connect() as conn:
        assert set(MigrationContext.configure(conn).get_current_heads()) == heads
    assert "0003" in heads or any(h > "0003" for h in heads)


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


def test_import_is_whole_or_nothing_on_both_databases(database, tmp_path):
    """The import's bulk writes and its rollback, on SQLite and on PostgreSQL."""
    from sqlalchemy import func, select

    from campaigns.importing import import_batch
    from campaigns.models import Phone
    factory = sessions(database)
    now = dt.datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    good = tmp_path / "good.csv"
    good.write_bytes("案件编号,姓名,欠款金额,逾期天数,手机,家庭电话\nG1,李伟,1200.50,40,+86 138-0013-8000,0755-8888 8888 转 12\n"
                     .encode("gbk"))
    bad = tmp_path / "bad.csv"
    bad.write_bytes("案件编号,姓名,欠款金额,逾期天数,手机\nB1,王芳,100,3,13800138001\nB2,张伟,,3,13800138002\n"
                    .encode("gbk"))
    assert import_batch(factory, good, "PG", now=now).imported == 1
    refused = import_batch(factory, bad, "PG", now=now)
    assert not refused.ok
    assert [(p.row, p.column) for p in refused.problems] == [(3, "欠款金额")]
    with sessions(database)() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 1
        phones = {p.dial: p.extension for p in s.scalars(select(Phone))}
    assert phones == {"13800138000": None, "075588888888": "12"}
