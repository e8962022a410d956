"""Importing a bank's batch file (委托批次) into the collection database.

A bank delegates cases as a spreadsheet: CSV in UTF-8 (with or without BOM), GBK or
GB18030, or XLSX. Reading and checking it is pure (`read_batch`: the file's bytes and
`now` in, typed cases and `Problem`s out); `import_batch` adds the two checks that need
the database (the same file imported before, case references the client already has) and
writes the batch, its cases and their phones in one transaction, or nothing at all.

Every problem names the file, row, column (as the bank wrote its header) and value, and
says what is wrong, so that the bank can fix its file. Rows are numbered as a spreadsheet
shows them: the header is row 1.
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import tomllib
import unicodedata
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import openpyxl
import phonenumbers
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from phonenumbers import PhoneNumberFormat, PhoneNumberType, ValidationResult
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .models import Batch, Case, CaseStatus, Client, Phone, PhoneRole

#: progress(done, total): every row is counted twice, once checked and once written.
Progress = Callable[[int, int], None]

REGION = "CN"
WRITE_CHUNK = 1000
MAX_AMOUNT = Decimal(10) ** 12          # Numeric(14, 2)
EXCEL_DIGITS = 15                       # Excel keeps 15 significant digits of a number


# --- what the import says back -------------------------------------------------------------

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


class BatchImportError(ValueError):
    """The import cannot start: a bad mapping file, an unknown encoding, a bad client code.
    (What is wrong inside the bank's file is reported as `Problem`s instead.)"""


class InvalidValue(ValueError):
    """A cell's value is not acceptable; the message says why, for the bank to read."""


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
        return f"column {get_column_letter(index + 1)}"


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
            shown = " and ".join(f"{headers[i]} ({get_column_letter(i + 1)})" for i in candidates)
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


def _missing_header(file: str, label: str, headers: Sequence[str]) -> Problem:
    return Problem(file, 1, "", "", f"no column for the {label}: expected a header "
                                    f"{' / '.join(headers)}, or a mapping file naming it")


def _extra_keys(headers: Sequence[str], claimed: set[int]) -> tuple[str, ...]:
    keys = []
    for index, header in enumerate(headers):
        letter = get_column_letter(index + 1)
        if index in claimed:
            keys.append("")
        elif not header:
            keys.append(f"column {letter}")
        else:
            keys.append(header if headers.count(header) == 1 else f"{header} ({letter})")
    return tuple(keys)


# --- cell values -----------------------------------------------------------------------------

def cell_text(value: object) -> str:
    """A cell as the bank sees it: numbers as Excel shows them (15 significant digits,
    so 13800138000.0 and 1.3800138e10 are "13800138000"), dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, f".{EXCEL_DIGITS}g")
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value).strip()


def _identifier_text(value: object) -> str:
    """The text of a number the bank means as digits (case reference, ID, phone)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= 10 ** EXCEL_DIGITS:
        raise InvalidValue(f"Excel stored it as a number and kept only {EXCEL_DIGITS} digits: "
                           f"format the column as text and enter it again")
    text = unicodedata.normalize("NFKC", cell_text(value))
    if "e+" in text.casefold() and _is_number(text):
        raise InvalidValue("written in scientific notation, so digits are lost: "
                           "format the column as text in Excel and export again")
    return text


def _is_number(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except InvalidOperation:
        return False


def _limited(text: str, length: int) -> str:
    if len(text) > length:
        raise InvalidValue(f"longer than {length} characters")
    return text


def parse_reference(value: object) -> str:
    return _limited(_identifier_text(value), 64)


def parse_text(length: int) -> Callable[[object], str]:
    return lambda value: _limited(cell_text(value), length)


def _decimal(value: object, what: str) -> Decimal:
    text = unicodedata.normalize("NFKC", cell_text(value))
    for noise in (",", "¥", "元", " "):     # NFKC has made ￥ into ¥
        text = text.replace(noise, "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidValue(f"not {what}") from None
    if not number.is_finite():
        raise InvalidValue(f"not {what}")
    if number < 0:
        raise InvalidValue("negative")
    return number


def parse_amount(value: object) -> Decimal:
    """An amount in yuan: ``12,345.60``, ``￥1,000``, ``500元``; two decimals at most."""
    number = _decimal(value, "an amount")
    cents = number.quantize(Decimal("0.01"))
    if cents != number:
        raise InvalidValue("more than two decimal places")
    if cents >= MAX_AMOUNT:
        raise InvalidValue(f"larger than {MAX_AMOUNT:,}")
    return cents


def parse_days(value: object) -> int:
    number = _decimal(value, "a number of days")
    if number != number.to_integral_value():
        raise InvalidValue("not a whole number of days")
    return int(number)


DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日")


def parse_date(value: object) -> dt.date:
    """A date cell, or text such as 2024-03-15, 2024/3/15, 20240315, 2024年3月15日."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = unicodedata.normalize("NFKC", cell_text(value)).split(" ")[0]
    for pattern in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise InvalidValue("not a date: write it as 2024-03-15")


def parse_timezone(value: object) -> str:
    name = cell_text(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue("not a time zone name such as Asia/Shanghai") from None
    return _limited(name, 64)


# --- resident ID numbers (GB 11643-1999) -----------------------------------------------------

ID_WEIGHTS = tuple(2 ** (17 - i) % 11 for i in range(17))
ID_CHECK_DIGITS = "10X98765432"


def id_check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check digit of the first 17 digits of an ID number."""
    return ID_CHECK_DIGITS[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def check_id_number(value: object, today: dt.date) -> str:
    """A resident ID number: 18 characters with a right check digit, or a legacy 15-digit
    one; either with a real birth date, not after `today`. Returned as written, X upper."""
    text = _identifier_text(value).replace(" ", "").upper()
    digits = text.isascii() and text[:17].isdigit()
    if len(text) == 18 and digits and (text[17].isdigit() or text[17] == "X"):
        birth = text[6:14]
    elif len(text) == 15 and digits:
        birth = "19" + text[6:12]
    else:
        raise InvalidValue("not a resident ID number: 17 digits then a digit or X "
                           "(or 15 digits for an old one)")
    try:
        born = dt.datetime.strptime(birth, "%Y%m%d").date()
    except ValueError:
        raise InvalidValue(f"birth date {birth} is not a date") from None
    if born > today:
        raise InvalidValue(f"birth date {born.isoformat()} is in the future")
    if len(text) == 18 and text[17] != (expected := id_check_digit(text[:17])):
        raise InvalidValue(f"check digit should be {expected}")
    return text


# --- phone numbers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DialNumber:
    """A phone number as stored: E.164, what the trunk dials from inside China, extension."""

    e164: str
    dial: str
    extension: str | None = None


NUMBER_SEPARATORS = str.maketrans({",": ";", "/": ";", "、": ";"})   # after NFKC: ，；／ too
EXTENSION_WORDS = ("分机号", "分机", "转")
WHY_NOT_POSSIBLE = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
}


def parse_phones(value: object) -> tuple[DialNumber, ...]:
    """A phone cell: one number, or several separated by ; , / or 、."""
    parts = [p.strip() for p in _identifier_text(value).translate(NUMBER_SEPARATORS).split(";")]
    parts = [p for p in parts if p]
    numbers = []
    for part in parts:
        try:
            numbers.append(parse_phone(part))
        except InvalidValue as exc:
            raise InvalidValue(f'"{part}": {exc}' if len(parts) > 1 else str(exc)) from None
    return tuple(numbers)


def parse_phone(text: str) -> DialNumber:
    """One number in any form a bank writes it (default region China): ``+86 138-0013-8000``,
    ``8613800138000``, ``0755-8888 8888``, ``(010) 6552 9988 转 123``, ``021-12345678-8001``."""
    text = unicodedata.normalize("NFKC", text)
    for word in EXTENSION_WORDS:
        text = text.replace(word, " ext. ")
    number = _valid_number(text)
    if number.extension and phonenumbers.number_type(number) == PhoneNumberType.MOBILE:
        raise InvalidValue("a mobile number has no extension")
    extension = number.extension or None
    if extension and len(extension) > 10:
        raise InvalidValue("extension longer than 10 digits")
    number.extension = None
    return DialNumber(
        e164=phonenumbers.format_number(number, PhoneNumberFormat.E164),
        dial=phonenumbers.normalize_digits_only(phonenumbers.format_out_of_country_calling_number(number, REGION)),
        extension=extension)


def _valid_number(text: str) -> phonenumbers.PhoneNumber:
    """The number phonenumbers finds valid in `text`; a trailing ``-digits`` is taken for
    an extension (021-12345678-8001) when the number is valid only without it."""
    number = _parse_number(text)
    if phonenumbers.is_valid_number(number):
        return number
    head, dash, tail = text.rpartition("-")
    tail = tail.strip()
    if dash and tail.isascii() and tail.isdigit() and not number.extension:
        try:
            shorter = _parse_number(head)
        except InvalidValue:
            shorter = None
        if shorter is not None and not shorter.extension and phonenumbers.is_valid_number(shorter):
            shorter.extension = tail
            return shorter
    raise InvalidValue(_why_invalid(number))


def _parse_number(text: str) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(text, REGION)
    except phonenumbers.NumberParseException:
        raise InvalidValue("not a phone number") from None


def _why_invalid(number: phonenumbers.PhoneNumber) -> str:
    why = WHY_NOT_POSSIBLE.get(phonenumbers.is_possible_number_with_reason(number), "no such number")
    if number.country_code == phonenumbers.country_code_for_region(REGION):
        why += " (a mobile has 11 digits; a landline needs its area code, as 0755-8888 8888)"
    return f"not a valid phone number: {why}"


# --- one row ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhoneRecord:
    role: PhoneRole
    number: DialNumber
    contact_name: str | None = None
    relation: str | None = None


@dataclass(frozen=True)
class CaseRecord:
    """A checked row, ready to be written."""

    reference: str
    debtor_name: str
    amount_due: Decimal
    days_past_due: int
    phones: tuple[PhoneRecord, ...]
    id_number: str | None = None
    due_date: dt.date | None = None
    timezone: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RowResult:
    row: int
    reference: str | None           # when it could be read, for the duplicate checks
    case: CaseRecord | None         # None when there are problems
    problems: tuple[Problem, ...] = ()

    def with_problem(self, problem: Problem) -> RowResult:
        return replace(self, case=None, problems=(*self.problems, problem))


def _parsers(today: dt.date) -> dict[str, Callable[[object], Any]]:
    return {
        "reference": parse_reference,
        "debtor_name": parse_text(200),
        "id_number": lambda value: check_id_number(value, today),
        "amount_due": parse_amount,
        "days_past_due": parse_days,
        "due_date": parse_date,
        "own_mobile": parse_phones,
        "home": parse_phones,
        "work": parse_phones,
        "contact_name": parse_text(200),
        "contact_relation": parse_text(40),
        "contact_phone": parse_phones,
        "timezone": parse_timezone,
    }


def parse_row(cells: Sequence[object], columns: Columns, *, file: str, row: int,
              parsers: Mapping[str, Callable[[object], Any]]) -> RowResult:
    """Check one row: every field it has, then that the debtor has a phone."""
    def cell(index: int) -> object:
        return cells[index] if index < len(cells) else None

    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, (index, header) in columns.fields.items():
        text = cell_text(cell(index))
        if not text:
            if FIELDS_BY_NAME[name].required:
                problems.append(Problem(file, row, header, "",
                                        f"empty, and every case needs its {FIELDS_BY_NAME[name].label}"))
            continue
        try:
            values[name] = parsers[name](cell(index))
        except InvalidValue as exc:
            problems.append(Problem(file, row, header, text, str(exc)))
    debtor_columns = [columns.header(name) for name in DEBTOR_PHONES if name in columns.fields]
    if not any(values.get(name) for name in DEBTOR_PHONES) and not any(p.column in debtor_columns for p in problems):
        problems.append(Problem(file, row, " / ".join(debtor_columns), "", "no phone number for the debtor"))
    reference = values.get("reference")
    if problems:
        return RowResult(row, reference, None, tuple(problems))
    extra = {key: text for index, value in enumerate(cells)
             if (key := columns.extra_key(index)) and (text := cell_text(value))}
    return RowResult(row, reference, _case(values, extra))


def _case(values: Mapping[str, Any], extra: Mapping[str, str]) -> CaseRecord:
    phones = [PhoneRecord(role, number) for name, role in DEBTOR_PHONES.items() for number in values.get(name, ())]
    phones += [PhoneRecord(PhoneRole.CONTACT, number, values.get("contact_name"), values.get("contact_relation"))
               for number in values.get("contact_phone", ())]
    return CaseRecord(
        reference=values["reference"], debtor_name=values["debtor_name"], amount_due=values["amount_due"],
        days_past_due=values["days_past_due"], id_number=values.get("id_number"),
        due_date=values.get("due_date"), timezone=values.get("timezone"), extra=extra,
        phones=_first_of_each_number(phones))


def _first_of_each_number(phones: Sequence[PhoneRecord]) -> tuple[PhoneRecord, ...]:
    """A number given twice (as mobile and as contact, say) is kept once, in its first role."""
    seen: set[tuple[str, str | None]] = set()
    kept = []
    for phone in phones:
        key = (phone.number.e164, phone.number.extension)
        if key not in seen:
            seen.add(key)
            kept.append(phone)
    return tuple(kept)


# --- the whole file --------------------------------------------------------------------------

@dataclass(frozen=True)
class ParsedBatch:
    file: str
    encoding: str
    rows: int                               # data rows, blank ones not counted
    results: tuple[RowResult, ...] = ()     # one for each row, when the header is good
    problems: tuple[Problem, ...] = ()      # about the whole file: nothing can be imported
    reference_column: str = ""


class _Unreadable(Exception):
    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def read_batch(data: bytes, file: str, *, now: dt.datetime, mapping: Mapping[str, str] | None = None,
               encoding: str | None = None, progress: Progress | None = None) -> ParsedBatch:
    """Read and check a batch file's bytes, without the database. `progress(done, rows)`."""
    try:
        used, table = read_table(data, file, encoding)
    except _Unreadable as exc:
        return ParsedBatch(file, "", 0, problems=(exc.problem,))
    if not table:
        return ParsedBatch(file, used, 0, problems=(Problem(file, 0, "", "", "the file is empty"),))
    rows = _blank_rows_removed(table)
    columns, problems = resolve_columns([cell_text(h) for h in table[0]], check_mapping(mapping or {}), file)
    if problems:
        return ParsedBatch(file, used, len(rows), problems=tuple(problems))
    parsers = _parsers(now.date())
    results = []
    for done, (row, cells) in enumerate(rows, 1):
        results.append(parse_row(cells, columns, file=file, row=row, parsers=parsers))
        if progress:
            progress(done, len(rows))
    empty = () if rows else (Problem(file, 0, "", "", "the file has a header row but no cases"),)
    return ParsedBatch(file, used, len(rows), tuple(_duplicates_marked(results, file, columns.header("reference"))),
                       empty, columns.header("reference"))


def _blank_rows_removed(table: Sequence[Sequence[object]]) -> list[tuple[int, Sequence[object]]]:
    return [(number, cells) for number, cells in enumerate(table[1:], 2) if any(cell_text(c) for c in cells)]


def _duplicates_marked(results: Sequence[RowResult], file: str, column: str) -> list[RowResult]:
    """The same reference on a later row is a problem of that row, naming the first."""
    first: dict[str, int] = {}
    marked = []
    for result in results:
        if result.reference is not None and result.reference in first:
            result = result.with_problem(Problem(file, result.row, column, result.reference,
                                                 f"the same case reference as row {first[result.reference]}"))
        elif result.reference is not None:
            first[result.reference] = result.row
        marked.append(result)
    return marked


def read_table(data: bytes, file: str, encoding: str | None = None) -> tuple[str, list[Sequence[object]]]:
    """The rows of an XLSX file's first sheet, or of a CSV file; and the encoding used."""
    if data.startswith(b"PK\x03\x04"):
        return "xlsx", _xlsx_rows(data, file)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise _Unreadable(Problem(file, 0, "", "", "an old Excel .xls file: save it as .xlsx or CSV"))
    used, text = decode(data, file, encoding)
    return used, _csv_rows(text, file)


def _xlsx_rows(data: bytes, file: str) -> list[Sequence[object]]:
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise _Unreadable(Problem(file, 0, "", "", f"not a readable XLSX workbook ({exc})")) from None
    try:
        return [tuple(row) for row in workbook.worksheets[0].iter_rows(values_only=True)]
    finally:
        workbook.close()


def _csv_rows(text: str, file: str) -> list[Sequence[object]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return list(reader)
    except csv.Error as exc:
        raise _Unreadable(Problem(file, reader.line_num, "", "", f"not readable as CSV: {exc}")) from None


def decode(data: bytes, file: str, encoding: str | None = None) -> tuple[str, str]:
    """The encoding used and the text. Without `encoding`: UTF-8 (a BOM is dropped) if the
    bytes are strictly UTF-8, else GB18030 (a superset of GBK and GB2312)."""
    if encoding is not None:
        candidates = [_codec_name(encoding)]
    elif data.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    else:
        candidates = ["utf-8", "gb18030"]
    failures = []
    for name in candidates:
        try:
            return name, data.decode(_python_codec(name))
        except UnicodeDecodeError as exc:
            failures.append((name, exc))
    raise _Unreadable(_undecodable(data, file, failures))


def _python_codec(name: str) -> str:
    return "utf-8-sig" if name == "utf-8" else name     # a BOM is no part of the text


def _codec_name(encoding: str) -> str:
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


# --- the database ----------------------------------------------------------------------------

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
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    file = path.name
    with factory() as session:
        earlier = _same_file(session, client_code, sha256)
    if earlier is not None:
        return ImportReport(file, "", problems=[Problem(file, 0, "", "", earlier)])

    tick = _ticker(progress)
    parsed = read_batch(data, file, now=now, mapping=mapping, encoding=encoding,
                        progress=lambda done, rows: tick(done, 2 * rows))
    tick(parsed.rows, 2 * parsed.rows)     # every row checked
    if not parsed.problems:
        with factory() as session:
            parsed = _known_references_marked(session, client_code, parsed)
    report = _plan(parsed, skip_invalid)
    if not report.ok:
        return report
    cases = [result.case for result in parsed.results if result.case is not None]
    try:
        with transaction(factory) as session:
            batch_id = _write(session, client_code, now, cases, Batch(
                name=batch_name, file_name=file, sha256=sha256, rows=parsed.rows, imported_at=now),
                lambda written: tick(parsed.rows + written, 2 * parsed.rows))
    except IntegrityError as exc:
        report.problems.append(Problem(file, 0, "", "", "the database refused the batch (was the same file "
                                                        f"or case imported at the same time?): {exc.orig}"))
        return report
    report.batch_id, report.imported = batch_id, len(cases)
    tick(2 * parsed.rows, 2 * parsed.rows)
    return report


def _ticker(progress: Progress | None) -> Callable[[int, int], None]:
    """progress, called about every 1% and always at the end."""
    last = 0

    def tick(done: int, total: int) -> None:
        nonlocal last
        if progress is not None and done > last and (done == total or done - last >= max(1, total // 100)):
            last = done
            progress(done, total)
    return tick


def _plan(parsed: ParsedBatch, skip_invalid: bool) -> ImportReport:
    """What to do with the checked rows: the report, before anything is written."""
    report = ImportReport(parsed.file, parsed.encoding, rows=parsed.rows, problems=list(parsed.problems))
    row_problems = [problem for result in parsed.results for problem in result.problems]
    if skip_invalid:
        report.skipped = row_problems
        if not report.problems and all(result.case is None for result in parsed.results):
            report.problems.append(Problem(parsed.file, 0, "", "", "every row has a problem: nothing to import"))
    else:
        report.problems += row_problems
    return report


def _same_file(session: Session, client_code: str, sha256: str) -> str | None:
    """Why the file cannot be imported again, if this client has imported it before."""
    batch = session.scalar(select(Batch).join(Client, Client.id == Batch.client_id)
                           .where(Client.code == client_code, Batch.sha256 == sha256))
    if batch is None:
        return None
    return (f"already imported for client {client_code} as batch #{batch.id} \"{batch.name}\" on "
            f"{batch.imported_at:%Y-%m-%d %H:%M} UTC (same SHA-256 {sha256[:12]}…); nothing was written")


def _known_references_marked(session: Session, client_code: str, parsed: ParsedBatch) -> ParsedBatch:
    """A case reference the client already has is a problem of its row."""
    references = [r.reference for r in parsed.results if r.reference is not None]
    known: dict[str, tuple[int, str]] = {}
    for start in range(0, len(references), 500):
        query = (select(Case.reference, Batch.id, Batch.name)
                 .join(Client, Client.id == Case.client_id).join(Batch, Batch.id == Case.batch_id)
                 .where(Client.code == client_code, Case.reference.in_(references[start:start + 500])))
        known.update((reference, (batch_id, name)) for reference, batch_id, name in session.execute(query))
    if not known:
        return parsed
    results = tuple(
        result.with_problem(Problem(
            parsed.file, result.row, parsed.reference_column, result.reference,
            f"client {client_code} already has this case, from batch #{known[result.reference][0]} "
            f"\"{known[result.reference][1]}\""))
        if result.reference in known else result
        for result in parsed.results)
    return replace(parsed, results=results)


def _write(session: Session, client_code: str, now: dt.datetime, cases: Sequence[CaseRecord], batch: Batch,
           written: Callable[[int], None]) -> int:
    """Add the batch, its cases and their phones (creating the client if new); the batch id.
    Cases and phones go in as bulk INSERTs, a chunk at a time, for large batches."""
    client = session.scalar(select(Client).where(Client.code == client_code))
    if client is None:
        client = Client(code=client_code, name=client_code, created_at=now)
        session.add(client)
        session.flush()
    batch.client_id = client.id
    session.add(batch)
    session.flush()
    for start in range(0, len(cases), WRITE_CHUNK):
        chunk = cases[start:start + WRITE_CHUNK]
        session.execute(insert(Case), [_case_values(case, client.id, batch.id, now) for case in chunk])
        ids = dict(session.execute(select(Case.reference, Case.id).where(
            Case.batch_id == batch.id, Case.reference.in_([case.reference for case in chunk]))).all())
        phones = [_phone_values(phone, ids[case.reference]) for case in chunk for phone in case.phones]
        if phones:
            session.execute(insert(Phone), phones)
        written(start + len(chunk))
    return batch.id


def _case_values(case: CaseRecord, client_id: int, batch_id: int, now: dt.datetime) -> dict[str, Any]:
    return {"client_id": client_id, "batch_id": batch_id, "reference": case.reference,
            "debtor_name": case.debtor_name, "id_number": case.id_number, "amount_due": case.amount_due,
            "days_past_due": case.days_past_due, "due_date": case.due_date, "timezone": case.timezone,
            "extra": dict(case.extra), "status": CaseStatus.NEW.value, "created_at": now}


def _phone_values(phone: PhoneRecord, case_id: int) -> dict[str, Any]:
    return {"case_id": case_id, "role": phone.role.value, "e164": phone.number.e164, "dial": phone.number.dial,
            "extension": phone.number.extension, "contact_name": phone.contact_name, "relation": phone.relation}
