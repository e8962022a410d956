"""Bank batch files for the import tests, written by the tests themselves into tmp_path.

A row is a dict from header to cell; `write_csv` and `write_xlsx` lay rows out under a
header row the way a bank's export does (a missing key is an empty cell).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import openpyxl

HEADERS = ("案件编号", "姓名", "身份证号", "欠款金额", "逾期天数", "到期日", "手机", "家庭电话", "单位电话",
           "联系人姓名", "联系人关系", "联系人电话", "卡号", "备注")

#: Resident ID numbers with right check digits; the first two are GB 11643-1999's examples,
#: the others were checked by hand with the standard's weights (7 9 10 5 8 4 2 1 6 3 …).
VALID_IDS = ("11010519491231002X", "440524188001010014", "310104198506124319", "44030519920303152X",
             "510107197811092837", "320102196507220046", "650102198808080011")

CASES: tuple[Mapping[str, object], ...] = (
    {"案件编号": "ZS2024030001", "姓名": "张伟", "身份证号": "11010519491231002X", "欠款金额": "12,345.60",
     "逾期天数": "45", "到期日": "2024-01-30", "手机": "+86 138-0013-8000", "家庭电话": "010-6552 9988",
     "联系人姓名": "王芳", "联系人关系": "配偶", "联系人电话": "139 1234 5678", "卡号": "6222020200001234",
     "备注": "首次委托"},
    {"案件编号": "ZS2024030002", "姓名": "李娜", "身份证号": "44030519920303152X", "欠款金额": "￥8,000",
     "逾期天数": "92", "到期日": "2023/12/15", "手机": "13612345678", "家庭电话": "0755-8888 8888",
     "单位电话": "0755-2345 6789-8001"},
    {"案件编号": "ZS2024030003", "姓名": "王秀英", "身份证号": "310104198506124319", "欠款金额": "500元",
     "逾期天数": "12", "手机": "8613800138001", "单位电话": "(021) 6234 5678 转 123"},
    {"案件编号": "ZS2024030004", "姓名": "刘洋", "身份证号": "510107197811092837", "欠款金额": "3,200.00",
     "逾期天数": "180", "手机": "15900001111；15900002222"},
    {"案件编号": "ZS2024030005", "姓名": "买买提·艾力", "身份证号": "650102198808080011", "欠款金额": "76543.21",
     "逾期天数": "365", "手机": "18612345678", "联系人姓名": "陈静", "联系人关系": "同事",
     "联系人电话": "0991-2345678"},
)


def case(index: int, **changes: object) -> dict[str, object]:
    """CASES[index] with some cells changed (a value of None empties the cell)."""
    return {**CASES[index], **changes}


def table(rows: Iterable[Mapping[str, object]], headers: Sequence[str]) -> list[list[object]]:
    return [list(headers)] + [[row.get(h) for h in headers] for row in rows]


def write_csv(path: Path, rows: Iterable[Mapping[str, object]], *, headers: Sequence[str] = HEADERS,
              encoding: str = "utf-8") -> Path:
    out = io.StringIO(newline="")
    csv.writer(out).writerows([["" if v is None else v for v in line] for line in table(rows, headers)])
    path.write_bytes(out.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, rows: Iterable[Mapping[str, object]], *, headers: Sequence[str] = HEADERS,
               stored: Mapping[str, str] | None = None) -> Path:
    """An XLSX file; `stored` replaces what the sheet stores for some cells ("G2": "1.3800138E10"),
    since openpyxl writes numbers in their shortest form but Excel does not always."""
    workbook = openpyxl.Workbook()
    for line in table(rows, headers):
        workbook.active.append(line)
    workbook.save(path)
    if stored:
        _restore(path, stored)
    return path


def _restore(path: Path, stored: Mapping[str, str]) -> None:
    sheet = "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(path) as old:
        members = {name: old.read(name) for name in old.namelist()}
    xml = members[sheet].decode()
    for ref, value in stored.items():
        xml, found = re.subn(rf'(<c r="{ref}"[^>]*><v>)[^<]*(</v>)', rf"\g<1>{value}\2", xml)
        assert found == 1, f"no number stored in cell {ref}"
    members[sheet] = xml.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as new:
        for name, data in members.items():
            new.writestr(name, data)


def many_cases(count: int) -> list[dict[str, object]]:
    """`count` distinct cases for a large batch: a mobile each, a home phone for one in ten."""
    return [{"案件编号": f"BJ{n:06d}", "姓名": "赵磊", "身份证号": VALID_IDS[n % len(VALID_IDS)],
             "欠款金额": f"{1000 + n}.50", "逾期天数": str(n % 400), "到期日": dt.date(2024, 1, 1 + n % 28).isoformat(),
             "手机": f"139{n:08d}", "家庭电话": f"010-6{n:07d}" if n % 10 == 0 else None}
            for n in range(count)]
