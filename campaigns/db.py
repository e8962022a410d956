"""The database: where it is, bringing its schema up to date, and sessions.

SQLite (a file in the state directory) is the default; PostgreSQL works through the
same code with ``DUNNING_DATABASE_URL=postgresql+psycopg://…``. The schema is owned by
the Alembic migrations; ``migrate`` applies whatever is missing.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def default_url(home: Path) -> str:
    return f"sqlite:///{home / 'dunning.db'}"


#: Stored (masked) form → real URL, for the databases this process was configured with.
_REAL_URLS: dict[str, str] = {}


def stored_url(url: str) -> str:
    """The URL as it may be written into the database itself (a scheduled job's arguments):
    the password shown as ***. This process remembers the real one for `real_url`, so the
    jobs it runs can connect, and the password is never kept in a table."""
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    _REAL_URLS[shown] = parsed.render_as_string(hide_password=False)
    return shown


def real_url(url: str) -> str:
    """The URL to connect with, for one `stored_url` gave (or any URL with no masked password)."""
    if make_url(url).password != "***":
        return url
    try:
        return _REAL_URLS[url]
    except KeyError:
        raise RuntimeError(f"no password for {url} in this process: it is not the database this process "
                           "was configured with (DUNNING_DATABASE_URL)") from None


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.close()
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str):
    from alembic.config import Config
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest migration (idempotent)."""
    from alembic import command
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed whole, or rolled back whole."""
    with factory() as session, session.begin():
        yield session


@contextlib.contextmanager
def job_transaction(url: str) -> Iterator[Session]:
    """One transaction on the database a scheduled job names (`stored_url`'s form), on an
    engine of its own that is disposed of after: a job runs in the scheduler's thread."""
    engine = make_engine(real_url(url))
    try:
        with transaction(sessions(engine)) as session:
            yield session
    finally:
        engine.dispose()
