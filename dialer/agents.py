"""The agent pool: one state machine per agent, one transition function for all.

    logged out ──login──▶ ready ──reserve──▶ reserved ──bridge──▶ on call ──hangup──▶ wrap-up
         ▲                 ▲  │                 │                                     │
         └────logout───────┤  └──pause──▶ paused ◀───────────pause (after wrap-up)─────┤
                           └──────release (no answer, no call)──┘◀───wrap-up done──────┘

An agent is reserved for exactly one attempt before the engine dials for them, so a debtor
who answers always has the agent the dial was made for. A pause asked for while reserved or
on a call takes effect when the agent would otherwise become ready again.
"""
from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class AgentState(enum.Enum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class AgentEvent(enum.Enum):
    LOGIN = "login"
    READY = "ready"          # the agent says so (from pause), or wrap-up is done
    PAUSE = "pause"
    RESERVE = "reserve"      # the engine is about to dial for this agent
    RELEASE = "release"      # the dial ended without reaching the agent
    BRIDGE = "bridge"        # the debtor is connected to the agent
    HANGUP = "hangup"        # the bridged call ended
    LOGOUT = "logout"


S, E = AgentState, AgentEvent
_TRANSITIONS: dict[tuple[AgentState, AgentEvent], AgentState] = {
    (S.LOGGED_OUT, E.LOGIN): S.READY,
    (S.READY, E.RESERVE): S.RESERVED,
    (S.READY, E.PAUSE): S.PAUSED,
    (S.READY, E.LOGOUT): S.LOGGED_OUT,
    (S.RESERVED, E.BRIDGE): S.ON_CALL,
    (S.RESERVED, E.RELEASE): S.READY,
    (S.ON_CALL, E.HANGUP): S.WRAP_UP,
    (S.WRAP_UP, E.READY): S.READY,
    (S.WRAP_UP, E.PAUSE): S.PAUSED,
    (S.PAUSED, E.READY): S.READY,
    (S.PAUSED, E.LOGOUT): S.LOGGED_OUT,
}


class InvalidAgentTransition(ValueError):
    pass


def next_agent_state(state: AgentState, event: AgentEvent) -> AgentState:
    """The state after `event`; InvalidAgentTransition when it cannot happen in `state`."""
    try:
        return _TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidAgentTransition(f"an agent who is {state.value} cannot {event.value}") from None


@dataclass
class AgentSeat:
    """One agent at their softphone, as the engine sees them."""

    extension: str
    agent_id: int | None = None
    state: AgentState = AgentState.LOGGED_OUT
    attempt: str | None = None  # the call_id the agent is reserved for / on
    pause_requested: str | None = None  # reason, applied when the agent would become ready
    history: list[tuple[dt.datetime, AgentState, str]] = field(default_factory=list)
    wrap_up_since: dt.datetime | None = None


class AgentPool:
    """Every seat's state; all changes go through `apply` (one transition function)."""

    def __init__(self, seats: Iterable[AgentSeat] = ()) -> None:
        self.seats: dict[str, AgentSeat] = {seat.extension: seat for seat in seats}

    def add(self, extension: str, agent_id: int | None = None) -> AgentSeat:
        seat = self.seats.setdefault(extension, AgentSeat(extension, agent_id))
        return seat

    def apply(self, extension: str, event: AgentEvent, now: dt.datetime, *, attempt: str | None = None,
              reason: str = "") -> AgentState:
        seat = self.seats[extension]
        if event is E.PAUSE and seat.state in (S.RESERVED, S.ON_CALL):
            seat.pause_requested = reason or "pause"
            return seat.state
        new = next_agent_state(seat.state, event)
        if event in (E.READY, E.RELEASE) and new is S.READY and seat.pause_requested:
            new, reason = S.PAUSED, seat.pause_requested
            seat.pause_requested = None
        if event is E.RESERVE:
            seat.attempt = attempt
        elif new in (S.READY, S.PAUSED, S.LOGGED_OUT):
            seat.attempt = None
        seat.wrap_up_since = now if new is S.WRAP_UP else None
        log.info("agent %s %s -> %s (%s%s)", extension, seat.state.value, new.value, event.value,
                 f": {reason}" if reason else "")
        seat.state = new
        seat.history.append((now, new, reason or event.value))
        return new

    def ready(self) -> list[AgentSeat]:
        """Agents the engine may dial for now, longest-idle first."""
        waiting = [s for s in self.seats.values() if s.state is S.READY]
        return sorted(waiting, key=lambda s: (s.history[-1][0] if s.history else dt.datetime.min.replace(
            tzinfo=dt.timezone.utc), s.extension))

    def in_state(self, state: AgentState) -> list[AgentSeat]:
        return [s for s in self.seats.values() if s.state is state]

    def wrap_ups_due(self, now: dt.datetime, limit_s: float) -> list[AgentSeat]:
        """Agents whose wrap-up has lasted `limit_s` (the engine makes them ready)."""
        return [s for s in self.in_state(S.WRAP_UP)
                if s.wrap_up_since is not None and (now - s.wrap_up_since).total_seconds() >= limit_s]
