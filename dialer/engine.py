"""The engine loop: progressive dialing, one line per ready agent.

For each ready agent: reserve the agent, plan the next attempt (the row is written before
anything is sent), check the calling window again with a fresh clock, originate, follow
the call, and write what happened. Database work runs on one worker thread, so the event
loop never blocks on SQLite and writes never interleave. Only this module reads the
clock (`clock.now()`); everything it calls takes `now`.

Stopping (SIGTERM, or `stop` set): no new dial is started; calls Asterisk no longer has are
settled from its record at once; calls in progress run to their end and are written, for at
most `EngineSettings.stop_grace_s`; a call still up in Asterisk after that keeps its attempt
unfinished (its recording goes on) and the next run follows or settles it; then `run`
returns.

Asterisk's record is the truth after a fault (dialer/cel.py): a call whose events the engine
may have missed (taken over after a crash, resumed after a reconnect, ended without its
hang-up seen) is settled with the answer, bridge and end times and the cause Asterisk wrote.
Every minute, and after every login, the calls in flight are compared with Asterisk's
channels (a self-audit): a call Asterisk no longer has is settled and its agent freed.

No dial without a place for its recording: before dialling, the recordings directory and
Asterisk's spool must be writable and have free space (`recordings_space`); when they do not,
the engine stops dialling, raises an alert, and resumes by itself when they do.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import os
import secrets
import time
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ami_bridge import AmiNotConnected, Call, CallOutcome, Calls, CallState
from ami_bridge.lines import Line, Lines, LineState
from campaigns import hopper, queue
from campaigns.amd import MACHINE, AmdResult, AmdSetting
from campaigns.models import Agent, CampaignStatus
from campaigns.policy import Rules, in_window
from recordings import after_call, backlog, vault
from recordings.codecs import DEFAULT_CODEC
from recordings.errors import VaultError
from recordings.store import RecordingConflict, RecordingMissing, store_call

from . import presence
from .cel import CelCall, CelLog
from .agents import AgentEvent, AgentPool, AgentSeat, AgentState
from .outbound import dial_request
from .pacing import (
    Abandoned,
    AgentPhase,
    AgentView,
    DialEnded,
    LineView,
    Pacing,
    Snapshot,
    TalkEnded,
    WrapUpEnded,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long past its ring timeout an unanswered call may go without an outcome before the
#: engine gives up on it. The registry settles an Originate that Asterisk never acted on by
#: the ring timeout plus a few seconds; this backstop is for whatever else could leave a
#: call unsettled, so that its reserved agent is never held for good.
UNSETTLED_GRACE_S = 60.0
#: How often the engine gives the hopper its background work, and how many cases a time.
REFRESH_EVERY_S = 2.0
REFRESH_ASKS = 256
#: How often the calls in flight are compared with Asterisk's channel list (and after every
#: login); a call Asterisk no longer has is settled from its record.
AUDIT_EVERY_S = 60.0
#: How long a call the engine did not see end waits for Asterisk's record to say it ended.
CEL_WAIT_S = 3.0
#: How often the room for recordings is looked at before a dial.
SPACE_EVERY_S = 0.5
#: How long the engine waits for Asterisk to say whether it is going down, after an answered call.
SHUTDOWN_WAIT_S = 2.0
#: The note of a call the debtor answered in the instant Asterisk gave the dial up.
DROPPED_AT_ANSWER = ("dropped as it was answered: Asterisk gave the dial up (ring time over, a freeze or a "
                     "shutdown) as the debtor picked up; silence, no agent, nothing recorded")
#: How often an agent's phone is called again after Asterisk took the line away (it may take
#: the phone a while to register with the Asterisk that came back), and for how long before
#: the agent is paused as if they had hung up.
LINE_RETRY_S = 5.0
LINE_LOST_GIVE_UP_S = 300.0
ALERT_RECORDINGS = "recordings_blocked"
AGENT_LINES = ("persistent", "auto_answer", "ringing")
#: The reason of the pause that follows an agent's line going down.
LINE_DOWN = "line down"
#: Why an agent's call ended while the debtor is still on the line (attended transfer).
TRANSFERRED = "transferred to a supervisor"
WHISPERS = ("none", "tone")


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


@dataclass
class ShiftedClock:
    """The real clock moved by `offset`: tests and demos put the engine at another time of
    day while calls still take their real time."""

    offset: dt.timedelta = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self.offset


@dataclass
class SetClock:
    """A clock that reads what it was set to, moved by hand: tests put the engine at
    20:59:59 and then at 21:00:00."""

    at: dt.datetime

    def now(self) -> dt.datetime:
        return self.at


#: Seconds of an unreachable Asterisk after which its calls are settled as lost.
SERVER_LOST_S = 60.0
SERVER_LOST = "Asterisk server lost"


@dataclass(frozen=True)
class EngineSettings:
    ring_timeout_s: float = 25.0
    wrap_up_s: float = 10.0
    tick_s: float = 0.5
    #: The campaign's rules; None: read from the campaign (its preset and overrides).
    rules: Rules | None = None
    #: "progressive" (one line per ready agent, the agent reserved before the dial) or
    #: "predictive" (calls launched ahead of agents becoming free, as `pacing` decides).
    mode: str = "progressive"
    #: How long an answered debtor may wait for a free agent before the call is abandoned.
    agent_grace_s: float = 2.0
    #: The vault's storage codec (see recordings/codecs.py and the README's table).
    codec: str = DEFAULT_CODEC
    #: Agents work from the browser console (dialer/presence.py): they log in, go ready and
    #: pause there, and a wrap-up ends when the disposition is saved, or, after
    #: `wrap_up_limit_s` without one, pauses the agent.
    console: bool = False
    wrap_up_limit_s: float = presence.DEFAULT_WRAP_UP_LIMIT_S
    #: On stop, how long calls in progress may take to end before the run returns anyway
    #: (those still up in Asterisk are followed or settled by the next run).
    stop_grace_s: float = 45.0
    #: The least free space (bytes) the recordings directory and the spool must have to dial.
    min_free_bytes: int = 200 * 1024 * 1024
    #: How often the calls in flight are compared with Asterisk's channels.
    audit_every_s: float = AUDIT_EVERY_S
    #: The Asterisk server this engine drives, by name (`dunning run --server`), written on
    #: each attempt; after a crash, the engine takes up that server's calls only.
    server: str | None = None
    #: How long Asterisk may stay unreachable before the engine counts it lost: the calls it
    #: carried are then settled (cut when the link went), its agents shown away, and a run
    #: `--until-idle` may end. Longer than a freeze it should ride out.
    server_lost_s: float = SERVER_LOST_S
    #: How a debtor reaches the agent's phone (README, "The agent's line"): "persistent" (the
    #: phone is called once at log-in and stays connected; each debtor is bridged in with no
    #: ring), "auto_answer" (a call per debtor, with Call-Info/Alert-Info asking the phone to
    #: answer by itself) or "ringing" (a call per debtor that rings until the agent answers).
    agent_line: str = "ringing"
    #: What the agent hears just before the debtor is connected on a persistent line: "none"
    #: or "tone" (a beep).
    whisper: str = "none"
    #: How long the log-in call of a persistent line rings before the agent is paused.
    line_ring_s: float = 30.0
    #: Answering-machine detection (campaigns/amd.py): "off", "hangup" or "message" (the
    #: campaign's message, the sound `amd_message`, is left after the greeting's beep).
    amd: str = "off"
    amd_message: str = ""

    def __post_init__(self) -> None:
        AmdSetting(self.amd)
        if self.agent_line not in AGENT_LINES:
            raise ValueError(f"agent_line {self.agent_line!r}: one of {', '.join(AGENT_LINES)}")
        if self.whisper not in WHISPERS:
            raise ValueError(f"whisper {self.whisper!r}: one of {', '.join(WHISPERS)}")


@dataclass
class RunSummary:
    dials: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    recordings: int = 0
    problems: list[str] = field(default_factory=list)


Echo = Callable[[str], None]


class Engine:
    def __init__(self, factory: sessionmaker[Session], calls: Calls, pool: AgentPool, campaign: str, *,
                 spool: Path, recordings_root: Path, settings: EngineSettings = EngineSettings(),
                 clock: Clock | None = None, echo: Echo = lambda _: None, pacing: Pacing | None = None,
                 cel: CelLog | Path | None = None) -> None:
        self.factory = factory
        self.calls = calls
        self.pool = pool
        self.campaign = campaign
        self.spool = spool
        self.recordings_root = recordings_root
        self.settings = settings
        self.clock = clock or SystemClock()
        self.echo = echo
        self.summary = RunSummary()
        self.pacing = pacing
        self.rules = settings.rules
        if settings.mode == "predictive" and pacing is None:
            raise ValueError("predictive mode needs a pacing policy")
        self._waiting: dict[str, Call] = {}  # answered, no agent yet (predictive)
        self._assigning = asyncio.Lock()
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="dunning-db")
        self._tasks: set[asyncio.Task[None]] = set()
        self._serial = 0
        self._refreshed_at: dt.datetime | None = None
        #: Asterisk's own record of each call (its CEL log), for what the engine did not see.
        self.cel = CelLog(cel) if isinstance(cel, Path) else cel
        self._audited_at: float | None = None
        self._audit_task: asyncio.Task[None] | None = None
        self._logins_seen = 0
        self._space_checked_at: float | None = None
        self._space_problem: str | None = None
        self._space_alert: int | None = None
        self._down_since: float | None = None  # when the AMI link was last seen gone
        self._server_lost = False
        # Call ids must never repeat, across runs and engines: time plus randomness.
        self._stamp = time.strftime("%y%m%d%H%M%S") + secrets.token_hex(2)
        calls.add_listener(self._on_call_state)
        #: The agents' persistent lines (agent_line "persistent"), called at log-in.
        self.lines: Lines | None = None
        #: Agents whose line just went down, while the engine finds out whether they hung up.
        self._lines_deciding: set[str] = set()
        #: Agents whose line Asterisk took away, and when (monotonic) it may be called again:
        #: until it is up again, a call to the phone that fails does not pause the agent.
        #: (when it may be called again, when the engine gives up and pauses the agent).
        self._lines_lost: dict[str, tuple[float, float]] = {}
        #: Each line's last change as written for the console, and its wall-clock moment.
        self._line_seen: dict[str, tuple[tuple, dt.datetime]] = {}
        #: The AMI login after which the lines were last compared with Asterisk's channels.
        self._lines_audited_login = 0
        if settings.agent_line == "persistent":
            self.lines = Lines(calls.connection)
            self.lines.add_listener(self._on_line)

    # ------------------------------------------------------------------ plumbing
    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(session, *args)` in one transaction on the database thread."""
        def work() -> T:
            with self.factory() as session, session.begin():
                return fn(session, *args)
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, work)

    def _new_call_id(self, extension: str) -> str:
        self._serial += 1
        return f"a{self._stamp}-{extension}-{self._serial}"

    def _wall(self, monotonic_at: float | None) -> dt.datetime | None:
        """A time the AMI connection noted (monotonic) as wall-clock time on our clock."""
        if monotonic_at is None:
            return None
        return self.clock.now() - dt.timedelta(seconds=self.calls_now() - monotonic_at)

    def calls_now(self) -> float:
        return self.calls.connection.now()

    # ------------------------------------------------------------------ the loop
    async def run(self, stop: asyncio.Event, *, until_idle: bool = False) -> RunSummary:
        """Dial until `stop` is set (or, with `until_idle`, until nothing may be dialled now
        and no call is in progress); then let live calls finish and return."""
        self.rules = self.settings.rules or await self._db(
            lambda s: queue.rules_for(queue.campaign_named(s, self.campaign)))
        agents = await self._db(self._agent_ids)
        for seat in self.pool.seats.values():
            seat.agent_id = agents.get(seat.extension)
        self._campaign_id = await self._db(lambda s: queue.campaign_named(s, self.campaign).id)
        if self.cel is not None:  # Asterisk's record read once now, not by the first call to settle
            await asyncio.get_running_loop().run_in_executor(None, self.cel.refresh)
        await self._recover()
        try:
            while not stop.is_set():
                self._watch_server()
                progressed = await self._tick()
                if (until_idle and not progressed and not self._tasks and not self.pool.in_state(AgentState.WRAP_UP)
                        # Not idle while dialling waits on a fault: Asterisk away (until it
                        # counts as lost), no room for recordings.
                        and (self.calls.connection.fully_booted or self._server_lost)
                        and self._space_problem is None
                        # Nor while an agent's phone rings for the agent's line.
                        and not self._lines_calling()):
                    break
                try:
                    await asyncio.wait_for(stop.wait(), self.settings.tick_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self._stop()
            await self._end_lines()
            self._db_thread.shutdown(wait=True)
            if self.cel is not None:
                self.cel.close()
        return self.summary

    async def _stop(self) -> None:
        """Let calls in progress end, within `stop_grace_s`: those Asterisk no longer has are
        settled at once (an audit), those still up after the bound are left to the next run
        (their attempts stay unfinished; Asterisk keeps recording them)."""
        if not self._tasks:
            return
        try:
            await asyncio.wait_for(self.calls.audit(min_age_s=0.5), 5)
        except Exception as exc:  # noqa: BLE001 - Asterisk unreachable: the bound below still holds
            log.info("audit on stop: %s", exc)
        if not self._tasks:
            return
        self.echo(f"stopping: waiting for {len(self._tasks)} call(s) in progress to end "
                  f"(at most {self.settings.stop_grace_s:.0f} s)")
        _, pending = await asyncio.wait(list(self._tasks), timeout=self.settings.stop_grace_s)
        if pending:
            self.echo(f"stopping: {len(pending)} call(s) still up after {self.settings.stop_grace_s:.0f} s: "
                      "left to the next run, which follows or settles them (their recording goes on)")
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _agent_ids(self, session: Session) -> dict[str, int]:
        return {a.extension: a.id for a in session.scalars(select(Agent))}

    async def _tick(self) -> bool:
        """One round: end due wrap-ups, dial for every ready agent. True if anything moved."""
        now = self.clock.now()
        if self.settings.console:
            await self._follow_console(now)
        else:
            for seat in self.pool.wrap_ups_due(now, self.settings.wrap_up_s):
                self._wrap_up_ended(seat, now)
                self.pool.apply(seat.extension, AgentEvent.READY, now, reason="wrap-up time over")
        status = await self._db(self._publish, now)
        if status != CampaignStatus.RUNNING.value:
            return False
        if self._refreshed_at is None or (now - self._refreshed_at).total_seconds() >= REFRESH_EVERY_S:
            self._refreshed_at = now
            await self._db(self._refresh, now)
        self._maybe_audit()
        if not self.calls.connection.fully_booted:
            return False
        if not await self._room_for_recordings(now):
            return False
        await self._audit_lines()
        await self._keep_lines()
        if self.settings.mode == "predictive":
            await self._assign_waiting()
            # A debtor whose last call was abandoned is called again only with an agent reserved.
            progressed = await self._dial_for_ready_agents(only_abandoned=True)
            return await self._dial_ahead() or progressed
        return await self._dial_for_ready_agents()

    # ------------------------------------------------------------------ a server lost
    def _watch_server(self) -> None:
        """Asterisk unreachable for `server_lost_s`: the calls it carried are settled from its
        record, cut when the link went (nothing of them can be seen any more: a server killed,
        its machine gone), and its agents are shown away; they are ready again when it is back
        (console agents say so themselves)."""
        conn = self.calls.connection
        mono = self.calls_now()
        if conn.fully_booted:
            if self._server_lost:
                self._server_lost = False
                self.echo(f"{self._server_name()}: reachable again; dialling resumes")
                for seat in self.pool.in_state(AgentState.PAUSED):
                    if not self.settings.console and seat.history and seat.history[-1][2] == SERVER_LOST:
                        self.pool.apply(seat.extension, AgentEvent.READY, self.clock.now())
            self._down_since = None
            return
        if self._down_since is None:
            self._down_since = mono
        if not self._server_lost and mono - self._down_since >= self.settings.server_lost_s:
            self._server_lost = True
            since = self._wall(self._down_since)
            lost = self.calls.lose_all(f"{SERVER_LOST}: unreachable for {self.settings.server_lost_s:.0f} s",
                                       self._down_since)
            message = (f"{self._server_name()}: unreachable since {since:%H:%M:%S} UTC "
                       f"({self.settings.server_lost_s:.0f} s): {SERVER_LOST.lower()}; {len(lost)} call(s) "
                       "settled from its record, its agents shown away")
            self.echo(message)
            self.summary.problems.append(message)
        if self._server_lost:
            for seat in self.pool.in_state(AgentState.READY):
                self.pool.apply(seat.extension, AgentEvent.PAUSE, self.clock.now(), reason=SERVER_LOST)

    def _server_name(self) -> str:
        return f"server {self.settings.server}" if self.settings.server else "Asterisk"

    # ------------------------------------------------------------------ self-audit
    def _maybe_audit(self) -> None:
        """Every `audit_every_s`, and after every login, compare the calls in flight with
        Asterisk's channels in the background (a call it no longer has is ended, then settled
        from its record by its own task, which frees the agent)."""
        if self._audit_task is not None and not self._audit_task.done():
            return
        mono = self.calls_now()
        logins = self.calls.connection.counters.logins
        due = self._audited_at is None or mono - self._audited_at >= self.settings.audit_every_s
        if not (due or logins != self._logins_seen) or not self.calls.connection.fully_booted:
            return
        self._audited_at, self._logins_seen = mono, logins
        self._audit_task = asyncio.ensure_future(self._audit())

    async def _audit(self) -> None:
        try:
            ended = await self.calls.audit()
        except Exception as exc:  # noqa: BLE001 - the next audit tries again
            log.info("audit: %s", exc)
            return
        if ended:
            self.echo(f"audit: {ended} call(s) no longer in Asterisk; settled from its record")

    # ------------------------------------------------------------------ room for recordings
    def recordings_space(self) -> str | None:
        """Why a call's recording could not be kept now (None: it can): the recordings
        directory and Asterisk's spool must each exist, take a file, and have at least
        `min_free_bytes` free."""
        for name, path in (("the recordings directory", self.recordings_root), ("the spool", self.spool)):
            try:
                path.mkdir(parents=True, exist_ok=True)
                probe = path / f".dunning-probe-{os.getpid()}"
                with open(probe, "wb") as f:
                    f.write(b"x")
                    f.flush()
                    os.fsync(f.fileno())
                probe.unlink()
                st = os.statvfs(path)
            except OSError as exc:
                return f"{name} {path} cannot take a file: {exc.strerror or exc}"
            free = st.f_bavail * st.f_frsize
            if free < self.settings.min_free_bytes:
                return (f"{name} {path} has {free / 1e6:.0f} MB free, less than the "
                        f"{self.settings.min_free_bytes / 1e6:.0f} MB a call needs")
        return None

    async def _room_for_recordings(self, now: dt.datetime) -> bool:
        """Dial only while recordings can be kept; say so, with an alert, when they cannot,
        and when they can again."""
        mono = self.calls_now()
        if self._space_checked_at is None or mono - self._space_checked_at >= SPACE_EVERY_S or self._space_problem:
            self._space_checked_at = mono
            loop = asyncio.get_running_loop()
            problem = await loop.run_in_executor(None, self.recordings_space)
            if problem and not self._space_problem:
                self.echo(f"dialling paused: recordings cannot be kept: {problem}")
                log.error("dialling paused: %s", problem)
                self._space_alert = await self._db(self._raise_space_alert, problem, now)
            elif self._space_problem and not problem:
                self.echo("recordings can be kept again: dialling resumes")
                await self._db(self._resolve_space_alert, now)
            self._space_problem = problem
        return self._space_problem is None

    def _raise_space_alert(self, session: Session, problem: str, now: dt.datetime) -> int | None:
        from campaigns.models import Alert
        from campaigns.schedule import raise_alert
        key = f"{ALERT_RECORDINGS}:{self._campaign_id}:{now:%Y%m%dT%H%M%S.%f}"
        raise_alert(session, key, ALERT_RECORDINGS,
                    f"campaign {self.campaign}: dialling paused, recordings cannot be kept: {problem}",
                    now, campaign_id=self._campaign_id)
        return session.scalar(select(Alert.id).where(Alert.key == key))

    def _resolve_space_alert(self, session: Session, now: dt.datetime) -> None:
        from campaigns.models import Alert
        alert = session.get(Alert, self._space_alert) if self._space_alert is not None else None
        if alert is not None:
            alert.message = f"{alert.message} (resolved {now:%Y-%m-%d %H:%M:%S}Z: dialling resumed)"
        self._space_alert = None

    def _wrap_up_ended(self, seat: AgentSeat, now: dt.datetime) -> None:
        if self.pacing is not None and seat.wrap_up_since is not None:
            self.pacing.observe(WrapUpEnded(now.timestamp(), (now - seat.wrap_up_since).total_seconds()))

    async def _follow_console(self, now: dt.datetime) -> None:
        """Apply what console agents asked for (ready, pause, log out) and end their wrap-ups
        when the disposition is saved (dialer/presence.py)."""
        seats = {seat.agent_id: seat for seat in self.pool.seats.values() if seat.agent_id is not None}
        requests = await self._db(presence.read_requests, list(seats))
        for agent_id, wanted in requests.items():
            seat = seats[agent_id]
            in_wrap_up = (now - seat.wrap_up_since).total_seconds() if (
                seat.state is AgentState.WRAP_UP and seat.wrap_up_since is not None) else None
            for event, reason in presence.console_events(seat.state, wanted, in_wrap_up,
                                                         self.settings.wrap_up_limit_s):
                if seat.state is AgentState.WRAP_UP:
                    self._wrap_up_ended(seat, now)
                self.pool.apply(seat.extension, event, now, reason=reason)

    def _publish(self, session: Session, now: dt.datetime) -> str:
        """Write the pool's states and the live figures, for the console and the wallboard;
        read the campaign's status (one transaction a tick)."""
        presence.write_states(session, self.pool.seats.values(), self._campaign_id, self._line_states())
        presence.write_engine_status(session, self._campaign_id, self.settings.mode, self.pool.seats.values(),
                                     len(self.calls.active), now)
        return queue.campaign_named(session, self.campaign).status

    # ------------------------------------------------------------------ persistent lines
    def _line_states(self) -> dict[str, tuple[str, dt.datetime]] | None:
        """Each agent's line as the console shows it: its state ("lost" when Asterisk took
        it away) and since when."""
        if self.lines is None:
            return None
        states = {}
        for ext, line in self.lines.lines.items():
            if not line.history:
                continue
            seen = self._line_seen.get(ext)
            key = (line.line_id, len(line.history), line.lost)
            if seen is None or seen[0] != key:  # the moment, once per change (it is written only then)
                seen = self._line_seen[ext] = (key, self._wall(line.history[-1][1]).replace(microsecond=0))
            states[ext] = ("lost" if line.state is LineState.DOWN and line.lost else line.state.value, seen[1])
        return states

    def _ready(self) -> list[AgentSeat]:
        """Agents a debtor may be given now: ready, and on a persistent line, with it up."""
        ready = self.pool.ready()
        if self.lines is None:
            return ready
        return [seat for seat in ready if self.lines.up(seat.extension) is not None]

    async def _keep_lines(self) -> None:
        """Call the phone of each ready agent with no line (at log-in, or back from a pause
        the line's end caused); a logged-out agent's line is hung up."""
        if self.lines is None:
            return
        for extension in list(self._lines_lost):  # given up by the agent (a server lost is not)
            seat = self.pool.seats.get(extension)
            if seat is None or seat.state is AgentState.LOGGED_OUT or (
                    seat.state is AgentState.PAUSED and seat.history and seat.history[-1][2] != SERVER_LOST):
                del self._lines_lost[extension]
        for seat in self.pool.seats.values():
            line = self.lines.lines.get(seat.extension)
            if (seat.state is AgentState.READY and (line is None or line.state is LineState.DOWN)
                    and seat.extension not in self._lines_deciding
                    and self._lines_lost.get(seat.extension, (0.0, 0.0))[0] <= self.calls_now()):
                self.echo(f"agent {seat.extension}: calling the phone for the agent's line")
                await self.lines.call(seat.extension, self.settings.line_ring_s)
            elif seat.state is AgentState.LOGGED_OUT and line is not None and line.state is not LineState.DOWN:
                await self.lines.hang_up(seat.extension)

    def _on_line(self, line: Line) -> None:
        """The agent's line went up (the agent can be given debtors) or down: whether the
        agent hung up (or never answered the log-in call) or Asterisk took the line away is
        found out by `_line_down`, which pauses the agent only in the first case (after the
        call in progress, if any: that call ends as the agent's, not the debtor's)."""
        seat = self.pool.seats.get(line.extension)
        if seat is None:
            return
        if line.state is LineState.UP:
            self._lines_lost.pop(line.extension, None)
            self.echo(f"agent {line.extension}: line up (answered after "
                      f"{(line.up_at or line.called_at) - line.called_at:.1f} s)")
            return
        if line.state is LineState.DOWN and seat.state not in (AgentState.LOGGED_OUT, AgentState.PAUSED):
            self._lines_deciding.add(line.extension)
            self._spawn(self._line_down(line))

    async def _line_down(self, line) -> None:
        """The agent hung up the phone (the agent is paused), or Asterisk went away with the
        line (restarted, frozen, killed: the agent is not paused, the phone is called again
        once Asterisk is back)."""
        try:
            if not line.lost and line.up_at is None and line.extension in self._lines_lost:
                line.lost = True  # called again after a loss: the phone may not be registered yet
            if not line.lost:
                try:
                    line.lost = await asyncio.wait_for(self.calls.going_down_since(line.called_at), SHUTDOWN_WAIT_S)
                except asyncio.TimeoutError:
                    line.lost = True  # Asterisk does not answer: not the agent's doing
            now = self.calls_now()
            if line.lost:
                if line.extension not in self._lines_lost:
                    self.echo(f"agent {line.extension}: line lost with Asterisk ({line.why_down}); "
                              "the phone is called again when it is back")
                    self._lines_lost[line.extension] = (now + LINE_RETRY_S, now + LINE_LOST_GIVE_UP_S)
                    return
                give_up = self._lines_lost[line.extension][1]
                if now < give_up:
                    self._lines_lost[line.extension] = (now + LINE_RETRY_S, give_up)
                    return
                del self._lines_lost[line.extension]
                line.why_down = f"the phone did not answer for {LINE_LOST_GIVE_UP_S:.0f} s after Asterisk took the line"
            seat = self.pool.seats.get(line.extension)
            if seat is not None and seat.state not in (AgentState.LOGGED_OUT, AgentState.PAUSED):
                self.echo(f"agent {line.extension}: line down ({line.why_down}): agent paused")
                self.pool.apply(line.extension, AgentEvent.PAUSE, self.clock.now(), reason=LINE_DOWN)
        finally:
            self._lines_deciding.discard(line.extension)

    async def _audit_lines(self) -> None:
        """After every login, before anything is dialled: lines Asterisk no longer has (its
        restart ended them while the link was down) are lost, and called again."""
        logins = self.calls.connection.counters.logins
        if self.lines is None or logins == self._lines_audited_login:
            return
        try:
            lost, adopted = await self.lines.audit(self.pool.seats)
        except Exception as exc:  # noqa: BLE001 - asked again after the next login or tick
            log.info("line audit: %s", exc)
            return
        self._lines_audited_login = logins
        if lost:
            self.echo(f"{lost} agent line(s) no longer in Asterisk: called again")
        for line in adopted:
            self.echo(f"agent {line.extension}: line taken over, up in Asterisk since before this engine")

    def _lines_calling(self) -> bool:
        """Whether an agent's phone rings for the line, or will be called again (its line lost
        with Asterisk): a run `--until-idle` waits for it."""
        if self.lines is None:
            return False
        seats = self.pool.seats
        return any(ext in seats and seats[ext].state is AgentState.READY for ext in self._lines_lost) or any(
            line.state is LineState.CALLING for line in self.lines.lines.values())

    async def _end_lines(self) -> None:
        if self.lines is None:
            return
        self.lines.close()  # hung up by the engine as the run ends: nobody is paused for it
        for extension in list(self.lines.lines):
            await self.lines.hang_up(extension)

    def _line_variables(self, extension: str) -> dict[str, str]:
        """What the answered-call dialplan needs to reach the agent (see asterisk_conf)."""
        if self.lines is None:
            return {"DUNNING_AUTO_ANSWER": "1"} if self.settings.agent_line == "auto_answer" else {}
        line = self.lines.up(extension)
        return {"DUNNING_LINE": line.line_id if line else "", "DUNNING_WHISPER": self.settings.whisper}

    def _amd_variables(self) -> dict[str, str]:
        """What the answered-call dialplan needs to run AMD (see asterisk_conf)."""
        if self.settings.amd == "off":
            return {}
        return {"DUNNING_AMD": self.settings.amd, "DUNNING_AMD_MESSAGE": f"dunning/{self.settings.amd_message}"}

    def _needs_agent_since(self, call: Call) -> float | None:
        """When the answered debtor began to need an agent (monotonic): at the answer, or with
        AMD once it said the caller is not a machine; None while it listens, or for a machine."""
        if call.answered_at is None or call.amd_status == "MACHINE":
            return None
        if self.settings.amd != "off":
            return call.amd_at
        return call.answered_at

    async def _dial_for_ready_agents(self, *, only_abandoned: bool = False) -> bool:
        """Progressive: for each ready agent, reserve the agent and dial for them."""
        progressed = False
        for seat in self._ready():
            now = self.clock.now()
            call_id = self._new_call_id(seat.extension)
            self.pool.apply(seat.extension, AgentEvent.RESERVE, now, attempt=call_id)
            planned = await self._db(self._plan, seat.agent_id, call_id, now, only_abandoned)
            if planned is None:
                self.pool.apply(seat.extension, AgentEvent.RELEASE, self.clock.now(), reason="nothing to dial now")
                break
            progressed = True
            self._spawn(self._dial(seat.extension, planned))
        return progressed

    async def _dial_ahead(self) -> bool:
        """Predictive: launch as many calls, with no agent reserved, as the pacing says."""
        assert self.pacing is not None
        wanted = self.pacing.decide(self._snapshot())
        launched = 0
        for _ in range(wanted):
            now = self.clock.now()
            planned = await self._db(self._plan, None, self._new_call_id("p"), now, False)
            if planned is None:
                break
            launched += 1
            self._spawn(self._dial(None, planned))
        return launched > 0

    def _snapshot(self) -> Snapshot:
        """Agents and lines in flight, as the pacing policy sees them."""
        now = self.clock.now()
        phases = {AgentState.READY: AgentPhase.READY, AgentState.RESERVED: AgentPhase.RESERVED,
                  AgentState.ON_CALL: AgentPhase.ON_CALL, AgentState.WRAP_UP: AgentPhase.WRAP_UP,
                  AgentState.PAUSED: AgentPhase.PAUSED}
        reachable = {seat.extension for seat in self._ready()}
        # A ready agent whose persistent line is not up (yet) cannot be given a debtor.
        agents = tuple(AgentView(AgentPhase.PAUSED if seat.state is AgentState.READY
                                 and seat.extension not in reachable else phases[seat.state],
                                 (now - seat.history[-1][0]).total_seconds())
                       for seat in self.pool.seats.values() if seat.state in phases)
        mono = self.calls_now()
        # A line AMD listens on counts as still ringing; a machine's line needs no agent.
        lines = tuple(LineView(mono - call.sent_at, None if (since := self._needs_agent_since(call)) is None
                               else mono - since)
                      for call in self.calls.active.values()
                      if call.bridged_at is None and call.amd_status != "MACHINE")
        return Snapshot(now=now.timestamp(), agents=agents, lines=lines)

    async def _assign_waiting(self) -> None:
        """Give each answered debtor with no agent the longest-idle ready agent, within the
        grace time; past it the dialplan plays the message and the call is abandoned."""
        async with self._assigning:
            for call_id, call in list(self._waiting.items()):
                waited = self.calls_now() - (self._needs_agent_since(call) or self.calls_now())
                if call.state is CallState.ENDED or waited > self.settings.agent_grace_s:
                    del self._waiting[call_id]
                    continue
                ready = self._ready()
                if not ready:
                    continue
                seat = ready[0]
                self.pool.apply(seat.extension, AgentEvent.RESERVE, self.clock.now(), attempt=call_id)
                named = True
                for name, value in self._line_variables(seat.extension).items():
                    named = named and await self.calls.set_variable(call, name, value)
                # DUNNING_AGENT last: the dialplan connects the debtor as soon as it is set.
                if named and await self.calls.set_variable(call, "DUNNING_AGENT", seat.extension):
                    del self._waiting[call_id]
                    self.echo(f"{call_id}: answered; agent {seat.extension} connected after {waited:.1f} s")
                else:
                    self.pool.apply(seat.extension, AgentEvent.RELEASE, self.clock.now(), reason="call gone")

    def _refresh(self, session: Session, now: dt.datetime) -> None:
        """The hopper's background work: ask the policy again about a bounded number of cases
        waiting for it (DUE first, then those deferred to the next window), so that a dial
        decision rarely has to."""
        campaign = queue.campaign_named(session, self.campaign)
        hopper.refresh(session, campaign, now, self.rules, limit=REFRESH_ASKS, ahead=True)

    def _plan(self, session: Session, agent_id: int | None, call_id: str, now: dt.datetime,
              only_abandoned: bool = False) -> queue.Planned | None:
        campaign = queue.campaign_named(session, self.campaign)
        agent = session.get(Agent, agent_id) if agent_id is not None else None
        return queue.plan_next(session, campaign, agent, call_id, now, self.rules,
                               only_abandoned=only_abandoned, server=self.settings.server)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("call task failed", exc_info=t.exception())
                self.summary.problems.append(f"call task failed: {t.exception()!r}")
        task.add_done_callback(done)

    # ------------------------------------------------------------------ one call
    async def _dial(self, extension: str | None, planned: queue.Planned) -> None:
        now = self.clock.now()
        if planned.appointment_until is not None:
            # An appointment the debtor asked for: it may be kept outside the window, until its
            # tolerance runs out.
            closed = None if now < planned.appointment_until else "the appointment's time passed before the dial"
        else:
            closed = None if in_window(now, planned.timezone, self.rules) else "calling window closed before the dial"
        if closed:
            # Picked when allowed, but that ended before the dial: nothing is sent.
            await self._db(functools.partial(queue.finish, attempt_id=planned.attempt_id,
                                             outcome=queue.NotDialled.CANCELLED.value, ended_at=now,
                                             note=closed))
            self._count(queue.NotDialled.CANCELLED.value)
            self._release(extension, "window closed")
            return
        request = dial_request(planned.call_id, planned.number, extension, self.settings.ring_timeout_s,
                               extra={**(self._line_variables(extension) if extension else {}),
                                      **self._amd_variables()})
        try:
            call = await self.calls.originate(request)
        except AmiNotConnected as exc:
            await self._db(functools.partial(queue.finish, attempt_id=planned.attempt_id,
                                             outcome=queue.NotDialled.NOT_SENT.value, ended_at=self.clock.now(),
                                             note=str(exc)))
            self._count(queue.NotDialled.NOT_SENT.value)
            self._release(extension, "Asterisk unreachable")
            return
        if call.state is CallState.ENDED and call.failure_message:
            # Asterisk refused the Originate (e.g. while it shuts down): nothing was dialled.
            await self._db(functools.partial(queue.finish, attempt_id=planned.attempt_id,
                                             outcome=queue.NotDialled.NOT_SENT.value, ended_at=self.clock.now(),
                                             note=f"Asterisk refused the Originate: {call.failure_message}"))
            self._count(queue.NotDialled.NOT_SENT.value)
            self._release(extension, "Originate refused")
            return
        self.summary.dials += 1
        await self._db(queue.mark_dialing, planned.attempt_id, now)
        who = f"for agent {extension}" if extension else "ahead of a free agent"
        self.echo(f"{planned.call_id}: dialling {planned.number} (case {planned.case_id}) {who}")
        await self._follow(call, planned.attempt_id, extension, now)

    def _release(self, extension: str | None, reason: str) -> None:
        if extension is not None:
            self.pool.apply(extension, AgentEvent.RELEASE, self.clock.now(), reason=reason)

    async def _follow(self, call: Call, attempt_id: int, extension: str | None,
                      dialled_at: dt.datetime | None = None) -> None:
        try:
            outcome = await settled_outcome(self.calls, call, self.settings.ring_timeout_s + UNSETTLED_GRACE_S)
        except asyncio.CancelledError:
            # The run stops with the call still up: its attempt stays unfinished for the next
            # run (which follows it, or settles it from Asterisk's record); the agent is let go.
            self._waiting.pop(call.call_id, None)
            for seat in self.pool.seats.values():
                if seat.attempt == call.call_id and seat.state in (AgentState.RESERVED, AgentState.ON_CALL):
                    event = AgentEvent.HANGUP if seat.state is AgentState.ON_CALL else AgentEvent.RELEASE
                    self.pool.apply(seat.extension, event, self.clock.now(), reason="engine stopping")
            raise
        self._waiting.pop(call.call_id, None)
        if extension is None:  # predictive: the agent named after the answer, if any
            extension = next((s.extension for s in self.pool.seats.values() if s.attempt == call.call_id), None)
        ended_at = self._wall(call.ended_at) or self.clock.now()
        answered_at, bridged_at = self._wall(call.answered_at), self._wall(call.bridged_at)
        cause = call.debtor_cause
        dropped = call.facts().dropped_at_answer
        notes = []
        if call.gap:
            # Some of its events may have been missed (taken over, a reconnect, an end not
            # seen): Asterisk's record says what happened, not what the engine saw.
            record = await self._asterisk_record(call.call_id)
            dropped = False  # what was seen may lack the answer of our half: only the record says
            if record is not None and record.dialled:
                outcome = record.outcome()
                answered_at, bridged_at = record.answered, record.bridged
                ended_at = record.ended or ended_at
                cause = record.debtor_cause
                dropped = record.facts().dropped_at_answer
                notes.append("times from Asterisk's record (CEL)")
            cut = self._cut_by_fault(record, dialled_at)
            if cut:
                notes.append(cut)
                if outcome is CallOutcome.DEBTOR_HUNG_UP:  # Asterisk hung up, not the debtor
                    outcome = CallOutcome.ANSWERED
        elif call.answered_at is not None:
            # Asterisk answers "shutting down" (or no longer answers) right after the call's
            # end: the call was cut by Asterisk going down (a restart), not by a party.
            try:
                going_down = await asyncio.wait_for(self.calls.asterisk_going_down(call), SHUTDOWN_WAIT_S)
            except asyncio.TimeoutError:
                going_down = True  # no answer at all from the Asterisk that just ended the call
            if going_down:
                notes.append("cut by an Asterisk restart (Asterisk hung the call up as it shut down)")
                if outcome is CallOutcome.DEBTOR_HUNG_UP:  # Asterisk hung up, not the debtor
                    outcome = CallOutcome.ANSWERED
        value = queue.NotDialled.INTERRUPTED.value if outcome is CallOutcome.LOST else outcome.value
        if outcome is CallOutcome.ANSWERED and bridged_at is None and (
                (call.request.variables.get("DUNNING_AGENT", "") == "" and extension is None)
                # On a persistent line a debtor never bridged heard the no-agent message: the
                # line went down between the dial and the answer.
                or self.lines is not None
                # The debtor picked up as Asterisk gave the dial up: silence, then nothing.
                or dropped):
            value = queue.ABANDONED  # answered, and no agent was free within the grace time
        if dropped:
            notes.append(DROPPED_AT_ANSWER)
        if call.amd_status is not None:
            result = AmdResult(call.amd_status, call.amd_cause)
            notes.append(result.note(self.settings.amd))
            if result.machine and outcome in (CallOutcome.ANSWERED, CallOutcome.DEBTOR_HUNG_UP):
                value = MACHINE  # never reached an agent; not a contact
        self._observe_end(call, value)
        if extension is not None and call.request.variables.get("DUNNING_AGENT", "") == "":
            await self._db(queue.set_agent, attempt_id, extension)
        if answered_at is not None:
            problem = await self._store_recording(call.call_id, attempt_id, answered_at, expected=not dropped)
            if problem:
                notes.append(problem)
        if call.transferred_at is not None:
            notes.append(f"transferred to a supervisor at {self._wall(call.transferred_at):%H:%M:%S}Z")
        note = "; ".join(notes) or None
        await self._db(functools.partial(queue.finish, attempt_id=attempt_id, outcome=value,
                                         answered_at=answered_at, bridged_at=bridged_at, ended_at=ended_at,
                                         hangup_cause=cause, note=note))
        self._count(value)
        talk = f", talked {(ended_at - bridged_at).total_seconds():.0f} s" if bridged_at else ""
        self.echo(f"{call.call_id}: {value}{talk}")
        if extension is None:
            return
        seat = self.pool.seats[extension]
        now = self.clock.now()
        if (value == MACHINE or call.transferred_at is not None) and seat.attempt != call.call_id:
            # let go when AMD said MACHINE, or when the transfer to a supervisor completed
            # (_on_call_state); maybe on another call now
            return
        if seat.state is AgentState.ON_CALL:
            self.pool.apply(extension, AgentEvent.HANGUP, now)
        elif seat.state is AgentState.RESERVED:
            self.pool.apply(extension, AgentEvent.RELEASE, now, reason=value)

    async def _store_recording(self, call_id: str, attempt_id: int, answered_at: dt.datetime,
                               expected: bool = True) -> str | None:
        """The call's recording into the vault; what went wrong, as the attempt's note. A call
        dropped as it was answered (`expected` False) never reached the recording: none is
        no problem, one found is stored."""
        loop = asyncio.get_running_loop()
        from recordings.legs import leg_levels
        if expected:
            await leg_levels(self.spool, call_id, timeout_s=5)  # MixMonitor has closed its files
        try:
            files = await loop.run_in_executor(None, store_call, self.spool, self.recordings_root, call_id,
                                               answered_at)
        except (RecordingMissing, RecordingConflict, OSError, wave.Error, EOFError) as exc:
            if isinstance(exc, RecordingMissing) and not expected:
                return None
            log.error("recording of %s: %s", call_id, exc)
            self.summary.problems.append(f"{call_id}: {exc}")
            return f"recording problem: {exc}"
        await self._db(queue.attach_recording, attempt_id, answered_at, files)
        legs = {f.leg: self.recordings_root / f.relative_path for f in files}
        try:  # the vault's one stereo file (agent left, debtor right), kept for the retention period
            meta = await self._db(vault.call_metadata, attempt_id, answered_at)
            written = await loop.run_in_executor(None, vault.write_call, self.recordings_root, legs, meta,
                                                 self.settings.codec)
            await self._db(vault.register, meta, written, self.clock.now())
            # Speech-to-text and the QA rules take it from here (recordings/after_call.py).
            await self._db(after_call.queue_call, attempt_id, self.clock.now())
        except (VaultError, OSError) as exc:
            log.error("vault ingest of %s: %s", call_id, exc)
            self.summary.problems.append(f"{call_id}: vault: {exc}")
            return f"vault problem: {exc}"
        self.summary.recordings += 1
        return None

    async def _asterisk_record(self, call_id: str) -> CelCall | None:
        """The call as Asterisk recorded it, once it says the call ended (waiting up to
        `CEL_WAIT_S` for its last lines); None without a CEL log or a line of the call."""
        if self.cel is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = self.calls_now() + CEL_WAIT_S
        while True:
            record = await loop.run_in_executor(None, self.cel.call, call_id)
            if (record is not None and record.complete) or self.calls_now() >= deadline:
                return record
            await asyncio.sleep(0.2)

    def _cut_by_fault(self, record: CelCall | None, dialled_at: dt.datetime | None) -> str | None:
        """What the attempt's note says when the call was cut by Asterisk going away."""
        started = self.calls.asterisk_started_at
        if dialled_at is not None and started is not None and started > dialled_at.timestamp() + 1:
            return (f"cut by an Asterisk restart (Asterisk started again at "
                    f"{dt.datetime.fromtimestamp(started, dt.timezone.utc):%H:%M:%S}Z, after the dial)")
        if record is not None and record.dialled and not record.complete:
            return "cut: Asterisk went away during the call (its record has no end of the call)"
        return None

    def _observe_end(self, call: Call, outcome: str) -> None:
        """What pacing learns from a finished call."""
        if self.pacing is None:
            return
        at = self.clock.now().timestamp()
        if call.answered_at is None:
            self.pacing.observe(DialEnded(at, False, (call.ended_at or self.calls_now()) - call.sent_at))
        if outcome == queue.ABANDONED:
            self.pacing.observe(Abandoned(at))
        if call.bridged_at is not None and call.ended_at is not None:  # the agent's talk: to the transfer
            self.pacing.observe(TalkEnded(at, (call.transferred_at or call.ended_at) - call.bridged_at))

    def _on_call_state(self, call: Call, state: CallState) -> None:
        if call.transferred_at is not None:
            # The agent handed the debtor over to a supervisor (attended transfer): the agent's
            # part of the call is over (wrap-up, then the next debtor); the attempt goes on
            # until the debtor's channel hangs up.
            for seat in self.pool.seats.values():
                if seat.attempt == call.call_id and seat.state is AgentState.ON_CALL:
                    self._spawn(self._transferred(call, seat.extension))
            return
        if state is CallState.ANSWERED:
            if self.settings.amd != "off" and call.amd_status is None:
                return  # AMD listens: told again with its result
            at = self.clock.now().timestamp()
            if call.amd_status == "MACHINE":
                if self.pacing is not None and call.amd_at is not None:
                    self.pacing.observe(DialEnded(at, False, call.amd_at - call.sent_at, machine=True))
                for seat in self.pool.seats.values():  # an agent reserved for it is free again
                    if seat.attempt == call.call_id and seat.state is AgentState.RESERVED:
                        self.pool.apply(seat.extension, AgentEvent.RELEASE, self.clock.now(), reason=MACHINE)
                return  # the dialplan hangs up or leaves the message; no agent is named
            since = self._needs_agent_since(call)
            if self.pacing is not None and since is not None:
                self.pacing.observe(DialEnded(at, True, since - call.sent_at))
            if call.request.variables.get("DUNNING_AGENT", "") == "":
                self._waiting[call.call_id] = call
                self._spawn(self._assign_waiting())
            return
        if state is not CallState.BRIDGED:
            return
        for seat in self.pool.seats.values():
            if seat.attempt == call.call_id and seat.state is AgentState.RESERVED:
                self.pool.apply(seat.extension, AgentEvent.BRIDGE, self.clock.now())

    async def _transferred(self, call: Call, extension: str) -> None:
        """The agent's wrap-up after an attended transfer: the attempt is marked bridged first,
        so that a console agent's wrap-up waits for its disposition (dialer/presence.py)."""
        now = self.clock.now()
        await self._db(presence.mark_transferred, call.call_id, self._wall(call.answered_at) or now,
                       self._wall(call.bridged_at) or now)
        seat = self.pool.seats[extension]
        if seat.attempt == call.call_id and seat.state is AgentState.ON_CALL:
            self.pool.apply(extension, AgentEvent.HANGUP, self.clock.now(), reason=TRANSFERRED)

    def _count(self, outcome: str) -> None:
        self.summary.outcomes[outcome] = self.summary.outcomes.get(outcome, 0) + 1

    # ------------------------------------------------------------------ after a crash
    async def _recover(self) -> None:
        """Attempts an earlier run left unfinished: follow those Asterisk still has, close
        the others. Nothing is dialled again."""
        leftovers = await self._db(lambda s: [(a.id, a.call_id, a.number, a.agent_id, a.dialed_at) for a in
                                              queue.in_flight(s, queue.campaign_named(s, self.campaign),
                                                              self.settings.server)])
        if not leftovers:
            return
        by_agent = {seat.agent_id: seat for seat in self.pool.seats.values()}
        adopted = []
        for attempt_id, call_id, number, agent_id, dialled_at in leftovers:
            seat = by_agent.get(agent_id)
            request = dial_request(call_id, number, seat.extension if seat else None, self.settings.ring_timeout_s)
            adopted.append((attempt_id, self.calls.adopt(request), seat, dialled_at))
        await self.calls.reconcile()
        for attempt_id, call, seat, dialled_at in adopted:
            if call.state is CallState.ENDED:
                await self._settle_leftover(attempt_id, call.call_id, dialled_at)
                continue
            self.echo(f"{call.call_id}: still in Asterisk from an earlier run; following it")
            extension = seat.extension if seat and seat.state is AgentState.READY else None
            if extension:
                self.pool.apply(extension, AgentEvent.RESERVE, self.clock.now(), attempt=call.call_id)
                if call.state is CallState.BRIDGED:
                    self.pool.apply(extension, AgentEvent.BRIDGE, self.clock.now())
            self._spawn(self._follow(call, attempt_id, extension, dialled_at))

    async def _settle_leftover(self, attempt_id: int, call_id: str, dialled_at: dt.datetime | None) -> None:
        """An attempt an earlier run left unfinished whose call Asterisk no longer has:
        settled from Asterisk's record (outcome, answer, bridge and end times, cause) when it
        has one, else closed as interrupted; then its recording, if on disk, goes to the vault."""
        record = await self._asterisk_record(call_id)
        cut = self._cut_by_fault(record, dialled_at)
        if record is not None and record.dialled:
            outcome = record.outcome()
            value = queue.NotDialled.INTERRUPTED.value if outcome is CallOutcome.LOST else outcome.value
            note = "left unfinished by an earlier run; settled from Asterisk's record (CEL)"
            await self._db(functools.partial(
                queue.finish, attempt_id=attempt_id, outcome=value, answered_at=record.answered,
                bridged_at=record.bridged, ended_at=record.ended or self.clock.now(),
                hangup_cause=record.debtor_cause, note="; ".join(filter(None, [note, cut]))))
            self._count(value)
            self.echo(f"{call_id}: left unfinished by an earlier run, ended in Asterisk: {value} "
                      "(from Asterisk's record)")
        else:
            note = "left unfinished by an earlier run; not in Asterisk"
            await self._db(functools.partial(
                queue.finish, attempt_id=attempt_id, outcome=queue.NotDialled.INTERRUPTED.value,
                ended_at=self.clock.now(), note="; ".join(filter(None, [note, cut]))))
            self.echo(f"{call_id}: left unfinished by an earlier run, no longer in Asterisk")
        # Answered and ended while no engine ran: its legs are on disk; into the vault with them.
        recovered = await self._db(backlog.after_interrupted, self.spool, self.recordings_root, attempt_id,
                                   self.clock.now(), self.settings.codec)
        if recovered is not None:
            self.echo(f"{call_id}: {recovered.message}")
            if not recovered.ok:
                self.summary.problems.append(f"{call_id}: {recovered.message}")


async def settled_outcome(calls: Calls, call: Call, unanswered_limit_s: float) -> CallOutcome:
    """The call's outcome, waiting at most `unanswered_limit_s` for one while it is unanswered.

    An answered call ends when someone hangs up, however long the conversation; an unanswered
    one still without an outcome after the limit is given up (hung up if Asterisk has it,
    ended LOST), which releases the agent reserved for it.
    """
    while True:
        try:
            return await call.ended(unanswered_limit_s)
        except asyncio.TimeoutError:
            if call.answered_at is not None:
                continue
            log.error("call %s: no outcome %.0f s after the dial (state %s); giving up on it",
                      call.call_id, unanswered_limit_s, call.state.value)
            await calls.give_up(call, f"no outcome within {unanswered_limit_s:.0f} s")

