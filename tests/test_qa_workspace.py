"""The QA workspace's pure parts (agent_console/qa_workspace.py): the call as a conversation,
the review queue's filters, the precision plot."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from agent_console.qa_workspace import Flag, PrecisionBar, conversation, precision_plot, queue_filters
from recordings.transcript import Transcript, Utterance


def said(leg: str, start: float, end: float, text: str) -> Utterance:
    return Utterance(leg, start, end, text)


CALL = Transcript((said("debtor", 1.0, 2.0, "我现在没钱"), said("agent", 0.0, 4.0, "您好这里是示范银行"),
                   said("agent", 2.5, 4.1, "不还钱就起诉你家人"), said("debtor", 4.5, 5.0, "你再说一遍")))


def test_both_legs_in_time_order_and_a_finding_on_the_line_that_holds_its_words():
    flags = [Flag(7, "agent", 2.5, "起诉你家人", "critical"), Flag(8, "agent", 3.2, "起诉你", "high"),
             Flag(9, "agent", 0.0, "", "medium"),  # a must-say never said: its offset is the call's start
             Flag(10, "debtor", 9.0, "没钱", "low")]  # said nowhere near a debtor's line: on no line
    lines = conversation(CALL, flags)
    assert [(line.leg, line.start) for line in lines] == [("agent", 0.0), ("debtor", 1.0), ("agent", 2.5),
                                                          ("debtor", 4.5)]
    threat = lines[2]
    assert threat.finding_ids == (7, 8) and threat.severity == "critical"
    assert threat.pieces == (("不还钱就", False), ("起诉你家人", True))  # overlapping matches merged
    assert lines[0].finding_ids == (9,) and lines[0].pieces == (("您好这里是示范银行", False),)
    assert lines[1].finding_ids == () and lines[1].severity is None and lines[3].finding_ids == ()


def test_queue_filters_are_read_or_refused_naming_the_field():
    assert queue_filters({}).status == "review"
    f = queue_filters({"rule": "zh.threat.family", "severity": "high", "team": " team-west ", "status": "all",
                       "since": "2026-11-01", "until": "2026-11-30"})
    assert (f.rule, f.severity, f.team, f.status, f.since, f.until) == (
        "zh.threat.family", "high", "team-west", "all", dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert f.describe() == "rule=zh.threat.family severity=high team=team-west status=all since=2026-11-01 until=2026-11-30"
    for query, message in (({"since": "1 Nov"}, "filter 'since': '1 Nov' is not a date (YYYY-MM-DD)"),
                           ({"severity": "grave"}, "filter 'severity': 'grave' is not one of low, medium, high, critical"),
                           ({"status": "done"}, "filter 'status': 'done' is not one of review, confirmed, false_positive, all"),
                           ({"since": "2026-11-30", "until": "2026-11-01"}, "filter 'until': 2026-11-01 is before 'since' 2026-11-30")):
        with pytest.raises(ValueError) as refused:
            queue_filters(query)
        assert str(refused.value) == message


def test_the_plot_draws_a_bar_per_rule_with_verdicts_and_escapes_names():
    svg = precision_plot([PrecisionBar("zh.threat.family", 3, 1), PrecisionBar("<rule>", 0, 0),
                          PrecisionBar("en.false_legal", 0, 2)], no_verdicts="none yet")
    root = ET.fromstring(svg)  # well-formed: the rule's name is escaped
    bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert [(b.get("data-rule"), b.get("data-precision")) for b in bars] == [("zh.threat.family", "0.750"),
                                                                            ("en.false_legal", "0.000")]
    assert float(bars[0].get("width")) > float(bars[1].get("width")) == 0.0
    texts = [e.text for e in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "<rule>" in texts and "none yet" in texts and "75% (3/4)" in texts
