"""The agent state machine and pool (pure: time is an argument)."""
from __future__ import annotations

import datetime as dt

import pytest

from dialer.agents import AgentEvent as E
from dialer.agents import AgentPool
from dialer.agents import AgentState as S
from dialer.agents import InvalidAgentTransition, next_agent_state

T0 = dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_a_call_cycle():
    pool = AgentPool()
    pool.add("6001")
    for event, state in ((E.LOGIN, S.READY), (E.RESERVE, S.RESERVED), (E.BRIDGE, S.ON_CALL),
                         (E.HANGUP, S.WRAP_UP), (E.READY, S.READY)):
        assert pool.apply("6001", event, at(1), attempt="c1") is state
    assert [h[1] for h in pool.seats["6001"].history] == [S.READY, S.RESERVED, S.ON_CALL, S.WRAP_UP, S.READY]
    assert pool.seats["6001"].attempt is None


@pytest.mark.parametrize("state, event", [
    (S.LOGGED_OUT, E.RESERVE), (S.READY, E.BRIDGE), (S.RESERVED, E.RESERVE), (S.ON_CALL, E.RELEASE),
    (S.ON_CALL, E.LOGOUT), (S.WRAP_UP, E.RESERVE), (S.PAUSED, E.RESERVE),
])
def test_impossible_transitions_are_refused(state, event):
    with pytest.raises(InvalidAgentTransition, match=f"{state.value} cannot {event.value}"):
        next_agent_state(state, event)


def test_a_pause_asked_for_on_a_call_waits_for_the_end_of_wrap_up():
    pool = AgentPool()
    pool.add("6001")
    pool.apply("6001", E.LOGIN, at(0))
    pool.apply("6001", E.RESERVE, at(1), attempt="c1")
    pool.apply("6001", E.BRIDGE, at(2))
    assert pool.apply("6001", E.PAUSE, at(3), reason="lunch") is S.ON_CALL
    pool.apply("6001", E.HANGUP, at(60))
    assert pool.apply("6001", E.READY, at(70)) is S.PAUSED
    assert pool.seats["6001"].history[-1][2] == "lunch"


def test_a_pause_asked_for_while_reserved_applies_when_the_dial_is_released():
    pool = AgentPool()
    pool.add("6001")
    pool.apply("6001", E.LOGIN, at(0))
    pool.apply("6001", E.RESERVE, at(1), attempt="c1")
    pool.apply("6001", E.PAUSE, at(2), reason="break")
    assert pool.apply("6001", E.RELEASE, at(20)) is S.PAUSED
    assert pool.ready() == []


def test_ready_agents_longest_idle_first_and_wrap_ups_due():
    pool = AgentPool()
    for ext, t in (("6002", 5), ("6001", 9), ("6003", 1)):
        pool.add(ext)
        pool.apply(ext, E.LOGIN, at(t))
    assert [s.extension for s in pool.ready()] == ["6003", "6002", "6001"]
    pool.apply("6003", E.RESERVE, at(10), attempt="c")
    pool.apply("6003", E.BRIDGE, at(12))
    pool.apply("6003", E.HANGUP, at(40))
    assert pool.wrap_ups_due(at(49.9), 10) == []
    assert [s.extension for s in pool.wrap_ups_due(at(50), 10)] == ["6003"]


def test_a_ready_agent_logs_out_and_a_paused_agent_goes_ready():
    pool = AgentPool()
    pool.add("6001")
    for event, state in ((E.LOGIN, S.READY), (E.LOGOUT, S.LOGGED_OUT), (E.LOGIN, S.READY),
                         (E.PAUSE, S.PAUSED), (E.READY, S.READY)):
        assert pool.apply("6001", event, at(1), reason="said so") is state
    assert [h[1] for h in pool.seats["6001"].history] == [S.READY, S.LOGGED_OUT, S.READY, S.PAUSED, S.READY]
    assert [s.extension for s in pool.ready()] == ["6001"], "ready again: the engine may dial for them"
    assert next_agent_state(S.READY, E.LOGOUT) is S.LOGGED_OUT
    assert next_agent_state(S.PAUSED, E.READY) is S.READY
