"""The QA workspace's pure parts: the call as a conversation (both legs interleaved, each
finding on the line it was said in), the review queue's filters read from a query string,
and the plot of each rule's precision (an SVG drawn on the server). No database, no clock:
qa.py reads the rows and renders the pages.
"""
from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from recordings.findings import SEVERITIES
from recordings.transcript import Transcript

#: The statuses the review queue can show (``review``: waiting for a verdict; ``all``: any).
QUEUE_STATUSES = ("review", "confirmed", "false_positive", "all")
#: How far outside an utterance's times a finding's offset may fall and still be on it (s).
TOLERANCE_S = 0.3


@dataclass(frozen=True)
class Flag:
    """A finding as the conversation marks it."""

    finding_id: int
    leg: str
    offset: float
    matched_text: str
    severity: str


@dataclass(frozen=True)
class Line:
    """One utterance of the call: who, when, the text in pieces (marked: a finding's words),
    and the findings on it with the worst one's severity."""

    leg: str
    start: float
    end: float
    pieces: tuple[tuple[str, bool], ...]
    finding_ids: tuple[int, ...]
    severity: str | None


def conversation(transcript: Transcript, flags: Iterable[Flag]) -> list[Line]:
    """The utterances of both legs in time order, each with the findings said in it (same
    leg, offset within its times): their matched words marked where the text holds them."""
    utterances = sorted(transcript.utterances, key=lambda u: (u.start, u.leg))
    on: dict[int, list[Flag]] = {}
    for flag in flags:
        around = [i for i, u in enumerate(utterances)
                  if u.leg == flag.leg and u.start - TOLERANCE_S <= flag.offset <= u.end + TOLERANCE_S]
        if not around:
            continue  # not said in a line (e.g. an opening that was never said)
        # the line that holds its words, else the latest to start before it
        index = max(around, key=lambda i: (bool(flag.matched_text) and flag.matched_text in utterances[i].text,
                                           utterances[i].start))
        on.setdefault(index, []).append(flag)
    lines = []
    for index, u in enumerate(utterances):
        found = on.get(index, [])
        worst = max((f.severity for f in found), key=_rank, default=None)
        lines.append(Line(u.leg, u.start, u.end, _pieces(u.text, [f.matched_text for f in found]),
                          tuple(f.finding_id for f in found), worst))
    return lines


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def _pieces(text: str, marked: Sequence[str]) -> tuple[tuple[str, bool], ...]:
    """`text` cut so that each occurrence of the marked phrases is its own marked piece."""
    spans = []
    for phrase in marked:
        at = text.find(phrase) if phrase else -1
        if at >= 0:
            spans.append((at, at + len(phrase)))
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, last = [], 0
    for start, end in merged:
        if start > last:
            pieces.append((text[last:start], False))
        pieces.append((text[start:end], True))
        last = end
    if last < len(text):
        pieces.append((text[last:], False))
    return tuple(pieces)


@dataclass(frozen=True)
class QueueFilters:
    """What the review queue shows: one rule, one severity, one team (by name), a status, and
    calls recorded on days from `since` to `until` (inclusive, in the report's time zone)."""

    rule: str | None = None
    severity: str | None = None
    team: str | None = None
    status: str = "review"
    since: dt.date | None = None
    until: dt.date | None = None

    def describe(self) -> str:
        """The filters as the audit log keeps them."""
        parts = [f"{name}={value}" for name, value in (("rule", self.rule), ("severity", self.severity),
                                                      ("team", self.team), ("status", self.status),
                                                      ("since", self.since), ("until", self.until)) if value]
        return " ".join(parts)


def queue_filters(query: Mapping[str, str]) -> QueueFilters:
    """The review queue's filters from the page's query string; a value that cannot be one
    raises ValueError naming the field and what it takes."""
    def text(name: str) -> str | None:
        value = (query.get(name) or "").strip()
        return value[:100] or None

    def day(name: str) -> dt.date | None:
        value = text(name)
        if value is None:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"filter {name!r}: {value!r} is not a date (YYYY-MM-DD)") from None

    severity = text("severity")
    if severity is not None and severity not in SEVERITIES:
        raise ValueError(f"filter 'severity': {severity!r} is not one of {', '.join(SEVERITIES)}")
    status = text("status") or "review"
    if status not in QUEUE_STATUSES:
        raise ValueError(f"filter 'status': {status!r} is not one of {', '.join(QUEUE_STATUSES)}")
    since, until = day("since"), day("until")
    if since and until and until < since:
        raise ValueError(f"filter 'until': {until} is before 'since' {since}")
    return QueueFilters(text("rule"), severity, text("team"), status, since, until)


@dataclass(frozen=True)
class PrecisionBar:
    rule_id: str
    confirmed: int
    false_positive: int

    @property
    def precision(self) -> float | None:
        judged = self.confirmed + self.false_positive
        return None if judged == 0 else self.confirmed / judged


def precision_plot(bars: Sequence[PrecisionBar], no_verdicts: str = "no verdicts", width: int = 640, row: int = 26,
                   label: int = 220) -> str:
    """A horizontal bar per rule, its length the rule's precision (0 to 100 %), with the
    verdicts it rests on; a rule without verdicts has no bar. SVG, safe to put in a page."""
    plot = width - label - 90
    height = row * len(bars) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" data-testid="precision-plot">']
    for tick in (0, 50, 100):
        x = label + plot * tick / 100
        out.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 20}" stroke="#ccc"/>'
                   f'<text x="{x:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">{tick}%</text>')
    for i, bar in enumerate(bars):
        y = i * row + 4
        name = html.escape(bar.rule_id)
        out.append(f'<text x="{label - 6}" y="{y + 15}" font-size="12" text-anchor="end">{name}</text>')
        judged = bar.confirmed + bar.false_positive
        if bar.precision is None:
            out.append(f'<text x="{label + 4}" y="{y + 15}" font-size="12" fill="#777">{html.escape(no_verdicts)}</text>')
            continue
        length = plot * bar.precision
        out.append(f'<rect data-testid="precision-bar" data-rule="{name}" data-precision="{bar.precision:.3f}" '
                   f'x="{label}" y="{y}" width="{length:.1f}" height="{row - 8}" fill="#3a7bd5"/>'
                   f'<text x="{label + length + 4:.1f}" y="{y + 15}" font-size="12">'
                   f'{bar.precision:.0%} ({bar.confirmed}/{judged})</text>')
    out.append("</svg>")
    return "".join(out)
