"""Debtor-side triggers: what the debtor said that should change how the case is worked.

Pure: findings of rules with a ``trigger:`` (``recordings/rules/*.yaml``) become proposals for
a supervisor — a case status (``campaigns.models.CaseStatus``), "stop this number", "this
number is not the debtor's", "a third party answered", or an appointment at the time the
debtor named (明天下午三点, "tomorrow at 3 pm"), read relative to the moment it was said.
Nothing is applied here; ``recordings.qa`` stores proposals and applies confirmed ones.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from recordings.findings import _T2S, Finding, RuleSet
from recordings.transcript import Transcript

PROPOSALS = ("case_status", "stop_number", "invalid_number", "third_party", "appointment")


@dataclass(frozen=True)
class Proposal:
    proposal: str  # one of PROPOSALS
    rule_id: str
    category: str
    evidence: Finding
    case_status: str | None = None  # for proposal == "case_status"
    appointment_at: dt.datetime | None = None  # for "appointment", when the time could be read
    note: str = ""

    def describe(self) -> str:
        if self.proposal == "case_status":
            return f"set case status to {self.case_status}"
        if self.proposal == "appointment":
            when = self.appointment_at.isoformat(timespec="minutes") if self.appointment_at else "time not understood"
            return f"appointment: {when}"
        return {"stop_number": "stop calling this number",
                "invalid_number": "mark this number as not the debtor's",
                "third_party": "a third party answered: no debt details"}[self.proposal]


def propose(findings: Iterable[Finding], ruleset: RuleSet, *, now: dt.datetime,
            transcript: Transcript | None = None) -> list[Proposal]:
    """The status changes the debtor's words call for, one of each kind per call (the first
    piece of evidence, confirmed before review). `now` is when the recording started (aware):
    an appointment's "明天" is read from the moment the words were said, `now` + the offset."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    ordered = sorted((f for f in findings if f.trigger), key=lambda f: (f.status != "confirmed", f.offset_s))
    seen: set[tuple[str, str | None]] = set()
    out: list[Proposal] = []
    for f in ordered:
        try:
            rule = ruleset.rule(f.rule_id)
        except KeyError:
            continue
        t = rule.trigger
        if t is None:
            continue
        said = f"“{f.matched_text}” ({f.leg}, {f.offset_s:.1f} s, {f.match_type}, {f.status})"
        wanted: list[tuple[str, str | None]] = []
        if t.case_status:
            wanted.append(("case_status", t.case_status))
        for flag in ("stop_number", "invalid_number", "third_party", "appointment"):
            if getattr(t, flag):
                wanted.append((flag, None))
        for proposal, status in wanted:
            if (proposal, status) in seen:
                continue
            seen.add((proposal, status))
            at = None
            if proposal == "appointment":
                spoken = now + dt.timedelta(seconds=f.offset_s)
                at = parse_when(f.matched_text, spoken, ruleset.language)
                if at is None and transcript is not None and f.sentence is not None:
                    at = parse_when(transcript.utterances[f.sentence].text, spoken, ruleset.language)
            out.append(Proposal(proposal, f.rule_id, f.category, f, status, at, said))
    return out


# ── Times the debtor names ────────────────────────────────────────────────────────────────

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
#: An hour or a count up to 99, so that 周五两点 reads 两点, not 五两点.
_SMALL = r"(?:[1-9]?[0-9]|[一二两三四五六七八九]?十[一二三四五六七八九]?|[零〇一二两三四五六七八九])"


def cn_number(text: str) -> int | None:
    """1..99 in digits or Chinese numerals (三, 十二, 二十五, 两)."""
    if text.isdigit():
        return int(text)
    if not text or any(c not in _CN_DIGITS and c != "十" for c in text):
        return None
    if "十" in text:
        tens, _, ones = text.partition("十")
        t = 1 if tens == "" else _CN_DIGITS.get(tens)
        o = 0 if ones == "" else _CN_DIGITS.get(ones)
        if t is None or o is None or len(tens) > 1 or len(ones) > 1:
            return None
        return t * 10 + o
    if len(text) == 1:
        return _CN_DIGITS[text]
    return None


_WEEKDAYS_CN = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6,
                "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}
_WEEKDAYS_EN = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EN_NUMBERS = {w: i for i, w in enumerate(("zero one two three four five six seven eight nine ten eleven "
                                           "twelve").split())}


def _at(day: dt.date, hour: int, minute: int, tz) -> dt.datetime | None:
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def _hour(hour: int, period: str | None) -> int:
    if period in ("pm", "afternoon", "evening", "night") and hour < 12:
        return hour + 12
    if period == "noon" and hour < 3:
        return hour + 12
    if period in ("am", "morning", "early") and hour == 12:
        return 0
    if period is None and 1 <= hour <= 7:
        return hour + 12  # nobody asks for a call at 3 a.m.: 三点 means 15:00
    return hour


def _resolve(now: dt.datetime, day_offset: int | None, weekday: tuple[int, bool] | None,
             hour: int | None, minute: int, period: str | None) -> dt.datetime | None:
    if hour is None:
        return None
    day = now.date()
    if weekday is not None:
        target, next_week = weekday
        if next_week:
            day = day - dt.timedelta(days=day.weekday()) + dt.timedelta(days=7 + target)
        else:
            ahead = (target - day.weekday()) % 7
            day = day + dt.timedelta(days=ahead)
    elif day_offset is not None:
        day = day + dt.timedelta(days=day_offset)
    at = _at(day, _hour(hour, period), minute, now.tzinfo)
    if at is None:
        return None
    if at <= now and day_offset is None:
        at += dt.timedelta(days=7 if weekday is not None else 1)
    return at if at > now else None


def parse_when(text: str, now: dt.datetime, language: str = "zh") -> dt.datetime | None:
    """The time a debtor named, as an aware datetime in `now`'s time zone, or None when no
    hour can be read ("明天下午" alone is left to the supervisor). Relative to `now`:
    明天下午三点, 今晚八点半, 下周一上午十点, 周五两点, 半小时后, 两个小时以后;
    tomorrow at 3 pm, tonight at 8, on Monday at 10:30 am, in two hours."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if language.startswith("zh"):
        return _parse_zh(re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).translate(_T2S), now)
    return _parse_en(" ".join(re.findall(r"[a-z0-9:]+", text.lower())), now)


def _parse_zh(t: str, now: dt.datetime) -> dt.datetime | None:
    m = re.search(rf"({_SMALL}|半)个?(小时|钟头|分钟)(后|以后|之后)", t)
    if m:
        n = 0.5 if m.group(1) == "半" else cn_number(m.group(1))
        if n is not None:
            unit = dt.timedelta(minutes=1) if m.group(2) == "分钟" else dt.timedelta(hours=1)
            return (now + unit * n).replace(second=0, microsecond=0)
    day_offset = None
    for word, offset in (("大后天", 3), ("后天", 2), ("明天", 1), ("明早", 1), ("明晚", 1), ("今天", 0),
                         ("今晚", 0), ("今早", 0)):
        if word in t:
            day_offset = offset
            break
    weekday = None
    m = re.search(r"(下个?)?(周|星期|礼拜)([一二三四五六日天1-7])", t)
    if m:
        weekday = (_WEEKDAYS_CN[m.group(3)], bool(m.group(1)))
    period = None
    for words, p in ((("凌晨",), "early"), (("早上", "上午", "早晨", "明早", "今早"), "morning"),
                     (("中午",), "noon"), (("下午",), "afternoon"), (("傍晚", "晚上", "今晚", "明晚", "夜里"), "evening")):
        if any(w in t for w in words):
            period = p
            break
    hour, minute = None, 0
    m = re.search(r"([0-9]{1,2}):([0-9]{2})", t)
    if m:
        hour, minute = int(m.group(1)), int(m.group(2))
    else:
        m = re.search(rf"({_SMALL})点(半|一刻|三刻|({_SMALL})分?)?", t)
        if m:
            hour = cn_number(m.group(1))
            extra = m.group(2)
            if extra == "半":
                minute = 30
            elif extra == "一刻":
                minute = 15
            elif extra == "三刻":
                minute = 45
            elif m.group(3):
                minute = cn_number(m.group(3)) or 0
    if hour is None and period == "noon":
        hour = 12
    return _resolve(now, day_offset, weekday, hour, minute, period)


def _parse_en(t: str, now: dt.datetime) -> dt.datetime | None:
    m = re.search(r"\bin (an|a|half an|\d+|" + "|".join(_EN_NUMBERS) + r") (hours?|minutes?)\b", t)
    if m:
        word = m.group(1)
        n = {"an": 1, "a": 1, "half an": 0.5}.get(word)
        n = n if n is not None else (int(word) if word.isdigit() else _EN_NUMBERS[word])
        unit = dt.timedelta(minutes=1) if m.group(2).startswith("minute") else dt.timedelta(hours=1)
        return (now + unit * n).replace(second=0, microsecond=0)
    day_offset = 1 if "tomorrow" in t else (0 if re.search(r"\b(today|tonight|this (morning|afternoon|evening))\b", t)
                                            else None)
    weekday = None
    m = re.search(r"\b(next )?(" + "|".join(_WEEKDAYS_EN) + r")\b", t)
    if m:
        weekday = (_WEEKDAYS_EN.index(m.group(2)), bool(m.group(1)))
    period = None
    for word, p in (("morning", "morning"), ("noon", "noon"), ("afternoon", "afternoon"),
                    ("evening", "evening"), ("tonight", "evening"), ("night", "evening")):
        if re.search(rf"\b{word}\b", t):
            period = p
            break
    m = re.search(r"\b(?:at |around |about )?(\d{1,2})(?::(\d{2}))? ?(am|pm)\b", t) or \
        re.search(r"\b(?:at|around|about) (\d{1,2})(?::(\d{2}))?\b()", t) or \
        re.search(r"\b(?:at|around|about) (" + "|".join(_EN_NUMBERS) + r")\b()()", t)
    hour = minute = None
    if m:
        raw = m.group(1)
        hour = int(raw) if raw.isdigit() else _EN_NUMBERS[raw]
        minute = int(m.group(2)) if m.group(2) else 0
        if m.group(3):
            period = m.group(3)
    if hour is None and period == "noon":
        hour = 12
    return _resolve(now, day_offset, weekday, hour, minute or 0, period)


def rows(proposals: Sequence[Proposal]) -> list[dict]:
    """Proposals as rows to print."""
    return [{"proposal": p.describe(), "rule_id": p.rule_id, "category": p.category,
             "offset_s": p.evidence.offset_s, "evidence": p.evidence.matched_text,
             "status": p.evidence.status} for p in proposals]
