"""A bank's batch file (委托批次) read and checked, without the database.

A bank delegates cases as a spreadsheet: CSV in UTF-8 (with or without BOM), GBK or
GB18030, or XLSX. `check_rows` reads its first sheet, finds each field's column (by the
headers banks use, or a mapping file), checks every row (`RowCheck`: the cells through
`batch_cells`, a phone for the debtor, a case reference not seen on an earlier row) and
gives what it found as a stream: the file's head (`FileHead`: encoding, rows, whatever
prevents reading any row), then the rows a chunk at a time (`CheckedRows`), so that a
batch of any size takes the memory of one chunk. `importing` writes what it gives; the
same stream can come from a process of its own (`parallel_check`).

Every problem names the file, row, column (as the bank wrote its header) and value, and
says what is wrong, so that the bank can fix its file. Rows are numbered as a spreadsheet
shows them: the header is row 1.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import gc
import io
import json
import pickle
import tempfile
import tomllib
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch_cells import (
    InvalidValue,
    cell_text,
    check_id_number,
    parse_amount,
    parse_date,
    parse_days,
    parse_reference,
    parse_text,
    parse_timezone,
    phone_cell,
)
from .enums import PhoneRole

CHUNK = 2000                            # rows a chunk: checked, then written, together


# --- what is wrong ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file, said precisely.

    `row` 1 is the header row and 0 means the whole file; `column` is the header as the
    bank wrote it ("" when no one column is at fault); `value` the cell as read.
    """

    file: str
    row: int
    column: str
    value: str
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.row:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column}")
        if self.value:
            where.append(f'value "{self.value}"')
        return f"{', '.join(where)}: {self.message}"


class BatchImportError(ValueError):
    """The import cannot start: a bad mapping file, an unknown encoding, a bad client code.
    (What is wrong inside the bank's file is reported as `Problem`s instead.)"""


# --- the fields of a case and the headers that name them ------------------------------------

@dataclass(frozen=True)
class Field:
    name: str                   # the key in a mapping file
    label: str                  # what a message calls it
    headers: tuple[str, ...]    # headers recognised without a mapping
    required: bool = False


FIELDS: tuple[Field, ...] = (
    Field("reference", "case reference", ("案件编号", "案件号", "合同号", "合同编号", "case_no", "reference"), True),
    Field("debtor_name", "debtor's name", ("姓名", "客户姓名", "债务人姓名", "name", "debtor_name"), True),
    Field("id_number", "ID number", ("身份证号", "身份证号码", "证件号码", "证件号", "id_number", "id_no")),
    Field("amount_due", "amount due", ("欠款金额", "逾期金额", "欠款总额", "amount", "amount_due"), True),
    Field("days_past_due", "days past due", ("逾期天数", "dpd", "days_past_due"), True),
    Field("due_date", "due date", ("到期日", "还款日", "due_date")),
    Field("own_mobile", "debtor's mobile", ("手机", "手机号码", "手机号", "mobile", "own_mobile")),
    Field("home", "home phone", ("家庭电话", "住宅电话", "home_phone", "home")),
    Field("work", "work phone", ("单位电话", "公司电话", "work_phone", "work")),
    Field("contact_name", "contact's name", ("联系人姓名", "contact_name")),
    Field("contact_relation", "contact's relation", ("联系人关系", "contact_relation")),
    Field("contact_phone", "contact's phone", ("联系人电话", "联系人手机", "contact_phone")),
    Field("timezone", "time zone", ("时区", "timezone")),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}
DEBTOR_PHONES = {"own_mobile": PhoneRole.OWN_MOBILE, "home": PhoneRole.HOME, "work": PhoneRole.WORK}


def load_mapping(path: Path) -> dict[str, str]:
    """Read a mapping file: TOML lines ``field = "header in the bank's file"``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BatchImportError(f"mapping file {path}: {exc}") from None
    return check_mapping(data, source=f"mapping file {path}")


def check_mapping(mapping: Mapping[str, Any], source: str = "mapping") -> dict[str, str]:
    """A mapping of field names to headers, checked: every key a field, every value a header."""
    unknown = sorted(set(mapping) - set(FIELDS_BY_NAME))
    if unknown:
        raise BatchImportError(
            f"{source}: unknown field {', '.join(unknown)}; the fields are {', '.join(FIELDS_BY_NAME)}")
    for name, header in mapping.items():
        if not isinstance(header, str) or not header.strip():
            raise BatchImportError(f'{source}: {name} must name a header, as in {name} = "表头"')
    return {name: header.strip() for name, header in mapping.items()}


def _header_key(header: str) -> str:
    """Headers match whatever their width, case, spaces, underscores and hyphens."""
    text = unicodedata.normalize("NFKC", header).casefold()
    return "".join(ch for ch in text if not ch.isspace() and ch not in "_-")


@dataclass(frozen=True)
class Columns:
    """Where each field is in the file (index, header as written); the rest is extra."""

    fields: Mapping[str, tuple[int, str]]
    extra_keys: tuple[str, ...]     # the Case.extra key of each header position ("" if claimed)

    def header(self, name: str) -> str:
        return self.fields[name][1]

    def extra_key(self, index: int) -> str:
        if index < len(self.extra_keys):
            return self.extra_keys[index]
        return f"column {column_letter(index + 1)}"


def resolve_columns(headers: Sequence[str], mapping: Mapping[str, str], file: str
                    ) -> tuple[Columns, list[Problem]]:
    """Find each field's column: the mapping's header if it names one, else a default."""
    positions: dict[str, list[int]] = {}
    for index, header in enumerate(headers):
        if header:
            positions.setdefault(_header_key(header), []).append(index)
    problems: list[Problem] = []
    found: dict[str, tuple[int, str]] = {}
    for f in sorted(FIELDS, key=lambda f: f.name not in mapping):   # the mapping's first
        names = (mapping[f.name],) if f.name in mapping else f.headers
        claimed = {index for index, _ in found.values()}
        candidates = sorted({i for key in map(_header_key, names) for i in positions.get(key, ())} - claimed)
        if len(candidates) > 1:
            shown = " and ".join(f"{headers[i]} ({column_letter(i + 1)})" for i in candidates)
            problems.append(Problem(file, 1, headers[candidates[1]], "",
                                    f"{shown} could each be the {f.label}: name one in a mapping file"))
        elif candidates:
            found[f.name] = (candidates[0], headers[candidates[0]])
        elif f.name in mapping:
            problems.append(Problem(file, 1, mapping[f.name], "",
                                    f"no such header in the file, and the mapping names it for {f.name}"))
        elif f.required:
            problems.append(_missing_header(file, f.label, f.headers))
    if not found.keys() & DEBTOR_PHONES.keys():
        phones = [h for name in DEBTOR_PHONES for h in FIELDS_BY_NAME[name].headers]
        problems.append(_missing_header(file, "debtor's phone", phones))
    return Columns(found, _extra_keys(headers, {i for i, _ in found.values()})), problems


def column_letter(index: int) -> str:
    """A spreadsheet's letters for column `index` (1 is A, 27 is AA), as openpyxl's
    get_column_letter: openpyxl is imported only for an XLSX file, it takes a fifth of a
    second."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _missing_header(file: str, label: str, headers: Sequence[str]) -> Problem:
    return Problem(file, 1, "", "", f"no column for the {label}: expected a header "
                                    f"{' / '.join(headers)}, or a mapping file naming it")


def _extra_keys(headers: Sequence[str], claimed: set[int]) -> tuple[str, ...]:
    keys = []
    for index, header in enumerate(headers):
        letter = column_letter(index + 1)
        if index in claimed:
            keys.append("")
        elif not header:
            keys.append(f"column {letter}")
        else:
            keys.append(header if headers.count(header) == 1 else f"{header} ({letter})")
    return tuple(keys)


# --- one row ---------------------------------------------------------------------------------

#: A checked case: (row, reference, debtor_name, id_number, amount_due as text,
#: days_past_due, due_date in ISO form or None, timezone, extra as JSON text, phones), each phone (role,
#: e164, dial, extension, contact_name, relation): plain values, quick to marshal.
CaseRow = tuple
CASE_COLUMNS = ("reference", "debtor_name", "id_number", "amount_due", "days_past_due", "due_date", "timezone",
                "extra")
PHONE_COLUMNS = ("role", "e164", "dial", "extension", "contact_name", "relation")


def _parsers(today: dt.date) -> dict[str, Callable[[object], Any]]:
    return {
        "reference": parse_reference,
        "debtor_name": parse_text(200),
        "id_number": lambda value: check_id_number(value, today),
        "amount_due": parse_amount,
        "days_past_due": parse_days,
        "due_date": parse_date,
        "own_mobile": phone_cell,
        "home": phone_cell,
        "work": phone_cell,
        "contact_name": parse_text(200),
        "contact_relation": parse_text(40),
        "contact_phone": phone_cell,
        "timezone": parse_timezone,
    }


class RowCheck:
    """Checks one row of a file: every field it has, then that the debtor has a phone.
    Called with the row's number and cells, it gives the case reference (if readable), the
    case (None when there are problems) and the problems."""

    def __init__(self, columns: Columns, *, file: str, today: dt.date) -> None:
        parsers = _parsers(today)
        self.file, self.columns = file, columns
        self.fields = [(name, index, header, parsers[name], FIELDS_BY_NAME[name])
                       for name, (index, header) in columns.fields.items()]
        self.extra = [(index, key) for index, key in enumerate(columns.extra_keys) if key]
        self.debtor_columns = [columns.header(name) for name in DEBTOR_PHONES if name in columns.fields]

    def __call__(self, row: int, cells: Sequence[object]) -> tuple[str | None, CaseRow | None, list[Problem]]:
        file, width = self.file, len(cells)
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for name, index, header, parse, spec in self.fields:
            value = cells[index] if index < width else None
            text = value.strip() if value.__class__ is str else cell_text(value)
            if not text:
                if spec.required:
                    problems.append(Problem(file, row, header, "", f"empty, and every case needs its {spec.label}"))
                continue
            try:
                values[name] = parse(value)
            except InvalidValue as exc:
                problems.append(Problem(file, row, header, text, str(exc)))
        if not any(values.get(name) for name in DEBTOR_PHONES) and not any(
                p.column in self.debtor_columns for p in problems):
            problems.append(Problem(file, row, " / ".join(self.debtor_columns), "", "no phone number for the debtor"))
        reference = values.get("reference")
        if problems:
            return reference, None, problems
        extra = {key: text for index, key in self.extra if index < width and (text := cell_text(cells[index]))}
        for index in range(len(self.columns.extra_keys), width):
            if text := cell_text(cells[index]):
                extra[self.columns.extra_key(index)] = text
        due_date = values.get("due_date")
        return reference, (row, reference, values["debtor_name"], values.get("id_number"), str(values["amount_due"]),
                           values["days_past_due"], due_date and due_date.isoformat(), values.get("timezone"),
                           json.dumps(extra),
                           _phones(values)), problems


ROLES = [(name, role.value) for name, role in DEBTOR_PHONES.items()]


def _phones(values: Mapping[str, Any]) -> tuple[tuple, ...]:
    """The case's phones, debtor's first; a number given twice (as mobile and as contact, say)
    is kept once, in its first role."""
    seen: set[tuple[str, str | None]] = set()
    kept = []
    for name, role in ROLES:
        for e164, dial, extension in values.get(name, ()):
            if (key := (e164, extension)) not in seen:
                seen.add(key)
                kept.append((role, e164, dial, extension, None, None))
    if contacts := values.get("contact_phone"):
        name, relation = values.get("contact_name"), values.get("contact_relation")
        for e164, dial, extension in contacts:
            if (key := (e164, extension)) not in seen:
                seen.add(key)
                kept.append((PhoneRole.CONTACT.value, e164, dial, extension, name, relation))
    return tuple(kept)


class Spool:
    """Items kept in a temporary file a chunk at a time and read back in order, so that a
    large sheet takes the memory of one chunk: an XLSX sheet's rows, read once (its cells may
    be dates and times: pickled)."""

    def __init__(self, chunk: int = CHUNK) -> None:
        self.chunk = chunk
        self.count = 0
        self._buffer: list[Any] = []
        self._file = tempfile.TemporaryFile()

    def append(self, item: Any) -> None:
        self._buffer.append(item)
        self.count += 1
        if len(self._buffer) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            blob = pickle.dumps(self._buffer)
            self._file.write(len(blob).to_bytes(8, "little") + blob)
            self._buffer = []

    def chunks(self) -> Iterator[list[Any]]:
        self._flush()
        self._file.seek(0)
        while size := self._file.read(8):
            yield pickle.loads(self._file.read(int.from_bytes(size, "little")))

    def close(self) -> None:
        self._file.close()


class _Unreadable(Exception):
    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


# --- the whole file, a chunk at a time -------------------------------------------------------

@dataclass
class FileHead:
    """What is known of a file before its rows: the encoding it was read in, its data rows
    (blank ones not counted), the header of its case references, and its `problems`: what
    prevents reading any row (no row follows them)."""

    file: str
    encoding: str
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    reference_column: str = ""


@dataclass
class CheckedRows:
    """A chunk of rows checked, in the file's order."""

    checked: int                    # the file's rows checked so far, this chunk's included
    cases: list[CaseRow]            # the rows without a problem
    problems: list[Problem]         # the others', in row order
    firsts: list[tuple[int, str]]   # (row, reference) of each case reference's first row, here
    repeated: list[tuple[int, str]] # (row, reference) of a reference seen on an earlier row


def check_rows(path: Path, file: str, *, today: dt.date, mapping: Mapping[str, str] | None = None,
               encoding: str | None = None, chunk: int = CHUNK) -> Iterator[FileHead | CheckedRows]:
    """Read and check a batch file: its FileHead, then (if it has no problems) its rows as
    CheckedRows of `chunk` rows. `file` is the name problems give; `encoding` one
    `codec_name` gave, or None to find it."""
    try:
        table = open_table(path, file, encoding)
    except _Unreadable as exc:
        yield FileHead(file, "", problems=[exc.problem])
        return
    with contextlib.closing(table):
        head = FileHead(file, table.encoding, table.rows)
        if table.header is None:
            head.problems.append(Problem(file, 0, "", "", "the file is empty"))
        else:
            columns, head.problems = resolve_columns([cell_text(h) for h in table.header],
                                                     check_mapping(mapping or {}), file)
            if not head.problems and not table.rows:
                head.problems.append(Problem(file, 0, "", "", "the file has a header row but no cases"))
            if not head.problems:
                head.reference_column = columns.header("reference")
        yield head
        if head.problems:
            return
        column = head.reference_column
        check = RowCheck(columns, file=file, today=today)
        first: dict[str, int] = {}      # each case reference: its first row
        rows, done = CheckedRows(0, [], [], [], []), 0
        for done, (row, cells) in enumerate(table.data(), 1):
            reference, case, found = check(row, cells)
            if reference is not None:
                if reference in first:
                    found.append(Problem(file, row, column, reference,
                                         f"the same case reference as row {first[reference]}"))
                    rows.repeated.append((row, reference))
                    case = None
                else:
                    first[reference] = row
                    rows.firsts.append((row, reference))
            if case is not None:
                rows.cases.append(case)
            else:
                rows.problems += found
            if done % chunk == 0:
                rows.checked = done
                yield rows
                rows = CheckedRows(done, [], [], [], [])
        if done % chunk:        # the last rows (and any the file gained since they were counted)
            rows.checked = done
            yield rows


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The objects alive before a batch is read frozen (gc.freeze): its rows make millions
    of short-lived objects, and the cyclic collector's passes over everything alive (all the
    modules' objects) would cost a quarter of the time; it still collects what the rows
    make. Thawed after, unless someone else had frozen them (a pre-fork server, say)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class BatchTable:
    """A batch file's first sheet: its header row, how many data rows are not blank, and
    (`data`) those rows with their numbers, read again from the file."""

    encoding: str
    header: Sequence[object] | None
    rows: int

    def data(self) -> Iterator[tuple[int, Sequence[object]]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _blank(cells: Sequence[object]) -> bool:
    return not any(cell_text(c) for c in cells)


class CsvTable(BatchTable):
    """A CSV file, decoded as it is read (the encoding was checked on the whole file first)."""

    def __init__(self, path: Path, file: str, encoding: str) -> None:
        self.path, self.file, self.encoding = path, file, encoding
        self.header, self.rows = None, 0
        for number, cells in self._records():
            if number == 1:
                self.header = cells
            elif any(map(str.strip, cells)):
                self.rows += 1

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        with self.path.open("rb") as raw, io.TextIOWrapper(raw, encoding=_python_codec(self.encoding),
                                                           newline="") as text:
            reader = csv.reader(text)
            try:
                yield from enumerate(reader, 1)
            except csv.Error as exc:
                raise _Unreadable(Problem(self.file, reader.line_num, "", "", f"not readable as CSV: {exc}")) from None

    def data(self) -> Iterator[tuple[int, Sequence[object]]]:
        return ((number, cells) for number, cells in self._records() if number > 1 and any(map(str.strip, cells)))


class XlsxTable(BatchTable):
    """An XLSX workbook's first sheet, read once (openpyxl is slow) into a spool."""

    def __init__(self, path: Path, file: str) -> None:
        self.encoding, self.header, self.rows = "xlsx", None, 0
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException
        try:
            workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
            raise _Unreadable(Problem(file, 0, "", "", f"not a readable XLSX workbook ({exc})")) from None
        self.spool = Spool()     # cells may be dates and times
        try:
            for number, cells in enumerate(workbook.worksheets[0].iter_rows(values_only=True), 1):
                if number == 1:
                    self.header = tuple(cells)
                elif not _blank(cells):
                    self.spool.append((number, tuple(cells)))
        finally:
            workbook.close()
        self.rows = self.spool.count

    def data(self) -> Iterator[tuple[int, Sequence[object]]]:
        for chunk in self.spool.chunks():
            yield from chunk

    def close(self) -> None:
        self.spool.close()


def open_table(path: Path, file: str, encoding: str | None = None) -> BatchTable:
    """The file as a BatchTable: XLSX, or CSV in the encoding it decodes in (see `decode`)."""
    with path.open("rb") as f:
        start = f.read(4)
    if start == b"PK\x03\x04":
        return XlsxTable(path, file)
    if start == b"\xd0\xcf\x11\xe0":
        raise _Unreadable(Problem(file, 0, "", "", "an old Excel .xls file: save it as .xlsx or CSV"))
    for name in _encodings(start, encoding):
        try:
            return CsvTable(path, file, name)       # its first pass decodes the whole file
        except UnicodeDecodeError:
            continue
        except _Unreadable:
            if _decodes(path, name):                # a CSV problem, in the right encoding
                raise
    decode(path.read_bytes(), file, encoding)       # raises _Unreadable, saying where it fails
    raise AssertionError("unreachable: the file decoded after all")


def _encodings(start: bytes, encoding: str | None) -> list[str]:
    """The encodings to try, in order, for a file that starts with these bytes: the one
    asked for; else UTF-8 with its BOM; else UTF-8, then GB18030 (a superset of GBK)."""
    if encoding is not None:
        return [codec_name(encoding)]
    if start.startswith(codecs.BOM_UTF8):
        return ["utf-8-sig"]
    return ["utf-8", "gb18030"]


def _decodes(path: Path, name: str) -> bool:
    """Whether the whole file decodes in this encoding (read a block at a time)."""
    decoder = codecs.getincrementaldecoder(_python_codec(name))("strict")
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def decode(data: bytes, file: str, encoding: str | None = None) -> tuple[str, str]:
    """The encoding used and the text. Without `encoding`: UTF-8 (a BOM is dropped) if the
    bytes are strictly UTF-8, else GB18030 (a superset of GBK and GB2312)."""
    failures = []
    for name in _encodings(data, encoding):
        try:
            return name, data.decode(_python_codec(name))
        except UnicodeDecodeError as exc:
            failures.append((name, exc))
    raise _Unreadable(_undecodable(data, file, failures))


def _python_codec(name: str) -> str:
    return "utf-8-sig" if name == "utf-8" else name     # a BOM is no part of the text


def codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise BatchImportError(f"unknown encoding {encoding!r}: use utf-8, gbk or gb18030") from None


def _undecodable(data: bytes, file: str, failures: Sequence[tuple[str, UnicodeDecodeError]]) -> Problem:
    """Where decoding failed; the encoding that read furthest is the likeliest one."""
    name, furthest = max(failures, key=lambda failure: failure[1].start)
    prefix = data[:furthest.start].decode(_python_codec(name))
    row = len(list(csv.reader(io.StringIO(prefix + "x", newline=""))))
    tried = " nor ".join(f"{n.removesuffix('-sig').upper()} (byte offset {exc.start})" for n, exc in failures)
    return Problem(file, row, "", data[furthest.start:furthest.end].hex(" "),
                   f"not {tried}: save the file as UTF-8, or name the encoding it is in")

