"""The QA pages' adapter to transcript search and the QA workflow (recordings/search.py and
recordings/qa.py, issue 7), plus what the pages need of their own: highlighting and the list
of recent recordings.

The modules are imported lazily, on each call, so the console starts and its other pages
work without them; each adapter point then raises `NotAvailable` with a sentence the page
shows ("not available yet: ..."). The adapter points (the only places that know the other
modules' names) are:

==================  ======================================================================
adapter point       calls
==================  ======================================================================
``search``          ``recordings.search.search(session, query, limit=)`` -> Hit(recording_id,
                    call_id, matches=(Match(leg, seconds, snippet, highlight=(start, end)),))
``findings``        ``recordings.qa.findings_for_recording(session, recording_id)`` when it
                    exists, else the rows of ``recordings.qa_schema.FindingRow`` of the recording
``record_verdict``  ``recordings.qa.record_verdict(session, reviewer=, verdict=, now=,
                    finding_id=, note=)``
``weekly_sample``   ``recordings.qa.weekly_sample(session, team=, agent_ids=, now=, seed=)`` ->
                    Sample(week, checks=(SampleCheck(check_no, recordings=((id, why),)),))
==================  ======================================================================

Results are read leniently (attributes or dict keys, under the names listed in `_FIELDS`),
so small changes in the other modules' result types need a change here only.

Scope: every function that returns recordings, hits or findings takes `campaigns`, the ids
of the campaigns the reader may see (None: all, for administrators; see
cases.visible_campaigns). The search runs once per campaign (its own `campaign` filter) and
every hit is checked again against the set, so another team's call never reaches the page.
"""
from __future__ import annotations

import datetime as dt
import html
import importlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Attempt, Campaign, Case, Recording, VaultFile

VERDICTS = ("confirmed", "false_positive")


class NotAvailable(Exception):
    """The QA module or function is not there (yet); str() says which."""


def _function(module: str, *names: str):
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        raise NotAvailable(f"{module} is not installed (transcript search and QA findings come with issue 7)") from None
    for name in names:
        if callable(getattr(loaded, name, None)):
            return getattr(loaded, name)
    raise NotAvailable(f"{module} has no {' or '.join(names)}()")


#: For each field the pages show, the attribute or key names tried in order.
_FIELDS = {
    "recording_id": ("recording_id",), "attempt_id": ("attempt_id",), "call_id": ("call_id",),
    "leg": ("leg",), "offset": ("offset", "seconds", "start", "offset_s", "at"), "snippet": ("snippet", "text", "matched_text"),
    "matched": ("matched", "matches", "terms"), "id": ("id", "finding_id"), "rule_id": ("rule_id", "rule"),
    "category": ("category",), "severity": ("severity",), "match_type": ("match_type", "kind"),
    "confidence": ("confidence", "conf"), "status": ("status", "verdict", "review_status"),
    "matched_text": ("matched_text", "text", "snippet"), "reviewer": ("reviewer",), "week": ("week",),
    "recordings": ("recordings", "items", "calls"), "checks": ("checks",), "highlight": ("highlight", "span"),
    "matches": ("matches",), "check_no": ("check_no",), "meets_rule": ("meets_rule",),
}


def field(obj: Any, name: str, default: Any = None) -> Any:
    for key in _FIELDS.get(name, (name,)):
        if isinstance(obj, dict) and key in obj:
            return obj[key]
        if not isinstance(obj, dict) and hasattr(obj, key):
            return getattr(obj, key)
    return default


@dataclass(frozen=True)
class Hit:
    recording_id: int | None
    call_id: str | None
    leg: str | None
    offset: float
    snippet: str
    matched: tuple[str, ...]
    span: tuple[int, int] | None = None  # the match in the snippet, when the search says


@dataclass(frozen=True)
class FindingRow:
    id: Any
    rule_id: str
    category: str
    severity: str
    leg: str | None
    offset: float
    matched_text: str
    match_type: str
    confidence: float | None
    status: str


def _recording_for(session: Session, attempt_id: int | None, call_id: str | None) -> int | None:
    if attempt_id is None and call_id:
        attempt_id = session.scalar(select(Attempt.id).where(Attempt.call_id == call_id))
    if attempt_id is None:
        return None
    return session.scalar(select(Recording.id).where(Recording.attempt_id == attempt_id))


def recording_campaign(session: Session, recording_id: int | None) -> int | None:
    """The campaign of the call a recording is of (None: no such recording)."""
    if recording_id is None:
        return None
    return session.scalar(select(Attempt.campaign_id).join(Recording, Recording.attempt_id == Attempt.id)
                          .where(Recording.id == recording_id))


def finding_recording(session: Session, finding_id: Any) -> int | None:
    """The recording a finding is on (None: no such finding, or no findings table)."""
    try:
        schema = importlib.import_module("recordings.qa_schema")
    except ImportError:
        return None
    table = schema.FindingRow
    if not isinstance(finding_id, int):
        return None
    return session.scalar(select(table.recording_id).where(table.id == finding_id))


def _scoped_runs(session: Session, query: str, limit: int, campaigns: set[int] | None) -> list:
    run = _function("recordings.search", "search")
    if campaigns is None:
        return list(run(session, query, limit=limit))
    try:
        filters = importlib.import_module("recordings.search").Filters
    except (ImportError, AttributeError):
        raise NotAvailable("recordings.search has no Filters (needed to search one team's calls)") from None
    names = session.scalars(select(Campaign.name).where(Campaign.id.in_(campaigns)).order_by(Campaign.name)).all()
    found = []
    for name in names:
        found += run(session, query, filters(campaign=name), limit=limit)
    # newest first across the campaigns, as one search would give them
    found.sort(key=lambda row: field(row, "recorded_at") or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
               reverse=True)
    return found[:limit]


def search(session: Session, query: str, limit: int = 50, campaigns: set[int] | None = None) -> list[Hit]:
    """Transcript search (adapter point ``search``): one Hit per match, in the order found,
    only in calls of `campaigns` (None: every campaign)."""
    try:
        found = _scoped_runs(session, query, limit, campaigns)
    except ValueError as exc:  # recordings.search.SearchError: a query it cannot run
        raise NotAvailable(str(exc)) from None
    hits = []
    for row in found:
        recording_id = field(row, "recording_id")
        if recording_id is None:
            recording_id = _recording_for(session, field(row, "attempt_id"), field(row, "call_id"))
        if campaigns is not None and recording_campaign(session, recording_id) not in campaigns:
            continue
        matches = field(row, "matches", None)
        for match in (matches if matches is not None else [row]):
            span = field(match, "highlight")
            snippet = str(field(match, "snippet", ""))
            marked = (snippet[span[0]:span[1]],) if span else tuple(str(m) for m in (field(match, "matched") or ()))
            hits.append(Hit(recording_id, field(row, "call_id"), field(match, "leg"),
                            float(field(match, "offset", 0) or 0), snippet, marked, tuple(span) if span else None))
    return hits


def findings(session: Session, recording_id: int) -> list[FindingRow]:
    """A recording's findings (adapter point ``findings``)."""
    try:
        run = _function("recordings.qa", "findings_for_recording", "findings_for")
        rows = run(session, recording_id)
    except NotAvailable:
        try:
            schema = importlib.import_module("recordings.qa_schema")
        except ImportError:
            raise NotAvailable("recordings.qa is not installed (QA findings come with issue 7)") from None
        table = schema.FindingRow
        rows = session.scalars(select(table).where(table.recording_id == recording_id)
                               .order_by(table.offset_s, table.id)).all()
    return [FindingRow(field(f, "id"), str(field(f, "rule_id", "")), str(field(f, "category", "")),
                       str(field(f, "severity", "")), field(f, "leg"), float(field(f, "offset", 0) or 0),
                       str(field(f, "matched_text", "")), str(field(f, "match_type", "")),
                       None if field(f, "confidence") is None else float(field(f, "confidence")),
                       str(field(f, "status", "") or ""))
            for f in rows]


def record_verdict(session: Session, finding_id: Any, verdict: str, reviewer: str, now: dt.datetime,
                   note: str = "") -> None:
    """Confirm a finding or call it a false positive (adapter point ``record_verdict``)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
    run = _function("recordings.qa", "record_verdict")
    run(session, reviewer=reviewer, verdict=verdict, now=now, finding_id=finding_id, note=note or None)


def weekly_sample(session: Session, team: str, agent_ids: list[int], now: dt.datetime, seed: str) -> dict:
    """The week's sample for a team (adapter point ``weekly_sample``): the week, whether it
    meets the client's rule, and rows of check number, recording id, call id, why picked."""
    run = _function("recordings.qa", "weekly_sample")
    sample = run(session, team=team, agent_ids=agent_ids, now=now, seed=seed)
    rows = []
    for check in field(sample, "checks", ()) or ():
        for item in field(check, "recordings", ()) or ():
            recording_id, why = (item[0], item[1]) if isinstance(item, (tuple, list)) else (
                field(item, "recording_id"), field(item, "reason", ""))
            call_id = session.scalar(select(Attempt.call_id).join(Recording, Recording.attempt_id == Attempt.id)
                                     .where(Recording.id == recording_id))
            rows.append({"check": field(check, "check_no"), "recording_id": recording_id, "call_id": call_id,
                         "reason": str(why)})
    return {"team": team, "week": field(sample, "week", ""), "meets_rule": bool(field(sample, "meets_rule", False)),
            "rows": rows}


def recent_recordings(session: Session, limit: int = 30, campaigns: set[int] | None = None) -> list[dict]:
    """The newest recordings in the vault (not purged) of `campaigns` (None: all), for QA
    staff to pick from."""
    query = (select(VaultFile.recording_id, VaultFile.recorded_at, VaultFile.seconds, Attempt.call_id, Case.reference)
             .join(Recording, Recording.id == VaultFile.recording_id).join(Attempt, Attempt.id == Recording.attempt_id)
             .join(Case, Case.id == Attempt.case_id).where(VaultFile.purged_at.is_(None)))
    if campaigns is not None:
        query = query.where(Attempt.campaign_id.in_(campaigns))
    rows = session.execute(query.order_by(VaultFile.recorded_at.desc()).limit(limit)).all()
    return [{"recording_id": r, "recorded_at": at, "seconds": float(s), "call_id": c, "reference": ref}
            for r, at, s, c, ref in rows]


def highlight(text: str, terms: tuple[str, ...] | list[str], query: str = "",
              span: tuple[int, int] | None = None) -> str:
    """`text` HTML-escaped, with the match wrapped in <mark>: the `span` the search gave, else
    every occurrence of the terms (or the query's words), case-insensitive. Safe as HTML."""
    if span is not None and 0 <= span[0] < span[1] <= len(text):
        return (html.escape(text[:span[0]]) + f"<mark>{html.escape(text[span[0]:span[1]])}</mark>"
                + html.escape(text[span[1]:]))
    words = [t for t in (list(terms) or query.split()) if t.strip()]
    if not words:
        return html.escape(text)
    pattern = re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)), re.IGNORECASE)
    out, last = [], 0
    for match in pattern.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        out.append(f"<mark>{html.escape(match.group(0))}</mark>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def offset_label(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
