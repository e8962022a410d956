"""The QA workflow on the database: findings stored per recording, the review queue,
verdicts, status changes proposed from the debtor's words (applied only when a supervisor
confirms), the weekly sample per team, and the per-rule precision report. Also
``check_file``, what ``dunning qa check FILE`` runs (no database).

Every function takes the session it works in and, where time matters, ``now``; none reads
the clock. The tables are in ``recordings/qa_schema.py``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from campaigns.models import Appointment, Attempt, Campaign, Case, Phone, Recording
from recordings.findings import (
    SEVERITIES,
    Finding,
    RuleError,
    RuleSet,
    find,
    load_ruleset,
    ruleset_for,
    rulesets_in_use,
    with_opening,
)
from recordings.qa_schema import FindingRow, QaSample, QaVerdict, StatusProposal
from recordings.transcript import Transcript, Utterance, Word, join_words, parse_plain
from recordings.triggers import Proposal, propose

FINDING_VERDICTS = ("confirmed", "false_positive")
RECORDING_VERDICTS = ("pass", "fail")
PROPOSAL_STATES = ("proposed", "confirmed", "rejected")
#: The client's rule: at least 3 checks a week, at least 4 recordings each.
CHECKS_PER_WEEK = 3
RECORDINGS_PER_CHECK = 4
DEFAULT_TZ = "Asia/Shanghai"


class QaError(ValueError):
    """A QA request that cannot be done; the message says what was wrong and what to do."""


class NotFound(QaError):
    pass


class InvalidState(QaError):
    pass


# ── Findings ──────────────────────────────────────────────────────────────────────────────

def fingerprint(f: Finding) -> str:
    return hashlib.sha256(f.key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Stored:
    added: int
    kept: int
    removed: int
    rows: dict[str, FindingRow]  # by fingerprint, for this run's findings


def store_findings(session: Session, recording_id: int, findings: Sequence[Finding], *,
                   now: dt.datetime) -> Stored:
    """Store a recording's findings; storing the same findings again changes nothing.
    A finding an earlier run stored that this run no longer produces (the transcript or the
    rules changed) is removed, unless a reviewer or a proposal already refers to it."""
    if session.get(Recording, recording_id) is None:
        raise NotFound(f"no recording {recording_id}")
    existing = {r.fingerprint: r for r in session.scalars(select(FindingRow).where(FindingRow.recording_id == recording_id))}
    rows: dict[str, FindingRow] = {}
    added = 0
    for f in findings:
        fp = fingerprint(f)
        if fp in rows:
            continue
        row = existing.get(fp)
        if row is None:
            row = FindingRow(recording_id=recording_id, rule_id=f.rule_id, rule_version=f.rule_version, kind=f.kind,
                             category=f.category, severity=f.severity, leg=f.leg,
                             offset_s=Decimal(str(round(f.offset_s, 2))), matched_text=f.matched_text,
                             match_type=f.match_type, confidence=Decimal(str(round(f.confidence, 3))),
                             status=f.status, fingerprint=fp, found_at=now)
            session.add(row)
            added += 1
        rows[fp] = row
    stale = [r for fp, r in existing.items() if fp not in rows]
    referenced = set()
    if stale:
        ids = [r.id for r in stale]
        referenced |= set(session.scalars(select(QaVerdict.finding_id).where(QaVerdict.finding_id.in_(ids))))
        referenced |= set(session.scalars(select(StatusProposal.evidence_finding_id)
                                          .where(StatusProposal.evidence_finding_id.in_(ids))))
    removable = [r.id for r in stale if r.id not in referenced]
    if removable:
        session.execute(delete(FindingRow).where(FindingRow.id.in_(removable)))
    session.flush()
    return Stored(added, len(rows) - added, len(removable), rows)


@dataclass(frozen=True)
class CallContext:
    """What a recording belongs to: the call's case, the number dialled, the agent, the time."""

    recording_id: int
    attempt_id: int
    case_id: int
    phone_id: int
    agent_id: int | None
    recorded_at: dt.datetime
    timezone: str


def call_context(session: Session, recording_id: int) -> CallContext:
    rec = session.get(Recording, recording_id)
    if rec is None:
        raise NotFound(f"no recording {recording_id}")
    attempt = session.get(Attempt, rec.attempt_id)
    case = session.get(Case, attempt.case_id)
    campaign = session.get(Campaign, attempt.campaign_id)
    tz = case.timezone or (campaign.timezone if campaign else None) or DEFAULT_TZ
    return CallContext(rec.id, attempt.id, attempt.case_id, attempt.phone_id, attempt.agent_id, rec.recorded_at, tz)


@dataclass(frozen=True)
class RecordingCheck:
    findings: list[Finding]
    stored: Stored
    proposals: list[StatusProposal]


def check_recording(session: Session, recording_id: int, transcript: Transcript, *, now: dt.datetime,
                    rulesets: Mapping[str, RuleSet] | None = None) -> RecordingCheck:
    """Run the rule set of the transcript's language on a recording's transcript, store the
    findings, and store the status changes the debtor's words propose (idempotent). What the
    engine calls after each transcription."""
    ruleset = ruleset_for(transcript.language, rulesets)
    findings = find(transcript, ruleset)
    stored = store_findings(session, recording_id, findings, now=now)
    ctx = call_context(session, recording_id)
    spoken = propose(findings, ruleset, now=ctx.recorded_at.astimezone(ZoneInfo(ctx.timezone)), transcript=transcript)
    proposals = store_proposals(session, recording_id, spoken, stored.rows, now=now)
    return RecordingCheck(findings, stored, proposals)


def findings_for_recording(session: Session, recording_id: int) -> list[FindingRow]:
    """A recording's stored findings in order of time (what the QA pages show)."""
    return list(session.scalars(select(FindingRow).where(FindingRow.recording_id == recording_id)
                                .order_by(FindingRow.offset_s, FindingRow.id)))


def review_queue(session: Session, *, limit: int = 50, category: str | None = None,
                 severity: str | None = None, rule_id: str | None = None) -> list[FindingRow]:
    """Findings waiting for a reviewer: the most severe first, then the oldest."""
    q = select(FindingRow).where(FindingRow.status == "review")
    if category:
        q = q.where(FindingRow.category == category)
    if severity:
        q = q.where(FindingRow.severity == severity)
    if rule_id:
        q = q.where(FindingRow.rule_id == rule_id)
    rows = list(session.scalars(q.order_by(FindingRow.found_at, FindingRow.id)))
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    rows.sort(key=lambda r: rank.get(r.severity, 9))  # stable: oldest first within a severity
    return rows[:limit]


def record_verdict(session: Session, *, reviewer: str, verdict: str, now: dt.datetime,
                   finding_id: int | None = None, recording_id: int | None = None,
                   note: str | None = None) -> QaVerdict:
    """A reviewer's verdict on a finding (confirmed / false_positive: the finding's status
    becomes the verdict) or on a whole recording of a sample (pass / fail)."""
    if not reviewer or not reviewer.strip():
        raise QaError("a verdict needs the reviewer's name")
    if (finding_id is None) == (recording_id is None):
        raise QaError("give either a finding or a recording, not both")
    if finding_id is not None:
        if verdict not in FINDING_VERDICTS:
            raise QaError(f"a finding's verdict is one of {', '.join(FINDING_VERDICTS)}, not {verdict!r}")
        row = session.get(FindingRow, finding_id)
        if row is None:
            raise NotFound(f"no finding {finding_id}")
        row.status = verdict
    else:
        if verdict not in RECORDING_VERDICTS:
            raise QaError(f"a recording's verdict is one of {', '.join(RECORDING_VERDICTS)}, not {verdict!r}")
        if session.get(Recording, recording_id) is None:
            raise NotFound(f"no recording {recording_id}")
    v = QaVerdict(finding_id=finding_id, recording_id=recording_id, reviewer=reviewer.strip(), verdict=verdict,
                  note=note, at=now)
    session.add(v)
    session.flush()
    return v


# ── Status changes proposed from the debtor's words ──────────────────────────────────────

def store_proposals(session: Session, recording_id: int, proposals: Iterable[Proposal],
                    rows: Mapping[str, FindingRow], *, now: dt.datetime) -> list[StatusProposal]:
    """Store proposals for a supervisor (one of each kind per recording: idempotent)."""
    ctx = call_context(session, recording_id)
    existing = {(p.proposal, p.case_status): p for p in session.scalars(
        select(StatusProposal).where(StatusProposal.recording_id == recording_id))}
    out = []
    for p in proposals:
        row = existing.get((p.proposal, p.case_status))
        if row is None:
            evidence = rows.get(fingerprint(p.evidence))
            row = StatusProposal(case_id=ctx.case_id, phone_id=ctx.phone_id, recording_id=recording_id,
                                 evidence_finding_id=evidence.id if evidence is not None else None,
                                 rule_id=p.rule_id, proposal=p.proposal, case_status=p.case_status,
                                 appointment_at=p.appointment_at, note=p.note, state="proposed", proposed_at=now)
            session.add(row)
            existing[(p.proposal, p.case_status)] = row
        out.append(row)
    session.flush()
    return out


def open_proposals(session: Session, *, case_id: int | None = None) -> list[StatusProposal]:
    q = select(StatusProposal).where(StatusProposal.state == "proposed")
    if case_id is not None:
        q = q.where(StatusProposal.case_id == case_id)
    return list(session.scalars(q.order_by(StatusProposal.proposed_at, StatusProposal.id)))


def _open(session: Session, proposal_id: int) -> StatusProposal:
    p = session.get(StatusProposal, proposal_id)
    if p is None:
        raise NotFound(f"no status proposal {proposal_id}")
    if p.state != "proposed":
        raise InvalidState(f"proposal {proposal_id} was already {p.state} by {p.decided_by} "
                           f"at {p.decided_at:%Y-%m-%d %H:%M} UTC")
    return p


def confirm_proposal(session: Session, proposal_id: int, *, by: str, now: dt.datetime, note: str | None = None,
                     appointment_at: dt.datetime | None = None) -> StatusProposal:
    """A supervisor confirms a proposal, which is applied: a complaint stops dialling the
    number (``Phone.do_not_call`` with the reason), a case status is set, a number is marked
    not the debtor's, an appointment is written (its time may be given here when the
    debtor's words could not be read as one)."""
    if not by or not by.strip():
        raise QaError("confirming a proposal needs the supervisor's name")
    p = _open(session, proposal_id)
    where = f"recording {p.recording_id}" if p.recording_id else "a call"
    reason = f"{p.rule_id} on {where}: {p.note} — confirmed by {by} at {now.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    if p.proposal == "stop_number":
        phone = session.get(Phone, p.phone_id) if p.phone_id else None
        if phone is None:
            raise InvalidState(f"proposal {proposal_id} has no phone number to stop")
        phone.do_not_call = True
        phone.do_not_call_reason = reason
    elif p.proposal == "invalid_number":
        phone = session.get(Phone, p.phone_id) if p.phone_id else None
        if phone is None:
            raise InvalidState(f"proposal {proposal_id} has no phone number")
        phone.valid = False
    elif p.proposal == "case_status":
        session.get(Case, p.case_id).status = p.case_status
    elif p.proposal == "appointment":
        at = appointment_at or p.appointment_at
        if at is None:
            raise QaError(f"proposal {proposal_id}: the debtor's words give no time ({p.note}); "
                          "give the appointment time to confirm it")
        p.appointment_at = at
        attempt_id = session.scalar(select(Recording.attempt_id).where(Recording.id == p.recording_id)) \
            if p.recording_id else None
        session.add(Appointment(case_id=p.case_id, phone_id=p.phone_id, at=at, requested_by="debtor",
                                note=p.note, recorded_by=by, recorded_at=now, attempt_id=attempt_id, status="open"))
    p.state, p.decided_by, p.decided_at, p.decision_note = "confirmed", by, now, note
    session.flush()
    return p


def reject_proposal(session: Session, proposal_id: int, *, by: str, now: dt.datetime,
                    note: str | None = None) -> StatusProposal:
    if not by or not by.strip():
        raise QaError("rejecting a proposal needs the supervisor's name")
    p = _open(session, proposal_id)
    p.state, p.decided_by, p.decided_at, p.decision_note = "rejected", by, now, note
    session.flush()
    return p


# ── The weekly sample ─────────────────────────────────────────────────────────────────────

def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(week: str, tz: str = DEFAULT_TZ) -> tuple[dt.datetime, dt.datetime]:
    """Monday 00:00 to the next Monday 00:00 in `tz`, as aware datetimes."""
    m = re.fullmatch(r"(\d{4})-W(\d{2})", week)
    if not m:
        raise QaError(f"a week is written like 2026-W48, not {week!r}")
    try:
        monday = dt.date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError:
        raise QaError(f"there is no week {week}") from None
    start = dt.datetime.combine(monday, dt.time(), tzinfo=ZoneInfo(tz))
    return start, start + dt.timedelta(days=7)


@dataclass(frozen=True)
class SampleCheck:
    check_no: int
    recordings: tuple[tuple[int, str], ...]  # (recording id, flagged | random)


@dataclass(frozen=True)
class Sample:
    week: str
    team: str
    checks: tuple[SampleCheck, ...]
    pool: int  # the team's recordings that week
    flagged_pool: int
    new: bool  # drawn now (False: the week's sample already existed)
    checks_needed: int = CHECKS_PER_WEEK
    per_check: int = RECORDINGS_PER_CHECK

    @property
    def meets_rule(self) -> bool:
        full = [c for c in self.checks if len(c.recordings) >= self.per_check]
        return len(full) >= self.checks_needed

    @property
    def shortfall(self) -> int:
        return max(0, self.checks_needed * self.per_check - sum(len(c.recordings) for c in self.checks))


def _flagged(session: Session, recording_ids: Sequence[int]) -> set[int]:
    if not recording_ids:
        return set()
    q = select(FindingRow.recording_id).where(FindingRow.recording_id.in_(recording_ids),
                                              FindingRow.leg == "agent",
                                              FindingRow.status.in_(("confirmed", "review")))
    return set(session.scalars(q))


def weekly_sample(session: Session, *, team: str, agent_ids: Iterable[int], now: dt.datetime, seed: str | int,
                  week: str | None = None, tz: str = DEFAULT_TZ, checks: int = CHECKS_PER_WEEK,
                  per_check: int = RECORDINGS_PER_CHECK, flagged_share: float = 0.5) -> Sample:
    """Draw a team's QA sample for a week: `checks` checks of `per_check` recordings of the
    team's agents' calls that week, about `flagged_share` of them flagged (an agent-leg
    finding confirmed or in review) and the rest at random. The same seed, week and calls
    give the same sample; a week already drawn is returned as it was. `week` defaults to the
    week before the one `now` falls in (last week's calls are checked this week)."""
    if not team or not team.strip():
        raise QaError("a sample is drawn for a team: give its name")
    if checks < CHECKS_PER_WEEK or per_check < RECORDINGS_PER_CHECK:
        raise QaError(f"the client's rule is at least {CHECKS_PER_WEEK} checks a week of at least "
                      f"{RECORDINGS_PER_CHECK} recordings each")
    if not 0 <= flagged_share <= 1:
        raise QaError("flagged_share is a fraction from 0 to 1")
    if week is None:
        week = iso_week((now.astimezone(ZoneInfo(tz)) - dt.timedelta(days=7)).date())
    start, end = week_bounds(week, tz)
    agents = sorted(set(agent_ids))
    pool = sorted(session.scalars(
        select(Recording.id).join(Attempt, Attempt.id == Recording.attempt_id)
        .where(Attempt.agent_id.in_(agents), Recording.recorded_at >= start, Recording.recorded_at < end)))
    flagged = _flagged(session, pool)
    existing = list(session.scalars(select(QaSample).where(QaSample.week == week, QaSample.team == team)
                                    .order_by(QaSample.check_no, QaSample.id)))
    if existing:
        return _sample(week, team, existing, len(pool), len(flagged), False, checks, per_check)
    rng = random.Random(f"{seed}|{week}|{team}")
    want = checks * per_check
    flagged_list = sorted(flagged)
    picked_flagged = rng.sample(flagged_list, min(len(flagged_list), round(want * flagged_share)))
    rest = [r for r in pool if r not in set(picked_flagged)]
    unflagged = [r for r in rest if r not in flagged]
    picked_random = rng.sample(unflagged, min(len(unflagged), want - len(picked_flagged)))
    short = want - len(picked_flagged) - len(picked_random)
    if short > 0:  # not enough unflagged calls: fill with more flagged ones
        more = [r for r in flagged_list if r not in set(picked_flagged)]
        picked_flagged += rng.sample(more, min(len(more), short))
    chosen = [(r, "flagged") for r in picked_flagged] + [(r, "random") for r in picked_random]
    rng.shuffle(chosen)
    rows = []
    for i, (rid, why) in enumerate(chosen):
        row = QaSample(week=week, team=team, check_no=i // per_check + 1, recording_id=rid, picked=why,
                       seed=str(seed), drawn_at=now)
        session.add(row)
        rows.append(row)
    session.flush()
    return _sample(week, team, rows, len(pool), len(flagged), True, checks, per_check)


def _sample(week, team, rows, pool, flagged, new, checks, per_check) -> Sample:
    by_check: dict[int, list[tuple[int, str]]] = {}
    for r in rows:
        by_check.setdefault(r.check_no, []).append((r.recording_id, r.picked))
    return Sample(week, team, tuple(SampleCheck(n, tuple(v)) for n, v in sorted(by_check.items())), pool, flagged,
                  new, checks, per_check)


@dataclass(frozen=True)
class CheckProgress:
    check_no: int
    recordings: int
    reviewed: int  # recordings with a pass / fail verdict

    @property
    def done(self) -> bool:
        return self.recordings > 0 and self.reviewed == self.recordings


@dataclass(frozen=True)
class SampleProgress:
    week: str
    team: str
    checks: tuple[CheckProgress, ...]
    checks_needed: int = CHECKS_PER_WEEK
    per_check: int = RECORDINGS_PER_CHECK

    @property
    def meets_rule(self) -> bool:
        """At least 3 checks done that week, each of at least 4 recordings."""
        return sum(1 for c in self.checks if c.done and c.recordings >= self.per_check) >= self.checks_needed


def sample_progress(session: Session, *, week: str, team: str) -> SampleProgress:
    rows = list(session.scalars(select(QaSample).where(QaSample.week == week, QaSample.team == team)))
    if not rows:
        raise NotFound(f"no sample drawn for team {team!r} in {week}: draw it first")
    reviewed = set(session.scalars(select(QaVerdict.recording_id).where(
        QaVerdict.recording_id.in_([r.recording_id for r in rows]), QaVerdict.verdict.in_(RECORDING_VERDICTS))))
    by_check: dict[int, list[int]] = {}
    for r in rows:
        by_check.setdefault(r.check_no, []).append(r.recording_id)
    return SampleProgress(week, team, tuple(CheckProgress(n, len(ids), sum(1 for i in ids if i in reviewed))
                                            for n, ids in sorted(by_check.items())))


# ── Precision ─────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class RulePrecision:
    rule_id: str
    rule_version: str | None  # None when versions are pooled
    confirmed: int  # reviewers said: a real violation
    false_positive: int
    in_review: int  # waiting for a reviewer
    unreviewed: int  # confirmed automatically, no reviewer yet

    @property
    def precision(self) -> float | None:
        judged = self.confirmed + self.false_positive
        return None if judged == 0 else self.confirmed / judged


def precision_report(session: Session, *, since: dt.datetime | None = None,
                     by_version: bool = False, campaign_ids: set[int] | None = None) -> list[RulePrecision]:
    """Per rule: reviewers' confirmed / (confirmed + false positive), from each finding's
    latest verdict; with the findings still waiting and those never reviewed. Only findings
    on calls of `campaign_ids` when given (a team's view)."""
    q = select(FindingRow.id, FindingRow.rule_id, FindingRow.rule_version, FindingRow.status)
    if since is not None:
        q = q.where(FindingRow.found_at >= since)
    if campaign_ids is not None:
        q = (q.join(Recording, Recording.id == FindingRow.recording_id).join(Attempt, Attempt.id == Recording.attempt_id)
             .where(Attempt.campaign_id.in_(campaign_ids)))
    findings = session.execute(q).all()
    latest: dict[int, str] = {}
    for fid, verdict in session.execute(select(QaVerdict.finding_id, QaVerdict.verdict)
                                        .where(QaVerdict.finding_id.is_not(None)).order_by(QaVerdict.id)):
        latest[fid] = verdict
    counts: dict[tuple[str, str | None], list[int]] = {}
    for fid, rule_id, version, status in findings:
        c = counts.setdefault((rule_id, version if by_version else None), [0, 0, 0, 0])
        verdict = latest.get(fid)
        if verdict == "confirmed":
            c[0] += 1
        elif verdict == "false_positive":
            c[1] += 1
        elif status == "review":
            c[2] += 1
        else:
            c[3] += 1
    return [RulePrecision(rule, version, *c) for (rule, version), c in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]


# ── `dunning qa check FILE` ───────────────────────────────────────────────────────────────

def _looks_chinese(text: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" for c in text)


def _vosk_utterance(result: Mapping, leg: str, language: str, source: str) -> Utterance | None:
    words = result.get("result") if isinstance(result, Mapping) else None
    if words is None and isinstance(result, Mapping) and "text" in result:
        return None if not result["text"].strip() else Utterance(leg, 0.0, 0.0, result["text"].strip())
    if not isinstance(words, list):
        raise TranscriptFileError(f"{source}: a Vosk result has a 'result' list of words")
    if not words:
        return None
    try:
        ws = tuple(Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w.get("conf", 1.0))) for w in words)
    except (KeyError, TypeError, ValueError):
        raise TranscriptFileError(f"{source}: each Vosk word needs word, start, end (and conf)") from None
    return Utterance(leg, ws[0].start, ws[-1].end, join_words([w.text for w in ws], language), ws)


class TranscriptFileError(QaError):
    """A transcript file that is neither plain text, Vosk JSON nor our transcript JSON."""


def read_transcript(text: str, *, source: str = "<text>", language: str | None = None,
                    leg: str = "agent") -> Transcript:
    """A transcript from plain text (``agent: ...`` / ``debtor: ...`` lines), a Vosk result
    (``{"result": [{"word", "start", "end", "conf"}...]}``), a list of Vosk results, a mapping
    ``{"agent": results, "debtor": results}``, or our transcript JSON (``Transcript.to_json``).
    A Vosk result without legs is taken as said on `leg`. The language is guessed from the
    text (Chinese characters: zh) unless given."""
    stripped = text.lstrip("\ufeff").strip()
    if not stripped.startswith(("{", "[")):
        from recordings.transcript import TranscriptFormatError
        lang = language or ("zh" if _looks_chinese(stripped) else "en")
        try:
            return parse_plain(stripped, language=lang, source=source)
        except TranscriptFormatError as exc:
            raise TranscriptFileError(str(exc)) from None
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise TranscriptFileError(f"{source}: not valid JSON (line {exc.lineno}): {exc.msg}") from None
    lang = language or ("zh" if _looks_chinese(stripped) else "en")
    if isinstance(data, Mapping) and "utterances" in data:
        try:
            t = Transcript.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise TranscriptFileError(f"{source}: not a transcript ({exc})") from None
        return Transcript(t.utterances, language or t.language)
    by_leg: dict[str, object]
    if isinstance(data, Mapping) and set(data) & {"agent", "debtor"}:
        by_leg = {k: v for k, v in data.items() if k in ("agent", "debtor")}
    else:
        by_leg = {leg: data}
    utterances = []
    for which, results in by_leg.items():
        if isinstance(results, Mapping):
            results = [results]
        if isinstance(results, list) and results and all(isinstance(r, Mapping) and "word" in r for r in results):
            results = [{"result": results}]  # a bare list of words
        if not isinstance(results, list):
            raise TranscriptFileError(f"{source}: expected Vosk results for leg {which}")
        for r in results:
            u = _vosk_utterance(r, which, lang, source)
            if u is not None:
                utterances.append(u)
    from recordings.transcript import merge
    return merge(utterances, lang)


@dataclass
class CheckReport:
    transcript: Transcript
    ruleset: RuleSet
    findings: list[Finding]
    proposals: list[Proposal] = field(default_factory=list)

    COLUMNS = ("time", "leg", "rule", "category", "severity", "match", "confidence", "status", "text")

    def rows(self) -> list[dict]:
        """One row per finding, then one per proposed status change (column 'status' is
        ``proposed``): what ``dunning qa check`` prints."""
        out = []
        for f in self.findings:
            out.append({"time": _clock(f.offset_s), "leg": f.leg, "rule": f.rule_id, "category": f.category,
                        "severity": f.severity, "match": f.match_type, "confidence": f"{f.confidence:.2f}",
                        "status": f.status, "text": f.matched_text + (f"  ({f.because})" if f.because else "")})
        for p in self.proposals:
            out.append({"time": _clock(p.evidence.offset_s), "leg": p.evidence.leg, "rule": p.rule_id,
                        "category": p.category, "severity": p.evidence.severity, "match": p.evidence.match_type,
                        "confidence": f"{p.evidence.confidence:.2f}", "status": "proposed",
                        "text": p.describe()})
        return out

    def confirmed(self) -> int:
        return sum(1 for f in self.findings if f.status == "confirmed" and not f.trigger)


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:04.1f}"


def check_file(path: str | Path, *, now: dt.datetime, rules: Sequence[str | Path] = (), language: str | None = None,
               leg: str = "agent", tz: str = DEFAULT_TZ, opening: str | Path | None = None) -> CheckReport:
    """What ``dunning qa check FILE`` runs: read the transcript (see ``read_transcript``),
    run the rule set of its language (the shipped ones, or the files in `rules`), and return
    the findings and proposals; ``.rows()`` are what to print. `now` is taken as the start
    of the call, for appointment times; `opening` a file of the client's opening words
    (``recordings.opening``). Raises TranscriptFileError or RuleError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise TranscriptFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TranscriptFileError(f"{path}: is not UTF-8 text") from None
    if leg not in ("agent", "debtor"):
        raise QaError(f"leg is agent or debtor, not {leg!r}")
    transcript = read_transcript(text, source=str(path), language=language, leg=leg)
    rulesets = {rs.language: rs for rs in (load_ruleset(p) for p in rules)} if rules else rulesets_in_use()
    if opening is not None:  # the client's words for the opening (recordings/opening.py)
        from recordings.opening import OpeningError, load_opening
        try:
            blocks = load_opening(opening)
        except (OSError, OpeningError) as exc:
            raise RuleError(str(opening), f"cannot be used as the opening: {exc}") from None
        rulesets = {lang: with_opening(rs, blocks[lang], str(opening)) if lang in blocks else rs
                    for lang, rs in rulesets.items()}
    ruleset = ruleset_for(transcript.language, rulesets)
    findings = find(transcript, ruleset)
    start = now.astimezone(ZoneInfo(tz)) if now.tzinfo else None
    if start is None:
        raise QaError("now must be an aware datetime")
    return CheckReport(transcript, ruleset, findings, propose(findings, ruleset, now=start, transcript=transcript))


__all__ = [
    "QaError", "NotFound", "InvalidState", "TranscriptFileError", "RuleError", "store_findings", "check_recording",
    "findings_for_recording",
    "review_queue", "record_verdict", "store_proposals", "open_proposals", "confirm_proposal", "reject_proposal",
    "weekly_sample", "sample_progress", "precision_report", "read_transcript", "check_file", "CheckReport",
]
