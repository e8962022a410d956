"""Findings and debtor-side triggers on transcripts with the noise a small model produces."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recordings.findings import (
    CATEGORIES,
    RuleError,
    find,
    load_ruleset,
    normalise,
    parse_ruleset,
    readings,
    shipped_rulesets,
)
from recordings.transcript import Transcript, Utterance, Word, parse_plain
from recordings.triggers import cn_number, parse_when, propose

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
OPENING = "agent: 您好，我是招商银行信用卡中心的催收专员，工号1024，本次通话全程录音。\n"


@pytest.fixture(scope="module")
def zh():
    return shipped_rulesets()["zh"]


@pytest.fixture(scope="module")
def en():
    return shipped_rulesets()["en"]


def hits(findings, rule_id=None, leg=None):
    return [f for f in findings if (rule_id is None or f.rule_id == rule_id) and (leg is None or f.leg == leg)]


def one(findings, rule_id):
    found = hits(findings, rule_id)
    assert len(found) == 1, [(f.rule_id, f.matched_text) for f in findings]
    return found[0]


def zh_call(*lines: str) -> Transcript:
    return parse_plain(OPENING + "\n".join(lines))


# ── Mandarin noise ───────────────────────────────────────────────────────────────────────

def test_a_literal_threat_is_confirmed(zh):
    f = one(find(zh_call("agent: 你再不还，我们马上起诉你"), zh), "zh.false_legal.lawsuit")
    assert (f.match_type, f.status, f.leg, f.category, f.severity) == ("literal", "confirmed", "agent",
                                                                       "false_legal", "high")
    assert f.matched_text == "马上起诉" and f.rule_version == zh.version
    assert f.sentence == 1 and 3.0 <= f.offset_s < 6.0  # the second line, inside its 3 s


@pytest.mark.parametrize("said, heard", [("起诉", "起速"), ("坐牢", "做牢"), ("律师函", "律师寒")])
def test_homophones_match_by_pinyin_and_go_to_review(zh, said, heard):
    assert readings(said[0]) & readings(heard[0])
    clean = find(zh_call(f"agent: 信不信我{said}你，让你{said}"), zh)
    noisy = find(zh_call(f"agent: 信不信我{heard}你，让你{heard}"), zh)
    strong = [f for f in clean if f.leg == "agent" and f.kind == "phrase"]
    weak = [f for f in noisy if f.leg == "agent" and f.kind == "phrase"]
    assert strong and all(f.status == "confirmed" for f in strong)
    assert {f.rule_id for f in weak} == {f.rule_id for f in strong}
    assert all(f.match_type == "pinyin" and f.status == "review" and f.confidence < 1 for f in weak)
    assert any(heard in f.matched_text for f in weak)


def test_heteronyms_match_every_reading(zh):
    # 还 reads hai and huan: a recogniser that wrote 换 (huan) still matches 不还钱就 ... 家人
    f = one(find(zh_call("agent: 你不换钱就等着我们找你家人吧"), zh), "zh.threat.family")
    assert f.match_type in ("pinyin", "regex")
    assert "hai" in readings("还") and "huan" in readings("还")


def test_inserted_spaces_punctuation_and_full_width_are_ignored(zh):
    plain = find(zh_call("agent: 你再不还后果自负"), zh)
    noisy = find(zh_call("agent: 你 再不还，后 果 ！自　负。"), zh)
    assert [(f.rule_id, f.match_type, f.status) for f in noisy] == [(f.rule_id, f.match_type, f.status) for f in plain]
    assert one(noisy, "zh.threat.consequences").matched_text == "后 果 ！自　负"
    complaint = find(parse_plain("debtor: 我要打１２３７８"), zh)
    assert one(complaint, "zh.trigger.complaint").match_type == "literal"
    assert normalise("Ｑ Ｑ，微信！") == "qq微信"


def test_traditional_characters_match_simplified_rules(zh):
    f = one(find(zh_call("agent: 我們馬上起訴你"), zh), "zh.false_legal.lawsuit")
    assert f.match_type == "literal" and f.status == "confirmed"


def test_a_gap_between_parts_is_allowed_up_to_max_gap(zh):
    # the client's example sentence, with words in between its parts
    f = one(find(zh_call("agent: 不还钱的话我们就去起诉你的家人"), zh), "zh.threat.family")
    assert f.match_type == "parts" and f.status == "confirmed"
    rs = parse_ruleset({"version": 1, "language": "zh", "rules": [
        {"id": "gap", "category": "threat", "severity": "high", "leg": "agent",
         "patterns": [{"parts": ["不还钱", "起诉"], "max_gap": 4}]}]})
    assert one(find(parse_plain("agent: 不还钱我们就起诉"), rs), "gap").matched_text == "不还钱我们就起诉"
    assert find(parse_plain("agent: 不还钱的话我们只好去法院起诉"), rs) == []  # 8 characters apart
    assert find(parse_plain("agent: 起诉的事不还钱也没用"), rs) == []  # wrong order


def test_an_exclusion_suppresses_the_hit(zh):
    assert hits(find(zh_call("agent: 您放心，我们不会起诉您的"), zh), "zh.false_legal.lawsuit") == []
    # the exclusion also works when the recogniser mis-heard it
    assert hits(find(zh_call("agent: 您放心，我们不会起速您的"), zh), "zh.false_legal.lawsuit") == []
    assert hits(find(zh_call("agent: 我们会通过法律途径起诉你"), zh), "zh.false_legal.lawsuit") == []
    # without the exclusion the same words are a finding
    assert len(hits(find(zh_call("agent: 我们一定会起诉您的"), zh), "zh.false_legal.lawsuit")) == 1


def test_exclude_within_limits_how_far_an_exclusion_reaches():
    rs = parse_ruleset({"version": 1, "language": "zh", "rules": [
        {"id": "law", "category": "false_legal", "severity": "high", "leg": "agent",
         "patterns": ["起诉"], "exclude": ["依法"], "exclude_within": 2}]})
    assert find(parse_plain("agent: 依法起诉"), rs) == []
    assert len(find(parse_plain("agent: 我们依法办事，但是你不还就起诉"), rs)) == 1


def test_a_phrase_said_by_the_debtor_does_not_count_against_the_agent(zh):
    t = zh_call("debtor: 你们是不是想起诉我，让我坐牢？骗子！",
                "agent: 先生，请问是张三本人吗？",
                "debtor: 他已经坐牢了")
    found = find(t, zh)
    assert hits(found, leg="agent") == []
    assert not any(f.category in ("false_legal", "insult") for f in found)
    assert one(found, "zh.trigger.imprisoned").leg == "debtor"


def test_must_say_missing_is_a_finding(zh):
    found = find(parse_plain("agent: 喂，张三吗？\nagent: 你的卡逾期了\ndebtor: 嗯"), zh)
    missing = {f.rule_id for f in found if f.match_type == "absent"}
    assert missing == {"zh.must.identity", "zh.must.staff_id", "zh.must.recording_notice"}
    f = one(found, "zh.must.recording_notice")
    assert f.status == "confirmed" and f.leg == "agent" and f.kind == "must_say"
    assert [f for f in find(zh_call("debtor: 嗯"), zh) if f.match_type == "absent"] == []


def test_must_say_only_counts_inside_its_window(zh):
    late = parse_plain("agent: 喂\nagent: 张三吗\nagent: 你好\nagent: 本次通话全程录音")
    assert one(find(late, zh), "zh.must.recording_notice").match_type == "absent"
    early = parse_plain("agent: 喂\nagent: 本次通话全程录音\nagent: 张三吗\nagent: 你好")
    assert hits(find(early, zh), "zh.must.recording_notice") == []
    # the debtor's sentences do not use up the agent's first three
    mixed = parse_plain("agent: 喂\ndebtor: 谁\ndebtor: 说\ndebtor: 啊\nagent: 本次通话会录音")
    assert hits(find(mixed, zh), "zh.must.recording_notice") == []


def test_a_must_say_on_a_poorly_recognised_opening_goes_to_review(zh):
    words = tuple(Word(c, i * 0.3, i * 0.3 + 0.3, 0.3) for i, c in enumerate("喂你好"))
    t = Transcript((Utterance("agent", 0.0, 0.9, "喂你好", words),))
    assert {f.status for f in find(t, zh) if f.match_type == "absent"} == {"review"}


def test_order_identity_before_amount(zh):
    wrong = find(parse_plain("agent: 您好\nagent: 您欠款三千五百元已经逾期\nagent: 请问是张三本人吗"), zh)
    f = one(wrong, "zh.order.identity_before_amount")
    assert f.match_type == "order" and f.matched_text == "三千五百元" and f.sentence == 1 and f.status == "confirmed"
    right = find(parse_plain("agent: 您好\nagent: 请问是张三本人吗\ndebtor: 是\nagent: 您欠款三千五百元"), zh)
    assert hits(right, "zh.order.identity_before_amount") == []
    never = find(parse_plain("agent: 你欠了两万块"), zh)
    assert one(never, "zh.order.identity_before_amount").matched_text == "两万块"


def test_a_position_window_limits_a_phrase_rule():
    rs = parse_ruleset({"version": "w1", "language": "zh", "rules": [
        {"id": "closing", "category": "rude_service", "severity": "low", "leg": "agent", "patterns": ["挂了"],
         "window": {"last_sentences": 1}},
        {"id": "opening", "category": "rude_service", "severity": "low", "leg": "agent", "patterns": ["喂喂"],
         "window": {"first_sentences": 1}},
        {"id": "early", "category": "rude_service", "severity": "low", "leg": "agent", "patterns": ["快点"],
         "window": {"first_seconds": 4}}]})
    t = parse_plain("agent: 喂喂\nagent: 喂喂挂了快点\nagent: 快点\ndebtor: 挂了\nagent: 挂了")
    found = find(t, rs)
    assert [(f.rule_id, f.sentence) for f in found] == [("opening", 0), ("early", 1), ("closing", 4)]


def test_word_timings_and_confidences_give_offset_and_status(zh):
    def utterance(words):
        ws = tuple(Word(w, 10.0 + i, 10.5 + i, c) for i, (w, c) in enumerate(words))
        return Utterance("agent", ws[0].start, ws[-1].end, "".join(w for w, _ in words), ws)
    sure = Transcript((utterance([("我们", 0.99), ("马上", 0.95), ("起诉", 0.9), ("你", 0.97)]),))
    f = one(find(sure, zh), "zh.false_legal.lawsuit")
    assert f.offset_s == 11.0 and f.confidence == 0.9 and f.status == "confirmed"
    unsure = Transcript((utterance([("我们", 0.99), ("马上", 0.95), ("起诉", 0.4), ("你", 0.97)]),))
    f = one(find(unsure, zh), "zh.false_legal.lawsuit")
    assert f.match_type == "literal" and f.confidence == 0.4 and f.status == "review"


def test_fuzzy_matches_go_to_review_with_their_score():
    rs = parse_ruleset({"version": 1, "language": "zh", "rules": [
        {"id": "f", "category": "threat", "severity": "high", "leg": "agent",
         "patterns": [{"fuzzy": "你最好小心一点", "threshold": 80}]}]})
    f = one(find(parse_plain("agent: 我劝你最好小心点"), rs), "f")
    assert f.match_type == "fuzzy" and f.status == "review" and 0.8 <= f.confidence < 1.0
    exact = one(find(parse_plain("agent: 你最好小心一点"), rs), "f")
    assert exact.match_type == "literal" and exact.status == "confirmed"
    assert find(parse_plain("agent: 今天天气很好"), rs) == []


NOISE = st.sampled_from([" ", "\u3000", "，", "。", "、", "！", "？", ",", ".", "…", "-", "~", "\t"])
SENTENCES = ["你再不还，我们马上起诉你", "不还钱的话我们就去起诉你的家人", "信不信我让你做牢",
             "您放心，我们不会起速您的", "您欠款三千五百元", "请问是张三本人吗", "你是不是有病啊", "我天天给你打"]


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.sampled_from(SENTENCES), min_size=1, max_size=4), data=st.data())
def test_random_spaces_and_punctuation_never_change_findings(zh, lines, data):
    def noisy(line):
        out = []
        for ch in line:
            out.append(ch)
            out.append("".join(data.draw(st.lists(NOISE, max_size=2))))
        return "".join(out)
    clean = find(zh_call(*(f"agent: {s}" for s in lines)), zh)
    messy = find(zh_call(*(f"agent: {noisy(s)}" for s in lines)), zh)
    key = [(f.rule_id, f.match_type, f.status, f.sentence, f.span) for f in clean]
    assert [(f.rule_id, f.match_type, f.status, f.sentence, f.span) for f in messy] == key
    assert {normalise(f.matched_text) for f in messy} == {normalise(f.matched_text) for f in clean}


# ── English ──────────────────────────────────────────────────────────────────────────────

EN_OPENING = "agent: Hello, my name is Bob calling from Acme Recovery. This call is recorded.\n"


def test_english_threats_exclusions_and_legs(en):
    found = find(parse_plain(EN_OPENING + "agent: Pay today or you'll be ARRESTED!!", language="en"), en)
    f = one(found, "en.threat.arrest")
    assert f.match_type == "regex" and f.status == "confirmed" and f.matched_text == "ARRESTED!!"
    calm = parse_plain(EN_OPENING + "agent: You will not be arrested, this is a civil matter.", language="en")
    assert hits(find(calm, en), "en.threat.arrest") == []
    debtor = parse_plain(EN_OPENING + "debtor: Are you going to have me arrested? You idiot.", language="en")
    assert hits(find(debtor, en), leg="agent") == []
    posing = find(parse_plain(EN_OPENING + "agent: I'm   Officer Smith from the sheriff.", language="en"), en)
    assert one(posing, "en.impersonation.authority").status == "confirmed"


EN_SENTENCES = ["Pay today or you will be arrested", "You will not be arrested", "We will sue you today",
                "You owe 500 dollars", "Am I speaking with John Smith", "I will call your boss", "you deadbeat"]
EN_NOISE = st.sampled_from([" ", "  ", ", ", "! ", "? ", " - ", "... ", " \t", "; "])


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(st.sampled_from(EN_SENTENCES), min_size=1, max_size=4), data=st.data())
def test_english_punctuation_and_spacing_never_change_findings(en, lines, data):
    def noisy(line):
        words = line.split()
        return "".join(w + data.draw(EN_NOISE) for w in words[:-1]) + words[-1] + data.draw(st.sampled_from(["", ".", "!"]))
    def key(found):
        return [(f.rule_id, f.match_type, f.status, f.sentence, f.span) for f in found]
    clean = find(parse_plain("\n".join(f"agent: {s}" for s in lines), language="en"), en)
    messy = find(parse_plain("\n".join(f"agent: {noisy(s)}" for s in lines), language="en"), en)
    assert key(messy) == key(clean)


def test_english_gapped_parts_count_words(en):
    found = find(parse_plain(EN_OPENING + "agent: We will sue you, I promise, today.", language="en"), en)
    assert one(found, "en.false_legal.lawsuit").match_type == "parts"
    far = parse_plain(EN_OPENING + "agent: We will sue you if we must, not today.", language="en")
    assert hits(find(far, en), "en.false_legal.lawsuit") == []


def test_english_must_say_and_order(en):
    found = find(parse_plain("agent: Hi.\nagent: You owe 500 dollars.\nagent: Am I speaking with John?",
                             language="en"), en)
    assert {f.rule_id for f in found if f.match_type == "absent"} == {"en.must.identity", "en.must.recording_notice"}
    assert one(found, "en.order.identity_before_amount").matched_text == "You owe"
    good = find(parse_plain(EN_OPENING + "agent: Am I speaking with John Smith?\nagent: You owe 500 dollars.",
                            language="en"), en)
    assert good == []


def test_english_fuzzy_pattern(en):
    found = find(parse_plain(EN_OPENING + "agent: we know were you live", language="en"), en)
    f = one(found, "en.threat.arrest")
    assert f.match_type == "fuzzy" and f.status == "review"


# ── The shipped rule sets and their validation ───────────────────────────────────────────

def test_shipped_rule_sets_cover_the_domain(zh, en):
    for rs in (zh, en):
        assert rs.version and rs.min_conf > 0
        kinds = {r.kind for r in rs.rules}
        assert kinds == {"phrase", "must_say", "order"}
        assert {r.leg for r in rs.rules if r.trigger} == {"debtor"}
        assert all(r.leg == "agent" for r in rs.rules if not r.trigger)
    agent_side = {"threat", "insult", "impersonation", "false_legal", "disclosure", "unauthorised_promise",
                  "illegal_funding", "harassment", "rude_service"}
    assert agent_side | {"must_say", "order"} <= {r.category for r in zh.rules}
    assert {"complaint", "dispute", "fraud_claim", "deceased", "wrong_party", "call_time"} <= \
        {r.category for r in zh.rules if r.trigger}
    assert {"threat", "insult", "impersonation", "disclosure"} <= {r.category for r in en.rules}
    assert set(r.category for r in zh.rules + en.rules) <= set(CATEGORIES)


@pytest.mark.parametrize("sentence, rule_id", [
    ("不还钱就起诉你家人", "zh.threat.family"), ("后果自负", "zh.threat.consequences"),
    ("我们会派人上门", "zh.threat.visit"), ("我要在网上曝光你", "zh.threat.expose"),
    ("抓你去坐牢", "zh.false_legal.prison"), ("明天冻结你所有银行卡", "zh.false_legal.freeze"),
    ("我是法院的", "zh.impersonation.authority"), ("你这个老赖", "zh.insult"),
    ("我会告诉你家人", "zh.disclosure.third_party"), ("我打给你通讯录", "zh.disclosure.third_party"),
    ("我给你减免一半", "zh.promise.unauthorised"), ("保证不上征信", "zh.promise.unauthorised"),
    ("你去借网贷还", "zh.funding.illegal"), ("转到我个人账户", "zh.funding.illegal"),
    ("我天天给你打", "zh.harassment.repeated"), ("这不归我管", "zh.rude.service"), ("爱还不还", "zh.rude.service"),
])
def test_domain_examples_are_found_and_confirmed(zh, sentence, rule_id):
    f = one(find(zh_call(f"agent: {sentence}"), zh), rule_id)
    assert f.status == "confirmed"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(text, encoding="utf-8")
    return p


RULE = "  - id: r1\n    category: threat\n    severity: high\n    leg: agent\n"


@pytest.mark.parametrize("body, rule_id, fld, words", [
    ("version: 1\nlanguage: zh\nrules:\n" + RULE + "    patterns: [{regex: '(起诉'}]\n", "r1", "patterns[0].regex",
     "regular expression"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE.replace("agent", "caller") + "    patterns: [x]\n", "r1", "leg",
     "agent, debtor, any"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE + "    patterns: [x]\n    colour: red\n", "r1", "colour", "unknown"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE + "    patterns: [{parts: [a, b], max_gap: -1}]\n", "r1",
     "patterns[0].max_gap", "integer"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE + "    patterns: [{fuzzy: 起诉}]\n", "r1", "patterns[0].fuzzy",
     "3 characters"),
    ("version: 1\nlanguage: en\nrules:\n" + RULE + "    patterns: [{pinyin: 起诉}]\n", "r1", "patterns[0].pinyin",
     "Chinese"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE + "    patterns: [{literal: a, regex: b}]\n", "r1", "patterns[0]",
     "exactly one"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE.replace("agent", "debtor") + "    patterns: [x]\n"
     "    trigger: {case_status: angry}\n", "r1", "trigger.case_status", "unknown case status"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE + "    patterns: [x]\n    trigger: {stop_number: true}\n", "r1", "leg",
     "debtor"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE + "    patterns: [x]\n" + RULE + "    patterns: [y]\n", "r1", "id",
     "twice"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE + "    kind: must_say\n    patterns: [x]\n    window: {first: 3}\n",
     "r1", "window.first", "unknown"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE + "    kind: order\n    first: [x]\n", "r1", "then", "non-empty"),
    ("version: 1\nlanguage: zh\nrules:\n" + RULE.replace("threat", "rudeness") + "    patterns: [x]\n", "r1",
     "category", "not one of"),
    ("language: zh\nrules:\n" + RULE + "    patterns: [x]\n", None, "version", "version"),
])
def test_rule_file_errors_name_file_rule_and_field(tmp_path, body, rule_id, fld, words):
    path = write(tmp_path, body)
    with pytest.raises(RuleError) as err:
        load_ruleset(path)
    e = err.value
    assert (e.rule_id, e.field) == (rule_id, fld)
    assert str(path) in str(e) and words in str(e) and f"field {fld!r}" in str(e)
    if rule_id:
        assert f"rule {rule_id!r}" in str(e)


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "version: 1\nlanguage: zh\nrules:\n  - id: r1\n    patterns: [a, b\n")
    with pytest.raises(RuleError, match=r"not valid YAML at line \d+") as err:
        load_ruleset(path)
    assert str(path) in str(err.value)
    with pytest.raises(RuleError, match="cannot be read"):
        load_ruleset(tmp_path / "missing.yaml")


# ── Debtor-side triggers ─────────────────────────────────────────────────────────────────

def test_a_complaint_proposes_complaint_status_and_stopping_the_number(zh):
    t = zh_call("agent: 请问是张三本人吗", "debtor: 你们天天打，这是骚扰电话，我要投诉")
    found = find(t, zh)
    assert hits(found, leg="agent") == []
    props = propose(found, zh, now=dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI), transcript=t)
    assert {(p.proposal, p.case_status) for p in props} == {("case_status", "complaint"), ("stop_number", None)}
    assert all(p.evidence.rule_id == "zh.trigger.complaint" and p.evidence.leg == "debtor" for p in props)


@pytest.mark.parametrize("said, proposals", [
    ("这张卡不是我办的", {("case_status", "fraud_claim")}),
    ("我早就还了，金额不对", {("case_status", "dispute")}),
    ("他去世了", {("case_status", "deceased"), ("stop_number", None)}),
    ("你打错了，我不认识这个人", {("invalid_number", None)}),
    ("我是他老婆，有什么事", {("third_party", None)}),
    ("他住院了", {("case_status", "hardship")}),
])
def test_debtor_triggers_propose_the_matching_change(zh, said, proposals):
    t = zh_call(f"debtor: {said}")
    props = propose(find(t, zh), zh, now=dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI))
    assert {(p.proposal, p.case_status) for p in props} == proposals


def test_an_agreed_call_time_becomes_an_appointment_relative_to_when_it_was_said(zh):
    t = zh_call("agent: 请问是张三本人吗", "debtor: 我现在开车，你明天下午三点再打吧")
    call_start = dt.datetime(2026, 11, 25, 23, 59, 55, tzinfo=SHANGHAI)  # said 6 s in: after midnight
    (p,) = propose(find(t, zh), zh, now=call_start, transcript=t)
    assert p.proposal == "appointment"
    assert p.appointment_at == dt.datetime(2026, 11, 27, 15, 0, tzinfo=SHANGHAI)


def test_an_unreadable_time_is_proposed_without_one(zh):
    t = zh_call("debtor: 晚点再打吧")
    (p,) = propose(find(t, zh), zh, now=dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI), transcript=t)
    assert p.proposal == "appointment" and p.appointment_at is None and "time not understood" in p.describe()


NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)  # a Wednesday


@pytest.mark.parametrize("text, language, expected", [
    ("明天下午三点再打", "zh", dt.datetime(2026, 11, 26, 15, 0, tzinfo=SHANGHAI)),
    ("明天 下午 3 点半", "zh", dt.datetime(2026, 11, 26, 15, 30, tzinfo=SHANGHAI)),
    ("今晚八点", "zh", dt.datetime(2026, 11, 25, 20, 0, tzinfo=SHANGHAI)),
    ("下周一上午十点", "zh", dt.datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI)),
    ("周五两点", "zh", dt.datetime(2026, 11, 27, 14, 0, tzinfo=SHANGHAI)),
    ("半小时后", "zh", dt.datetime(2026, 11, 25, 10, 30, tzinfo=SHANGHAI)),
    ("两个小时以后", "zh", dt.datetime(2026, 11, 25, 12, 0, tzinfo=SHANGHAI)),
    ("九点再打", "zh", dt.datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI)),  # 09:00 has passed today
    ("下午5:30", "zh", dt.datetime(2026, 11, 25, 17, 30, tzinfo=SHANGHAI)),
    ("明天下午", "zh", dt.datetime(2026, 11, 26, 15, 0, tzinfo=SHANGHAI)),  # a part of the day: its default
    ("tomorrow at 3 pm", "en", dt.datetime(2026, 11, 26, 15, 0, tzinfo=SHANGHAI)),
    ("on Monday at 10:30 am", "en", dt.datetime(2026, 11, 30, 10, 30, tzinfo=SHANGHAI)),
    ("in two hours", "en", dt.datetime(2026, 11, 25, 12, 0, tzinfo=SHANGHAI)),
    ("call me later", "en", None),
])
def test_parse_when(text, language, expected):
    assert parse_when(text, NOW, language) == expected


def test_cn_number():
    assert [cn_number(s) for s in ("三", "十", "十二", "二十五", "两", "12", "三百")] == [3, 10, 12, 25, 2, 12, None]
    with pytest.raises(ValueError):
        parse_when("明天三点", dt.datetime(2026, 11, 25, 10, 0))


# ── Issue #18: rules that read the conversation ──────────────────────────────────────────

def test_debt_details_after_a_third_party_answers_are_a_disclosure(zh):
    t = zh_call("agent: 请问是张伟先生吗", "debtor: 我是他老婆，有什么事", "agent: 他信用卡欠款八千块，已经逾期了")
    f = hits(find(t, zh), "zh.disclosure.after_third_party")
    assert f and all(x.leg == "agent" and x.severity == "critical" and x.status == "confirmed" for x in f)
    assert f[0].because.startswith("after debtor 00:06.0") and "我是他老婆" in f[0].because
    # the same words to the debtor, or before the third party spoke, are not a disclosure
    assert not hits(find(zh_call("agent: 请问是张伟先生吗", "debtor: 是我", "agent: 您信用卡欠款八千块，已经逾期了"), zh),
                    "zh.disclosure.after_third_party")
    before = zh_call("agent: 您的信用卡欠款八千块", "debtor: 我是他老婆，他不在")
    assert not hits(find(before, zh), "zh.disclosure.after_third_party")
    # refusing to say is not disclosing; the person saying they are the debtor after all lifts it
    assert not hits(find(zh_call("debtor: 我是他同事", "agent: 不方便透露具体事情，请他回电"), zh),
                    "zh.disclosure.after_third_party")
    lifted = zh_call("debtor: 我是他老婆", "debtor: 开玩笑的，我就是本人", "agent: 您的欠款是八千元")
    assert not hits(find(lifted, zh), "zh.disclosure.after_third_party")


def test_wrong_party_then_debt_details_is_a_disclosure_with_both_legs_in_time_order(zh):
    # Vosk gives each leg on its own: the debtor's leg comes first in the list, later in time
    utterances = (Utterance("debtor", 5.0, 7.0, "你打错了，没有这个人"),
                  Utterance("agent", 0.0, 3.0, "您好，请问是何平先生吗"),
                  Utterance("agent", 8.0, 11.0, "他在我们这有笔贷款逾期了"))
    found = find(Transcript(utterances, "zh"), zh)
    assert all(5.0 <= f.offset_s < 7.0 for f in hits(found, "zh.trigger.wrong_party"))  # 打错了, 没有这个人
    assert {f.matched_text for f in hits(found, "zh.disclosure.after_third_party")} >= {"贷款", "逾期"}


def test_after_a_complaint_dismissing_it_or_pressing_is_harassment(zh, en):
    t = zh_call("debtor: 你们天天打，我要投诉你们", "agent: 随便你投诉，今天必须还钱")
    assert {f.matched_text for f in hits(find(t, zh), "zh.harassment.after_complaint")} == {"随便你投诉", "今天必须还钱"}
    calm = zh_call("debtor: 我要投诉你们", "agent: 抱歉打扰，我们记录您的意见，主管会联系您")
    assert not hits(find(calm, zh), "zh.harassment.after_complaint")
    without = zh_call("agent: 今天必须还钱")  # pressing without a complaint is not this rule
    assert not hits(find(without, zh), "zh.harassment.after_complaint")
    e = parse_plain("debtor: Stop calling me, I will complain.\nagent: Complain all you want.", language="en")
    assert hits(find(e, en), "en.harassment.after_complaint")


def test_after_asking_not_to_be_called_at_work(zh, en):
    t = zh_call("debtor: 我在上班，别往我单位打电话", "agent: 你不还，我就打你单位，找你领导")
    assert hits(find(t, zh), "zh.harassment.after_no_work_calls")
    kept = zh_call("debtor: 别打我公司电话", "agent: 好的，我们不会再打您单位电话")
    assert not hits(find(kept, zh), "zh.harassment.after_no_work_calls")
    unasked = zh_call("agent: 我们会打你单位核实")
    assert not hits(find(unasked, zh), "zh.harassment.after_no_work_calls")
    e = parse_plain("debtor: Please do not call me at work.\nagent: Then I will call your boss.", language="en")
    assert hits(find(e, en), "en.harassment.after_no_work_calls")


def test_english_disclosure_after_a_third_party(en):
    t = parse_plain("agent: May I speak with Robert?\ndebtor: He is not here, I am his wife.\n"
                    "agent: He owes twelve hundred dollars.", language="en")
    assert hits(find(t, en), "en.disclosure.after_third_party")
    polite = parse_plain("debtor: I am his wife.\nagent: I cannot share the reason, please ask him to call back.",
                         language="en")
    assert not hits(find(polite, en), "en.disclosure.after_third_party")


def test_after_conditions_are_checked_when_loaded():
    base = {"version": "t", "language": "zh"}

    def rule(**after):
        return {**base, "rules": [
            {"id": "x.tp", "category": "third_party", "severity": "low", "leg": "debtor",
             "trigger": {"third_party": True}, "patterns": ["我是他老婆"]},
            {"id": "x.disclose", "category": "disclosure", "severity": "critical", "leg": "agent",
             "patterns": ["欠款"], "after": after}]}
    rs = parse_ruleset(rule(rules=["x.tp"], within_seconds=10))
    assert rs.rule("x.disclose").after.leg == "debtor"  # the other party by default
    far = Transcript((Utterance("debtor", 0, 2, "我是他老婆"), Utterance("agent", 30, 32, "他的欠款")), "zh")
    near = Transcript((Utterance("debtor", 0, 2, "我是他老婆"), Utterance("agent", 5, 7, "他的欠款")), "zh")
    assert not hits(find(far, rs), "x.disclose") and hits(find(near, rs), "x.disclose")
    with pytest.raises(RuleError, match=r"rule 'x.disclose', field 'after.rules'.*no rule 'x.nope'"):
        parse_ruleset(rule(rules=["x.nope"]))
    with pytest.raises(RuleError, match=r"field 'after'.*says nothing"):
        parse_ruleset(rule(leg="debtor"))
    with pytest.raises(RuleError, match=r"field 'after.when'"):
        parse_ruleset(rule(rules=["x.tp"], when=1))


# ── Issue #18: the opening from the client's words ──────────────────────────────────────

CLIENT = {"institutions": ["深圳前海信达资产管理有限公司"], "trade_names": ["信达"], "clients": ["平安银行"],
          "staff_id": ["工号"], "recording_notice": ["录音", "本次通话将被录音"]}


@pytest.mark.parametrize("opening", [
    "agent: 您好，信达资产，工号3021，通话录音",                     # trade name + 资产, no 公司 or 中心
    "agent: 喂，这里是深圳前海信达资产管理有限公司，工号1187，本次通话将被录音",
    "agent: 您好，我是信达律所的小李，工号2290，本通话有录音",
    "agent: 您好，受平安银行委托，工号2290，本通话有录音",
    "agent: 您好，我们是信大资产，工号3021，通话录音",                 # a small model's 信大
    "agent: 您好，我是信达的催收中心，员工号码3021，通话全程录音",
])
def test_the_opening_is_said_in_the_clients_words(zh, opening):
    from recordings.findings import with_opening
    rs = with_opening(zh, CLIENT)
    found = find(parse_plain(opening + "\nagent: 请问是王先生吗"), rs)
    assert not [f.rule_id for f in found if f.category == "must_say"], [(f.rule_id, f.matched_text) for f in found]
    assert rs.version.startswith(zh.version + "+")  # findings say which words they were checked against


def test_the_opening_finds_what_is_missing(zh):
    from recordings.findings import with_opening
    rs = with_opening(zh, CLIENT)
    missing = {f.rule_id for f in find(parse_plain("agent: 您好，我姓王\nagent: 请问是李先生吗"), rs)
               if f.category == "must_say"}
    assert missing == {"zh.must.identity", "zh.must.staff_id", "zh.must.recording_notice"}
    # the shipped defaults: an institution of a common form is enough without the client's names
    ok = find(parse_plain("agent: 您好，我是信达资产的小王，工号3021，通话录音"), zh)
    assert not [f for f in ok if f.category == "must_say"]


def test_the_opening_block_is_checked_and_can_come_from_a_file(tmp_path, zh):
    with pytest.raises(RuleError, match=r"field 'opening.trade_name'"):
        parse_ruleset({"version": "t", "language": "zh", "opening": {"trade_name": ["x"]},
                       "rules": [{"id": "a", "category": "insult", "severity": "low", "leg": "agent",
                                  "patterns": ["x"]}]})
    from recordings.findings import rulesets_in_use
    path = tmp_path / "opening.yaml"
    path.write_text("zh:\n  trade_names: [信达]\n  staff_id: []\n", encoding="utf-8")
    rs = rulesets_in_use({"DUNNING_QA_OPENING": str(path)})["zh"]
    assert "zh.must.staff_id" not in {r.id for r in rs.rules}  # [] : not required
    assert not [f for f in find(parse_plain("agent: 信达资产，通话录音"), rs) if f.category == "must_say"]


# ── Issue #18: one normaliser ────────────────────────────────────────────────────────────

def test_the_normaliser_shared_with_search():
    from recordings import normalise as n
    assert normalise("電話號碼，還錢！") == "电话号码还钱"
    assert normalise("ＱＱ１２３") == "qq123"
    assert normalise("欠款一万二千元") == normalise("欠款12000元") == "欠款12000元"
    assert normalise("两千五百块") == "2500块"
    assert normalise("一三八零零一三八零零零") == "13800138000"  # digit by digit
    assert normalise("小心一点，周五两点，万一") == "小心一点周五两点万一"  # single numerals, weekdays, 万一 kept
    text, spans = n.normalise_map("欠一万二千元")
    assert text == "欠12000元" and spans[1] == spans[5] == (1, 5) and spans[6] == (5, 6)
    from recordings import search
    assert search.normalize("電話 一万二千") == " 电话 12000 "


def test_rules_and_findings_use_the_normaliser(zh):
    traditional = find(zh_call("agent: 再不還錢，馬上起訴你"), zh)
    assert hits(traditional, "zh.false_legal.lawsuit")[0].matched_text == "馬上起訴"
    rs = parse_ruleset({"version": "t", "language": "zh", "rules": [
        {"id": "a", "category": "unauthorised_promise", "severity": "low", "leg": "agent",
         "patterns": [{"literal": "减免一万二千"}]}]})
    [f] = find(zh_call("agent: 我给你减免12000"), rs)
    assert f.matched_text == "减免12000" and f.match_type == "literal"


# ── Issue #18: times in speech ───────────────────────────────────────────────────────────

@pytest.mark.parametrize("text, language, expected", [
    ("周五下午三点", "zh", (11, 27, 15, 0)),
    ("下周一上午十点", "zh", (11, 30, 10, 0)),
    ("下周三晚上七点", "zh", (12, 2, 19, 0)),
    ("晚上八点以后", "zh", (11, 25, 20, 0)),
    ("月底前", "zh", (11, 30, 10, 0)),                   # a day alone: DAY_DEFAULT
    ("后天上午再打给我", "zh", (11, 27, 10, 0)),          # a part of the day: its default
    ("明天傍晚", "zh", (11, 26, 18, 0)),
    ("明天晚上", "zh", (11, 26, 19, 30)),
    ("明早", "zh", (11, 26, 8, 30)),
    ("中午", "zh", (11, 25, 12, 30)),
    ("三点以前", "zh", (11, 25, 14, 0)),                  # BEFORE: an hour earlier
    ("十二点半", "zh", (11, 25, 12, 30)),
    ("十五号", "zh", (12, 15, 10, 0)),
    ("下周末", "zh", (12, 5, 10, 0)),
    ("一个半小时以后", "zh", (11, 25, 11, 30)),
    ("星期天下午", "zh", (11, 29, 15, 0)),
    ("tomorrow after six", "en", (11, 26, 18, 0)),
    ("next Monday morning", "en", (11, 30, 10, 0)),
    ("half past four", "en", (11, 25, 16, 30)),
    ("at three thirty", "en", (11, 25, 15, 30)),
    ("quarter to five tomorrow", "en", (11, 26, 16, 45)),
    ("seven o'clock tonight", "en", (11, 25, 19, 0)),
    ("around eight in the evening", "en", (11, 25, 20, 0)),
    ("Friday afternoon", "en", (11, 27, 15, 0)),
    ("the end of the month", "en", (11, 30, 10, 0)),
])
def test_times_in_speech(text, language, expected):
    month, day, hour, minute = expected
    assert parse_when(text, NOW, language) == dt.datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


@pytest.mark.parametrize("text, language", [("晚点再打吧", "zh"), ("等会儿", "zh"), ("凌晨", "zh"),
                                            ("call me later", "en"), ("some other time", "en")])
def test_times_that_cannot_be_read(text, language):
    assert parse_when(text, NOW, language) is None


def test_a_time_in_the_debtors_zone_is_read_from_the_whole_sentence(zh, en):
    t = parse_plain("debtor: I am driving, call me back tomorrow after six.", language="en")
    start = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # New York
    [p] = [p for p in propose(find(t, en), en, now=start, transcript=t) if p.proposal == "appointment"]
    assert p.appointment_at == dt.datetime(2026, 11, 26, 18, 0, tzinfo=start.tzinfo)
