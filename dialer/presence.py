"""Agents who work from the browser console: what they ask for, and what the engine says.

The console and the engine may run in different processes; they meet in the
``agent_presence`` table. The console writes what the agent asks for (``requested``: ready,
paused with a reason code, logged out); the engine turns that into the pool's events
(`console_events`, pure) and writes back the state its pool is in (`write_states`).

A console agent's wrap-up ends when the call's disposition is saved, not on a timer: the
agent cannot be ready again before it is. When the wrap-up limit passes without one, the
agent is paused (reason ``wrap_up_overdue``) until they save it and ask to be ready.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.models import AgentPresence, Attempt, Disposition, EngineStatus

from .agents import AgentEvent, AgentSeat, AgentState

S, E = AgentState, AgentEvent
REQUESTS = ("ready", "paused", "logged_out")
OVERDUE = "wrap_up_overdue"
#: How long a console agent's wrap-up may last without a disposition, unless the campaign
#: says otherwise (settings ``wrap_up_limit_seconds``); the console counts down the same.
DEFAULT_WRAP_UP_LIMIT_S = 180.0


def wrap_up_limit_s(campaign_settings: dict | None) -> float:
    return float((campaign_settings or {}).get("wrap_up_limit_seconds", DEFAULT_WRAP_UP_LIMIT_S))


@dataclass(frozen=True)
class Request:
    """One agent's row as the console left it, and whether a call of theirs awaits its disposition."""

    agent_id: int
    requested: str
    reason: str | None
    undisposed: bool


def console_events(state: AgentState, request: Request, wrap_up_for_s: float | None,
                   wrap_up_limit_s: float) -> list[tuple[AgentEvent, str]]:
    """The pool events that bring an agent in `state` towards what they asked for.
    `wrap_up_for_s`: how long the agent has been in wrap-up (None: not in wrap-up)."""
    wanted, reason, undisposed = request.requested, request.reason or "", request.undisposed
    if state is S.WRAP_UP:
        if undisposed:
            if wrap_up_for_s is not None and wrap_up_for_s >= wrap_up_limit_s:
                return [(E.PAUSE, OVERDUE)]
            return []
        if wanted == "ready":
            return [(E.READY, "disposition saved")]
        if wanted == "paused":
            return [(E.PAUSE, reason or "pause")]
        return [(E.PAUSE, "logging out"), (E.LOGOUT, "logged out in the console")]
    if state is S.LOGGED_OUT:
        if wanted == "ready" and not undisposed:
            return [(E.LOGIN, "logged in in the console")]
        if wanted in ("paused", "ready"):
            return [(E.LOGIN, "logged in in the console"), (E.PAUSE, reason or OVERDUE)]
        return []
    if state is S.READY:
        if wanted == "paused":
            return [(E.PAUSE, reason or "pause")]
        if wanted == "logged_out":
            return [(E.LOGOUT, "logged out in the console")]
        return []
    if state is S.PAUSED:
        if wanted == "ready" and not undisposed:
            return [(E.READY, "ready in the console")]
        if wanted == "logged_out":
            return [(E.LOGOUT, "logged out in the console")]
        return []
    # Reserved or on a call: a pause (or logout) waits until the call is over.
    if wanted in ("paused", "logged_out"):
        return [(E.PAUSE, reason or "pause")]
    return []


def mark_transferred(session: Session, call_id: str, answered_at: dt.datetime, bridged_at: dt.datetime) -> None:
    """The agent of call `call_id` handed the debtor over to a supervisor (attended transfer)
    and is in wrap-up while the call goes on: the attempt shows it was answered and bridged, so
    the wrap-up waits for its disposition (`read_requests`) as after any other call."""
    attempt = session.scalar(select(Attempt).where(Attempt.call_id == call_id))
    if attempt is not None and attempt.bridged_at is None:
        attempt.answered_at, attempt.bridged_at = attempt.answered_at or answered_at, bridged_at


def read_requests(session: Session, agent_ids: Iterable[int]) -> dict[int, Request]:
    """What each of these agents asked for in the console (agents with no row: nothing)."""
    ids = list(agent_ids)
    latest = dict(session.execute(
        select(Attempt.agent_id, func.max(Attempt.id)).where(
            Attempt.agent_id.in_(ids), Attempt.bridged_at.is_not(None)).group_by(Attempt.agent_id)).all())
    disposed = set(session.scalars(select(Disposition.attempt_id).where(
        Disposition.attempt_id.in_(list(latest.values())))))
    return {row.agent_id: Request(row.agent_id, row.requested, row.requested_reason,
                                  latest.get(row.agent_id) is not None and latest[row.agent_id] not in disposed)
            for row in session.scalars(select(AgentPresence).where(
                AgentPresence.agent_id.in_(ids), AgentPresence.requested_at.is_not(None)))}


def write_states(session: Session, seats: Iterable[AgentSeat], campaign_id: int,
                 lines: Mapping[str, tuple[str, dt.datetime]] | None = None) -> None:
    """The pool's state of each seat, for the console and the wallboard; with `lines`, each
    agent's persistent line by extension (its state and since when)."""
    for seat in seats:
        if seat.agent_id is None:
            continue
        row = session.get(AgentPresence, seat.agent_id)
        if row is None:
            row = AgentPresence(agent_id=seat.agent_id, requested="logged_out")
            session.add(row)
        since = seat.history[-1][0] if seat.history else None
        if (row.state, row.call_id, row.campaign_id) != (seat.state.value, seat.attempt, campaign_id) \
                or row.state_since != since:
            row.state, row.state_since, row.call_id, row.campaign_id = seat.state.value, since, seat.attempt, campaign_id
        line, line_since = (lines or {}).get(seat.extension, (None, None))
        if (row.line, row.line_since) != (line, line_since):
            row.line, row.line_since = line, line_since


def write_engine_status(session: Session, campaign_id: int, mode: str, seats: Iterable[AgentSeat], lines: int,
                        now: dt.datetime) -> None:
    """The engine's live figures: lines in flight per agent at work (not paused or logged out)."""
    seats = list(seats)
    working = sum(1 for s in seats if s.state not in (S.LOGGED_OUT, S.PAUSED))
    logged_in = sum(1 for s in seats if s.state is not S.LOGGED_OUT)
    level = Decimal(f"{lines / working:.2f}") if working else Decimal("0")
    row = session.get(EngineStatus, campaign_id)
    if row is None:
        session.add(EngineStatus(campaign_id=campaign_id, mode=mode, dial_level=level, lines=lines,
                                 agents=logged_in, updated_at=now))
    else:
        row.mode, row.dial_level, row.lines, row.agents, row.updated_at = mode, level, lines, logged_in, now


def request(session: Session, agent_id: int, requested: str, now: dt.datetime, reason: str | None = None) -> None:
    """What the console writes when the agent clicks ready, pause or log out."""
    if requested not in REQUESTS:
        raise ValueError(f"requested {requested!r}: one of {', '.join(REQUESTS)}")
    row = session.get(AgentPresence, agent_id)
    if row is None:
        row = AgentPresence(agent_id=agent_id, state="logged_out")
        session.add(row)
    row.requested, row.requested_reason, row.requested_at = requested, reason, now
