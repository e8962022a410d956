"""The agents' persistent lines: each agent's phone called once, kept up for the session.

At log-in the engine calls the agent's phone (Originate PJSIP/<agent> into the
``dunning-agent-line`` context, with our own uniqueid, the line id). Once the agent answers,
the line waits in the agent's own holding bridge; each answered debtor is bridged to it by
the dialplan (``Bridge(<line id>)``) and the line goes back to waiting when the debtor leaves:
no ring per call. The agent hanging up the phone ends the line (``DOWN``), which the engine
takes as the agent pausing.

A line is its own small state machine, fed by the same typed events as the call registry:

    calling ──answered──▶ up ──hung up──▶ down
       └───────not answered / refused──────▲
"""
from __future__ import annotations

import enum
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import actions
from .connection import AmiConnection
from .errors import AmiActionError, AmiError
from .events import STATE_UP, CoreShowChannel, Event, Hangup, Newchannel, Newstate, OriginateResponse

log = logging.getLogger(__name__)

LINE_CONTEXT = "dunning-agent-line"


class LineState(enum.Enum):
    CALLING = "calling"  # the phone rings (log-in)
    UP = "up"            # answered: waiting in the agent's holding bridge, or with a debtor
    DOWN = "down"        # not answered, refused, or hung up


@dataclass
class Line:
    extension: str
    line_id: str
    state: LineState = LineState.CALLING
    channel: str = ""
    called_at: float = 0.0
    up_at: float | None = None
    down_at: float | None = None
    #: Why the line is down: Asterisk's Q.850 cause text, or what the Originate said.
    why_down: str = ""
    #: Down because Asterisk went away (restarted, killed, the link cut while it ended the
    #: line), not by the agent: the agent is not paused, the phone is called again.
    lost: bool = False
    history: list[tuple[LineState, float]] = field(default_factory=list)


def line_extension(uniqueid: str) -> str | None:
    """The agent's extension in a line's id (``line-<stamp>-<extension>-<n>``), else None."""
    parts = uniqueid.split("-")
    return parts[2] if len(parts) == 4 and parts[0] == "line" else None


def line_request(extension: str, line_id: str, ring_s: float) -> actions.OriginateRequest:
    """The Originate that calls an agent's phone for a persistent line (pure)."""
    return actions.OriginateRequest(
        call_id=line_id, channel=f"PJSIP/{extension}", context=LINE_CONTEXT, exten="s",
        timeout_s=ring_s, caller_id="Dunning line <4000>",
        variables={"DUNNING_LINE_AGENT": extension})


class Lines:
    """The persistent lines of one engine, over one AMI connection."""

    def __init__(self, connection: AmiConnection) -> None:
        self._conn = connection
        self._lines: dict[str, Line] = {}
        self._by_id: dict[str, Line] = {}
        self._listeners: list[Callable[[Line], None]] = []
        self._unsubscribe = connection.subscribe(self._on_event)
        self._stamp = time.strftime("%y%m%d%H%M%S") + secrets.token_hex(2)

    @property
    def lines(self) -> Mapping[str, Line]:
        return MappingProxyType(self._lines)

    def close(self) -> None:
        self._unsubscribe()

    def add_listener(self, listener: Callable[[Line], None]) -> None:
        """Call `listener(line)` after every change of any line's state."""
        self._listeners.append(listener)

    def up(self, extension: str) -> Line | None:
        """The agent's line if it is up (a debtor can be bridged to it), else None."""
        line = self._lines.get(extension)
        return line if line is not None and line.state is LineState.UP else None

    async def call(self, extension: str, ring_s: float = 30.0) -> Line:
        """Call the agent's phone for a line (once; a line already calling or up is kept)."""
        old = self._lines.get(extension)
        if old is not None and old.state is not LineState.DOWN:
            return old
        line_id = f"line-{self._stamp}-{extension}-{len(self._by_id) + 1}"
        line = Line(extension, line_id, called_at=self._conn.now())
        line.history.append((LineState.CALLING, line.called_at))
        self._lines[extension] = line
        self._by_id[line_id] = line
        try:
            await self._conn.send(actions.originate(line_request(extension, line_id, ring_s)))
        except AmiError as exc:
            self._move(line, LineState.DOWN, f"Originate: {exc}")
        return line

    async def hang_up(self, extension: str) -> None:
        """End the agent's line (log-out); its Hangup event marks it down."""
        line = self._lines.get(extension)
        if line is None or line.state is LineState.DOWN:
            return
        try:
            await self._conn.send(actions.hangup(line.channel or line.line_id))
        except AmiActionError as exc:
            log.info("line %s: hangup: %s", line.line_id, exc.message)
            self._move(line, LineState.DOWN, "gone")

    async def audit(self, extensions: Iterable[str] = ()) -> tuple[int, list[Line]]:
        """After a login (Asterisk restarted, the link was cut and events were missed, or this
        engine took over from one that died): a line Asterisk no longer has is down and lost;
        a line of one of `extensions` that Asterisk has and this engine does not know (left up
        by the engine before it) is adopted if it is answered, hung up if it still rings (the
        phone is then called anew). Returns how many were lost, and the lines adopted."""
        result = await self._conn.send(actions.core_show_channels())
        listed = {e.uniqueid: e for e in result.events if isinstance(e, CoreShowChannel)}
        live = [line for line in self._lines.values() if line.state is not LineState.DOWN]
        gone = [line for line in live if line.line_id not in listed]
        for line in gone:
            line.lost = True
            self._move(line, LineState.DOWN, "no longer in Asterisk's channel list", result.received_at)
        wanted = set(extensions) - {line.extension for line in self._lines.values() if line.state is not LineState.DOWN}
        adopted = []
        for uniqueid, channel in listed.items():
            extension = line_extension(uniqueid)
            if extension not in wanted or uniqueid in self._by_id:
                continue
            wanted.discard(extension)
            if channel.channel_state != STATE_UP:
                await self._conn.send(actions.hangup(channel.channel))
                continue
            line = Line(extension, uniqueid, LineState.UP, channel.channel, called_at=result.received_at,
                        up_at=result.received_at, history=[(LineState.UP, result.received_at)])
            self._lines[extension] = line
            self._by_id[uniqueid] = line
            adopted.append(line)
            log.info("agent line %s (%s) adopted: up in Asterisk", uniqueid, extension)
        return len(gone), adopted

    def _on_event(self, event: Event) -> None:
        if isinstance(event, OriginateResponse):
            line = self._by_id.get(event.action_id.removeprefix("originate-"))
            if line is not None and event.reason != 4:
                self._move(line, LineState.DOWN, f"not answered (Originate reason {event.reason})",
                           event.received_at)
            return
        uniqueid = getattr(event, "uniqueid", None)
        line = self._by_id.get(uniqueid) if uniqueid else None
        if line is None:
            return
        if isinstance(event, (Newchannel, Newstate)):
            line.channel = event.channel
            if isinstance(event, Newstate) and event.channel_state == STATE_UP:
                self._move(line, LineState.UP, "answered", event.received_at)
        elif isinstance(event, Hangup):
            self._move(line, LineState.DOWN, event.cause_txt or f"cause {event.cause}", event.received_at)

    def _move(self, line: Line, state: LineState, why: str, at: float | None = None) -> None:
        if line.state is state or line.state is LineState.DOWN:
            return
        when = self._conn.now() if at is None else at
        log.info("agent line %s (%s) %s -> %s (%s)", line.line_id, line.extension, line.state.value,
                 state.value, why)
        line.state = state
        line.history.append((state, when))
        if state is LineState.UP:
            line.up_at = when
        else:
            line.down_at, line.why_down = when, why
            self._by_id.pop(line.line_id, None)
        for listener in list(self._listeners):
            try:
                listener(line)
            except Exception:
                log.exception("line listener %r failed on %s", listener, line.line_id)
