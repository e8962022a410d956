"""The daily report's figures from crafted attempts, on SQLite and PostgreSQL: dials,
connects and effective calls per agent against the targets, connect rate per campaign."""
from __future__ import annotations

import datetime as dt

import pytest

from campaigns.db import transaction
from campaigns.models import Recording
from campaigns.report import AgentDay, daily, render
from helpers import SHANGHAI_0930, at, attempts

UTC = dt.timezone.utc
DAY = dt.date(2026, 11, 25)


@pytest.fixture
def factory(report_campaign):
    """conftest.report_campaign: campaign q's session factory."""
    return report_campaign


def test_effective_calls_connects_and_the_connect_rate(factory):
    ids = attempts(
        factory,
        ("6001", "busy", at(0, 10), None, None),             # just after local midnight: today
        ("6001", "no_answer", at(9, 0), None, None),
        ("6001", "answered", at(9, 30), 3, 10.0),            # a connect, under the threshold
        ("6001", "answered", at(12, 30), 4, 40.0),           # a connect, effective
        ("6002", "answered", at(10, 0), 3, 30.0),            # exactly the threshold: effective
        ("6002", "debtor_hung_up", at(10, 30), 5, None),     # answered, never bridged: no connect
        ("6002", "no_answer", at(17, 30), None, None),
        ("6002", "congestion", at(20, 59), None, None),
        ("6001", "answered", at(23, 59, day=24), 3, 600.0),  # yesterday in Shanghai (today in UTC)
        ("6001", "cancelled", None, None, None),             # never dialled
    )
    with transaction(factory) as s:
        for attempt_id in ids[2:4]:
            s.add(Recording(attempt_id=attempt_id, recorded_at=SHANGHAI_0930, seconds=10))

    with factory() as s:
        report = daily(s, DAY, "Asia/Shanghai", effective_s=30.0)
        stricter = daily(s, DAY, "Asia/Shanghai", effective_s=31.0)
        morning = daily(s, DAY, "Asia/Shanghai", effective_s=30.0, until=at(10, 0))
    assert report.agents == (
        AgentDay("6001", "agent 6001", dials=4, connects=2, effective=1, talk_s=50.0),
        AgentDay("6002", "agent 6002", dials=4, connects=1, effective=1, talk_s=30.0),
        AgentDay("6003", "agent 6003", dials=0, connects=0, effective=0, talk_s=0.0),
    ), "an inactive agent with no dials that day is left out"
    assert [(a.dials_pct, a.effective_pct) for a in report.agents] == [(2.0, 2.0), (2.0, 2.0), (0.0, 0.0)]
    assert [a.effective for a in stricter.agents] == [1, 0, 0], "a 30 s talk is not effective over 31 s"

    (q,) = report.campaigns
    assert (q.name, q.dials, q.answered, q.bridged, q.recorded) == ("q", 8, 4, 3, 2)
    assert q.connect_rate == 0.5 and q.recording_coverage == 0.5
    assert q.outcomes == {"busy": 1, "no_answer": 2, "answered": 3, "debtor_hung_up": 1, "congestion": 1}
    assert report.coverage == (0, 4), "no vault file is verified"
    text = render(report)
    assert "q         8      4         50 %          3        50 %" in text
    assert "6001   agent 6001  4      2 %        2         1          2 %        0.8 min" in text

    assert [a.dials for a in morning.agents] == [3, 1, 0], "until: the dials up to that moment"
    assert morning.campaigns[0].connect_rate == 2 / 4
