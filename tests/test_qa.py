"""The QA workflow on SQLite and PostgreSQL: stored findings, the review queue, verdicts,
status proposals applied on confirmation, the weekly sample, precision; and `qa check`."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from campaigns.db import sessions, transaction
from campaigns.models import Agent, Appointment, Attempt, Batch, Campaign, Case, Client, Phone, Recording
from recordings import qa
from recordings.findings import RuleError, find, shipped_rulesets
from recordings.qa_schema import FindingRow, QaSample, QaVerdict, StatusProposal
from recordings.transcript import Transcript, Utterance, Word, parse_plain

UTC = dt.timezone.utc
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
OPENING = "agent: 您好，我是招商银行信用卡中心的，工号1024，本次通话全程录音。\nagent: 请问是张三本人吗？\ndebtor: 是我\n"
BAD_CALL = parse_plain(OPENING + "agent: 你再不还，我们马上起诉你\nagent: 信不信让你做牢\n"
                       "debtor: 你们这是骚扰电话，我要投诉，别再打了")


class World:
    """A client, a batch, a campaign, agents and cases with one phone each."""

    def __init__(self, engine):
        self.factory = sessions(engine)
        with transaction(self.factory) as s:
            client = Client(code="CMB", name="招商银行", created_at=NOW)
            s.add(client)
            s.flush()
            self.client_id = client.id
            batch = Batch(client_id=client.id, name="b", file_name="b.csv", sha256="0" * 64, rows=1, imported_at=NOW)
            campaign = Campaign(name="c", client_id=client.id, created_at=NOW, status_changed_at=NOW)
            s.add_all([batch, campaign])
            s.flush()
            self.batch_id, self.campaign_id = batch.id, campaign.id
            self.agents = []
            for ext in ("1001", "1002", "1003"):
                a = Agent(extension=ext, name=f"agent {ext}", created_at=NOW)
                s.add(a)
                s.flush()
                self.agents.append(a.id)
        self.calls = 0

    def recording(self, *, agent: int | None = None, at: dt.datetime = NOW) -> int:
        """A new case, phone, answered attempt and recording; returns the recording id."""
        self.calls += 1
        n = self.calls
        with transaction(self.factory) as s:
            case = Case(client_id=self.client_id, batch_id=self.batch_id, reference=f"R{n}", debtor_name="张三",
                        amount_due=Decimal("3500.00"), days_past_due=40, created_at=NOW)
            s.add(case)
            s.flush()
            phone = Phone(case_id=case.id, role="own_mobile", e164=f"+861380000{n:04d}", dial=f"1380000{n:04d}")
            s.add(phone)
            s.flush()
            attempt = Attempt(call_id=f"call-{n}", campaign_id=self.campaign_id, case_id=case.id, phone_id=phone.id,
                              agent_id=agent if agent is not None else self.agents[0], number=phone.dial,
                              state="ended", planned_at=at, answered_at=at, ended_at=at + dt.timedelta(minutes=2))
            s.add(attempt)
            s.flush()
            rec = Recording(attempt_id=attempt.id, recorded_at=at, seconds=Decimal("120.00"))
            s.add(rec)
            s.flush()
            return rec.id

    def ids(self, recording_id: int) -> tuple[int, int]:
        with self.factory() as s:
            a = s.scalar(select(Attempt).join(Recording, Recording.attempt_id == Attempt.id)
                         .where(Recording.id == recording_id))
            return a.case_id, a.phone_id


@pytest.fixture
def world(database):
    return World(database)


def check(world, recording_id, transcript=BAD_CALL, now=NOW):
    with transaction(world.factory) as s:
        return qa.check_recording(s, recording_id, transcript, now=now)


def test_findings_are_stored_once_with_the_columns_search_filters_on(world):
    rid = world.recording()
    first = check(world, rid)
    assert first.stored.added == len(first.findings) > 0 and first.stored.kept == 0
    again = check(world, rid)
    assert (again.stored.added, again.stored.kept, again.stored.removed) == (0, len(first.findings), 0)
    with world.factory() as s:
        rows = list(s.scalars(select(FindingRow).where(FindingRow.recording_id == rid).order_by(FindingRow.id)))
        assert len(rows) == len(first.findings)
        by_rule = {(r.rule_id, r.status) for r in rows}
        assert ("zh.false_legal.lawsuit", "confirmed") in by_rule
        assert ("zh.false_legal.prison", "review") in by_rule  # 做牢: a homophone
        lawsuit = next(r for r in rows if r.rule_id == "zh.false_legal.lawsuit")
        assert (lawsuit.category, lawsuit.severity, lawsuit.leg, lawsuit.match_type) == \
            ("false_legal", "high", "agent", "literal")
        assert lawsuit.rule_version == shipped_rulesets()["zh"].version
        assert lawsuit.offset_s == Decimal("10.75") and lawsuit.confidence == Decimal("1.000")
        assert lawsuit.found_at == NOW and lawsuit.matched_text == "马上起诉"
        # the search's filters
        assert s.scalar(select(func.count()).select_from(FindingRow).where(
            FindingRow.recording_id == rid, FindingRow.category == "false_legal", FindingRow.severity == "critical",
            FindingRow.status == "review")) == 1


def test_a_changed_transcript_drops_stale_findings_but_keeps_reviewed_ones(world):
    rid = world.recording()
    check(world, rid)
    with transaction(world.factory) as s:
        prison = s.scalar(select(FindingRow).where(FindingRow.rule_id == "zh.false_legal.prison"))
        qa.record_verdict(s, finding_id=prison.id, verdict="confirmed", reviewer="qa1", now=NOW)
    fixed = parse_plain(OPENING + "agent: 请您按时还款")
    again = check(world, rid, fixed)
    assert again.findings == [] and again.stored.added == 0
    with world.factory() as s:
        left = list(s.scalars(select(FindingRow).where(FindingRow.recording_id == rid)))
    # the lawsuit finding went; the reviewed one and the complaint (evidence of a proposal) stay
    assert {r.rule_id for r in left} == {"zh.false_legal.prison", "zh.trigger.complaint"}
    assert again.stored.removed > 0


def test_review_queue_and_verdicts(world):
    rid = world.recording()
    check(world, rid)
    noisy = Transcript((Utterance("agent", 0.0, 2.0, "我们的律师函马上就到", tuple(
        Word(w, i * 0.4, i * 0.4 + 0.4, c) for i, (w, c) in enumerate(
            [("我们的", 0.9), ("律师寒", 0.8), ("马上", 0.9), ("就", 0.9), ("到", 0.9)]))),), "zh")
    other = world.recording()
    check(world, other, noisy, now=NOW + dt.timedelta(hours=1))
    with world.factory() as s:
        queue = qa.review_queue(s)
        assert [(r.recording_id, r.rule_id, r.severity) for r in queue] == [
            (rid, "zh.false_legal.prison", "critical"),  # 做牢 for 坐牢; the most severe first
            (other, "zh.false_legal.lawsuit", "high"),   # 律师寒 for 律师函
        ]
        assert all(r.status == "review" for r in queue)
        assert [r.rule_id for r in qa.review_queue(s, severity="high")] == ["zh.false_legal.lawsuit"]
        target = queue[0].id
    with transaction(world.factory) as s:
        v = qa.record_verdict(s, finding_id=target, verdict="false_positive", reviewer="qa1", now=NOW, note="做饭")
        assert v.id
    with world.factory() as s:
        assert s.get(FindingRow, target).status == "false_positive"
        assert target not in [r.id for r in qa.review_queue(s)]
    with transaction(world.factory) as s:
        qa.record_verdict(s, recording_id=rid, verdict="pass", reviewer="qa1", now=NOW)
    with pytest.raises(qa.QaError, match="confirmed, false_positive"):
        with transaction(world.factory) as s:
            qa.record_verdict(s, finding_id=target, verdict="pass", reviewer="qa1", now=NOW)
    with pytest.raises(qa.QaError, match="either a finding or a recording"):
        with transaction(world.factory) as s:
            qa.record_verdict(s, finding_id=target, recording_id=rid, verdict="confirmed", reviewer="qa1", now=NOW)
    with pytest.raises(qa.NotFound):
        with transaction(world.factory) as s:
            qa.record_verdict(s, finding_id=999999, verdict="confirmed", reviewer="qa1", now=NOW)


def test_a_confirmed_complaint_stops_dialling_that_number(world):
    rid = world.recording()
    result = check(world, rid)
    assert {(p.proposal, p.case_status) for p in result.proposals} == {("case_status", "complaint"),
                                                                        ("stop_number", None)}
    check(world, rid)  # idempotent
    case_id, phone_id = world.ids(rid)
    with world.factory() as s:
        props = qa.open_proposals(s, case_id=case_id)
        assert len(props) == 2 and all(p.phone_id == phone_id and p.state == "proposed" for p in props)
        evidence = s.get(FindingRow, props[0].evidence_finding_id)
        assert evidence.rule_id == "zh.trigger.complaint" and evidence.leg == "debtor"
        stop = next(p.id for p in props if p.proposal == "stop_number")
        status = next(p.id for p in props if p.proposal == "case_status")
        # nothing is applied before a supervisor confirms
        assert s.get(Phone, phone_id).do_not_call is False and s.get(Case, case_id).status == "new"
    later = NOW + dt.timedelta(hours=3)
    with transaction(world.factory) as s:
        qa.confirm_proposal(s, stop, by="supervisor1", now=later)
        qa.confirm_proposal(s, status, by="supervisor1", now=later)
    with world.factory() as s:
        phone = s.get(Phone, phone_id)
        assert phone.do_not_call is True
        assert "zh.trigger.complaint" in phone.do_not_call_reason and "supervisor1" in phone.do_not_call_reason
        assert s.get(Case, case_id).status == "complaint"
        p = s.get(StatusProposal, stop)
        assert (p.state, p.decided_by, p.decided_at) == ("confirmed", "supervisor1", later)
        assert qa.open_proposals(s, case_id=case_id) == []
    with pytest.raises(qa.InvalidState, match="already confirmed"):
        with transaction(world.factory) as s:
            qa.reject_proposal(s, stop, by="supervisor2", now=later)


def test_a_rejected_proposal_changes_nothing(world):
    rid = world.recording()
    t = parse_plain(OPENING + "debtor: 这张卡不是我办的")
    (p,) = check(world, rid, t).proposals
    assert (p.proposal, p.case_status) == ("case_status", "fraud_claim")
    with transaction(world.factory) as s:
        qa.reject_proposal(s, p.id, by="supervisor1", now=NOW, note="本人已承认")
    case_id, _ = world.ids(rid)
    with world.factory() as s:
        assert s.get(Case, case_id).status == "new"
        assert s.get(StatusProposal, p.id).state == "rejected"


def test_an_agreed_call_time_becomes_an_appointment_when_confirmed(world):
    at = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
    rid = world.recording(at=at)
    t = parse_plain(OPENING + "debtor: 我在开会，明天下午三点再打吧")
    (p,) = check(world, rid, t).proposals
    assert p.proposal == "appointment"
    assert p.appointment_at == dt.datetime(2026, 11, 26, 15, 0, tzinfo=SHANGHAI)
    with transaction(world.factory) as s:
        qa.confirm_proposal(s, p.id, by="supervisor1", now=NOW)
    case_id, phone_id = world.ids(rid)
    with world.factory() as s:
        (appt,) = s.scalars(select(Appointment).where(Appointment.case_id == case_id))
        assert appt.at == dt.datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
        assert (appt.phone_id, appt.requested_by, appt.recorded_by, appt.status) == (phone_id, "debtor",
                                                                                     "supervisor1", "open")
        assert "明天下午三点再打" in appt.note


def test_an_appointment_without_a_time_needs_one_to_be_confirmed(world):
    rid = world.recording()
    (p,) = check(world, rid, parse_plain(OPENING + "debtor: 晚点再打吧")).proposals
    assert p.appointment_at is None
    with pytest.raises(qa.QaError, match="give the appointment time"):
        with transaction(world.factory) as s:
            qa.confirm_proposal(s, p.id, by="supervisor1", now=NOW)
    when = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with transaction(world.factory) as s:
        qa.confirm_proposal(s, p.id, by="supervisor1", now=NOW, appointment_at=when)
    with world.factory() as s:
        assert s.scalar(select(Appointment.at)) == when


# ── The weekly sample ────────────────────────────────────────────────────────────────────

WEEK = "2026-W47"  # Monday 16 November to Sunday 22 November 2026
MONDAY = dt.datetime(2026, 11, 16, 9, 0, tzinfo=SHANGHAI)


def team_week(world, calls: int, flagged: int, agents=None):
    """`calls` recordings of the team's agents in WEEK, the first `flagged` with a finding."""
    agents = agents or world.agents[:2]
    out = []
    for i in range(calls):
        rid = world.recording(agent=agents[i % len(agents)], at=MONDAY + dt.timedelta(hours=i * 7))
        check(world, rid, BAD_CALL if i < flagged else parse_plain(OPENING + "agent: 请您按时还款"))
        out.append(rid)
    return out


def draw(world, seed, **kw):
    with transaction(world.factory) as s:
        return qa.weekly_sample(s, team=kw.pop("team", "A"), agent_ids=kw.pop("agents", world.agents[:2]),
                                now=kw.pop("now", NOW), seed=seed, **kw)


def test_weekly_sample_meets_the_clients_rule_and_mixes_flagged_and_random(world):
    ours = team_week(world, 20, flagged=6)
    theirs = world.recording(agent=world.agents[2], at=MONDAY)  # another team
    outside = world.recording(agent=world.agents[0], at=MONDAY - dt.timedelta(days=1))  # the week before
    sample = draw(world, seed=7)  # NOW is in W48: last week's calls are sampled
    assert sample.week == WEEK and sample.new and sample.meets_rule and sample.shortfall == 0
    assert (sample.pool, sample.flagged_pool) == (20, 6)
    assert len(sample.checks) == 3 and all(len(c.recordings) == 4 for c in sample.checks)
    chosen = [r for c in sample.checks for r in c.recordings]
    assert len({r for r, _ in chosen}) == 12 and {r for r, _ in chosen} <= set(ours)
    assert theirs not in {r for r, _ in chosen} and outside not in {r for r, _ in chosen}
    picked = [why for _, why in chosen]
    assert picked.count("flagged") == 6 and picked.count("random") == 6
    assert all((why == "flagged") == (r in ours[:6]) for r, why in chosen)
    # drawn once: asking again returns the same sample, even with another seed
    again = draw(world, seed=8)
    assert not again.new and again.checks == sample.checks
    with world.factory() as s:
        assert s.scalar(select(func.count()).select_from(QaSample)) == 12


def test_weekly_sample_is_deterministic_given_seed_and_now(world):
    team_week(world, 20, flagged=3)
    samples = {}
    for seed in (1, 2, 3):
        with world.factory() as s, s.begin():  # drawn and rolled back
            samples[seed] = qa.weekly_sample(s, team="A", agent_ids=world.agents[:2], now=NOW, seed=seed).checks
            s.rollback()
    assert draw(world, seed=2).checks == samples[2]
    assert len(set(samples.values())) > 1  # the seed matters
    # with only 3 flagged calls the rest is filled at random
    picked = [why for c in samples[1] for _, why in c.recordings]
    assert picked.count("flagged") == 3 and picked.count("random") == 9


def test_weekly_sample_reports_a_shortfall(world):
    team_week(world, 5, flagged=1)
    sample = draw(world, seed=1)
    assert not sample.meets_rule and sample.shortfall == 7
    assert [len(c.recordings) for c in sample.checks] == [4, 1]
    with pytest.raises(qa.QaError, match="at least 3 checks"):
        draw(world, seed=1, team="B", checks=2)
    with pytest.raises(qa.QaError, match="2026-W48"):
        draw(world, seed=1, team="B", week="48")


def test_sample_progress_counts_checks_done(world):
    team_week(world, 12, flagged=4)
    sample = draw(world, seed=3, week=WEEK, now=MONDAY + dt.timedelta(days=8))
    with world.factory() as s:
        progress = qa.sample_progress(s, week=WEEK, team="A")
    assert not progress.meets_rule and [c.reviewed for c in progress.checks] == [0, 0, 0]
    with transaction(world.factory) as s:
        for c in sample.checks[:2]:
            for rid, _ in c.recordings:
                qa.record_verdict(s, recording_id=rid, verdict="pass", reviewer="qa1", now=NOW)
    with world.factory() as s:
        assert not qa.sample_progress(s, week=WEEK, team="A").meets_rule
    with transaction(world.factory) as s:
        for rid, _ in sample.checks[2].recordings:
            qa.record_verdict(s, recording_id=rid, verdict="fail", reviewer="qa2", now=NOW)
    with world.factory() as s:
        progress = qa.sample_progress(s, week=WEEK, team="A")
        assert progress.meets_rule and all(c.done for c in progress.checks)
        with pytest.raises(qa.NotFound, match="draw it first"):
            qa.sample_progress(s, week="2026-W01", team="A")


def test_precision_per_rule(world):
    rids = [world.recording() for _ in range(3)]
    for rid in rids:
        check(world, rid)
    with transaction(world.factory) as s:
        prison = list(s.scalars(select(FindingRow).where(FindingRow.rule_id == "zh.false_legal.prison")
                                .order_by(FindingRow.id)))
        assert len(prison) == 3
        qa.record_verdict(s, finding_id=prison[0].id, verdict="confirmed", reviewer="qa1", now=NOW)
        qa.record_verdict(s, finding_id=prison[1].id, verdict="confirmed", reviewer="qa1", now=NOW)
        qa.record_verdict(s, finding_id=prison[1].id, verdict="false_positive", reviewer="qa2", now=NOW)  # latest wins
        lawsuit = s.scalar(select(FindingRow).where(FindingRow.rule_id == "zh.false_legal.lawsuit"))
        qa.record_verdict(s, finding_id=lawsuit.id, verdict="confirmed", reviewer="qa1", now=NOW)
    with world.factory() as s:
        report = {r.rule_id: r for r in qa.precision_report(s)}
    p = report["zh.false_legal.prison"]
    assert (p.confirmed, p.false_positive, p.in_review, p.unreviewed) == (1, 1, 1, 0) and p.precision == 0.5
    law = report["zh.false_legal.lawsuit"]
    assert (law.confirmed, law.false_positive, law.unreviewed) == (1, 0, 2) and law.precision == 1.0
    assert report["zh.trigger.complaint"].precision is None
    with world.factory() as s:
        versions = qa.precision_report(s, by_version=True)
    assert {r.rule_version for r in versions} == {shipped_rulesets()["zh"].version}


# ── `dunning qa check FILE` (no database) ────────────────────────────────────────────────

def test_check_file_plain_text(tmp_path):
    path = tmp_path / "call.txt"
    path.write_text("# a test call\n" + OPENING + "坐席：你再不还，我们马上起速你\ndebtor: 明天下午三点再打吧\n",
                    encoding="utf-8")
    report = qa.check_file(path, now=dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI))
    rows = report.rows()
    assert rows[0].keys() == set(qa.CheckReport.COLUMNS)
    lawsuit = next(r for r in rows if r["rule"] == "zh.false_legal.lawsuit")
    assert (lawsuit["match"], lawsuit["status"], lawsuit["leg"], lawsuit["time"]) == ("pinyin", "review", "agent",
                                                                                      "00:10.8")
    appt = next(r for r in rows if r["status"] == "proposed")
    assert appt["text"] == "appointment: 2026-11-26T15:00+08:00"
    assert report.confirmed() == 0  # the homophone waits for review


def vosk(words):
    return {"result": [{"word": w, "start": s, "end": s + 0.4, "conf": c} for w, s, c in words],
            "text": " ".join(w for w, _, _ in words)}


def test_check_file_vosk_json_forms(tmp_path):
    now = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
    one = vosk([("我们", 12.0, 1.0), ("马上", 12.4, 0.95), ("起诉", 12.8, 0.92), ("你", 13.2, 1.0)])
    forms = {
        "single.json": one,
        "list.json": [{"text": ""}, one],
        "words.json": one["result"],
        "legs.json": {"agent": [one], "debtor": vosk([("我", 14.0, 1.0), ("要", 14.2, 1.0), ("投诉", 14.4, 0.9)])},
        "transcript.json": json.loads(Transcript((Utterance("agent", 12.0, 13.6, "我们马上起诉你", tuple(
            Word(w["word"], w["start"], w["end"], w["conf"]) for w in one["result"])),)).to_json()),
    }
    for name, data in forms.items():
        path = tmp_path / name
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        report = qa.check_file(path, now=now)
        f = next(f for f in report.findings if f.rule_id == "zh.false_legal.lawsuit")
        assert (f.offset_s, f.confidence, f.status, f.leg) == (12.4, 0.92, "confirmed", "agent"), name
    legs = qa.check_file(tmp_path / "legs.json", now=now)
    assert any(p.proposal == "stop_number" for p in legs.proposals)
    as_debtor = qa.check_file(tmp_path / "single.json", now=now, leg="debtor")
    assert [f for f in as_debtor.findings if f.leg == "agent"] == []


def test_check_file_english_and_custom_rules(tmp_path):
    path = tmp_path / "call.txt"
    path.write_text("agent: You owe 300 dollars. We will have you arrested.\n", encoding="utf-8")
    report = qa.check_file(path, now=NOW)
    assert report.ruleset.language == "en"
    assert {"en.threat.arrest", "en.order.identity_before_amount"} <= {f.rule_id for f in report.findings}
    rules = tmp_path / "mine.yaml"
    rules.write_text("version: t1\nlanguage: en\nrules:\n  - id: owe\n    category: threat\n    severity: low\n"
                     "    leg: agent\n    patterns: [you owe]\n", encoding="utf-8")
    mine = qa.check_file(path, now=NOW, rules=[rules])
    assert [f.rule_id for f in mine.findings] == ["owe"] and mine.findings[0].rule_version == "t1"


def test_check_file_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("agent: 你好\nsomeone: 谁\n", encoding="utf-8")
    with pytest.raises(qa.TranscriptFileError, match="line 2"):
        qa.check_file(bad, now=NOW)
    broken = tmp_path / "broken.json"
    broken.write_text('{"result": [', encoding="utf-8")
    with pytest.raises(qa.TranscriptFileError, match="not valid JSON"):
        qa.check_file(broken, now=NOW)
    words = tmp_path / "words.json"
    words.write_text('{"result": [{"word": "你"}]}', encoding="utf-8")
    with pytest.raises(qa.TranscriptFileError, match="word, start, end"):
        qa.check_file(words, now=NOW)
    with pytest.raises(qa.TranscriptFileError, match="cannot be read"):
        qa.check_file(tmp_path / "missing.txt", now=NOW)
    ok = tmp_path / "ok.txt"
    ok.write_text("agent: 你好\n", encoding="utf-8")
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nlanguage: zh\nrules: []\n", encoding="utf-8")
    with pytest.raises(RuleError, match="non-empty list"):
        qa.check_file(ok, now=NOW, rules=[rules])


def test_stored_findings_match_the_pure_ones(world):
    rid = world.recording()
    expected = find(BAD_CALL, shipped_rulesets()["zh"])
    check(world, rid)
    with world.factory() as s:
        stored = sorted((r.rule_id, r.status, float(r.offset_s)) for r in
                        s.scalars(select(FindingRow).where(FindingRow.recording_id == rid)))
        assert s.scalar(select(func.count()).select_from(QaVerdict)) == 0
    assert stored == sorted((f.rule_id, f.status, f.offset_s) for f in expected)
    with world.factory() as s:
        listed = qa.findings_for_recording(s, rid)
    assert [r.offset_s for r in listed] == sorted(r.offset_s for r in listed) and len(listed) == len(expected)
