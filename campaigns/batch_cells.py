"""A bank's cells read as the trade means them: amounts in yuan, days past due, dates, time
zones, resident ID numbers (GB 11643-1999) and phone numbers as Chinese banks write them.

Pure functions of a cell's value (a CSV's text, or what openpyxl read from an XLSX cell):
each gives the typed value or raises `InvalidValue` saying, for the bank to read, what is
wrong. The common forms are read by quick paths that tests compare with the long way
(strptime, phonenumbers' full parse) over every form they take.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import operator
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType, ValidationResult

REGION = "CN"
PHONE_CACHE = 1 << 14                   # numbers remembered: a batch repeats switchboards and contacts
MAX_AMOUNT = Decimal(10) ** 12          # Numeric(14, 2)
EXCEL_DIGITS = 15                       # Excel keeps 15 significant digits of a number


class InvalidValue(ValueError):
    """A cell's value is not acceptable; the message says why, for the bank to read."""


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


def phone_cell(value: object) -> tuple[tuple[str, str, str | None], ...]:
    """parse_phones, each number as (e164, dial, extension): a cell with one plain mobile or
    landline is read here without further ado, as `plain_number` would."""
    if value.__class__ is str and PLAIN_CELL.fullmatch(value):
        match = PLAIN_NUMBER.fullmatch(value.replace(" ", "").replace("-", ""))
        if match is not None and _CHINA.is_valid(national := match[1] or match[2]):
            return ((f"+{_CHINA.country_code}{national}", _CHINA.national_digits(national), None),)
    return tuple((number.e164, number.dial, number.extension) for number in parse_phones(value))
