"""Transcript search: Chinese substrings, English words, filters, snippets and time offsets,
on SQLite and PostgreSQL (the `database` fixture)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from campaigns.db import sessions, transaction
from campaigns.models import Agent, Attempt, Batch, Campaign, Case, Client, Phone, Recording
from recordings import search, transcripts
from recordings.transcript import Transcript, Utterance, Word, parse_plain

UTC = dt.timezone.utc
DAY = dt.datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def add_world(s, code: str = "ICBC", agent_extension: str = "8001", agent_name: str = "张敏",
              campaign: str = "camp-a") -> dict[str, int]:
    client = s.scalar(select(Client).where(Client.code == code))
    if client is None:
        client = Client(code=code, name="工商银行", created_at=DAY)
        s.add(client)
        s.flush()
        s.add(Batch(client_id=client.id, name="b", file_name="b.csv", sha256=code.ljust(64, "0"), rows=1,
                    imported_at=DAY))
        s.flush()
    batch = s.scalar(select(Batch).where(Batch.client_id == client.id))
    camp = Campaign(name=campaign, client_id=client.id, created_at=DAY, status_changed_at=DAY)
    agent = Agent(extension=agent_extension, name=agent_name, created_at=DAY)
    s.add_all([camp, agent])
    s.flush()
    case = Case(client_id=client.id, batch_id=batch.id, reference=f"C-{campaign}", debtor_name="李伟",
                amount_due=Decimal("1200.00"), days_past_due=40, created_at=DAY)
    s.add(case)
    s.flush()
    phone = Phone(case_id=case.id, role="own_mobile", e164="+8613800138000", dial="13800138000")
    s.add(phone)
    s.flush()
    return {"client": client.id, "campaign": camp.id, "agent": agent.id, "case": case.id, "phone": phone.id}


def add_recording(s, world: dict[str, int], call_id: str, at: dt.datetime = DAY) -> int:
    """An answered attempt with its Recording row (the vault file is not needed to search)."""
    attempt = Attempt(call_id=call_id, campaign_id=world["campaign"], case_id=world["case"], phone_id=world["phone"],
                      agent_id=world["agent"], number="13800138000", state="ended", planned_at=at, dialed_at=at,
                      answered_at=at, ended_at=at + dt.timedelta(minutes=3), outcome="answered")
    s.add(attempt)
    s.flush()
    recording = Recording(attempt_id=attempt.id, recorded_at=at, seconds=Decimal("180.00"))
    s.add(recording)
    s.flush()
    return recording.id


def chinese_words(leg: str, start: float, words: list[str], step: float = 0.4) -> Utterance:
    """An utterance as Vosk gives Chinese: words with timings, joined without spaces."""
    timed = tuple(Word(w, round(start + i * step, 3), round(start + (i + 1) * step, 3), 0.9)
                  for i, w in enumerate(words))
    return Utterance(leg, timed[0].start, timed[-1].end, "".join(words), timed)


THREAT = Transcript((
    chinese_words("agent", 1.0, ["您好", "我", "是", "催收", "中心", "的"]),
    chinese_words("debtor", 4.0, ["我", "没有", "钱"]),
    chinese_words("agent", 12.0, ["再", "不", "还", "我们", "就", "起诉", "你", "让", "你", "坐牢"]),
), "zh")
PAYS = Transcript((
    chinese_words("agent", 0.5, ["请问", "什么", "时候", "还款"]),
    chinese_words("debtor", 3.0, ["我", "下周五", "还款", "五千"]),
), "zh")
ENGLISH = parse_plain("agent: Hello, this is a call about your overdue account.\n"
                      "debtor: I can pay five hundred dollars next Friday.\n"
                      "agent: If you don't pay we will sue you.\n", language="en")


@pytest.fixture
def corpus(database):
    """Three calls by two agents in two campaigns, on three days."""
    factory = sessions(database)
    with transaction(factory) as s:
        a = add_world(s, agent_extension="8001", agent_name="张敏", campaign="camp-a")
        b = add_world(s, agent_extension="8002", agent_name="Wang Fang", campaign="camp-b")
        ids = {"threat": add_recording(s, a, "call-threat", DAY),
               "pays": add_recording(s, b, "call-pays", DAY + dt.timedelta(days=1)),
               "english": add_recording(s, b, "call-english", DAY + dt.timedelta(days=2))}
        for name, transcript in (("threat", THREAT), ("pays", PAYS), ("english", ENGLISH)):
            transcripts.store(s, ids[name], transcript, "test", DAY)
    return factory, ids


def found(factory, query: str, **filters) -> list[int]:
    with factory() as s:
        return [h.recording_id for h in search.search(s, query, search.Filters(**filters))]


def test_chinese_substrings_across_word_boundaries(corpus):
    factory, ids = corpus
    assert found(factory, "起诉") == [ids["threat"]]
    assert found(factory, "就起诉你") == [ids["threat"]]  # spans three Vosk words
    assert found(factory, "诉你让你坐") == [ids["threat"]]
    assert found(factory, "还款") == [ids["pays"]]
    assert found(factory, "催收中心") == [ids["threat"]]
    assert found(factory, "坐 牢") == [ids["threat"]]  # spaces typed into a Chinese query do not matter
    assert found(factory, "坐监") == []
    assert found(factory, "我") == [ids["pays"], ids["threat"]]  # one character: the scan, newest first


def test_english_whole_words_and_phrases(corpus):
    factory, ids = corpus
    assert found(factory, "pay") == [ids["english"]]
    assert found(factory, "PAY five") == [ids["english"]]
    assert found(factory, "overdue account") == [ids["english"]]
    assert found(factory, "pa") == []  # whole words only
    assert found(factory, "five pay") == []  # in order


def test_snippet_highlight_leg_and_time_offset(corpus):
    factory, ids = corpus
    with factory() as s:
        [hit] = search.search(s, "坐牢", context=6)
    assert hit.call_id == "call-threat" and hit.agent == "8001" and hit.campaign == "camp-a"
    [match] = hit.matches
    assert match.leg == "agent"
    assert match.seconds == pytest.approx(12.0 + 9 * 0.4)  # the 10th word of the utterance at 12 s
    start, end = match.highlight
    assert match.snippet[start:end] == "坐牢"
    assert match.snippet == "就起诉你让你坐牢"  # 6 characters of context before
    with factory() as s:
        hit = search.search(s, "我")[0]
        by_leg = {m.leg for m in hit.matches}
    assert by_leg == {"debtor"}  # the newest call with 我 is "pays", where only the debtor says it
    with factory() as s:
        [english] = search.search(s, "pay")
    assert [(m.leg, m.seconds) for m in english.matches] == [("debtor", 3.0), ("agent", 6.0)]
    for m in english.matches:
        assert m.snippet[m.highlight[0]:m.highlight[1]] == "pay"


def test_filters(corpus):
    factory, ids = corpus
    assert found(factory, "我", leg="agent") == [ids["threat"]]
    assert found(factory, "我", leg="debtor") == [ids["pays"], ids["threat"]]
    assert found(factory, "还款", leg="agent") == [ids["pays"]]
    assert found(factory, "我", agent="8001") == [ids["threat"]]
    assert found(factory, "我", agent="Wang Fang") == [ids["pays"]]
    assert found(factory, "我", campaign="camp-b") == [ids["pays"]]
    assert found(factory, "我", since=DAY + dt.timedelta(hours=1)) == [ids["pays"]]
    assert found(factory, "我", until=DAY + dt.timedelta(hours=1)) == [ids["threat"]]
    with pytest.raises(search.SearchError, match="leg must be"):
        found(factory, "我", leg="both")
    with pytest.raises(search.SearchError, match="nothing to search"):
        found(factory, " ，。 ")


def test_findings_filters(corpus):
    factory, ids = corpus
    with factory() as s:
        has = search.has_findings_table(s)
    if not has:  # the findings rules' migration is not there: the filter says so
        with pytest.raises(search.SearchError, match="findings table"):
            found(factory, "我", category="threat")
        return
    from recordings.qa_schema import FindingRow  # the findings rules' table (another module's)
    with transaction(factory) as s:
        for recording, status in ((ids["threat"], "confirmed"), (ids["pays"], "review"),
                                  (ids["english"], "false_positive")):
            s.add(FindingRow(recording_id=recording, rule_id="zh.threat.prison", rule_version="1", kind="phrase",
                             category="threat", severity="high", leg="agent", offset_s=Decimal("15.60"),
                             matched_text="坐牢", match_type="literal", confidence=Decimal("1.000"), status=status,
                             fingerprint=f"f{recording}", found_at=DAY))
    assert found(factory, "我", category="threat") == [ids["pays"], ids["threat"]]
    assert found(factory, "pay", category="threat") == []  # a false positive does not count
    assert found(factory, "我", category="threat", reviewed=False) == [ids["pays"]]
    assert found(factory, "我", category="threat", reviewed=True) == [ids["threat"]]
    assert found(factory, "pay", severity="high", reviewed=True) == [ids["english"]]
    assert found(factory, "我", category="abuse") == []


def test_index_is_kept_with_the_transcript(corpus):
    factory, ids = corpus
    with transaction(factory) as s:
        before = s.scalar(select(func.count()).select_from(transcripts.TranscriptGram))
        stored = s.scalar(select(transcripts.StoredTranscript).where(
            transcripts.StoredTranscript.recording_id == ids["threat"]))
        assert before > 0 and len(search.index_rows(stored)) < before
        # storing again replaces the transcript and its grams: nothing stale is found
        transcripts.store(s, ids["threat"], PAYS, "test", DAY)
    assert found(factory, "坐牢") == []
    assert found(factory, "下周五") == [ids["pays"], ids["threat"]]
    with factory() as s:
        grams = {(g.gram, g.transcript_id, g.leg) for g in s.scalars(select(transcripts.TranscriptGram))}
        expected = {(r["gram"], r["transcript_id"], r["leg"])
                    for t in s.scalars(select(transcripts.StoredTranscript)) for r in search.index_rows(t)}
    assert grams == expected


def test_plans(corpus):
    factory, _ = corpus
    with factory() as s:
        assert search.search_with_plan(s, "坐牢")[1].kind == "index"
        assert search.search_with_plan(s, "坐监")[1].kind == "none"
        assert search.search_with_plan(s, "我")[1].kind == "scan"


def test_normalisation():
    assert search.normalize("Hello, 您好！I can PAY 五千元。") == " hello 您好 i can pay 五千元 "
    text, owner = search.normalize_words(["再", "不", "还", "pay", "起诉"])
    assert text == " 再不还 pay 起诉 "
    assert [owner[i] for i in range(len(text))] == [-1, 0, 1, 2, -1, 3, 3, 3, -1, 4, 4, -1]
    assert search.grams(" 再不还 pay 起诉 我 ") == {"再不", "不还", "pay", "起诉", "我"}
    p = search.pattern("还 pay")
    assert (p.core, p.before, p.after, p.grams, p.like) == ("还 pay", False, True, ("pay",), "%还 pay %")


def test_describe_marks_the_match(corpus):
    factory, _ = corpus
    with factory() as s:
        [hit] = search.search(s, "坐牢", context=3)
    lines = search.describe(hit)
    assert lines[0].startswith(f"recording {hit.recording_id}  call call-threat  2026-11-20 02:00 UTC  agent 8001")
    assert lines[1:] == ["  agent  0:15.6  你让你[坐牢]"]  # 3 characters before, none after
