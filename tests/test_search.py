"""Transcript search: Chinese substrings, English words, filters, snippets and time offsets,
on SQLite and PostgreSQL (the `database` fixture)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from campaigns.db import sessions, transaction
from recordings import search, transcripts
from recordings.transcript import Transcript, Utterance, Word, parse_plain

from helpers import SEARCH_DAY as DAY
from helpers import add_recording, add_world

UTC = dt.timezone.utc


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
        before = s.scalar(select(func.count()).select_from(transcripts.TranscriptPosting))
        stored = s.scalar(select(transcripts.StoredTranscript).where(
            transcripts.StoredTranscript.recording_id == ids["threat"]))
        assert before > 0 and len(search.index_rows(stored)) < before
        # storing again replaces the transcript and its grams: nothing stale is found
        transcripts.store(s, ids["threat"], PAYS, "test", DAY)
    assert found(factory, "坐牢") == []
    assert found(factory, "下周五") == [ids["pays"], ids["threat"]]
    with factory() as s:
        grams = {(g.gram, g.rank, g.transcript_id, g.legs) for g in s.scalars(select(transcripts.TranscriptPosting))}
        expected = {(r["gram"], r["rank"], r["transcript_id"], r["legs"])
                    for t in s.scalars(select(transcripts.StoredTranscript)) for r in search.index_rows(t)}
    assert grams == expected


def test_plans(corpus):
    factory, _ = corpus
    with factory() as s:
        assert search.search_with_plan(s, "坐牢")[1].kind == "index"
        assert search.search_with_plan(s, "坐监")[1].kind == "none"
        assert search.search_with_plan(s, "我")[1].kind == "index"  # every character is indexed too
        assert search.search_with_plan(s, "牢")[1].gram_counts == {"牢": 1}


def test_normalisation():
    assert search.normalize("Hello, 您好！I can PAY 五千元。") == " hello 您好 i can pay 5000 元 "
    text, owner = search.normalize_words(["再", "不", "还", "pay", "起诉"])
    assert text == " 再不还 pay 起诉 "
    assert [owner[i] for i in range(len(text))] == [-1, 0, 1, 2, -1, 3, 3, 3, -1, 4, 4, -1]
    assert search.grams(" 再不还 pay 起诉 我 ") == {"再不", "不还", "再", "不", "还", "pay", "起诉", "起", "诉", "我"}
    p = search.pattern("还 pay")
    assert (p.core, p.before, p.after, p.grams, p.like) == ("还 pay", False, True, ("pay", "还"), "%还 pay %")


def test_describe_marks_the_match(corpus):
    factory, _ = corpus
    with factory() as s:
        [hit] = search.search(s, "坐牢", context=3)
    lines = search.describe(hit)
    assert lines[0].startswith(f"recording {hit.recording_id}  call call-threat  2026-11-20 02:00 UTC  agent 8001")
    assert lines[1:] == ["  agent  0:15.6  你让你[坐牢]"]  # 3 characters before, none after


# ── One normaliser (issue #18, item 4) and the postings read newest first (item 5) ──

TRADITIONAL = Transcript((
    chinese_words("agent", 1.0, ["請問", "這個", "電話", "是", "您", "本人", "的", "嗎"]),
    chinese_words("debtor", 4.0, ["我", "欠", "了", "一万", "二千", "元"]),
    Utterance("agent", 8.0, 10.0, "ＯＫ，您的欠款是１２０００元，我們記錄一下"),
), "zh")


def test_traditional_full_width_and_numerals_are_one_text(database):
    factory = sessions(database)
    with transaction(factory) as s:
        world = add_world(s)
        rid = add_recording(s, world, "call-trad")
        transcripts.store(s, rid, TRADITIONAL, "test", DAY)
    assert found(factory, "电话") == [rid]  # 電話 said, 电话 typed
    assert found(factory, "電話號碼") == []
    assert found(factory, "这个电话") == [rid]
    assert found(factory, "12000") == [rid]  # 一万 二千 (two Vosk words) and １２０００
    assert found(factory, "一万二千元") == [rid]
    assert found(factory, "ok") == [rid]  # full width, upper case
    assert found(factory, "记录") == [rid]
    assert found(factory, "12000", leg="debtor") == [rid]
    with factory() as s:
        [hit] = search.search(s, "一万二千", search.Filters(leg="debtor"))
    [match] = hit.matches
    assert match.seconds == pytest.approx(4.0 + 3 * 0.4)  # the word 一万
    assert match.snippet[match.highlight[0]:match.highlight[1]] == "12000"


def test_postings_are_read_newest_first_within_the_dates(database):
    """Thirty calls a day apart: the newest 20 come first, a date range and a leg cut them,
    and a query whose grams are all posted but never together finds nothing."""
    factory = sessions(database)
    ids = []
    with transaction(factory) as s:
        world = add_world(s)
        for day in range(30):
            rid = add_recording(s, world, f"call-{day}", DAY + dt.timedelta(days=day))
            words = ["我", "下周", "还款"] if day % 2 else ["请", "尽快", "还款"]
            transcripts.store(s, rid, Transcript((chinese_words("debtor" if day % 3 else "agent", 1.0, words),),
                                                 "zh"), "test", DAY)
            ids.append(rid)
    newest_first = ids[::-1]
    assert found(factory, "还款") == newest_first[:20]
    with factory() as s:
        page = [h.recording_id for h in search.search(s, "还款", offset=20)]
    assert page == newest_first[20:]
    assert found(factory, "还款", since=DAY + dt.timedelta(days=25)) == newest_first[:5]
    assert found(factory, "还款", until=DAY + dt.timedelta(days=2)) == [ids[1], ids[0]]
    assert found(factory, "下周还款", leg="agent") == [ids[d] for d in range(29, -1, -1) if d % 2 and d % 3 == 0]
    assert found(factory, "尽快下周") == []  # each bigram's characters are posted, the phrase is not
    with factory() as s:
        assert search.search_with_plan(s, "请尽快")[1].gram_counts == {"尽快": 15, "请尽": 15}


def test_migration_0010_rewrites_texts_and_posts_every_transcript(tmp_path):
    """A database at 0004 with a transcript indexed the old way (traditional characters kept,
    bigrams in transcript_grams): 0010 writes its texts again with the one normaliser, posts it,
    and drops the old table; going down and up again gives the same postings."""
    from alembic import command
    from sqlalchemy import inspect, text

    from campaigns.db import alembic_config, make_engine, migrate
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config(str(engine.url))

    def alembic(action, target):
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            action(config, target)
    alembic(command.upgrade, "0004")
    with engine.begin() as c:
        c.execute(text("INSERT INTO clients (id, code, name, created_at) VALUES (1, 'X', 'x', '2026-11-20 02:00:00.000000')"))
        c.execute(text("INSERT INTO batches (id, client_id, name, file_name, sha256, rows, imported_at) "
                       "VALUES (1, 1, 'b', 'b.csv', :sha, 1, '2026-11-20 02:00:00.000000')"), {"sha": "0" * 64})
        c.execute(text("INSERT INTO campaigns (id, name, client_id, status, mode, timezone, settings, created_at, "
                       "status_changed_at) VALUES (1, 'c', 1, 'stopped', 'progressive', 'Asia/Shanghai', '{}', "
                       "'2026-11-20 02:00:00.000000', '2026-11-20 02:00:00.000000')"))
        c.execute(text("INSERT INTO cases (id, client_id, batch_id, reference, debtor_name, amount_due, currency, "
                       "days_past_due, status, extra, created_at) VALUES (1, 1, 1, 'C1', 'x', 1, 'CNY', 1, 'active', "
                       "'{}', '2026-11-20 02:00:00.000000')"))
        c.execute(text("INSERT INTO phones (id, case_id, role, e164, dial, valid, do_not_call) "
                       "VALUES (1, 1, 'own_mobile', '+8613800138000', '13800138000', 1, 0)"))
        c.execute(text("INSERT INTO attempts (id, call_id, campaign_id, case_id, phone_id, number, state, planned_at) "
                       "VALUES (1, 'c1', 1, 1, 1, '13800138000', 'ended', '2026-11-20 02:00:00.000000')"))
        c.execute(text("INSERT INTO recordings (id, attempt_id, recorded_at, seconds) VALUES (1, 1, '2026-11-20 02:00:00.000000', 1)"))
        c.execute(text("INSERT INTO transcripts (id, recording_id, language, model, document, agent_text, debtor_text, "
                       "recorded_at, created_at) VALUES (1, 1, 'zh', 'm', :doc, ' 這個電話 ', ' 一万二千 ', "
                       "'2026-11-20 02:00:00.000000', '2026-11-20 02:00:00.000000')"),
                  {"doc": TRADITIONAL.to_json()})
        c.execute(text("INSERT INTO transcript_grams (gram, transcript_id, leg) VALUES ('電話', 1, 0)"))
    migrate(engine)
    assert not inspect(engine).has_table("transcript_grams")
    factory = sessions(engine)
    with factory() as s:
        stored = s.get(transcripts.StoredTranscript, 1)
        assert "电话" in stored.agent_text and " 12000 " in stored.debtor_text
        posted = {(p.gram, p.rank, p.transcript_id, p.legs) for p in s.scalars(select(transcripts.TranscriptPosting))}
        assert posted == {(r["gram"], r["rank"], r["transcript_id"], r["legs"]) for r in transcripts.index_rows(stored)}
    assert found(factory, "电话") == [1] and found(factory, "一万二千") == [1]
    alembic(command.downgrade, "0004")
    assert inspect(engine).has_table("transcript_grams") and not inspect(engine).has_table("transcript_postings")
    migrate(engine)
    with factory() as s:
        assert {(p.gram, p.rank) for p in s.scalars(select(transcripts.TranscriptPosting))} == {
            (g, r) for g, r, _, _ in posted}
    engine.dispose()
