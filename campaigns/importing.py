"""Importing a bank's batch file (委托批次) into the collection database.

A bank delegates cases as a spreadsheet: CSV in UTF-8 (with or without BOM), GBK or
GB18030, or XLSX. `import_batch` reads it in two passes and never holds it whole: the first
checks every row (`check_batch`: typed cases and `Problem`s, the checked cases spooled to a
temporary file a chunk at a time), then come the two checks that need the database (the
same file imported before, case references the client already has), and the second pass
writes the batch, its cases and their phones in one transaction, a chunk at a time, or
nothing at all.

Every problem names the file, row, column (as the bank wrote its header) and value, and
says what is wrong, so that the bank can fix its file. Rows are numbered as a spreadsheet
shows them: the header is row 1.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import functools
import gc
import hashlib
import io
import marshal
import operator
import pickle
import re
import tempfile
import tomllib
import unicodedata
import zipfile
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import openpyxl
import phonenumbers
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType, ValidationResult
from sqlalchemy import Connection, Table, select
from sqlalchemy import text as sql
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .models import Batch, Case, CaseStatus, Client, Phone, PhoneRole

#: progress(done, total): every row is counted twice, once checked and once written.
Progress = Callable[[int, int], None]

REGION = "CN"
WRITE_CHUNK = 2000                      # cases a chunk: spooled, then written, together
REFERENCE_CHUNK = 999                   # case references in one query (an old SQLite allows 999 parameters)
PHONE_CACHE = 1 << 14                   # numbers remembered: a batch repeats switchboards and contacts
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
    if value.__class__ is str:      # every cell of a CSV file
        return value.strip()
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
    if "+" in text and "e+" in text.casefold() and _is_number(text):
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


CENT = Decimal("0.01")
#: An amount in plain digits (commas gone), as most are written: what the long way reads too.
PLAIN_AMOUNT = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,2})?")


def parse_amount(value: object) -> Decimal:
    """An amount in yuan: ``12,345.60``, ``￥1,000``, ``500元``; two decimals at most."""
    if value.__class__ is str and PLAIN_AMOUNT.fullmatch(text := value.strip().replace(",", "")):
        return Decimal(text).quantize(CENT)
    number = _decimal(value, "an amount")
    cents = number.quantize(CENT)
    if cents != number:
        raise InvalidValue("more than two decimal places")
    if cents >= MAX_AMOUNT:
        raise InvalidValue(f"larger than {MAX_AMOUNT:,}")
    return cents


def parse_days(value: object) -> int:
    if value.__class__ is str and (text := value.strip()).isascii() and text.isdigit():
        return int(text)    # as the long way reads it
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
    return _date(cell_text(value))


ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


@functools.lru_cache(maxsize=4096)      # a batch has few distinct due dates
def _date(text: str) -> dt.date:
    if iso := ISO_DATE.fullmatch(text):     # as strptime reads it, quicker (a test compares them)
        with contextlib.suppress(ValueError):
            return dt.date(int(iso[1]), int(iso[2]), int(iso[3]))
    text = unicodedata.normalize("NFKC", text).split(" ")[0]
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


ID_DIGITS_OFFSET = ord("0") * sum(ID_WEIGHTS)


def id_check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check digit of the first 17 digits of an ID number."""
    if len(first17) == 17 and first17.isascii() and first17.isdigit():   # quicker, from the digits' bytes
        return ID_CHECK_DIGITS[(sum(map(operator.mul, first17.encode(), ID_WEIGHTS)) - ID_DIGITS_OFFSET) % 11]
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
    born = _birth_date(birth)
    if born > today:
        raise InvalidValue(f"birth date {born.isoformat()} is in the future")
    if len(text) == 18 and text[17] != (expected := id_check_digit(text[:17])):
        raise InvalidValue(f"check digit should be {expected}")
    return text


def _birth_date(birth: str) -> dt.date:
    """The date of 8 ASCII digits, as strptime's %Y%m%d reads them (a test compares them),
    and some 40 times quicker."""
    try:
        return dt.date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    except ValueError:
        raise InvalidValue(f"birth date {birth} is not a date") from None


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
    if value.__class__ is str and PLAIN_CELL.fullmatch(value) and (number := plain_number(value.strip())):
        return (number,)    # the common case, as the lines below would have it (ASCII is its own NFKC)
    parts = [p.strip() for p in _identifier_text(value).translate(NUMBER_SEPARATORS).split(";")]
    parts = [p for p in parts if p]
    numbers = []
    for part in parts:
        try:
            numbers.append(parse_phone(part))
        except InvalidValue as exc:
            raise InvalidValue(f'"{part}": {exc}' if len(parts) > 1 else str(exc)) from None
    return tuple(numbers)


@functools.lru_cache(maxsize=PHONE_CACHE)
def parse_phone(text: str) -> DialNumber:
    """One number in any form a bank writes it (default region China): ``+86 138-0013-8000``,
    ``8613800138000``, ``0755-8888 8888``, ``(010) 6552 9988 转 123``, ``021-12345678-8001``.
    A plain mobile or landline is read without phonenumbers' full parse (`plain_number`),
    to the same result; the numbers read last are remembered."""
    text = unicodedata.normalize("NFKC", text)
    return plain_number(text) or _parsed_number(text)


def _parsed_number(text: str) -> DialNumber:
    """parse_phone the long way: phonenumbers' parse, check and formatting."""
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


class _ChinaNumbers:
    """phonenumbers' own metadata for China, compiled once: whether a national number is a
    valid fixed line or mobile number, and the digits of its national format, decided as
    phonenumbers decides them (its _is_number_matching_desc and _format_nsn), with one
    regular expression for each length of number."""

    LONGEST = 20

    def __init__(self) -> None:
        metadata = PhoneMetadata.metadata_for_region(REGION)
        self.country_code = str(metadata.country_code)
        general, mobile, fixed_line = metadata.general_desc, metadata.mobile, metadata.fixed_line
        # A number of n digits is valid when it matches the general description (a lookahead)
        # and then a mobile or a fixed line; each description counts only for its lengths.
        self.valid = self._by_length([general], [mobile, fixed_line])
        self.fixed_line = self._by_length([general], [fixed_line])
        # The national formats, the first that fits in phonenumbers' order: its leading digits
        # (a prefix, as a lookahead), then its pattern, as one alternative named fK.
        self.formats = metadata.number_format
        self.format_patterns: dict[int, re.Pattern[str]] = {}
        self.prefixes = [_digits_before(_layout(f), re.compile(f.pattern).groups) for f in self.formats]
        for n in range(1, self.LONGEST + 1):
            fitting = [(k, f) for k, f in enumerate(self.formats) if _may_fit(f.pattern, n)]
            if fitting:
                self.format_patterns[n] = re.compile("|".join(
                    f"(?P<f{k}>{f'(?={f.leading_digits_pattern[-1]})' if f.leading_digits_pattern else ''}"
                    f"(?:{f.pattern}))" for k, f in fitting))

    def _by_length(self, lookahead: Sequence, alternatives: Sequence) -> dict[int, re.Pattern[str]]:
        def fits(desc, n: int) -> bool:
            return bool(desc.national_number_pattern) and (not desc.possible_length or n in desc.possible_length)
        patterns = {}
        for n in range(1, self.LONGEST + 1):
            kinds = [f"(?:{d.national_number_pattern})" for d in alternatives if fits(d, n)]
            if kinds and all(fits(d, n) for d in lookahead):
                ahead = "".join(f"(?=(?:{d.national_number_pattern})$)" for d in lookahead)
                patterns[n] = re.compile(f"{ahead}(?:{'|'.join(kinds)})")
        return patterns

    def is_valid(self, national: str) -> bool:
        pattern = self.valid.get(len(national))
        return pattern is not None and pattern.fullmatch(national) is not None

    def is_landline(self, national: str) -> bool:
        """Valid, and of no type phonenumbers would call MOBILE (it matches the fixed lines)."""
        pattern = self.fixed_line.get(len(national))
        return pattern is not None and pattern.fullmatch(national) is not None

    def national_digits(self, national: str) -> str:
        pattern = self.format_patterns.get(len(national))
        match = pattern and pattern.fullmatch(national)
        if not match:
            return national
        k = int(match.lastgroup[1:])
        if self.prefixes[k] is not None:
            return self.prefixes[k] + national
        return re.sub(r"\D", "", re.sub(self.formats[k].pattern, _layout(self.formats[k]), national))


def _may_fit(pattern: str, length: int) -> bool:
    """Whether a format's pattern may match a number of `length` digits: a pattern of digit
    groups only, as (\\d{3})(\\d{4})(\\d{4}), matches by length alone."""
    if re.fullmatch(r"(?:\(\\d\{\d+(?:,\d+)?\}\))+", pattern):
        return re.fullmatch(pattern, "0" * length) is not None
    return True


def _layout(number_format) -> str:
    """A national format's layout with its national prefix rule applied, as phonenumbers does."""
    if number_format.national_prefix_formatting_rule:
        return re.sub(r"(\\\d)", number_format.national_prefix_formatting_rule, number_format.format, count=1)
    return number_format.format


def _digits_before(layout: str, groups: int) -> str | None:
    """The digits a layout such as 0\\1 \\2 \\3 puts before the number, when it then lays out
    all `groups` in order with nothing but separators between: the digits it gives are
    those and the number's. None for any other layout."""
    match = re.fullmatch(r"(\d*)(\\1(?:\D*?\\\d)*)\D*", layout)
    if match is None or re.findall(r"\\(\d)", match[2]) != [str(g) for g in range(1, groups + 1)]:
        return None
    return match[1]


_CHINA = _ChinaNumbers()
#: A mobile (perhaps after +86 or 86) or a landline with its 0 and area code, in digits.
PLAIN_NUMBER = re.compile(r"(?:\+?86)?(1[3-9]\d{9})|0([1-9]\d{8,10})", re.ASCII)
#: A cell that may hold one plain number: ASCII digits, spaces, hyphens and plus signs only.
PLAIN_CELL = re.compile(r"[0-9 +-]+")
#: A landline with its 0 and area code, in digits.
PLAIN_LANDLINE = re.compile(r"0([1-9]\d{8,10})", re.ASCII)
#: A number, then its extension after 转, 分机 or 分机号 (made " ext. " as for phonenumbers).
LABELLED_EXTENSION = re.compile(r"([0-9 +-]+?) ext\. *([0-9]{1,10}) *")


def plain_number(text: str) -> DialNumber | None:
    """A plain Chinese mobile or landline read without phonenumbers' full parse, or None for
    anything else. `text` (NFKC already) must be digits with spaces or hyphens between, the
    mobile perhaps after +86 or 86, the landline with its 0 and area code (and perhaps an
    extension, see `_landline_and_extension`); and the number valid. What it gives is what
    the long way gives (a test compares them over every mobile and area-code prefix); what
    it leaves goes the long way, which also says what is wrong."""
    match = PLAIN_NUMBER.fullmatch(text.replace(" ", "").replace("-", ""))
    if match is None:
        return _landline_and_extension(text)
    national = match[1] or match[2]
    if not _CHINA.is_valid(national):
        return None
    return DialNumber(f"+{_CHINA.country_code}{national}", _CHINA.national_digits(national))


def _landline_and_extension(text: str) -> DialNumber | None:
    """A plain landline with an extension of up to 10 digits, as the long way reads it: after
    转, 分机 or 分机号 (phonenumbers takes an extension after "ext."), or after the last hyphen
    when the whole has 14 to 18 digits (so that phonenumbers finds it no number, being over
    12 digits once its 0 is gone, yet parses it, being at most 17), as in 021-12345678-8001."""
    for word in EXTENSION_WORDS:
        text = text.replace(word, " ext. ")
    if labelled := LABELLED_EXTENSION.fullmatch(text):
        head, extension = labelled.groups()
    else:
        head, dash, extension = text.rpartition("-")
        extension = extension.strip()
        digits = sum(map(str.isdigit, text))
        if not (dash and PLAIN_CELL.fullmatch(text) and extension.isdigit() and 14 <= digits <= 18):
            return None
    landline = PLAIN_LANDLINE.fullmatch(head.replace(" ", "").replace("-", ""))
    if landline is None or not 1 <= len(extension) <= 10 or not _CHINA.is_landline(national := landline[1]):
        return None
    return DialNumber(f"+{_CHINA.country_code}{national}", _CHINA.national_digits(national), extension)


# --- one row ---------------------------------------------------------------------------------

#: A checked case as spooled: (row, reference, debtor_name, id_number, amount_due as text,
#: days_past_due, due_date in ISO form or None, timezone, extra, phones), each phone (role,
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
                           values["days_past_due"], due_date and due_date.isoformat(), values.get("timezone"), extra,
                           _phones(values)), problems


ROLES = [(name, role.value) for name, role in DEBTOR_PHONES.items()]


def phone_cell(value: object) -> tuple[tuple[str, str, str | None], ...]:
    """parse_phones, each number as (e164, dial, extension): a cell with one plain mobile or
    landline is read here without further ado, as `plain_number` would."""
    if value.__class__ is str and PLAIN_CELL.fullmatch(value):
        match = PLAIN_NUMBER.fullmatch(value.replace(" ", "").replace("-", ""))
        if match is not None and _CHINA.is_valid(national := match[1] or match[2]):
            return ((f"+{_CHINA.country_code}{national}", _CHINA.national_digits(national), None),)
    return tuple((number.e164, number.dial, number.extension) for number in parse_phones(value))


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


# --- the whole file --------------------------------------------------------------------------

class Spool:
    """Items kept in a temporary file a chunk at a time and read back in order, so that a
    large batch takes the memory of one chunk. By default items of marshal's types only (str,
    int, tuple, dict, None…): it is several times quicker than pickle, and the file is read
    back by the same process; `codec=pickle` for any other."""

    def __init__(self, chunk: int = WRITE_CHUNK, codec: Any = marshal) -> None:
        self.chunk, self.codec = chunk, codec
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
            blob = self.codec.dumps(self._buffer)
            self._file.write(len(blob).to_bytes(8, "little") + blob)
            self._buffer = []

    def chunks(self) -> Iterator[list[Any]]:
        self._flush()
        self._file.seek(0)
        while size := self._file.read(8):
            yield self.codec.loads(self._file.read(int.from_bytes(size, "little")))

    def close(self) -> None:
        self._file.close()


@dataclass
class CheckedBatch:
    """A file read and checked, before the database has a say."""

    file: str
    encoding: str
    rows: int = 0                                   # data rows, blank ones not counted
    problems: list[Problem] = field(default_factory=list)       # the file's: nothing can be imported
    row_problems: list[Problem] = field(default_factory=list)   # the rows', in row order
    reference_column: str = ""
    first_rows: dict[str, int] = field(default_factory=dict)    # each case reference: its first row
    repeated: list[tuple[int, str]] = field(default_factory=list)  # (row, reference) seen on an earlier row
    excluded: set[int] = field(default_factory=set)             # rows spooled but not to be written
    importable: int = 0                             # cases spooled and not excluded


class _Unreadable(Exception):
    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def check_batch(path: Path, file: str, cases: Spool, *, now: dt.datetime, mapping: Mapping[str, str] | None = None,
                encoding: str | None = None, progress: Progress | None = None) -> CheckedBatch:
    """Read and check a batch file, without the database: each row without a problem goes
    to `cases` (a CaseRow). `progress(done, rows)` as the rows are checked."""
    try:
        table = open_table(path, file, encoding)
    except _Unreadable as exc:
        return CheckedBatch(file, "", problems=[exc.problem])
    with contextlib.closing(table):
        checked = CheckedBatch(file, table.encoding, table.rows)
        if table.header is None:
            checked.problems.append(Problem(file, 0, "", "", "the file is empty"))
            return checked
        columns, checked.problems = resolve_columns([cell_text(h) for h in table.header],
                                                    check_mapping(mapping or {}), file)
        if checked.problems:
            return checked
        if not table.rows:
            checked.problems.append(Problem(file, 0, "", "", "the file has a header row but no cases"))
            return checked
        checked.reference_column = column = columns.header("reference")
        check = RowCheck(columns, file=file, today=now.date())
        first, problems = checked.first_rows, checked.row_problems
        step = max(1, table.rows // 500)    # progress is shown by the percent: no need for every row
        for done, (row, cells) in enumerate(table.data(), 1):
            reference, case, found = check(row, cells)
            if reference is not None:
                if reference in first:
                    found.append(Problem(file, row, column, reference,
                                         f"the same case reference as row {first[reference]}"))
                    checked.repeated.append((row, reference))
                    case = None
                else:
                    first[reference] = row
            if case is not None:
                cases.append(case)
            else:
                problems += found
            if progress and (done % step == 0 or done == table.rows):
                progress(done, table.rows)
    checked.importable = cases.count
    return checked


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
        try:
            workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
            raise _Unreadable(Problem(file, 0, "", "", f"not a readable XLSX workbook ({exc})")) from None
        self.spool = Spool(codec=pickle)     # cells may be dates and times
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
    if encoding is not None:
        candidates = [_codec_name(encoding)]
    elif start.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    else:
        candidates = ["utf-8", "gb18030"]
    for name in candidates:
        try:
            return CsvTable(path, file, name)       # its first pass decodes the whole file
        except UnicodeDecodeError:
            continue
        except _Unreadable:
            if _decodes(path, name):                # a CSV problem, in the right encoding
                raise
    decode(path.read_bytes(), file, encoding)       # raises _Unreadable, saying where it fails
    raise AssertionError("unreachable: the file decoded after all")


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
    sha256 = _sha256(path)
    file = path.name
    with factory() as session:
        earlier = _same_file(session, client_code, sha256)
    if earlier is not None:
        return ImportReport(file, "", problems=[Problem(file, 0, "", "", earlier)])

    tick = _ticker(progress)
    with contextlib.closing(Spool()) as cases, _collector_paused():
        checked = check_batch(path, file, cases, now=now, mapping=mapping, encoding=encoding,
                              progress=lambda done, rows: tick(done, 2 * rows))
        rows = checked.rows
        tick(rows, 2 * rows)     # every row checked
        if not checked.problems and checked.first_rows:
            with factory() as session:
                _known_references_marked(session, client_code, checked)
        report = _plan(checked, skip_invalid)
        if not report.ok:
            return report
        try:
            with transaction(factory) as session:
                batch_id = _write(session, client_code, now, cases, checked.excluded, checked.importable, Batch(
                    name=batch_name, file_name=file, sha256=sha256, rows=rows, imported_at=now),
                    lambda written: tick(rows + written, 2 * rows))
        except IntegrityError as exc:
            report.problems.append(Problem(file, 0, "", "", "the database refused the batch (was the same file "
                                                            f"or case imported at the same time?): {exc.orig}"))
            return report
    report.batch_id, report.imported = batch_id, checked.importable
    tick(2 * rows, 2 * rows)
    return report


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The objects alive before the import frozen (gc.freeze): the rows make millions of
    short-lived objects, and the cyclic collector's passes over everything alive (all the
    modules' objects) would cost a quarter of the time; it still collects what the import
    makes. Thawed after, unless someone else had frozen them (a pre-fork server, say)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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


def _plan(checked: CheckedBatch, skip_invalid: bool) -> ImportReport:
    """What to do with the checked rows: the report, before anything is written."""
    report = ImportReport(checked.file, checked.encoding, rows=checked.rows, problems=list(checked.problems))
    if skip_invalid:
        report.skipped = checked.row_problems
        if not report.problems and checked.importable == 0:
            report.problems.append(Problem(checked.file, 0, "", "", "every row has a problem: nothing to import"))
    else:
        report.problems += checked.row_problems
    return report


def _same_file(session: Session, client_code: str, sha256: str) -> str | None:
    """Why the file cannot be imported again, if this client has imported it before."""
    batch = session.scalar(select(Batch).join(Client, Client.id == Batch.client_id)
                           .where(Client.code == client_code, Batch.sha256 == sha256))
    if batch is None:
        return None
    return (f"already imported for client {client_code} as batch #{batch.id} \"{batch.name}\" on "
            f"{batch.imported_at:%Y-%m-%d %H:%M} UTC (same SHA-256 {sha256[:12]}…); nothing was written")


def _known_references_marked(session: Session, client_code: str, checked: CheckedBatch) -> None:
    """A case reference the client already has is a problem of each row with it: one query
    for each REFERENCE_CHUNK of the file's references."""
    client_id = session.scalar(select(Client.id).where(Client.code == client_code))
    if client_id is None:
        return
    references = list(checked.first_rows)
    known: dict[str, tuple[int, str]] = {}
    for start in range(0, len(references), REFERENCE_CHUNK):
        query = (select(Case.reference, Batch.id, Batch.name).join(Batch, Batch.id == Case.batch_id)
                 .where(Case.client_id == client_id, Case.reference.in_(references[start:start + REFERENCE_CHUNK])))
        known.update((reference, (batch_id, name)) for reference, batch_id, name in session.execute(query))
    if not known:
        return
    rows = [(checked.first_rows[reference], reference) for reference in known]
    rows += [(row, reference) for row, reference in checked.repeated if reference in known]
    marked = [Problem(checked.file, row, checked.reference_column, reference,
                      f"client {client_code} already has this case, from batch #{known[reference][0]} "
                      f"\"{known[reference][1]}\"") for row, reference in rows]
    # The cases spooled (their rows had no problem) that must not be written now.
    spooled = {row for row, _ in rows} - {problem.row for problem in checked.row_problems}
    checked.excluded |= spooled
    checked.importable -= len(spooled)
    # A row's own problems first, then this one (the sort is stable).
    checked.row_problems = sorted(checked.row_problems + marked, key=lambda problem: problem.row)


def _write(session: Session, client_code: str, now: dt.datetime, cases: Spool, excluded: set[int], count: int,
           batch: Batch, written: Callable[[int], None]) -> int:
    """Add the batch, its `count` cases (those spooled, less the `excluded` rows) and their
    phones, creating the client if new; the batch id. The cases' ids are taken first, so
    that their phones need not wait for them; then the cases go in, then the phones, each
    table as one stream of chunks (on PostgreSQL one COPY: the server stores rows while the
    next are made ready)."""
    client = session.scalar(select(Client).where(Client.code == client_code))
    if client is None:
        client = Client(code=client_code, name=client_code, created_at=now)
        session.add(client)
        session.flush()
    batch.client_id = client.id
    session.add(batch)
    session.flush()
    connection = session.connection()
    ids = CaseIds(connection).take(count)
    case_rows = BulkRows(connection, Case.__table__, ("id", *CASE_COLUMNS), {
        "client_id": client.id, "batch_id": batch.id, "status": CaseStatus.NEW.value, "created_at": now})
    phone_rows = BulkRows(connection, Phone.__table__, ("case_id", *PHONE_COLUMNS))
    done = 0        # cases, then phones (in cases), written: each row is written once the two are
    with case_rows.stream() as write:
        for chunk_ids, chunk in _with_ids(cases, excluded, ids):
            write([(case_id, reference, name, id_number, Decimal(amount), days, due and dt.date.fromisoformat(due),
                    timezone, extra)
                   for case_id, (_, reference, name, id_number, amount, days, due, timezone, extra, _)
                   in zip(chunk_ids, chunk)])
            done += len(chunk)
            written(done // 2)
    with phone_rows.stream() as write:
        for chunk_ids, chunk in _with_ids(cases, excluded, ids):
            write([(case_id, *phone) for case_id, case in zip(chunk_ids, chunk) for phone in case[9]])
            done += len(chunk)
            written(done // 2)
    return batch.id


def _with_ids(cases: Spool, excluded: set[int], ids: Sequence[int]) -> Iterator[tuple[Sequence[int], list[CaseRow]]]:
    """The spooled cases to write, a chunk at a time, with their ids."""
    taken = 0
    for chunk in cases.chunks():
        if excluded:
            chunk = [case for case in chunk if case[0] not in excluded]
        if chunk:
            yield ids[taken:taken + len(chunk)], chunk
            taken += len(chunk)


class CaseIds:
    """Ids for new cases, taken before they are written: on PostgreSQL from the table's
    sequence (nextval); on SQLite above the largest id, which stays the largest since the
    transaction (it has written the batch) holds the database's write lock."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        if connection.dialect.name not in ("postgresql", "sqlite"):
            raise BatchImportError(f"importing needs SQLite or PostgreSQL, not {connection.dialect.name}")

    def take(self, count: int) -> Sequence[int]:
        if self.connection.dialect.name == "postgresql":
            sequence = f"pg_get_serial_sequence('{Case.__tablename__}', 'id')"
            return array("q", self.connection.scalars(
                sql(f"SELECT nextval({sequence}) FROM generate_series(1, :count)"), {"count": count}))
        first = self.connection.scalar(sql(f"SELECT coalesce(max(id), 0) + 1 FROM {Case.__tablename__}"))
        return range(first, first + count)


class BulkRows:
    """Rows into one table within the connection's transaction, each value through its
    column type's bind processor as a Core insert() would, and the columns left out given
    their Python-side defaults; by COPY on PostgreSQL, by executemany on SQLite. No
    statement has more parameters than one row's, whatever the number of rows."""

    def __init__(self, connection: Connection, table: Table, columns: Sequence[str],
                 constants: Mapping[str, Any] | None = None) -> None:
        dialect = connection.dialect
        fixed = dict(constants or {})
        for column in table.columns:
            if column.name not in fixed and column.name not in columns and column.default is not None:
                if not column.default.is_scalar:
                    raise TypeError(f"{table.name}.{column.name}: only a scalar default can be given in bulk")
                fixed[column.name] = column.default.arg
        self.connection, self.dialect = connection, dialect
        self.processors = [(i, processor) for i, name in enumerate(columns)
                           if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))]
        self.fixed = tuple(self._processed(table.c[name], value) for name, value in fixed.items())
        names = [*columns, *fixed]
        quote = dialect.identifier_preparer.quote
        listed = f"{dialect.identifier_preparer.format_table(table)} ({', '.join(map(quote, names))})"
        self.names, self.table = names, table
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

    @contextlib.contextmanager
    def stream(self) -> Iterator[Callable[[Sequence[tuple]], None]]:
        """A function writing rows, a chunk at a time: within one COPY on PostgreSQL, as an
        executemany each on SQLite."""
        if self.dialect.name != "postgresql":
            def execute(rows: Sequence[tuple]) -> None:
                if rows:
                    self.connection.exec_driver_sql(self.statement, self._ready(rows))
            yield execute
            return
        driver = self.connection.connection.driver_connection
        try:
            with driver.cursor() as cursor:     # binary, so each column's type as the server has it
                cursor.execute("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass",
                               (self.dialect.identifier_preparer.format_table(self.table),))
                types = dict(cursor.fetchall())
            with driver.cursor() as cursor, cursor.copy(self.statement) as copy:
                copy.set_types([types[name] for name in self.names])

                def send(rows: Sequence[tuple]) -> None:
                    for row in self._ready(rows):
                        copy.write_row(row)
                yield send
        except self.dialect.loaded_dbapi.Error as exc:     # as SQLAlchemy raises it for a statement
            raise DBAPIError.instance(self.statement, None, exc, self.dialect.loaded_dbapi.Error,
                                      dialect=self.dialect) from exc
