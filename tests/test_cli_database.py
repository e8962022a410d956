"""A database error reaches the user of any `dunning` command as one line, `error: …` on
stderr and exit status 1: which database (password hidden) and the driver's first line, never
the SQL statement or a traceback. The commands run in this process (click's runner)."""
from __future__ import annotations

import os
import re
import socket

import pytest
from batch_files import CASES, write_csv
from click.testing import CliRunner
from sqlalchemy import literal, select

from campaigns.db import make_engine, migrate
from cli import database_error, main

SECRET = "not-a-real-secret-8f3a"


def dunning(url: str, *args: str):
    return CliRunner().invoke(main, list(args), env={"DUNNING_DATABASE_URL": url})


def one_line_error(result) -> str:
    """The command failed, handled (no traceback), its last line on stderr the one error line
    (`import` may have shown its progress bar's label before)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception   # not an uncaught error
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("error: ") and all(line.startswith("importing ") for line in lines[:-1]), \
        result.stderr
    assert "Traceback" not in result.output and "[SQL:" not in result.output and "sqlalche.me" not in result.output
    return lines[-1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_database_that_cannot_be_reached(tmp_path, closed_port):
    url = f"postgresql+psycopg://dunning:{SECRET}@127.0.0.1:{closed_port}/dunning"
    batch = str(write_csv(tmp_path / "batch.csv", CASES))
    for args in (["import", batch, "--client", "ICBC-SZ"], ["campaign", "list"], ["agents", "list"],
                 ["campaign", "create", "spring", "--client", "ICBC-SZ"]):
        line = one_line_error(dunning(url, *args))
        assert line.startswith(
            f"error: database postgresql+psycopg://dunning:***@127.0.0.1:{closed_port}/dunning: "
            f'connection failed: connection to server at "127.0.0.1", port {closed_port} failed: '), line
        assert "Connection refused" in line and SECRET not in line


def test_a_read_only_sqlite_database(tmp_path):
    path = tmp_path / "dunning.db"
    migrate(make_engine(f"sqlite:///{path}"))
    url = f"sqlite:///file:{path}?mode=ro&uri=true"     # read-only even for root, who ignores file modes
    line = one_line_error(dunning(url, "import", str(write_csv(tmp_path / "batch.csv", CASES)), "--client", "X"))
    assert line == f"error: SQLite database file:{path}: attempt to write a readonly database"
    assert dunning(url, "campaign", "list").exit_code == 0       # reading is fine


def test_a_locked_sqlite_database(tmp_path, monkeypatch):
    path = tmp_path / "dunning.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    monkeypatch.setattr("campaigns.db.make_engine", lambda url: _impatient(url))   # not 30 s of waiting
    with engine.connect() as holder:
        holder.exec_driver_sql("BEGIN IMMEDIATE")           # another process writing, say
        line = one_line_error(dunning(f"sqlite:///{path}", "import", str(write_csv(tmp_path / "b.csv", CASES)),
                                      "--client", "X"))
        holder.exec_driver_sql("ROLLBACK")
    assert line == f"error: SQLite database {path}: database is locked"


def _impatient(url: str):
    from sqlalchemy import create_engine
    return create_engine(url, connect_args={"timeout": 0.2})


def test_a_url_sqlalchemy_cannot_read_is_not_echoed():
    result = dunning(f"postgresql+psycopg://dunning:{SECRET}@127.0.0.1:port/dunning", "campaign", "list")
    line = one_line_error(result)
    assert SECRET not in line and "DUNNING_DATABASE_URL" in line


def test_the_parameter_limit_of_postgresql_is_one_line():
    url = os.environ.get("DUNNING_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("DUNNING_TEST_POSTGRES_URL is not set: run the tests with scripts/test")
    engine = make_engine(url)
    with pytest.raises(Exception) as caught, engine.connect() as conn:
        conn.execute(select(literal(1)).where(literal(1).in_(list(range(70_000)))))
    engine.dispose()
    line = database_error(caught.value, url)
    assert line is not None and "\n" not in line and "SELECT" not in line
    assert re.fullmatch(r"database postgresql\+psycopg://[^:]+:\*\*\*@[^ ]+: sending query and params failed: "
                        r"number of parameters must be between 0 and 65535", line), line


def test_other_errors_are_not_database_errors():
    assert database_error(ValueError("no"), "sqlite:///x.db") is None
