"""The QA pages (QA staff, supervisors, administrators): recent recordings, the transcript
search, the week's sample per team, a recording with its findings and the call as a
conversation, the review queue (filters, keyboard verdicts), each rule's precision with a
plot, and the verdict on a finding. Playing a recording is playback.py; the workspace's pure
parts (the conversation, the filters, the plot) are qa_workspace.py.

The pages call the QA workflow directly (recordings.search.search, recordings.qa's
findings_for_recording, record_verdict, weekly_sample). Everything a reader gets is of
their team's campaigns (cases.visible_campaigns; every campaign for administrators): the
search runs once per campaign with its own `campaign` filter, and every hit is checked again
against the set, so another team's call never reaches the page. Every search, recording view
and verdict is audited, refusals included.

The handlers come first; the database work they run (plain functions of a Session) below.
"""
from __future__ import annotations

import datetime as dt
import html
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiohttp import web
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Attempt, Campaign, Case, Recording, VaultFile
from recordings.findings import SEVERITIES
from recordings.qa import (
    FINDING_VERDICTS,
    QaError,
    findings_for_recording,
    precision_report,
    record_verdict,
    weekly_sample,
)
from recordings.qa_schema import FindingRow
from recordings.search import Filters, SearchError, search
from recordings.transcripts import transcript_for

from . import accounts, cases, i18n
from .pages import CLOCK, DB, FORM, LANG, SETTINGS, WHO, error, remote, render, safe_next
from .qa_workspace import QUEUE_STATUSES, Flag, Line, PrecisionBar, QueueFilters, conversation, precision_plot, queue_filters
from .schema import Account, CampaignTeam, Team

#: Why a recording is played (the form's choice; it goes to the access log).
PLAY_REASONS = ("qa_review", "complaint", "dispute")


# ---------------------------------------------------------------- the pages

async def qa_page(request: web.Request) -> web.Response:
    """Recent recordings, the transcript search and the week's sample, all of the reader's
    team's campaigns (every campaign for administrators); each search is audited with its
    query and the number of hits."""
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    query = request.query.get("q", "").strip()[:200]
    page = await app[DB](overview, who.account_id, query, now, app[SETTINGS].qa_sample_seed, remote(request))
    hits = None if page.hits is None else [(hit, Markup(highlight(hit.snippet, hit.span))) for hit in page.hits]
    return render(request, "qa.html", {"query": query, "recent": page.recent, "hits": hits,
                                       "search_error": page.search_error, "samples": page.samples,
                                       "sample_error": page.sample_error})


async def recording_page(request: web.Request) -> web.Response:
    """A recording of the reader's team's campaigns, with its findings; every view is audited."""
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    recording_id = int(request.match_info["recording_id"])
    try:
        offset = max(0.0, float(request.query.get("t", "0")))
    except ValueError:
        offset = 0.0
    if not math.isfinite(offset):
        offset = 0.0
    info = await app[DB](open_recording, who.account_id, recording_id, now, remote(request))
    if info is None:
        return error(request, 404, "not_found", request[LANG])
    if isinstance(info, cases.Refused):
        return error(request, info.status, info.key, request[LANG])
    return render(request, "recording.html", {"rec": info, "offset": offset, "reasons": PLAY_REASONS,
                                              "verdicts": FINDING_VERDICTS, "who": who})


async def verdict(request: web.Request) -> web.Response:
    """A reviewer's verdict on a finding of their team's calls (confirmed / false_positive)."""
    app, now, who, form = request.app, request.app[CLOCK](), request[WHO], request[FORM]
    finding_id = request.match_info["finding_id"]
    value = form.get("verdict", "")
    if value not in FINDING_VERDICTS:
        return error(request, 400, "not_found", request[LANG])
    if not finding_id.isdigit():
        return web.json_response({"ok": False, "message": f"no finding {finding_id}"}, status=400)
    try:
        allowed = await app[DB](judge_finding, who.account_id, int(finding_id), value, form.get("note", ""), now,
                                remote(request))
    except QaError as exc:  # no such finding
        return web.json_response({"ok": False, "message": str(exc)}, status=400)
    if not allowed:
        return error(request, 403, "forbidden.recording", request[LANG])
    back = safe_next(form.get("next"), "")
    if back.startswith("/qa/") and "application/json" not in request.headers.get("Accept", ""):
        raise web.HTTPFound(back)
    return web.json_response({"ok": True, "message": i18n.t("qa.verdict_saved", request[LANG])})


async def review_page(request: web.Request) -> web.Response:
    """The review queue: findings of the reader's team's calls, filtered by rule, severity,
    team, status and the call's day; verdicts from the keyboard (review.js). Audited with
    the filters and the number of findings shown."""
    app, now, who, lang = request.app, request.app[CLOCK](), request[WHO], request[LANG]
    try:
        filters = queue_filters(request.query)
    except ValueError as exc:
        return error(request, 400, "qa.bad_filter", lang, what=str(exc))
    queue = await app[DB](review_queue_for, who.account_id, filters, ZoneInfo(app[SETTINGS].report_timezone), now,
                          remote(request))
    return render(request, "review.html", {"queue": queue, "filters": filters, "severities": SEVERITIES,
                                           "statuses": QUEUE_STATUSES, "verdicts": FINDING_VERDICTS})


async def precision_page(request: web.Request) -> web.Response:
    """Each rule's precision from the reviewers' verdicts on the reader's team's calls, as a
    table and a plot."""
    app, now, who, lang = request.app, request.app[CLOCK](), request[WHO], request[LANG]
    rows = await app[DB](precision_for, who.account_id, now, remote(request))
    bars = [PrecisionBar(r.rule_id, r.confirmed, r.false_positive) for r in rows]
    plot = Markup(precision_plot(bars, i18n.t("qa.no_verdicts", lang)))
    return render(request, "precision.html", {"rows": rows, "plot": plot})


def highlight(text: str, span: tuple[int, int] | None) -> str:
    """`text` HTML-escaped, with the match at `span` ([start, end), what the search gave)
    wrapped in <mark>. Safe as HTML."""
    if span is None or not 0 <= span[0] < span[1] <= len(text):
        return html.escape(text)
    return (html.escape(text[:span[0]]) + f"<mark>{html.escape(text[span[0]:span[1]])}</mark>"
            + html.escape(text[span[1]:]))


def offset_label(seconds: float) -> str:
    """A time in the call as m:ss."""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


# ---------------------------------------------------------------- what the pages read and write

@dataclass(frozen=True)
class SearchHit:
    """One match of the search: the call, the leg, the time in the call, the words around it
    with the match at `span` in them."""

    recording_id: int
    call_id: str
    leg: str
    offset: float
    snippet: str
    span: tuple[int, int]


@dataclass(frozen=True)
class FindingLine:
    """A finding as the recording page lists it."""

    id: int
    rule_id: str
    category: str
    severity: str
    leg: str
    offset: float
    matched_text: str
    match_type: str
    confidence: float | None
    status: str


@dataclass(frozen=True)
class SampleItem:
    check: int
    recording_id: int
    call_id: str | None
    reason: str  # flagged, random


@dataclass(frozen=True)
class TeamSample:
    """A team's sample of the week and whether it meets the client's rule."""

    team: str
    week: str
    meets_rule: bool
    rows: tuple[SampleItem, ...]


@dataclass(frozen=True)
class RecentRecording:
    recording_id: int
    recorded_at: dt.datetime
    seconds: float
    call_id: str
    reference: str


@dataclass(frozen=True)
class Overview:
    """The QA page: recent recordings, the search's hits (None: no query), the samples, and
    the sentence to show when the search or the sample could not be done."""

    recent: list[RecentRecording]
    hits: list[SearchHit] | None
    search_error: str | None
    samples: list[TeamSample]
    sample_error: str | None


@dataclass(frozen=True)
class RecordingView:
    recording_id: int
    call_id: str
    case_id: int
    reference: str
    seconds: float
    recorded_at: dt.datetime
    purged: bool
    findings: list[FindingLine]
    conversation: list[Line] | None  # None: not transcribed (yet)


def overview(session: Session, account_id: int, query: str, now: dt.datetime, seed: str,
             address: str | None) -> Overview:
    """What the QA page shows the account; the search (when `query`) is audited."""
    account = session.get(Account, account_id)
    campaigns = cases.visible_campaigns(session, account)
    hits = search_error = sample_error = None
    if query:
        try:
            hits = search_calls(session, query, campaigns=campaigns)
            result, subject = "ok", f"{len(hits)} hit(s) in {len({h.recording_id for h in hits})} call(s)"
        except SearchError as exc:  # a query the search cannot run: the page says why
            search_error, result, subject = str(exc), "unavailable", None
        accounts.audit(session, now, "transcript_search", result, account=account, subject=subject,
                       detail=query, remote=address)
    if campaigns is None:
        teams = session.scalars(select(Team).order_by(Team.name)).all()
    else:
        teams = [session.get(Team, account.team_id)] if account.team_id is not None else []
    samples = []
    try:
        for team in teams:
            samples.append(team_sample(session, team, now, seed))
    except ValueError as exc:  # recordings.qa.QaError: the sample cannot be drawn
        sample_error = str(exc)
    return Overview(recent_recordings(session, campaigns=campaigns), hits, search_error, samples, sample_error)


def search_calls(session: Session, query: str, limit: int = 50, campaigns: set[int] | None = None) -> list[SearchHit]:
    """Transcript search: one SearchHit per match, newest call first, only in calls of
    `campaigns` (None: every campaign). Raises SearchError for a query it cannot run."""
    if campaigns is None:
        found = search(session, query, limit=limit)
    else:
        names = session.scalars(select(Campaign.name).where(Campaign.id.in_(campaigns)).order_by(Campaign.name)).all()
        found = []
        for name in names:
            found += search(session, query, Filters(campaign=name), limit=limit)
        found.sort(key=lambda hit: hit.recorded_at, reverse=True)  # as one search would give them
        found = found[:limit]
    return [SearchHit(hit.recording_id, hit.call_id, match.leg, float(match.seconds), match.snippet,
                      tuple(match.highlight))
            for hit in found
            if campaigns is None or recording_campaign(session, hit.recording_id) in campaigns
            for match in hit.matches]


def recording_campaign(session: Session, recording_id: int) -> int | None:
    """The campaign of the call a recording is of (None: no such recording)."""
    return session.scalar(select(Attempt.campaign_id).join(Recording, Recording.attempt_id == Attempt.id)
                          .where(Recording.id == recording_id))


def finding_line(f: FindingRow) -> FindingLine:
    return FindingLine(f.id, f.rule_id, f.category, f.severity, f.leg, float(f.offset_s), f.matched_text,
                       f.match_type, None if f.confidence is None else float(f.confidence), f.status or "")


def findings(session: Session, recording_id: int) -> list[FindingLine]:
    """A recording's findings in order of time."""
    return [finding_line(f) for f in findings_for_recording(session, recording_id)]


def open_recording(session: Session, account_id: int, recording_id: int, now: dt.datetime,
                   address: str | None) -> RecordingView | cases.Refused | None:
    """A recording and its findings for the account (None: no such recording; Refused: not
    of the account's team); the view, refused or not, is audited."""
    account = session.get(Account, account_id)
    row = session.execute(select(VaultFile, Attempt, Case).join(Recording, Recording.id == VaultFile.recording_id)
                          .join(Attempt, Attempt.id == Recording.attempt_id).join(Case, Case.id == Attempt.case_id)
                          .where(VaultFile.recording_id == recording_id)).first()
    subject = f"recording {recording_id}"
    if row is None:
        accounts.audit(session, now, "recording_view", "not_found", account=account, subject=subject, remote=address)
        return None
    stored, attempt, case = row
    if not cases.may_see_campaign(session, account, attempt.campaign_id):
        accounts.audit(session, now, "recording_view", "refused", account=account, subject=subject, remote=address)
        return cases.Refused("forbidden.recording", 403)
    found = findings(session, recording_id)
    transcript = transcript_for(session, recording_id)
    lines = None if transcript is None else conversation(
        transcript, [Flag(f.id, f.leg, f.offset, f.matched_text, f.severity) for f in found])
    accounts.audit(session, now, "recording_view", "ok", account=account, subject=subject,
                   detail=f"case {case.id}, call {attempt.call_id}, {len(found)} finding(s)", remote=address)
    return RecordingView(recording_id, attempt.call_id, case.id, case.reference, float(stored.seconds),
                         stored.recorded_at, stored.purged_at is not None, found, lines)


def judge_finding(session: Session, account_id: int, finding_id: int, value: str, note: str, now: dt.datetime,
                  address: str | None) -> bool:
    """Record the account's verdict on a finding (False: the finding is of a call of another
    team, refused); audited either way. Raises recordings.qa.NotFound for no such finding."""
    account = session.get(Account, account_id)
    recording_id = session.scalar(select(FindingRow.recording_id).where(FindingRow.id == finding_id))
    if recording_id is not None and not cases.may_see_campaign(session, account,
                                                               recording_campaign(session, recording_id)):
        accounts.audit(session, now, "qa_verdict", "refused", account=account, subject=f"finding {finding_id}",
                       detail=value, remote=address)
        return False
    record_verdict(session, reviewer=account.username, verdict=value, now=now, finding_id=finding_id,
                   note=note or None)
    accounts.audit(session, now, "qa_verdict", "ok", account=account, subject=f"finding {finding_id}",
                   detail=value, remote=address)
    return True


def team_sample(session: Session, team: Team, now: dt.datetime, seed: str) -> TeamSample:
    """The team's sample of the week (drawn now if it was not yet), with each recording's call."""
    agent_ids = session.scalars(select(Account.agent_id).where(Account.team_id == team.id,
                                                               Account.agent_id.is_not(None))).all()
    sample = weekly_sample(session, team=team.name, agent_ids=list(agent_ids), now=now, seed=seed)
    rows = []
    for check in sample.checks:
        for recording_id, why in check.recordings:
            call_id = session.scalar(select(Attempt.call_id).join(Recording, Recording.attempt_id == Attempt.id)
                                     .where(Recording.id == recording_id))
            rows.append(SampleItem(check.check_no, recording_id, call_id, why))
    return TeamSample(team.name, sample.week, sample.meets_rule, tuple(rows))


def recent_recordings(session: Session, limit: int = 30, campaigns: set[int] | None = None) -> list[RecentRecording]:
    """The newest recordings in the vault (not purged) of `campaigns` (None: all), for QA
    staff to pick from."""
    query = (select(VaultFile.recording_id, VaultFile.recorded_at, VaultFile.seconds, Attempt.call_id, Case.reference)
             .join(Recording, Recording.id == VaultFile.recording_id).join(Attempt, Attempt.id == Recording.attempt_id)
             .join(Case, Case.id == Attempt.case_id).where(VaultFile.purged_at.is_(None)))
    if campaigns is not None:
        query = query.where(Attempt.campaign_id.in_(campaigns))
    rows = session.execute(query.order_by(VaultFile.recorded_at.desc()).limit(limit)).all()
    return [RecentRecording(r, at, float(s), c, ref) for r, at, s, c, ref in rows]


@dataclass(frozen=True)
class QueueItem:
    """A finding in the review queue, with the call it is on."""

    finding: FindingLine
    recording_id: int
    call_id: str
    campaign: str
    recorded_at: dt.datetime


@dataclass(frozen=True)
class ReviewQueue:
    items: list[QueueItem]
    rules: list[str]  # the rules with findings the reader may see (the rule filter's choices)
    teams: list[str]  # the teams the reader may pick
    limit: int


def review_queue_for(session: Session, account_id: int, filters: QueueFilters, zone: ZoneInfo, now: dt.datetime,
                     address: str | None, limit: int = 200) -> ReviewQueue:
    """The findings of the account's team's calls that pass `filters` (days in `zone`): the
    most severe first, then the oldest call; audited with the filters."""
    account = session.get(Account, account_id)
    campaigns = cases.visible_campaigns(session, account)
    if campaigns is None:
        teams = list(session.scalars(select(Team.name).order_by(Team.name)))
    else:
        teams = [session.get(Team, account.team_id).name] if account.team_id is not None else []
    scope = (select(FindingRow, Recording, Attempt.call_id, Campaign.name)
             .join(Recording, Recording.id == FindingRow.recording_id).join(Attempt, Attempt.id == Recording.attempt_id)
             .join(Campaign, Campaign.id == Attempt.campaign_id))
    if campaigns is not None:
        scope = scope.where(Attempt.campaign_id.in_(campaigns))
    rules = sorted(set(session.scalars(scope.with_only_columns(FindingRow.rule_id).distinct())))
    query = scope
    if filters.rule:
        query = query.where(FindingRow.rule_id == filters.rule)
    if filters.severity:
        query = query.where(FindingRow.severity == filters.severity)
    if filters.status != "all":
        query = query.where(FindingRow.status == filters.status)
    if filters.team:
        team_campaigns = select(CampaignTeam.campaign_id).join(Team, Team.id == CampaignTeam.team_id).where(
            Team.name == filters.team)
        query = query.where(Attempt.campaign_id.in_(team_campaigns))
    if filters.since:
        query = query.where(Recording.recorded_at >= dt.datetime.combine(filters.since, dt.time(), zone))
    if filters.until:
        query = query.where(Recording.recorded_at < dt.datetime.combine(filters.until + dt.timedelta(days=1),
                                                                        dt.time(), zone))
    rows = session.execute(query.order_by(Recording.recorded_at, FindingRow.offset_s, FindingRow.id))
    items = [QueueItem(finding_line(f), recording.id, call_id, campaign, recording.recorded_at)
             for f, recording, call_id, campaign in rows]
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    items.sort(key=lambda item: rank.get(item.finding.severity, len(SEVERITIES)))  # stable: the oldest call first
    items = items[:limit]
    accounts.audit(session, now, "qa_queue", "ok", account=account, subject=f"{len(items)} finding(s)",
                   detail=filters.describe() or None, remote=address)
    return ReviewQueue(items, rules, teams, limit)


def precision_for(session: Session, account_id: int, now: dt.datetime, address: str | None) -> list:
    """recordings.qa.precision_report over the account's team's calls; audited."""
    account = session.get(Account, account_id)
    rows = precision_report(session, campaign_ids=cases.visible_campaigns(session, account))
    accounts.audit(session, now, "qa_precision", "ok", account=account, subject=f"{len(rows)} rule(s)",
                   remote=address)
    return rows
