"""Recall and precision of the shipped rules on the labelled transcripts of
``tests/qa_labelled`` (issue #18): per category, clean and noisy, printed with ``-s`` (and by
``python -m tests.test_qa_labelled``), with floors that keep them from sliding back.

An item's categories are found when a finding of that category (confirmed or in review) is
raised; ``must_say`` and ``order`` are scored on whole calls only. A call-back time counts as
read when the proposal's appointment is the labelled time."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from recordings.findings import RULES_DIR, find, shipped_rulesets, with_opening
from recordings.opening import load_opening
from recordings.transcript import parse_plain
from recordings.triggers import propose

HERE = Path(__file__).resolve().parent / "qa_labelled"
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)  # a Wednesday
CALL_ONLY = {"must_say", "order"}


def items(name: str) -> list[dict]:
    return yaml.safe_load((HERE / name).read_text(encoding="utf-8"))


def rulesets():
    opening = load_opening(RULES_DIR / "opening.example.yaml")
    return {lang: with_opening(rs, opening[lang]) if lang in opening else rs
            for lang, rs in shipped_rulesets().items()}


def language(item: dict) -> str:
    return item.get("language") or item["id"].split("-")[0]


def evaluate(all_items: list[dict]) -> tuple[dict, list[str], tuple[int, int]]:
    """Per category [true positives, false positives, false negatives]; the misses; and the
    call-back times (read right, labelled)."""
    rs = rulesets()
    counts: dict[str, list[int]] = {}
    misses: list[str] = []
    times_right = times = 0
    for item in all_items:
        lang = language(item)
        t = parse_plain(item["text"], language=lang)
        findings = find(t, rs[lang])
        found = {f.category for f in findings}
        if item["kind"] != "call":
            found -= CALL_ONLY
        expected = set(item.get("expect") or ())
        for category in found | expected:
            c = counts.setdefault(category, [0, 0, 0])
            if category in found and category in expected:
                c[0] += 1
            elif category in found:
                c[1] += 1
                misses.append(f"{item['id']}: {category} found but not labelled")
            else:
                c[2] += 1
                misses.append(f"{item['id']}: {category} missed")
        if "appointment" in item:
            times += 1
            wanted = item["appointment"]
            props = [p for p in propose(findings, rs[lang], now=NOW, transcript=t) if p.proposal == "appointment"]
            got = props[0].appointment_at if props else None
            if (got.strftime("%Y-%m-%d %H:%M") if got else None) == wanted:
                times_right += 1
            else:
                misses.append(f"{item['id']}: appointment {got} instead of {wanted}")
    return counts, misses, (times_right, times)


def table(counts: dict) -> tuple[str, float, float]:
    lines = ["| category | labelled | found right | false alarms | recall | precision |", "|---|---:|---:|---:|---:|---:|"]
    tp_all = fp_all = fn_all = 0
    for category, (tp, fp, fn) in sorted(counts.items()):
        recall = tp / (tp + fn) if tp + fn else 1.0
        precision = tp / (tp + fp) if tp + fp else 1.0
        lines.append(f"| {category} | {tp + fn} | {tp} | {fp} | {recall:.2f} | {precision:.2f} |")
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    recall = tp_all / (tp_all + fn_all)
    precision = tp_all / (tp_all + fp_all)
    lines.append(f"| **all** | {tp_all + fn_all} | {tp_all} | {fp_all} | {recall:.2f} | {precision:.2f} |")
    return "\n".join(lines), recall, precision


def report() -> str:
    out = []
    for title, names in (("clean (zh.yaml, en.yaml)", ("zh.yaml", "en.yaml")), ("noisy (noisy.yaml)", ("noisy.yaml",))):
        all_items = [i for n in names for i in items(n)]
        counts, misses, (right, times) = evaluate(all_items)
        text, _, _ = table(counts)
        out += [f"{title}: {len(all_items)} transcripts; call-back times read right {right} of {times}", "", text, "",
                "misses:", *("  " + m for m in misses), ""]
    return "\n".join(out)


def test_the_labelled_set_is_large_and_varied():
    every = items("zh.yaml") + items("en.yaml")
    assert len(every) + len(items("noisy.yaml")) >= 100
    assert len({i["id"] for i in every}) == len(every)
    kinds = Counter((language(i), i["kind"]) for i in every)
    assert all(kinds[(lang, kind)] >= 10 for lang in ("zh", "en") for kind in ("call", "snippet"))
    legs = Counter(line.split(":")[0] for i in every for line in i["text"].splitlines())
    assert legs["agent"] > 50 and legs["debtor"] > 50


@pytest.mark.parametrize("names, recall_floor, precision_floor, times_floor", [
    (("zh.yaml", "en.yaml"), 0.9, 0.9, 0.9),
    (("noisy.yaml",), 0.7, 0.85, 0.6),
])
def test_recall_and_precision(names, recall_floor, precision_floor, times_floor):
    all_items = [i for n in names for i in items(n)]
    counts, misses, (right, times) = evaluate(all_items)
    text, recall, precision = table(counts)
    print(f"\n{', '.join(names)}: {len(all_items)} transcripts\n{text}\ncall-back times: {right} of {times}")
    print("\n".join(misses))
    assert recall >= recall_floor and precision >= precision_floor, text
    assert right >= times_floor * times


if __name__ == "__main__":
    print(report())
