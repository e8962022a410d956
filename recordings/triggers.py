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

from recordings.findings import Finding, RuleSet
from recordings.normalise import simplify
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
                at = None
                if transcript is not None and f.sentence is not None:  # the whole sentence says more
                    at = parse_when(transcript.utterances[f.sentence].text, spoken, ruleset.language)
                if at is None:
                    at = parse_when(f.matched_text, spoken, ruleset.language)
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
_EN_MINUTES = {"oh five": 5, "ten": 10, "fifteen": 15, "twenty": 20, "twenty five": 25, "thirty": 30,
               "forty": 40, "forty five": 45, "fifty": 50, "fifty five": 55}

#: Parts of the day, and the time an appointment gets when the debtor names the part but no
#: clock time (后天上午 → 10:00 the day after tomorrow; "tomorrow evening" → 19:30). A day with
#: neither (明天再打, "call me on Friday") gets DAY_DEFAULT. 凌晨 (small hours) has no default:
#: nobody may be called then, so it is left to the supervisor.
PART_DEFAULTS = {"early": (8, 30), "morning": (10, 0), "noon": (12, 30), "afternoon": (15, 0),
                 "dusk": (18, 0), "evening": (19, 30), "night": None}
DAY_DEFAULT = (10, 0)
#: "三点以前" / "before 3": the appointment is this long before the time named.
BEFORE = dt.timedelta(hours=1)


@dataclass
class _When:
    """What a phrase says about a time; unset fields were not said."""

    day_offset: int | None = None  # 今天 0, 明天 1 ...
    weekday: tuple[int, bool] | None = None  # (0 = Monday, next week?)
    date: dt.date | None = None  # 月底, 15号, the weekend
    period: str | None = None  # a key of PART_DEFAULTS, or am / pm
    hour: int | None = None
    minute: int = 0
    before: bool = False


def _at(day: dt.date, hour: int, minute: int, tz) -> dt.datetime | None:
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def _hour(hour: int, period: str | None) -> int:
    if period in ("pm", "afternoon", "evening", "dusk") and hour < 12:
        return hour + 12
    if period == "noon" and hour < 3:
        return hour + 12
    if period in ("am", "morning", "early", "night") and hour == 12:
        return 0
    if period is None and 1 <= hour <= 7:
        return hour + 12  # nobody asks for a call at 3 a.m.: 三点 means 15:00
    return hour


def _month_end(day: dt.date) -> dt.date:
    first_next = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return first_next - dt.timedelta(days=1)


def _next_month_start(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _resolve(now: dt.datetime, w: _When) -> dt.datetime | None:
    anchored = w.day_offset is not None or w.weekday is not None or w.date is not None
    hour, minute = w.hour, w.minute
    if hour is None:
        if w.period in PART_DEFAULTS:
            default = PART_DEFAULTS[w.period]
            if default is None:
                return None
            hour, minute = default
        elif anchored:
            hour, minute = DAY_DEFAULT
        else:
            return None
    else:
        hour = _hour(hour, w.period)
    day = now.date()
    if w.date is not None:
        day = w.date
    elif w.weekday is not None:
        target, next_week = w.weekday
        if next_week:
            day = day - dt.timedelta(days=day.weekday()) + dt.timedelta(days=7 + target)
        else:
            day = day + dt.timedelta(days=(target - day.weekday()) % 7)
    elif w.day_offset is not None:
        day = day + dt.timedelta(days=w.day_offset)
    at = _at(day, hour, minute, now.tzinfo)
    if at is None:
        return None
    if w.before:
        at -= BEFORE
    if at <= now and w.day_offset is None and w.date is None:
        at += dt.timedelta(days=7 if w.weekday is not None else 1)
    return at if at > now else None


def parse_when(text: str, now: dt.datetime, language: str = "zh") -> dt.datetime | None:
    """The time a debtor named, as an aware datetime in `now`'s time zone (the debtor's), or
    None when it cannot be read. Relative to `now`: 明天下午三点, 今晚八点半, 下周一上午十点,
    周五下午三点, 晚上八点以后, 半小时后, 月底前, 15号; tomorrow at 3 pm, tomorrow after six,
    next Monday morning, half past four, at three thirty, in two hours, end of the month.
    A part of the day without a clock time gets its default (`PART_DEFAULTS`), a day alone
    `DAY_DEFAULT`; "三点以前" / "before 3" is `BEFORE` earlier."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if language.startswith("zh"):
        return _parse_zh(re.sub(r"[\s，,。、！？!?]+", "", simplify(text)), now)
    return _parse_en(" ".join(re.findall(r"[a-z0-9:]+", simplify(text).replace("'", ""))), now)


def _parse_zh(t: str, now: dt.datetime) -> dt.datetime | None:
    m = re.search(rf"({_SMALL}|半)个?(半)?(小时|钟头|分钟)(后|以后|之后)", t)
    if m:
        n = 0.5 if m.group(1) == "半" else cn_number(m.group(1))
        if n is not None:
            n += 0.5 if m.group(2) else 0
            unit = dt.timedelta(minutes=1) if m.group(3) == "分钟" else dt.timedelta(hours=1)
            return (now + unit * n).replace(second=0, microsecond=0)
    w = _When()
    for word, offset in (("大后天", 3), ("后天", 2), ("明天", 1), ("明早", 1), ("明晚", 1), ("明儿", 1), ("明日", 1),
                         ("今天", 0), ("今晚", 0), ("今早", 0), ("今儿", 0)):
        if word in t:
            w.day_offset = offset
            break
    m = re.search(r"(下个?|这个?|本)?(周|星期|礼拜)([一二三四五六日天1-7]|末)", t)
    if m:
        next_week = bool(m.group(1)) and m.group(1).startswith("下")
        if m.group(3) == "末":
            w.weekday = (5, next_week)
        else:
            w.weekday = (_WEEKDAYS_CN[m.group(3)], next_week)
    today = now.date()
    if re.search(r"(月底|月末)", t):
        month = _next_month_start(today) if re.search(r"下个?月", t) else today
        end = _month_end(month)
        w.date = end if end > today or re.search(r"(今天|今晚)", t) else _month_end(_next_month_start(today))
    elif re.search(r"(下个?月初|月初|下个?月)", t):
        w.date = _next_month_start(today)
    m = re.search(rf"(?:({_SMALL})月)?({_SMALL})(号|日)", t)
    if m and cn_number(m.group(2)) and 1 <= cn_number(m.group(2)) <= 31:
        dom = cn_number(m.group(2))
        month_no = cn_number(m.group(1)) if m.group(1) else None
        year, month = today.year, month_no or today.month
        try:
            day = dt.date(year, month, dom)
            if day < today:
                day = dt.date(year + 1, month, dom) if month_no else \
                    (_next_month_start(today).replace(day=dom))
            w.date, w.weekday, w.day_offset = day, None, None
        except ValueError:
            pass
    for words, p in ((("凌晨", "半夜"), "night"), (("早上", "早晨", "清早", "一早", "明早", "今早"), "early"),
                     (("上午",), "morning"), (("中午", "午饭"), "noon"), (("下午",), "afternoon"),
                     (("傍晚", "下班"), "dusk"), (("晚上", "今晚", "明晚", "夜里", "晚饭"), "evening")):
        if any(x in t for x in words):
            w.period = p
            break
    m = re.search(r"([0-9]{1,2})[:：]([0-9]{2})", t)
    clock_end = None
    if m:
        w.hour, w.minute = int(m.group(1)), int(m.group(2))
        clock_end = m.end()
    else:
        m = re.search(rf"({_SMALL})点(钟)?(半|一刻|三刻|({_SMALL})分?)?", t)
        if m:
            w.hour = cn_number(m.group(1))
            extra = m.group(3)
            w.minute = {"半": 30, "一刻": 15, "三刻": 45}.get(extra, 0) if extra else 0
            if m.group(4):
                w.minute = cn_number(m.group(4)) or 0
            clock_end = m.end()
    if clock_end is not None and re.match(r"(以前|之前|前)", t[clock_end:]):
        w.before = True
    if w.hour is None and w.period is None and w.day_offset is None and w.weekday is None and w.date is None:
        return None
    return _resolve(now, w)


_EN_HOUR = "|".join(sorted(_EN_NUMBERS, key=len, reverse=True))
_EN_MIN = "|".join(sorted(_EN_MINUTES, key=len, reverse=True))


def _parse_en(t: str, now: dt.datetime) -> dt.datetime | None:
    m = re.search(r"\bin (an|a|half an|\d+|" + _EN_HOUR + r") (hours?|minutes?)\b", t)
    if m:
        word = m.group(1)
        n = {"an": 1, "a": 1, "half an": 0.5}.get(word)
        n = n if n is not None else (int(word) if word.isdigit() else _EN_NUMBERS[word])
        unit = dt.timedelta(minutes=1) if m.group(2).startswith("minute") else dt.timedelta(hours=1)
        return (now + unit * n).replace(second=0, microsecond=0)
    w = _When()
    if "day after tomorrow" in t:
        w.day_offset = 2
    elif "tomorrow" in t:
        w.day_offset = 1
    elif re.search(r"\b(today|tonight|this (morning|afternoon|evening)|later today)\b", t):
        w.day_offset = 0
    m = re.search(r"\b(next |this |on )?(" + "|".join(_WEEKDAYS_EN) + r")\b", t)
    if m:
        w.weekday = (_WEEKDAYS_EN.index(m.group(2)), (m.group(1) or "").strip() == "next")
    elif re.search(r"\b(next )?weekend\b", t):
        w.weekday = (5, "next weekend" in t)
    today = now.date()
    if re.search(r"\bend of (the |this |next )?month\b", t):
        w.date = _month_end(_next_month_start(today) if "next month" in t else today)
    elif re.search(r"\b(beginning|start) of (the )?next month\b|\bnext month\b", t):
        w.date = _next_month_start(today)
    for word, p in (("morning", "morning"), ("noon", "noon"), ("midday", "noon"), ("lunch", "noon"),
                    ("afternoon", "afternoon"), ("evening", "evening"), ("tonight", "evening"),
                    ("night", "evening"), ("after work", "dusk")):
        if re.search(rf"\b{word}\b", t):
            w.period = p
            break
    prep = r"(?:at |around |about |after |before |by |from )"
    m = (re.search(rf"\b{prep}?(\d{{1,2}})(?::(\d{{2}}))? ?(am|pm)\b", t)
         or re.search(rf"\b{prep}(\d{{1,2}})(?::(\d{{2}}))?\b()", t)
         or re.search(rf"\b(half past|quarter past|quarter to) ({_EN_HOUR})\b", t)
         or re.search(rf"\b{prep}?({_EN_HOUR}) ({_EN_MIN})\b(?: (am|pm))?", t)
         or re.search(rf"\b{prep}?({_EN_HOUR})(?: oclock| o clock)?(?: (am|pm))\b", t)
         or re.search(rf"\b({_EN_HOUR}) (?:oclock|o clock)\b()()", t)
         or re.search(rf"\b{prep}({_EN_HOUR})\b()()", t))
    if m:
        g = m.groups()
        if g[0] in ("half past", "quarter past", "quarter to"):
            hour = _EN_NUMBERS[g[1]]
            w.hour, w.minute = {"half past": (hour, 30), "quarter past": (hour, 15),
                                "quarter to": (hour - 1 if hour > 1 else 12, 45)}[g[0]]
        else:
            raw = g[0]
            w.hour = int(raw) if raw.isdigit() else _EN_NUMBERS[raw]
            second = g[1] if len(g) > 1 else None
            if second:
                w.minute = int(second) if second.isdigit() else _EN_MINUTES.get(second, 0)
            if len(g) > 2 and g[2]:
                w.period = g[2]
    w.before = bool(re.search(r"\bbefore\b", t))
    if w.hour is None and w.period is None and w.day_offset is None and w.weekday is None and w.date is None:
        return None
    return _resolve(now, w)


def rows(proposals: Sequence[Proposal]) -> list[dict]:
    """Proposals as rows to print."""
    return [{"proposal": p.describe(), "rule_id": p.rule_id, "category": p.category,
             "offset_s": p.evidence.offset_s, "evidence": p.evidence.matched_text,
             "status": p.evidence.status} for p in proposals]
