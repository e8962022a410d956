"""Importing a bank's batch file (委托批次) into the collection database.

`import_batch` reads the file with `batch_file.check_rows` (the file's head, then its rows
checked a chunk at a time; for a large file in a process of its own, `parallel_check`, so
that the rows are checked while the previous ones are written) and writes, in one
transaction, the batch, its cases and their phones, a chunk at a time: all of it, or with
``skip_invalid`` the rows without a problem, or nothing at all. Two checks need the
database: the same file imported before (by its SHA-256, before anything is written) and
the case references the client already has (looked up for each chunk).

What the bank must fix is said as `Problem`s (file, row, column, value, why); what stops the
import from starting (a bad mapping file, an unknown encoding, a bad client code) as
`BatchImportError`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy import text as sql
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .batch_file import (
    CASE_COLUMNS,
    PHONE_COLUMNS,
    BatchImportError,
    CheckedRows,
    FileHead,
    Problem,
    check_mapping,
    check_rows,
    codec_name,
    collector_paused,
)
from .db import transaction
from .models import Batch, Case, CaseStatus, Client, Phone
from .parallel_check import checked_beside

#: progress(done, total): every row is counted twice, once checked and once written.
Progress = Callable[[int, int], None]

REFERENCE_CHUNK = 999                   # case references in one query (an old SQLite allows 999 parameters)
#: A file this large is checked in a process of its own while the rows checked are written
#: (some 7,000 rows a megabyte): below it, starting that process (a tenth of a second) is not
#: worth it.
PARALLEL_FROM_BYTES = 1 << 20
TEXT_OID = 25                           # PostgreSQL's text type


# --- what the import says back -------------------------------------------------------------

@dataclass
class ImportReport:
    """What an import did. `problems` blocked it (nothing written); `skipped` are the
    problems of the rows left out with ``skip_invalid``."""

    file: str
    encoding: str
    rows: int = 0
    imported: int = 0
    skipped: list[Problem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    batch_id: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def skipped_rows(self) -> list[int]:
        return sorted({problem.row for problem in self.skipped})

    @property
    def summary(self) -> str:
        read = f"{self.file} ({self.encoding}), {_count(self.rows, 'row')}" if self.encoding else self.file
        if not self.ok:
            return f"{read}: nothing imported, {_count(len(self.problems), 'problem')}"
        skipped = f", {_count(len(self.skipped_rows), 'row')} skipped" if self.skipped else ""
        return f"{read}: {_count(self.imported, 'case')} imported as batch #{self.batch_id}{skipped}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class _Refused(Exception):
    """Raised within the import's transaction to roll it back: the report says why."""


# --- the import ------------------------------------------------------------------------------

def import_batch(factory: sessionmaker[Session], path: Path, client_code: str, *, now: dt.datetime,
                 mapping: Mapping[str, str] | None = None, encoding: str | None = None,
                 skip_invalid: bool = False, batch_name: str | None = None,
                 progress: Progress | None = None) -> ImportReport:
    """Import a bank's batch file for a client: all of it, or (with `skip_invalid`) its
    valid rows; nothing at all if the file itself has a problem. The Client row is created
    if `client_code` is new. `progress(done, total)` counts each row checked and written."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    client_code = client_code.strip()
    if not client_code or len(client_code) > 40:
        raise BatchImportError("a client code has 1 to 40 characters")
    batch_name = batch_name or path.stem[:200]
    if len(batch_name) > 200:
        raise BatchImportError("a batch name has at most 200 characters")
    mapping = check_mapping(mapping or {})
    encoding = encoding and codec_name(encoding)
    file = path.name
    options = {"today": now.date(), "mapping": mapping, "encoding": encoding}
    with contextlib.ExitStack() as stack:
        stack.enter_context(collector_paused())
        if path.stat().st_size >= PARALLEL_FROM_BYTES:     # started first: it reads while the file is hashed
            messages = stack.enter_context(checked_beside(path, file, **options))
        else:
            messages = check_rows(path, file, **options)
        sha256 = _sha256(path)
        with factory() as session:
            earlier = _same_file(session, client_code, sha256)
        if earlier is not None:
            return ImportReport(file, "", problems=[Problem(file, 0, "", "", earlier)])
        return _imported(factory, messages, client_code, now, skip_invalid, progress,
                         Batch(name=batch_name, file_name=file, sha256=sha256, imported_at=now))


def _imported(factory: sessionmaker[Session], messages: Iterator[FileHead | CheckedRows], client_code: str,
              now: dt.datetime, skip_invalid: bool, progress: Progress | None, batch: Batch) -> ImportReport:
    """Write what `check_rows` gives as it comes, in one transaction: each chunk's cases
    once its references are found new. At the first row with a problem (without
    `skip_invalid`) the transaction is rolled back at once, and the rest of the file is only
    checked, for the report, with no lock held."""
    head = next(messages)
    report = ImportReport(head.file, head.encoding, rows=head.rows, problems=list(head.problems))
    if report.problems:
        return report
    tick = _ticker(progress)
    total = 2 * head.rows
    written = 0
    try:
        with transaction(factory) as session:
            client_id = session.scalar(select(Client.id).where(Client.code == client_code))
            references = KnownReferences(client_id, head, client_code)
            writer = BatchWriter(session, client_id, client_code, now, batch, head)
            for chunk in messages:
                tick(chunk.checked + written, total)
                problems, cases = references.marked(session, chunk)
                if skip_invalid:
                    report.skipped += problems
                elif problems:
                    report.problems += problems
                    raise _Refused
                writer.write(cases)
                written += len(cases)
                tick(chunk.checked + written, total)
            if skip_invalid and not written:
                report.problems.append(Problem(head.file, 0, "", "", "every row has a problem: nothing to import"))
                raise _Refused
    except _Refused:
        pass
    except IntegrityError as exc:
        report.problems.append(Problem(head.file, 0, "", "", "the database refused the batch (was the same file "
                                                             f"or case imported at the same time?): {exc.orig}"))
    if report.problems:
        with factory() as session:      # the rest of the file, checked for the report
            for chunk in messages:
                tick(chunk.checked + written, total)
                problems, _ = references.marked(session, chunk)
                (report.skipped if skip_invalid else report.problems).extend(problems)
        return report
    report.batch_id, report.imported = batch.id, written
    tick(total, total)
    return report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _ticker(progress: Progress | None) -> Callable[[int, int], None]:
    """progress, called about every 1% and always at the end."""
    last = 0

    def tick(done: int, total: int) -> None:
        nonlocal last
        if progress is not None and done > last and (done == total or done - last >= max(1, total // 100)):
            last = done
            progress(done, total)
    return tick


def _same_file(session: Session, client_code: str, sha256: str) -> str | None:
    """Why the file cannot be imported again, if this client has imported it before."""
    batch = session.scalar(select(Batch).join(Client, Client.id == Batch.client_id)
                           .where(Client.code == client_code, Batch.sha256 == sha256))
    if batch is None:
        return None
    return (f"already imported for client {client_code} as batch #{batch.id} \"{batch.name}\" on "
            f"{batch.imported_at:%Y-%m-%d %H:%M} UTC (same SHA-256 {sha256[:12]}…); nothing was written")


class KnownReferences:
    """The case references the client already has, found as the file's chunks come: a row
    with one (its first row or a repeated one) is a problem, and its case is not written."""

    def __init__(self, client_id: int | None, head: FileHead, client_code: str) -> None:
        self.client_id, self.head, self.client_code = client_id, head, client_code
        self.known: dict[str, tuple[int, str]] = {}     # each reference found: batch id, batch name

    def marked(self, session: Session, chunk: CheckedRows) -> tuple[list[Problem], list[tuple]]:
        """The chunk's problems, with each row whose case reference the client already has
        marked; and its cases to write, those rows' left out."""
        if self.client_id is None:      # a new client has no cases
            return chunk.problems, chunk.cases
        if chunk.firsts:
            found = _known(session, self.client_id, [reference for _, reference in chunk.firsts])
            if found:
                names = dict(session.execute(select(Batch.id, Batch.name).where(Batch.id.in_(set(found.values()))))
                             .all())
                self.known.update((reference, (batch_id, names[batch_id])) for reference, batch_id in found.items())
        known = self.known
        rows = [(row, reference) for row, reference in (*chunk.firsts, *chunk.repeated) if reference in known]
        if not rows:
            return chunk.problems, chunk.cases
        file, column, code = self.head.file, self.head.reference_column, self.client_code
        marked = [Problem(file, row, column, reference, f"client {code} already has this case, from batch "
                                                        f"#{known[reference][0]} \"{known[reference][1]}\"")
                  for row, reference in rows]
        left_out = {row for row, _ in rows}
        # A row's own problems first, then this one (the sort is stable).
        return (sorted(chunk.problems + marked, key=lambda problem: problem.row),
                [case for case in chunk.cases if case[0] not in left_out])


def _known(session: Session, client_id: int, references: list[str]) -> dict[str, int]:
    """Which of these references the client has, with their batch ids. On PostgreSQL one
    query, each reference looked up in the client's unique index (a LATERAL look-up, so that
    the planner cannot choose otherwise): given the IN-list SQLite is given, PostgreSQL's
    planner, its statistics from before this import (a client it thought small), read every
    case of the client, this import's too, for each look-up (110 s for 70,000 rows into a
    client with one case)."""
    if session.get_bind().dialect.name == "postgresql":
        return dict(session.execute(sql(
            f"SELECT r.reference, c.batch_id FROM unnest(CAST(:references AS VARCHAR[])) AS r(reference) "
            f"CROSS JOIN LATERAL (SELECT batch_id FROM {Case.__tablename__} WHERE client_id = :client "
            f"AND reference = r.reference LIMIT 1) AS c"), {"references": references, "client": client_id}).all())
    found: dict[str, int] = {}
    for start in range(0, len(references), REFERENCE_CHUNK):
        found.update(session.execute(select(Case.reference, Case.batch_id).where(
            Case.client_id == client_id, Case.reference.in_(references[start:start + REFERENCE_CHUNK]))).all())
    return found


class BatchWriter:
    """A batch's cases and phones written a chunk at a time within the import's transaction:
    with the first chunk the client (created if new) and the batch, then each chunk's cases,
    then their phones, each table by `BulkRows`; the cases' ids taken before, so that their
    phones need not wait for them. A file refused before anything is written leaves no trace,
    not even a batch number taken (PostgreSQL's sequences are not rolled back)."""

    def __init__(self, session: Session, client_id: int | None, client_code: str, now: dt.datetime, batch: Batch,
                 head: FileHead) -> None:
        self.session, self.batch, self.head, self.now = session, batch, head, now
        self.client_id, self.client_code = client_id, client_code     # no id: a new client
        self.replan = session.get_bind().dialect.name == "postgresql"
        self.tables: tuple[CaseIds, BulkRows, BulkRows] | None = None

    def _begun(self) -> tuple[CaseIds, BulkRows, BulkRows]:
        """The client and the batch written, the tables ready: at the first chunk to write."""
        if self.tables is None:
            session, batch = self.session, self.batch
            if self.client_id is None:
                client = Client(code=self.client_code, name=self.client_code, created_at=self.now)
                session.add(client)
                session.flush()
                self.client_id = client.id
            batch.client_id, batch.rows = self.client_id, self.head.rows
            session.add(batch)
            session.flush()
            connection = session.connection()
            self.tables = (CaseIds(connection), BulkRows(connection, Case.__table__, ("id", *CASE_COLUMNS), {
                "client_id": self.client_id, "batch_id": batch.id, "status": CaseStatus.NEW.value, "created_at": self.now},
                texts=("extra",)), BulkRows(connection, Phone.__table__, ("case_id", *PHONE_COLUMNS)))
        return self.tables

    def write(self, cases: Sequence[tuple]) -> None:
        """The cases (CaseRows) and their phones."""
        if not cases:
            return
        if self.replan:
            # A connection keeps its plan for a foreign key's check: one made while the cases
            # were few scans the table, and a large batch through that connection then read
            # every case for each of its phones (minutes). So the plans are dropped before each
            # chunk (a fraction of a millisecond) and the checks planned on the table as it is.
            self.session.execute(sql("DISCARD PLANS"))
        case_ids, case_rows, phone_rows = self._begun()
        ids = case_ids.take(len(cases))
        case_rows.write([(case_id, reference, name, id_number, Decimal(amount), days,
                           due and dt.date.fromisoformat(due), timezone, extra)
                          for case_id, (_, reference, name, id_number, amount, days, due, timezone, extra, _)
                          in zip(ids, cases)])
        phone_rows.write([(case_id, *phone) for case_id, case in zip(ids, cases) for phone in case[9]])


class CaseIds:
    """Ids for new cases, taken before they are written: on PostgreSQL from the table's
    sequence (nextval); on SQLite above the largest id, which stays the largest since the
    transaction (it has written the batch) holds the database's write lock."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        if connection.dialect.name not in ("postgresql", "sqlite"):
            raise BatchImportError(f"importing needs SQLite or PostgreSQL, not {connection.dialect.name}")
        self.next: int | None = None    # SQLite: the next id to give

    def take(self, count: int) -> Sequence[int]:
        if self.connection.dialect.name == "postgresql":
            sequence = f"pg_get_serial_sequence('{Case.__tablename__}', 'id')"
            return array("q", self.connection.scalar(     # as one array: 100,000 rows would take 0.5 s
                sql(f"SELECT array_agg(nextval({sequence})) FROM generate_series(1, :count)"), {"count": count}))
        if self.next is None:
            self.next = self.connection.scalar(sql(f"SELECT coalesce(max(id), 0) + 1 FROM {Case.__tablename__}"))
        first, self.next = self.next, self.next + count
        return range(first, self.next)


class BulkRows:
    """Rows into one table within the connection's transaction, each value through its
    column type's bind processor as a Core insert() would, and the columns left out given
    their Python-side defaults; by COPY on PostgreSQL, by executemany on SQLite, a chunk at a time. No
    statement has more parameters than one row's, whatever the number of rows. The `texts`
    columns are given as their type's text (JSON serialised by the checker, say), as is: on
    PostgreSQL sent as text, which a json column's binary input reads as it is."""

    def __init__(self, connection: Connection, table: Table, columns: Sequence[str],
                 constants: Mapping[str, Any] | None = None, texts: Sequence[str] = ()) -> None:
        dialect = connection.dialect
        fixed = dict(constants or {})
        for column in table.columns:
            if column.name not in fixed and column.name not in columns and column.default is not None:
                if not column.default.is_scalar:
                    raise TypeError(f"{table.name}.{column.name}: only a scalar default can be given in bulk")
                fixed[column.name] = column.default.arg
        self.connection, self.dialect = connection, dialect
        self.processors = [(i, processor) for i, name in enumerate(columns) if name not in texts
                           and (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))]
        self.fixed = tuple(self._processed(table.c[name], value) for name, value in fixed.items())
        names = [*columns, *fixed]
        quote = dialect.identifier_preparer.quote
        listed = f"{dialect.identifier_preparer.format_table(table)} ({', '.join(map(quote, names))})"
        self.names, self.table, self.texts = names, table, texts
        self.types: list[int] | None = None     # PostgreSQL: the columns' type oids, asked once
        if dialect.name == "postgresql":
            self.statement = f"COPY {listed} FROM STDIN (FORMAT BINARY)"
        else:
            self.statement = f"INSERT INTO {listed} VALUES ({', '.join('?' * len(names))})"

    def _processed(self, column, value: Any) -> Any:
        processor = column.type.dialect_impl(self.dialect).bind_processor(self.dialect)
        return processor(value) if processor else value

    def _ready(self, rows: Sequence[tuple]) -> Sequence[tuple]:
        """The rows' values through the processors, the fixed values after them."""
        fixed = self.fixed
        if self.processors:
            ready = []
            for row in rows:
                values = list(row)
                for i, processor in self.processors:
                    values[i] = processor(values[i])
                ready.append((*values, *fixed))
            return ready
        return [(*row, *fixed) for row in rows] if fixed else rows

    def write(self, rows: Sequence[tuple]) -> None:
        """Rows, as one executemany on SQLite, one COPY on PostgreSQL."""
        if not rows:
            return
        if self.dialect.name != "postgresql":
            self.connection.exec_driver_sql(self.statement, self._ready(rows))
            return
        driver = self.connection.connection.driver_connection
        try:
            with driver.cursor() as cursor:
                if self.types is None:      # binary, so each column's type as the server has it
                    cursor.execute("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass",
                                   (self.dialect.identifier_preparer.format_table(self.table),))
                    types = dict(cursor.fetchall())
                    self.types = [TEXT_OID if name in self.texts else types[name] for name in self.names]
                with cursor.copy(self.statement) as copy:
                    copy.set_types(self.types)
                    for row in self._ready(rows):
                        copy.write_row(row)
        except self.dialect.loaded_dbapi.Error as exc:     # as SQLAlchemy raises it for a statement
            raise DBAPIError.instance(self.statement, None, exc, self.dialect.loaded_dbapi.Error,
                                      dialect=self.dialect) from exc
