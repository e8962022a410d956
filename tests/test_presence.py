"""Console agents and the engine: requests become pool events; a wrap-up ends with the disposition."""
from __future__ import annotations

import datetime as dt

import pytest

from campaigns import admin, queue
from campaigns.db import sessions, transaction
from campaigns.importing import import_batch
from campaigns.models import AgentPresence, EngineStatus
from dialer import presence
from dialer.agents import AgentEvent, AgentPool, AgentState

S, E = AgentState, AgentEvent
NOW = dt.datetime(2026, 11, 25, 1, 30, tzinfo=dt.timezone.utc)


def req(requested: str, undisposed: bool = False, reason: str | None = None) -> presence.Request:
    return presence.Request(1, requested, reason, undisposed)


@pytest.mark.parametrize("state, request_, wrap_for, expected", [
    (S.LOGGED_OUT, req("ready"), None, [E.LOGIN]),
    (S.LOGGED_OUT, req("paused", reason="training"), None, [E.LOGIN, E.PAUSE]),
    (S.LOGGED_OUT, req("ready", undisposed=True), None, [E.LOGIN, E.PAUSE]),
    (S.READY, req("paused", reason="break"), None, [E.PAUSE]),
    (S.READY, req("logged_out"), None, [E.LOGOUT]),
    (S.PAUSED, req("ready"), None, [E.READY]),
    (S.PAUSED, req("ready", undisposed=True), None, []),
    (S.RESERVED, req("paused"), None, [E.PAUSE]),
    (S.ON_CALL, req("ready"), None, []),
    (S.WRAP_UP, req("ready", undisposed=True), 30.0, []),
    (S.WRAP_UP, req("ready", undisposed=True), 120.0, [E.PAUSE]),
    (S.WRAP_UP, req("ready"), 5.0, [E.READY]),
    (S.WRAP_UP, req("paused", reason="lunch"), 5.0, [E.PAUSE]),
    (S.WRAP_UP, req("logged_out"), 5.0, [E.PAUSE, E.LOGOUT]),
])
def test_console_requests_become_pool_events(state, request_, wrap_for, expected):
    events = presence.console_events(state, request_, wrap_for, 120.0)
    assert [event for event, _ in events] == expected
    # Every sequence is one the pool's state machine accepts.
    pool = AgentPool()
    seat = pool.add("6001")
    seat.state = state
    for event, reason in events:
        pool.apply("6001", event, NOW, reason=reason)


def test_a_wrap_up_past_its_limit_without_a_disposition_pauses_the_agent_with_a_reason():
    (event, reason), = presence.console_events(S.WRAP_UP, req("ready", undisposed=True), 121.0, 120.0)
    assert (event, reason) == (E.PAUSE, presence.OVERDUE)


def test_requests_states_and_live_figures_go_through_the_database(database, tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("案件编号,姓名,欠款金额,逾期天数,手机\nA,甲,900,10,13800138000\n", encoding="utf-8")
    factory = sessions(database)
    assert import_batch(factory, path, "P", now=NOW).ok
    with transaction(factory) as s:
        agent = admin.add_agent(s, "6001", "agent", NOW)
        other = admin.add_agent(s, "6002", "agent", NOW)
        campaign, _ = admin.create_campaign(s, "p", "P", NOW)
        queue.change_campaign(s, "p", "start", NOW)
        presence.request(s, agent.id, "ready", NOW)
    with pytest.raises(ValueError, match="one of ready, paused, logged_out"):
        with transaction(factory) as s:
            presence.request(s, agent.id, "lunch", NOW)
    with transaction(factory) as s:
        requests = presence.read_requests(s, [agent.id, other.id])
    assert set(requests) == {agent.id}, "an agent who never used the console asks for nothing"
    assert requests[agent.id] == presence.Request(agent.id, "ready", None, False)

    # The engine dials for the agent; the call is bridged; no disposition yet.
    with transaction(factory) as s:
        planned = queue.plan_next(s, queue.campaign_named(s, "p"), s.get(type(agent), agent.id), "c1", NOW)
        queue.finish(s, planned.attempt_id, "answered", answered_at=NOW, bridged_at=NOW,
                     ended_at=NOW + dt.timedelta(minutes=1), hangup_cause=16)
    with transaction(factory) as s:
        assert presence.read_requests(s, [agent.id])[agent.id].undisposed
    with transaction(factory) as s:
        admin.record_disposition(s, "c1", "refused", NOW, note="says no")
    with transaction(factory) as s:
        assert not presence.read_requests(s, [agent.id])[agent.id].undisposed

    pool = AgentPool()
    seat = pool.add("6001", agent.id)
    pool.apply("6001", E.LOGIN, NOW)
    pool.apply("6001", E.RESERVE, NOW, attempt="c2")
    with transaction(factory) as s:
        presence.write_states(s, pool.seats.values(), campaign.id)
        presence.write_engine_status(s, campaign.id, "progressive", pool.seats.values(), 1, NOW)
    with transaction(factory) as s:
        row = s.get(AgentPresence, agent.id)
        assert (row.state, row.call_id, row.campaign_id, row.requested) == ("reserved", "c2", campaign.id, "ready")
        status = s.get(EngineStatus, campaign.id)
        assert (float(status.dial_level), status.lines, status.agents) == (1.0, 1, 1)
    assert seat.state is S.RESERVED


def test_the_wrap_up_limit_is_the_campaigns_else_one_default_for_engine_and_console():
    from agent_console.settings import Settings
    assert presence.wrap_up_limit_s({"wrap_up_limit_seconds": 45}) == 45.0
    assert presence.wrap_up_limit_s({}) == presence.wrap_up_limit_s(None) == presence.DEFAULT_WRAP_UP_LIMIT_S
    assert Settings().wrap_up_limit.total_seconds() == presence.DEFAULT_WRAP_UP_LIMIT_S
