"""What every table is declared with: the declarative ``Base`` (one ``MetaData`` with the
constraint naming convention the migrations use) and the column types of our own.

A leaf: it imports SQLAlchemy and nothing of ours, so that any package's table module
(campaigns/models.py, the console's, QA's, the transcripts') can declare its tables on
``Base`` without loading another's. campaigns/tables.py gathers them all for Alembic.

Every timestamp is stored as UTC (``UTCDateTime``): SQLite keeps no time zone, PostgreSQL's
``timestamp with time zone`` would convert on the server's whim; both give back aware UTC.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, MetaData, TypeDecorator
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """An aware datetime in, an aware UTC datetime out; stored as naive UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the database stores aware times only")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
