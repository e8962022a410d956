"""Importing a bank's batch file: files written here into tmp_path, a fresh database (SQLite
and PostgreSQL, the `database` fixture).

Each rejected input is checked down to the file, row, column and value its Problem names,
and every refused import is checked to have written nothing (rows counted in every table).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import signal
import unicodedata
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from batch_files import (
    CASES,
    HEADERS,
    VALID_IDS,
    case,
    many_cases,
    write_csv,
    write_xlsx,
)
from phonenumbers import PhoneNumberType
from sqlalchemy import delete, func, select
from sqlalchemy import text as sql
from sqlalchemy.orm import selectinload

from campaigns import importing
from campaigns.batch_cells import (
    DialNumber,
    InvalidValue,
    _birth_date,
    _date,
    _parsed_number,
    check_id_number,
    parse_amount,
    parse_phones,
    plain_number,
)
from campaigns.batch_file import BatchImportError, Problem, load_mapping
from campaigns.db import sessions
from campaigns.importing import import_batch
from campaigns.models import Batch, Case, Client, Phone

NOW = dt.datetime(2024, 3, 15, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
CLIENT = "ICBC-SZ"
NOTHING = {"clients": 0, "batches": 0, "cases": 0, "phones": 0}
HINT = "(a mobile has 11 digits; a landline needs its area code, as 0755-8888 8888)"
SCIENTIFIC = "written in scientific notation, so digits are lost: format the column as text in Excel and export again"


@pytest.fixture(params=["here", "beside"])
def checking(request, monkeypatch):
    """Where the rows are checked: in the importing process, or beside it in a process of
    its own (campaigns.parallel_check, as a large file is), whatever the file's size."""
    monkeypatch.setattr(importing, "PARALLEL_FROM_BYTES", 0 if request.param == "beside" else 1 << 62)
    return request.param


@pytest.fixture
def factory(database, checking):
    return sessions(database)


def run(factory, path, **options):
    return import_batch(factory, path, CLIENT, now=NOW, **options)


def counts(factory) -> dict[str, int]:
    with factory() as session:
        return {name: session.scalar(select(func.count()).select_from(model))
                for name, model in (("clients", Client), ("batches", Batch), ("cases", Case), ("phones", Phone))}


def stored_cases(factory) -> dict[str, Case]:
    with factory() as session:
        return {c.reference: c for c in session.scalars(select(Case).options(selectinload(Case.phones)))}


def phones_of(c: Case) -> list[tuple[str, str, str, str | None]]:
    return [(p.role, p.e164, p.dial, p.extension) for p in c.phones]


def refused(factory, report, *expected: Problem) -> None:
    """The import was refused for exactly these problems, and wrote nothing."""
    assert not report.ok and report.batch_id is None and report.imported == 0
    assert report.problems == list(expected)
    assert counts(factory) == NOTHING


# --- files and encodings ---------------------------------------------------------------------

def test_a_gbk_csv_is_detected_and_imported_whole(factory, tmp_path):
    path = write_csv(tmp_path / "工商银行0315.csv", CASES, encoding="gbk")
    ticks = []
    report = run(factory, path, progress=lambda done, total: ticks.append((done, total)))

    assert report.ok and report.problems == [] and report.skipped == []
    assert (report.file, report.encoding, report.rows, report.imported) == ("工商银行0315.csv", "gb18030", 5, 5)
    assert ticks[-1] == (10, 10)
    assert counts(factory) == {"clients": 1, "batches": 1, "cases": 5, "phones": 12}
    cases = stored_cases(factory)
    zhang = cases["ZS2024030001"]
    assert (zhang.debtor_name, zhang.id_number, zhang.amount_due, zhang.days_past_due, zhang.due_date) == (
        "张伟", "11010519491231002X", Decimal("12345.60"), 45, dt.date(2024, 1, 30))
    assert (zhang.status, zhang.created_at, zhang.batch_id) == ("new", NOW, report.batch_id)
    assert zhang.extra == {"卡号": "6222020200001234", "备注": "首次委托"}
    assert phones_of(zhang) == [("own_mobile", "+8613800138000", "13800138000", None),
                                ("home", "+861065529988", "01065529988", None),
                                ("contact", "+8613912345678", "13912345678", None)]
    assert (zhang.phones[2].contact_name, zhang.phones[2].relation) == ("王芳", "配偶")
    assert cases["ZS2024030005"].debtor_name == "买买提·艾力"
    with factory() as session:
        batch = session.scalars(select(Batch)).one()
        client = session.scalars(select(Client)).one()
    assert (batch.name, batch.file_name, batch.rows, batch.imported_at) == ("工商银行0315", "工商银行0315.csv", 5, NOW)
    assert (client.code, client.id) == (CLIENT, batch.client_id)


def test_a_utf8_csv_with_bom_keeps_its_first_header(factory, tmp_path):
    report = run(factory, write_csv(tmp_path / "batch.csv", CASES, encoding="utf-8-sig"))
    assert (report.ok, report.encoding, report.imported) == (True, "utf-8-sig", 5)
    assert set(stored_cases(factory)) == {c["案件编号"] for c in CASES}


def test_a_utf8_csv_without_bom(factory, tmp_path):
    report = run(factory, write_csv(tmp_path / "batch.csv", CASES))
    assert (report.ok, report.encoding, report.imported) == (True, "utf-8", 5)


def test_a_forced_encoding_is_used_and_named(factory, tmp_path):
    report = run(factory, write_csv(tmp_path / "batch.csv", CASES, encoding="gbk"), encoding="GBK")
    assert (report.ok, report.encoding) == (True, "gbk")
    assert stored_cases(factory)["ZS2024030002"].debtor_name == "李娜"


#: 䶮 (U+4DAE, as in the name 刘䶮) is in GB18030 (bytes fe 9f) but not in GBK.
GB18030_ONLY = "王䶮"


def test_a_gb18030_csv_with_a_character_gbk_lacks_is_detected_and_stored_intact(factory, tmp_path):
    with pytest.raises(UnicodeEncodeError):
        GB18030_ONLY.encode("gbk")
    path = write_csv(tmp_path / "batch.csv", [case(0, 姓名=GB18030_ONLY), CASES[1]], encoding="gb18030")
    assert b"\xfe\x9f" in path.read_bytes()
    report = run(factory, path)
    assert (report.ok, report.encoding, report.imported) == (True, "gb18030", 2)
    cases = stored_cases(factory)
    assert cases["ZS2024030001"].debtor_name == GB18030_ONLY
    assert cases["ZS2024030002"].debtor_name == "李娜"


def test_a_forced_gb18030_encoding_stores_a_character_gbk_lacks(factory, tmp_path):
    path = write_csv(tmp_path / "batch.csv", [case(0, 姓名=GB18030_ONLY)], encoding="gb18030")
    report = run(factory, path, encoding="GB18030")
    assert (report.ok, report.encoding, report.imported) == (True, "gb18030", 1)
    assert stored_cases(factory)["ZS2024030001"].debtor_name == GB18030_ONLY


def test_the_same_file_forced_as_gbk_is_refused_at_that_character(factory, tmp_path):
    path = write_csv(tmp_path / "batch.csv", [case(0, 姓名=GB18030_ONLY)], encoding="gb18030")
    offset = path.read_bytes().index(b"\xfe\x9f")
    refused(factory, run(factory, path, encoding="gbk"), Problem(
        "batch.csv", 2, "", "fe", f"not GBK (byte offset {offset}): "
        "save the file as UTF-8, or name the encoding it is in"))


def test_an_unknown_encoding_name_is_a_usage_error(factory, tmp_path):
    with pytest.raises(BatchImportError, match="unknown encoding 'big-5-hk'"):
        run(factory, write_csv(tmp_path / "batch.csv", CASES), encoding="big-5-hk")


def test_a_file_in_neither_utf8_nor_gb18030_names_the_byte_and_row(factory, tmp_path):
    path = write_csv(tmp_path / "batch.csv", CASES[:2], encoding="gbk")
    data = path.read_bytes()
    broken = data.index("李娜".encode("gbk"))        # row 3
    path.write_bytes(data[:broken] + b"\xff" + data[broken:])
    refused(factory, run(factory, path), Problem(   # the header is GBK already: not UTF-8 from byte 0
        "batch.csv", 3, "", "ff", f"not UTF-8 (byte offset 0) nor GB18030 (byte offset {broken}): "
        "save the file as UTF-8, or name the encoding it is in"))


def test_a_forced_encoding_that_does_not_fit_names_the_byte(factory, tmp_path):
    path = write_csv(tmp_path / "batch.csv", CASES[:1], headers=["case_no", *HEADERS[1:]], encoding="gbk")
    offset = path.read_bytes().index("姓名".encode("gbk"))
    report = run(factory, path, encoding="utf-8")
    refused(factory, report, Problem("batch.csv", 1, "", "d0", f"not UTF-8 (byte offset {offset}): "
                                     "save the file as UTF-8, or name the encoding it is in"))


def test_xlsx_numbers_stored_as_floats_come_out_as_digits(factory, tmp_path):
    rows = [case(0, 手机=13800138000, 家庭电话=None, 联系人电话=None, 欠款金额=12345.6, 逾期天数=45,
                 到期日=dt.datetime(2024, 1, 30), 卡号=6222020200001234),
            case(1, 手机=13612345678, 家庭电话=None, 单位电话=None, 欠款金额=1234.56, 逾期天数=92.0,
                 案件编号=20240302)]
    path = write_xlsx(tmp_path / "batch.xlsx", rows, stored={
        "G2": "1.3800138E10", "G3": "13612345678.0", "D3": "1234.5600000000002", "A3": "20240302.0"})
    report = run(factory, path)
    assert (report.ok, report.encoding, report.imported) == (True, "xlsx", 2)
    cases = stored_cases(factory)
    zhang = cases["ZS2024030001"]
    assert phones_of(zhang) == [("own_mobile", "+8613800138000", "13800138000", None)]
    assert (zhang.due_date, zhang.amount_due) == (dt.date(2024, 1, 30), Decimal("12345.60"))
    assert zhang.extra["卡号"] == "6222020200001234"
    lina = cases["20240302"]
    assert (lina.amount_due, lina.days_past_due, lina.due_date) == (Decimal("1234.56"), 92, dt.date(2023, 12, 15))
    assert phones_of(lina) == [("own_mobile", "+8613612345678", "13612345678", None)]


def test_an_id_number_excel_stored_as_a_number_is_refused(factory, tmp_path):
    path = write_xlsx(tmp_path / "batch.xlsx", [case(0, 身份证号=110105194912310020)])
    refused(factory, run(factory, path), Problem(
        "batch.xlsx", 2, "身份证号", "1.1010519491231e+17",
        "Excel stored it as a number and kept only 15 digits: format the column as text and enter it again"))


def test_an_old_xls_file_is_refused(factory, tmp_path):
    path = tmp_path / "batch.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    refused(factory, run(factory, path),
            Problem("batch.xls", 0, "", "", "an old Excel .xls file: save it as .xlsx or CSV"))


# --- phone numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize("written, e164, dial, extension", [
    ("+86 138-0013-8000", "+8613800138000", "13800138000", None),
    ("138 0013 8000", "+8613800138000", "13800138000", None),
    ("8613800138000", "+8613800138000", "13800138000", None),
    ("0086 138 0013 8000", "+8613800138000", "13800138000", None),
    ("１３８００１３８０００", "+8613800138000", "13800138000", None),
    ("0755-8888 8888", "+8675588888888", "075588888888", None),
    ("+86 755 8888 8888", "+8675588888888", "075588888888", None),
    ("(010) 6552 9988 转 123", "+861065529988", "01065529988", "123"),
    ("010-65529988分机123", "+861065529988", "01065529988", "123"),
    ("021-12345678-8001", "+862112345678", "02112345678", "8001"),
    ("0755-8888 8888 ext. 88", "+8675588888888", "075588888888", "88"),
    ("400-810-8888", "+864008108888", "4008108888", None),
    ("+852 9123 4567", "+85291234567", "0085291234567", None),
])
def test_phone_numbers_are_normalised(written, e164, dial, extension):
    assert parse_phones(written) == (DialNumber(e164, dial, extension),)


def test_several_numbers_in_one_cell():
    assert [n.e164 for n in parse_phones("13800138000；0755-88888888、(010) 6552 9988 / 13900139000, 13700137000")] == [
        "+8613800138000", "+8675588888888", "+861065529988", "+8613900139000", "+8613700137000"]


@pytest.mark.parametrize("written, message", [
    ("1380013800", f"not a valid phone number: no such number {HINT}"),
    ("6552 9988", f"not a valid phone number: no such number {HINT}"),
    ("138001380001234", f"not a valid phone number: too long {HINT}"),
    ("13800138000-123", "a mobile number has no extension"),
    ("1.38001E+10", SCIENTIFIC),
    ("无", "not a phone number"),
    ("13800138000/12345", f'"12345": not a valid phone number: too short {HINT}'),
])
def test_invalid_phone_numbers_say_why(written, message):
    with pytest.raises(InvalidValue) as caught:
        parse_phones(written)
    assert str(caught.value) == message


def plain_forms(rng: random.Random) -> list[str]:
    """Numbers as banks write them, for every mobile prefix of 4 digits (1300-1999, allotted or
    not) and every 3-digit national prefix of a landline with 9 to 11 digits after its 0,
    with and without extensions: most are no number at all."""
    texts = []
    for prefix in range(1300, 2000):
        for _ in range(3):
            n = f"{prefix}{rng.randrange(10 ** 7):07d}"
            texts += [n, f"{n[:3]}-{n[3:7]}-{n[7:]}", f"{n[:3]} {n[3:7]} {n[7:]}", f"+86 {n}", f"86{n}",
                      f"{n} 转 {rng.randrange(1, 999)}", f"{n}-{rng.randrange(1, 999)}"]
    for prefix in range(100, 1000):
        for length in (9, 10, 11):
            for _ in range(2):
                national = f"{prefix}{rng.randrange(10 ** (length - 3)):0{length - 3}d}"
                area = 2 if national[0] in "12" else 3
                head, rest = national[:area], national[area:]
                texts += ["0" + national, f"0{head}-{rest}", f"0{head} {rest[:4]} {rest[4:]}",
                          f"0{head}-{rest}-{rng.randrange(1, 99999)}",
                          f"0{head}-{rest} 分机 {rng.randrange(1, 9999)}",
                          f"0{head}-{rest}转{rng.randrange(1, 10 ** 11)}",
                          f"0{head} {rest} 分机号 {rng.randrange(1, 99)}"]
    return texts


def test_a_plain_number_read_the_quick_way_is_what_phonenumbers_reads():
    """plain_number reads plain mobiles and landlines (with extensions) without phonenumbers'
    full parse: wherever it gives a number, the long way (phonenumbers' parse, check and
    formatting) gives the same; and it reads every number written plainly (its digits, after
    0 or 86, no extension) that the long way calls a mobile or a fixed line, and nearly all
    with an extension, leaving the long way the special numbers (400, 800, 95…), the
    invalid ones and the rare forms."""
    quick = read = 0
    for text in plain_forms(random.Random(11643)):
        fast = plain_number(unicodedata.normalize("NFKC", text))
        try:
            slow = _parsed_number(text)
        except InvalidValue:
            slow = None
        assert fast is None or fast == slow, text
        quick += fast is not None
        if slow is not None:
            read += 1
            national, digits = slow.e164.removeprefix("+86"), "".join(filter(str.isdigit, text))
            plainly = digits in (national, "0" + national, "86" + national)
            assert fast is not None or not plainly or phonenumbers.number_type(phonenumbers.parse(slow.e164)) not in (
                PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE), text
    assert quick > 13_000 and read - quick < read // 100, (quick, read)   # extensions: nearly all


def test_landlines_with_area_codes_and_extensions_are_stored(factory, tmp_path):
    assert run(factory, write_csv(tmp_path / "batch.csv", CASES)).ok
    cases = stored_cases(factory)
    assert phones_of(cases["ZS2024030002"]) == [("own_mobile", "+8613612345678", "13612345678", None),
                                                ("home", "+8675588888888", "075588888888", None),
                                                ("work", "+8675523456789", "075523456789", "8001")]
    assert phones_of(cases["ZS2024030003"]) == [("own_mobile", "+8613800138001", "13800138001", None),
                                                ("work", "+862162345678", "02162345678", "123")]
    assert [p.e164 for p in cases["ZS2024030004"].phones] == ["+8615900001111", "+8615900002222"]
    assert phones_of(cases["ZS2024030005"])[1] == ("contact", "+869912345678", "09912345678", None)


def test_a_number_given_twice_in_a_case_is_kept_once_in_its_first_role(factory, tmp_path):
    rows = [case(0, 家庭电话="13800138000", 联系人电话="+86 138 0013 8000")]
    assert run(factory, write_csv(tmp_path / "batch.csv", rows)).ok
    assert phones_of(stored_cases(factory)["ZS2024030001"]) == [("own_mobile", "+8613800138000", "13800138000", None)]


def test_an_invalid_phone_number_in_the_file(factory, tmp_path):
    rows = [CASES[0], case(1, 单位电话="0755-2345 678")]
    refused(factory, run(factory, write_csv(tmp_path / "batch.csv", rows)), Problem(
        "batch.csv", 3, "单位电话", "0755-2345 678", f"not a valid phone number: no such number {HINT}"))


def test_a_debtor_without_any_phone(factory, tmp_path):
    rows = [CASES[0], case(1, 手机=None, 家庭电话=None, 单位电话=" ")]
    refused(factory, run(factory, write_csv(tmp_path / "batch.csv", rows)), Problem(
        "batch.csv", 3, "手机 / 家庭电话 / 单位电话", "", "no phone number for the debtor"))


# --- ID numbers, amounts, days, dates --------------------------------------------------------

@pytest.mark.parametrize("number", VALID_IDS + ("11010519491231002x", "110105491231002"))
def test_valid_id_numbers(number):
    assert check_id_number(number, NOW.date()) == number.upper()


@pytest.mark.parametrize("number, message", [
    ("110105194912310021", "check digit should be X"),
    ("440524188001010015", "check digit should be 4"),
    ("11010519491331002X", "birth date 19491331 is not a date"),
    ("110105202403160027", "birth date 2024-03-16 is in the future"),
    ("110105491331002", "birth date 19491331 is not a date"),
    ("1101051949123100", "not a resident ID number: 17 digits then a digit or X (or 15 digits for an old one)"),
    ("11010519491231002Y", "not a resident ID number: 17 digits then a digit or X (or 15 digits for an old one)"),
])
def test_invalid_id_numbers_say_why(number, message):
    with pytest.raises(InvalidValue) as caught:
        check_id_number(number, NOW.date())
    assert str(caught.value) == message


def test_dates_read_without_strptime_are_what_strptime_reads():
    """An ID number's birth date and an ISO due date are read without strptime, for speed:
    over every month and day field from 00 to 99 in five years, the same dates and the same
    refusals."""
    for year in ("0000", "1900", "1985", "2000", "2023"):
        for month in range(100):
            for day in range(100):
                for text, pattern, read in ((f"{year}{month:02d}{day:02d}", "%Y%m%d", _birth_date),
                                            (f"{year}-{month:02d}-{day:02d}", "%Y-%m-%d", _date.__wrapped__)):
                    try:
                        expected = dt.datetime.strptime(text, pattern).date()
                    except ValueError:
                        expected = None
                    try:
                        got = read(text)
                    except InvalidValue:
                        got = None
                    assert got == expected, text


def test_an_invalid_id_number_in_the_file(factory, tmp_path):
    rows = [CASES[0], CASES[1], case(2, 身份证号="310104198506124318")]
    report = run(factory, write_csv(tmp_path / "batch.csv", rows))
    refused(factory, report, Problem("batch.csv", 4, "身份证号", "310104198506124318", "check digit should be 9"))
    assert str(report.problems[0]) == (
        'batch.csv, row 4, column 身份证号, value "310104198506124318": check digit should be 9')


@pytest.mark.parametrize("written, amount", [
    ("12,345.60", Decimal("12345.60")), ("￥8,000", Decimal("8000.00")), ("¥ 1,000.5", Decimal("1000.50")),
    ("500元", Decimal("500.00")), ("0", Decimal("0.00")), (1234.5600000000002, Decimal("1234.56"))])
def test_amounts(written, amount):
    assert parse_amount(written) == amount


@pytest.mark.parametrize("written, message", [
    ("-100", "negative"), ("一千", "not an amount"), ("12.345", "more than two decimal places"),
    ("NaN", "not an amount"), ("1000000000000", "larger than 1,000,000,000,000")])
def test_bad_amounts_say_why(written, message):
    with pytest.raises(InvalidValue) as caught:
        parse_amount(written)
    assert str(caught.value) == message


def test_every_bad_cell_of_the_file_is_reported(factory, tmp_path):
    rows = [case(0, 欠款金额="-1,200.00"), case(1, 逾期天数="三十"), case(2, 逾期天数="-3", 到期日="2024-02-30")]
    refused(factory, run(factory, write_csv(tmp_path / "batch.csv", rows)),
            Problem("batch.csv", 2, "欠款金额", "-1,200.00", "negative"),
            Problem("batch.csv", 3, "逾期天数", "三十", "not a number of days"),
            Problem("batch.csv", 4, "逾期天数", "-3", "negative"),
            Problem("batch.csv", 4, "到期日", "2024-02-30", "not a date: write it as 2024-03-15"))


@pytest.mark.parametrize("header, value", [("案件编号", None), ("姓名", ""), ("欠款金额", " "), ("逾期天数", None)])
def test_an_empty_mandatory_cell(factory, tmp_path, header, value):
    rows = [CASES[0], case(1, **{header: value})]
    label = {"案件编号": "case reference", "姓名": "debtor's name", "欠款金额": "amount due",
             "逾期天数": "days past due"}
    refused(factory, run(factory, write_csv(tmp_path / "batch.csv", rows)), Problem(
        "batch.csv", 3, header, "", f"empty, and every case needs its {label[header]}"))


# --- headers and mappings --------------------------------------------------------------------

def test_a_missing_mandatory_header_is_one_problem(factory, tmp_path):
    headers = [h for h in HEADERS if h != "逾期天数"]
    refused(factory, run(factory, write_csv(tmp_path / "batch.csv", CASES, headers=headers)), Problem(
        "batch.csv", 1, "", "", "no column for the days past due: expected a header 逾期天数 / dpd / days_past_due, "
        "or a mapping file naming it"))


def test_no_debtor_phone_column(factory, tmp_path):
    headers = [h for h in HEADERS if h not in ("手机", "家庭电话", "单位电话")]
    report = run(factory, write_csv(tmp_path / "batch.csv", CASES, headers=headers))
    phone_headers = ("手机 / 手机号码 / 手机号 / mobile / own_mobile / 家庭电话 / 住宅电话 / home_phone / home / "
                     "单位电话 / 公司电话 / work_phone / work")
    refused(factory, report, Problem(
        "batch.csv", 1, "", "", f"no column for the debtor's phone: expected a header {phone_headers}, "
        "or a mapping file naming it"))


def test_two_columns_that_could_be_one_field(factory, tmp_path):
    headers = [*HEADERS, "手机号码"]
    refused(factory, run(factory, write_csv(tmp_path / "batch.csv", CASES, headers=headers)), Problem(
        "batch.csv", 1, "手机号码", "", "手机 (G) and 手机号码 (O) could each be the debtor's mobile: "
        "name one in a mapping file"))


def test_english_headers_are_recognised(factory, tmp_path):
    english = {"案件编号": "Case No", "姓名": "Name", "身份证号": "ID_Number", "欠款金额": "Amount", "逾期天数": "DPD",
               "手机": "Mobile"}
    rows = [{english.get(h, h): v for h, v in c.items()} for c in CASES]
    headers = [english.get(h, h) for h in HEADERS]
    report = run(factory, write_csv(tmp_path / "batch.csv", rows, headers=headers))
    assert (report.ok, report.imported) == (True, 5)
    assert stored_cases(factory)["ZS2024030004"].days_past_due == 180


def test_a_user_mapping_file(factory, tmp_path):
    mapping_file = tmp_path / "cmb.toml"
    mapping_file.write_text('# 招商银行的委托清单\nreference = "合同编号(内部)"\namount_due = "本期应还"\n'
                            'days_past_due = "账龄天数"\nown_mobile = "本人电话"\n', encoding="utf-8")
    renamed = {"案件编号": "合同编号(内部)", "欠款金额": "本期应还", "逾期天数": "账龄天数", "手机": "本人电话"}
    rows = [{renamed.get(h, h): v for h, v in c.items()} for c in CASES]
    headers = [renamed.get(h, h) for h in HEADERS]
    mapping = load_mapping(mapping_file)
    assert mapping == {"reference": "合同编号(内部)", "amount_due": "本期应还", "days_past_due": "账龄天数",
                       "own_mobile": "本人电话"}
    report = run(factory, write_csv(tmp_path / "batch.csv", rows, headers=headers), mapping=mapping)
    assert (report.ok, report.imported) == (True, 5)
    wang = stored_cases(factory)["ZS2024030003"]
    assert (wang.amount_due, wang.days_past_due, wang.phones[0].e164) == (Decimal("500.00"), 12, "+8613800138001")


def test_a_mapping_overrides_a_default_header(factory, tmp_path):
    rows = [case(0, 备注="ZS-OLD-1"), case(1, 备注="ZS-OLD-2")]
    report = run(factory, write_csv(tmp_path / "batch.csv", rows), mapping={"reference": "备注"})
    assert (report.ok, report.imported) == (True, 2)
    old = stored_cases(factory)["ZS-OLD-1"]
    assert old.extra == {"案件编号": "ZS2024030001", "卡号": "6222020200001234"}


def test_a_mapping_naming_a_header_the_file_lacks(factory, tmp_path):
    refused(factory, run(factory, write_csv(tmp_path / "batch.csv", CASES), mapping={"home": "住址电话"}), Problem(
        "batch.csv", 1, "住址电话", "", "no such header in the file, and the mapping names it for home"))


@pytest.mark.parametrize("text, message", [
    ('mobile = "手机"', "unknown field mobile; the fields are reference, debtor_name"),
    ('reference = 3', 'reference must name a header, as in reference = "表头"'),
    ('reference = "案件编号', "Unterminated string"),
])
def test_a_bad_mapping_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BatchImportError, match=f"mapping file {path}: .*") as caught:
        load_mapping(path)
    assert message in str(caught.value)


# --- duplicates, all or nothing, skipping ----------------------------------------------------

def test_the_same_case_twice_in_a_file(factory, tmp_path):
    rows = [*CASES[:3], case(3, 案件编号="ZS2024030002")]
    refused(factory, run(factory, write_csv(tmp_path / "batch.csv", rows)), Problem(
        "batch.csv", 5, "案件编号", "ZS2024030002", "the same case reference as row 3"))


def test_a_case_the_client_already_has(factory, tmp_path):
    first = run(factory, write_csv(tmp_path / "march.csv", CASES[:2]))
    assert first.ok
    before = counts(factory)
    report = run(factory, write_csv(tmp_path / "april.csv", [CASES[2], case(1, 欠款金额="7,000")]))
    assert report.problems == [Problem("april.csv", 3, "案件编号", "ZS2024030002",
                                       f'client {CLIENT} already has this case, from batch #{first.batch_id} "march"')]
    assert counts(factory) == before


def test_skip_invalid_leaves_out_the_cases_the_client_already_has(factory, tmp_path):
    first = run(factory, write_csv(tmp_path / "march.csv", CASES[:2]))
    rows = [CASES[1], CASES[2], case(1, 欠款金额="7,000"), case(3, 手机="139123")]
    report = run(factory, write_csv(tmp_path / "april.csv", rows), skip_invalid=True)
    known = f'client {CLIENT} already has this case, from batch #{first.batch_id} "march"'
    assert report.skipped == [
        Problem("april.csv", 2, "案件编号", "ZS2024030002", known),
        Problem("april.csv", 4, "案件编号", "ZS2024030002", "the same case reference as row 2"),
        Problem("april.csv", 4, "案件编号", "ZS2024030002", known),
        Problem("april.csv", 5, "手机", "139123", f"not a valid phone number: too short {HINT}")]
    assert (report.ok, report.imported, report.skipped_rows) == (True, 1, [2, 4, 5])
    cases = stored_cases(factory)
    assert set(cases) == {"ZS2024030001", "ZS2024030002", "ZS2024030003"}
    assert cases["ZS2024030002"].amount_due == Decimal("8000.00") and cases["ZS2024030003"].batch_id == report.batch_id
    again = run(factory, write_csv(tmp_path / "may.csv", rows[:1]), skip_invalid=True)
    assert again.problems == [Problem("may.csv", 0, "", "", "every row has a problem: nothing to import")]


def test_another_client_may_have_the_same_reference(factory, tmp_path):
    path = write_csv(tmp_path / "batch.csv", CASES)
    assert run(factory, path).ok
    other = import_batch(factory, path, "CMB-GZ", now=NOW)
    assert (other.ok, other.imported) == (True, 5)
    assert counts(factory) == {"clients": 2, "batches": 2, "cases": 10, "phones": 24}


def test_the_same_file_is_not_imported_twice(factory, tmp_path):
    path = write_csv(tmp_path / "batch.csv", CASES)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    first = run(factory, path, batch_name="三月委托")
    before = counts(factory)
    path.rename(tmp_path / "renamed.csv")
    for skip_invalid in (False, True):
        report = run(factory, tmp_path / "renamed.csv", skip_invalid=skip_invalid)
        assert report.problems == [Problem(
            "renamed.csv", 0, "", "",
            f'already imported for client {CLIENT} as batch #{first.batch_id} "三月委托" on 2024-03-15 01:30 UTC '
            f"(same SHA-256 {sha256[:12]}…); nothing was written")]
        assert counts(factory) == before
    assert report.summary == "renamed.csv: nothing imported, 1 problem"


def test_all_or_nothing_one_bad_row_in_many(factory, tmp_path):
    rows = many_cases(300)
    rows[250]["手机"] = "139123"
    report = run(factory, write_csv(tmp_path / "batch.csv", rows))
    refused(factory, report, Problem("batch.csv", 252, "手机", "139123", f"not a valid phone number: too short {HINT}"))
    assert report.rows == 300


def test_skip_invalid_imports_the_rest_and_lists_exactly_the_skipped_rows(factory, tmp_path):
    rows = [CASES[0], case(1, 身份证号="44030519920303152Y", 手机="1361234567"), CASES[2],
            case(3, 案件编号="ZS2024030001"), CASES[4]]
    report = run(factory, write_csv(tmp_path / "batch.csv", rows), skip_invalid=True)
    assert report.ok and report.problems == []
    assert (report.rows, report.imported, report.skipped_rows) == (5, 3, [3, 5])
    assert report.skipped == [
        Problem("batch.csv", 3, "身份证号", "44030519920303152Y",
                "not a resident ID number: 17 digits then a digit or X (or 15 digits for an old one)"),
        Problem("batch.csv", 3, "手机", "1361234567", f"not a valid phone number: no such number {HINT}"),
        Problem("batch.csv", 5, "案件编号", "ZS2024030001", "the same case reference as row 2")]
    assert set(stored_cases(factory)) == {"ZS2024030001", "ZS2024030003", "ZS2024030005"}
    assert counts(factory)["batches"] == 1
    assert report.summary == f"batch.csv (utf-8), 5 rows: 3 cases imported as batch #{report.batch_id}, 2 rows skipped"


def test_skip_invalid_still_refuses_a_file_without_a_good_row(factory, tmp_path):
    rows = [case(0, 逾期天数="-1"), case(1, 欠款金额="abc")]
    report = run(factory, write_csv(tmp_path / "batch.csv", rows), skip_invalid=True)
    refused(factory, report, Problem("batch.csv", 0, "", "", "every row has a problem: nothing to import"))
    assert report.skipped_rows == [2, 3]


def test_skip_invalid_does_not_skip_a_bad_header(factory, tmp_path):
    headers = [h for h in HEADERS if h != "姓名"]
    report = run(factory, write_csv(tmp_path / "batch.csv", CASES, headers=headers), skip_invalid=True)
    assert [p.message.split(":")[0] for p in report.problems] == ["no column for the debtor's name"]
    assert counts(factory) == NOTHING


def test_an_existing_client_is_reused(factory, tmp_path):
    assert run(factory, write_csv(tmp_path / "a.csv", CASES[:2])).ok
    assert run(factory, write_csv(tmp_path / "b.csv", CASES[2:])).ok
    assert counts(factory) == {"clients": 1, "batches": 2, "cases": 5, "phones": 12}


def test_blank_rows_are_not_cases(factory, tmp_path):
    report = run(factory, write_csv(tmp_path / "batch.csv", [CASES[0], {}, CASES[1], {"备注": " "}]))
    assert (report.ok, report.rows, report.imported) == (True, 2, 2)


def test_a_header_without_cases(factory, tmp_path):
    refused(factory, run(factory, write_csv(tmp_path / "batch.csv", [])),
            Problem("batch.csv", 0, "", "", "the file has a header row but no cases"))


def test_now_must_be_aware(factory, tmp_path):
    with pytest.raises(ValueError, match="aware"):
        import_batch(factory, write_csv(tmp_path / "batch.csv", CASES), CLIENT, now=dt.datetime(2024, 3, 15))


def test_twenty_thousand_rows_with_progress(factory, tmp_path):
    path = write_csv(tmp_path / "large.csv", many_cases(20_000), encoding="gbk")
    ticks: list[tuple[int, int]] = []
    report = run(factory, path, progress=lambda done, total: ticks.append((done, total)))
    assert (report.ok, report.rows, report.imported) == (True, 20_000, 20_000)
    assert ticks[-1] == (40_000, 40_000)
    assert all(total == 40_000 for _, total in ticks) and len(ticks) <= 202
    assert [done for done, _ in ticks] == sorted({done for done, _ in ticks})
    assert counts(factory) == {"clients": 1, "batches": 1, "cases": 20_000, "phones": 22_000}


def on_the_connection(factory, *statements: str) -> None:
    """Statements run on the pool's connection, outside any transaction that lasts: a SET
    stays with the connection, as a planner setting stays with a server's session."""
    with factory() as session:
        for statement in statements:
            session.execute(sql(statement))
        session.commit()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_plan_made_on_a_few_cases_does_not_make_a_large_import_read_every_case(factory, tmp_path, monkeypatch):
    """PostgreSQL plans a foreign key's check once per connection and keeps the plan. One made
    while the cases were few scans the table (forced here: the planner is told to scan while a
    batch of five cases is imported, then told no more); a large batch through that connection read
    every case for each phone (it took minutes). Counted within the import's transaction
    (pg_stat_get_xact_numscans), chunk by chunk: the writing reads no table whole."""
    on_the_connection(factory, "SET enable_indexscan = off", "SET enable_bitmapscan = off")
    assert run(factory, write_csv(tmp_path / "first.csv", CASES)).ok     # 12 phones: a plan for all after 5
    on_the_connection(factory, "RESET enable_indexscan", "RESET enable_bitmapscan")
    written = importing.BatchWriter.write
    scans: list[int] = []

    def count(writer) -> None:
        scans.append(writer.session.scalar(sql(
            "SELECT sum(pg_stat_get_xact_numscans(oid)) FROM pg_class WHERE relname IN "
            "('cases', 'phones', 'clients', 'batches') AND relkind = 'r' AND pg_table_is_visible(oid)")))

    def counted(writer, cases) -> None:
        if not scans:
            count(writer)
        written(writer, cases)
        count(writer)
    monkeypatch.setattr(importing.BatchWriter, "write", counted)
    report = run(factory, write_csv(tmp_path / "next.csv", many_cases(6_000)))
    assert (report.ok, report.imported) == (True, 6_000)
    assert len(scans) == 4 and len(set(scans)) == 1, scans


def test_a_case_the_client_has_repeated_in_a_later_chunk_is_marked_on_both_rows(factory, tmp_path):
    """The case reference on row 2 is the client's already, and row 2,002 repeats it: the
    chunk of row 2,002 (rows are checked 2,000 at a time) has no reference of its own to look
    up, and its row is still the client's case as well as a repeat."""
    first = run(factory, write_csv(tmp_path / "march.csv", CASES[:1]))
    rows = [CASES[0], *many_cases(1_999), case(0, 欠款金额="7,000")]
    report = run(factory, write_csv(tmp_path / "april.csv", rows))
    known = f'client {CLIENT} already has this case, from batch #{first.batch_id} "march"'
    assert report.problems == [Problem("april.csv", 2, "案件编号", "ZS2024030001", known),
                               Problem("april.csv", 2_002, "案件编号", "ZS2024030001", "the same case reference as row 2"),
                               Problem("april.csv", 2_002, "案件编号", "ZS2024030001", known)]
    assert counts(factory)["cases"] == 1


@pytest.mark.parametrize("checking", ["beside"], indirect=True)
def test_a_file_named_from_the_current_directory_is_checked_there(factory, tmp_path, monkeypatch):
    """`dunning import batch.csv` from the folder the file is in: the checker (started in
    another folder) reads that file."""
    write_csv(tmp_path / "batch.csv", CASES)
    monkeypatch.chdir(tmp_path)
    report = run(factory, Path("batch.csv"))
    assert (report.ok, report.imported) == (True, 5)


@pytest.mark.parametrize("checking", ["beside"], indirect=True)
def test_the_checker_is_given_nothing_secret(factory, tmp_path, monkeypatch):
    """The database's URL and the AMI secret stay in the importing process: the checker's
    environment (read from /proc while it runs) has neither."""
    monkeypatch.setenv("DUNNING_AMI_SECRET", "ami-secret-4711")
    monkeypatch.setenv("DUNNING_DATABASE_URL", "postgresql+psycopg://u:db-secret-4711@127.0.0.1/x")
    seen: list[bytes] = []

    def look(done: int, total: int) -> None:
        if not seen:
            seen.extend(Path(f"/proc/{pid}/environ").read_bytes() for pid in children())
    assert run(factory, write_csv(tmp_path / "large.csv", many_cases(10_000)), progress=look).ok
    assert len(seen) == 1 and b"PATH=" in seen[0]
    assert b"secret-4711" not in seen[0] and b"DUNNING_" not in seen[0]


def children() -> list[int]:
    """This process's child processes (Linux)."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    return [int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()]


@pytest.mark.parametrize("checking", ["beside"], indirect=True)
def test_a_checker_killed_mid_import_stops_it_and_nothing_is_written(factory, tmp_path):
    """The process checking the rows beside the import dies (killed, out of memory) once
    rows are being written: the import stops with an error saying so, and writes nothing."""
    path = write_csv(tmp_path / "large.csv", many_cases(20_000))
    killed = []

    def kill_the_checker(done: int, total: int) -> None:
        if done >= total // 4 and not killed:
            killed.extend(children())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
    with pytest.raises(BatchImportError) as caught:
        run(factory, path, progress=kill_the_checker)
    assert len(killed) == 1
    assert str(caught.value) == ("checking the file stopped (the checking process ended with exit status -9); "
                                 "nothing was written")
    assert counts(factory) == NOTHING
    assert run(factory, path).imported == 20_000      # and the next import is whole


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
@pytest.mark.parametrize("checking", ["beside"], indirect=True)
def test_seventy_thousand_rows_all_or_nothing_past_postgresqls_parameter_limit(factory, tmp_path, monkeypatch):
    """More cases than PostgreSQL takes parameters in one statement (65,535), to a client that
    has cases already (so its references are looked up too): a bad last row, and nothing is
    written; another import adding the last row's case while this one runs, and nothing is
    (that case is found as the client's own); the database refusing the last case as it is
    written (added between the look-up and the writing), and nothing is; then all."""
    assert run(factory, write_csv(tmp_path / "first.csv", CASES[:1])).ok
    before = counts(factory)
    rows = many_cases(70_000)
    rows[-1]["手机"] = "139123"
    report = run(factory, write_csv(tmp_path / "bad-last-row.csv", rows, encoding="gbk"))
    assert report.problems == [Problem("bad-last-row.csv", 70_001, "手机", "139123",
                                       f"not a valid phone number: too short {HINT}")]
    assert counts(factory) == before
    rows[-1]["手机"] = "13912345678"
    path = write_csv(tmp_path / "large.csv", rows, encoding="gbk")
    last = rows[-1]["案件编号"]

    def another_import_takes_the_last_case() -> int:
        with factory.begin() as session:
            batch = session.scalars(select(Batch)).one()
            session.add(Case(client_id=batch.client_id, batch_id=batch.id, reference=last,
                             debtor_name="赵磊", amount_due=Decimal(1), days_past_due=1, created_at=NOW))
        return batch.id
    taken = []

    def meanwhile(done: int, total: int) -> None:
        if done > total // 2 and not taken:     # writing has begun
            taken.append(another_import_takes_the_last_case())
    report = run(factory, path, progress=meanwhile)
    assert taken and report.batch_id is None and report.problems == [Problem(
        "large.csv", 70_001, "案件编号", last, f'client {CLIENT} already has this case, from batch #{taken[0]} "first"')]
    assert counts(factory) == {**before, "cases": before["cases"] + 1}

    def clear() -> None:
        with factory.begin() as session:
            session.execute(delete(Case).where(Case.reference == last))
    clear()
    looked_up = importing.KnownReferences.marked

    def then_taken(references, session, chunk):
        found = looked_up(references, session, chunk)
        if any(reference == last for _, reference in chunk.firsts):
            another_import_takes_the_last_case()
        return found
    monkeypatch.setattr(importing.KnownReferences, "marked", then_taken)
    report = run(factory, path)
    assert report.batch_id is None and len(report.problems) == 1, report.problems
    assert report.problems[0].message.startswith("the database refused the batch (was the same file or case imported "
                                                 "at the same time?): duplicate key value violates unique constraint")
    assert counts(factory) == {**before, "cases": before["cases"] + 1}
    monkeypatch.undo()
    clear()
    report = run(factory, path)
    assert (report.ok, report.rows, report.imported) == (True, 70_000, 70_000)
    assert counts(factory) == {"clients": 1, "batches": 2, "cases": 70_001, "phones": before["phones"] + 77_000}
    with factory() as session:
        stored = session.scalars(select(Case).where(Case.reference == last).options(selectinload(Case.phones))).one()
    assert (stored.batch_id, phones_of(stored)) == (report.batch_id,
                                                    [("own_mobile", "+8613912345678", "13912345678", None)])


def test_a_time_zone_column(factory, tmp_path):
    headers = [*HEADERS, "时区"]
    rows = [case(0, 时区="Asia/Urumqi"), CASES[1], case(2, 时区="北京时间")]
    report = run(factory, write_csv(tmp_path / "batch.csv", rows, headers=headers), skip_invalid=True)
    assert report.skipped == [Problem("batch.csv", 4, "时区", "北京时间", "not a time zone name such as Asia/Shanghai")]
    cases = stored_cases(factory)
    assert (cases["ZS2024030001"].timezone, cases["ZS2024030002"].timezone) == ("Asia/Urumqi", None)


# --- the command line: `dunning import` ------------------------------------------------------

def dunning_import(factory, *args: str):
    """`dunning import ARGS` in this process, on the test's database (the `factory` fixture's)."""
    from click.testing import CliRunner

    from cli import main
    url = factory.kw["bind"].url.render_as_string(hide_password=False)
    return CliRunner().invoke(main, ["import", *args], env={"DUNNING_DATABASE_URL": url})


def test_the_command_refuses_a_bad_file_naming_file_row_column_and_value(factory, tmp_path):
    rows = [CASES[0], case(1, 身份证号="44030519920303152Y"), case(2, 姓名=None, 手机="1361234567")]
    result = dunning_import(factory, str(write_csv(tmp_path / "batch.csv", rows)), "--client", CLIENT)
    assert result.exit_code == 1, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [
        'error: batch.csv, row 3, column 身份证号, value "44030519920303152Y": '
        "not a resident ID number: 17 digits then a digit or X (or 15 digits for an old one)",
        "error: batch.csv, row 4, column 姓名: empty, and every case needs its debtor's name",
        f'error: batch.csv, row 4, column 手机, value "1361234567": not a valid phone number: no such number {HINT}']
    assert result.stdout == "batch.csv (utf-8), 3 rows: nothing imported, 3 problems\n"
    assert counts(factory) == NOTHING


def test_the_command_imports_a_good_file_and_shows_its_progress(factory, tmp_path, monkeypatch):
    path = write_csv(tmp_path / "batch.csv", many_cases(300))
    result = dunning_import(factory, str(path), "--client", CLIENT)
    assert result.exit_code == 0, result.output
    assert result.stderr == "importing batch.csv\n", "off a terminal the bar is its label, once"
    assert result.stdout == "batch.csv (utf-8), 300 rows: 300 cases imported as batch #1\n"
    # On a terminal the bar is drawn as the rows are checked and written, to 100 %.
    import click
    import click._termui_impl
    monkeypatch.setattr(click._termui_impl, "isatty", lambda _: True)
    result = dunning_import(factory, str(write_csv(tmp_path / "next.csv", many_cases(600)[300:])),
                            "--client", CLIENT)
    assert result.exit_code == 0, result.output
    drawn = [line.strip() for line in click.unstyle(result.stderr).replace("\r", "\n").splitlines() if line.strip()]
    assert all(line.startswith("importing next.csv  [") for line in drawn), drawn
    percents = [int(line.rsplit(" ", 1)[1].removesuffix("%")) for line in drawn]
    assert percents[0] == 0 and percents[-1] == 100 and 50 in percents and percents == sorted(percents)
    assert result.stdout == "next.csv (utf-8), 300 rows: 300 cases imported as batch #2\n"
    assert counts(factory)["cases"] == 600


def test_the_command_takes_a_forced_encoding(factory, tmp_path):
    path = write_csv(tmp_path / "batch.csv", CASES, encoding="gbk")
    wrong = dunning_import(factory, str(path), "--client", CLIENT, "--encoding", "utf-8")
    assert wrong.exit_code == 1
    offset = path.read_bytes().index("案件编号".encode("gbk"))
    assert wrong.stderr.splitlines()[-1] == (f'error: batch.csv, row 1, value "{path.read_bytes()[offset]:02x}": '
                                             f"not UTF-8 (byte offset {offset}): "
                                             "save the file as UTF-8, or name the encoding it is in")
    assert counts(factory) == NOTHING
    right = dunning_import(factory, str(path), "--client", CLIENT, "--encoding", "gbk")
    assert right.exit_code == 0, right.output
    assert right.stdout == "batch.csv (gbk), 5 rows: 5 cases imported as batch #1\n"
    assert stored_cases(factory)["ZS2024030002"].debtor_name == "李娜"
    unknown = dunning_import(factory, str(path), "--client", CLIENT, "--encoding", "big5")
    assert unknown.exit_code == 2 and "'big5' is not one of" in unknown.stderr


def test_the_command_takes_a_mapping_file(factory, tmp_path):
    mapping = tmp_path / "cmb.toml"
    mapping.write_text('reference = "合同编号"\nown_mobile = "本人电话"\n', encoding="utf-8")
    renamed = {"案件编号": "合同编号", "手机": "本人电话"}
    rows = [{renamed.get(h, h): v for h, v in c.items()} for c in CASES]
    path = write_csv(tmp_path / "batch.csv", rows, headers=[renamed.get(h, h) for h in HEADERS])
    without = dunning_import(factory, str(path), "--client", CLIENT)
    assert without.exit_code == 1 and counts(factory) == NOTHING
    result = dunning_import(factory, str(path), "--client", CLIENT, "--mapping", str(mapping))
    assert result.exit_code == 0, result.output
    assert result.stdout == "batch.csv (utf-8), 5 rows: 5 cases imported as batch #1\n"
    assert stored_cases(factory)["ZS2024030003"].phones[0].e164 == "+8613800138001"
    bad = tmp_path / "bad.toml"
    bad.write_text('mobile = "手机"\n', encoding="utf-8")
    refused_ = dunning_import(factory, str(path), "--client", CLIENT, "--mapping", str(bad))
    assert refused_.exit_code == 1 and "error: " in refused_.stderr and "unknown field mobile" in refused_.stderr


def test_the_command_skips_invalid_rows_when_asked_and_lists_them(factory, tmp_path):
    rows = [CASES[0], case(1, 手机="1361234567"), CASES[2], case(3, 案件编号="ZS2024030001"), CASES[4]]
    result = dunning_import(factory, str(write_csv(tmp_path / "batch.csv", rows)), "--client", CLIENT,
                            "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("skipped: ")] == [
        f'skipped: batch.csv, row 3, column 手机, value "1361234567": not a valid phone number: no such number {HINT}',
        'skipped: batch.csv, row 5, column 案件编号, value "ZS2024030001": the same case reference as row 2']
    assert result.stdout == "batch.csv (utf-8), 5 rows: 3 cases imported as batch #1, 2 rows skipped\n"
    assert set(stored_cases(factory)) == {"ZS2024030001", "ZS2024030003", "ZS2024030005"}
