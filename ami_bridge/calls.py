"""The call registry: one `Call` per Originate, fed by typed events, never re-sent.

A call we originate is a Local channel pair: the ;1 half gets uniqueid = call_id and goes to
our side (the agent connection), the ;2 half gets f"{call_id}-2" and dials the debtor.
Channels dialled from either half share linkedid = call_id. That is enough to route every
event to its call without panoramisk's CallManager (which keeps a queue per uniqueid
forever); routing entries are dropped when the call ends.

If the connection is lost before Asterisk acknowledged the Originate, we cannot know
whether the debtor's phone is ringing. Sending it again could ring them twice, so the call
goes UNKNOWN and is reconciled against CoreShowChannels after the next login. An Originate
that merely times out on a live connection (a slow Asterisk) goes UNKNOWN too; no login
follows, so the registry itself looks for the call's channels until its ring timeout (plus
a margin) has passed, and ends it LOST if Asterisk never made any.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from . import actions
from .actions import OriginateRequest
from .connection import AmiConnection, ConnectionState
from .errors import AmiActionError, AmiActionTimeout, AmiConnectionLost, AmiError, AmiNotConnected
from .events import (
    STATE_RING,
    STATE_RINGING,
    STATE_UP,
    BridgeEnter,
    ChannelEvent,
    CoreShowChannel,
    DialBegin,
    DialEnd,
    Event,
    Hangup,
    Newchannel,
    Newstate,
    OriginateResponse,
    Shutdown,
    UserEvent,
)

log = logging.getLogger(__name__)


class CallState(enum.Enum):
    DIALING = "dialing"
    RINGING = "ringing"
    ANSWERED = "answered"
    BRIDGED = "bridged"  # our half is in a bridge, i.e. with an agent
    ENDED = "ended"
    UNKNOWN = "unknown"  # the originate's fate is unknown until reconciled


class CallOutcome(enum.Enum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"  # typically an invalid number
    DEBTOR_HUNG_UP = "debtor_hung_up"  # answered, then hung up at once (within the drop window)
    FAILED = "failed"
    LOST = "lost"  # no trace of it after a reconnect; not re-sent


class Side(enum.Enum):
    OURS = "ours"  # the ;1 half and what it dials (the agent)
    DEBTOR = "debtor"  # the ;2 half and what it dials (the public network)


@dataclass(frozen=True)
class CallFacts:
    """What was observed about a call; the outcome is a pure function of these."""

    reason: int | None = None  # OriginateResponse Reason
    answered_at: float | None = None
    #: When our half answered: the call went on into the dialplan after the answer
    #: (dunning-answered: recorded, then put through).
    reached_us_at: float | None = None
    bridged_at: float | None = None
    first_hangup_side: Side | None = None
    first_hangup_at: float | None = None
    debtor_cause: int | None = None  # Q.850 cause of the first debtor-side hangup
    lost: bool = False

    @property
    def dropped_at_answer(self) -> bool:
        """The debtor answered in the instant Asterisk gave the dial up (its ring time over, a
        freeze, a shutdown): the call never went on past the answer (our half never answered,
        the Originate did not succeed). The debtor heard silence; no agent, no recording."""
        return self.answered_at is not None and self.reached_us_at is None and self.reason != 4


_REASON_OUTCOME = {
    0: CallOutcome.FAILED,
    3: CallOutcome.NO_ANSWER,
    5: CallOutcome.BUSY,
    8: CallOutcome.CONGESTION,
}
_CAUSE_OUTCOME = {
    1: CallOutcome.CONGESTION,  # unallocated number
    3: CallOutcome.CONGESTION,  # no route to destination
    17: CallOutcome.BUSY,
    18: CallOutcome.NO_ANSWER,
    19: CallOutcome.NO_ANSWER,
    28: CallOutcome.CONGESTION,  # invalid number format
    34: CallOutcome.CONGESTION,
    38: CallOutcome.CONGESTION,
    42: CallOutcome.CONGESTION,
}


def classify(facts: CallFacts, drop_window_s: float = 2.0) -> CallOutcome:
    """Outcome of an ended call.

    An answered call whose debtor side hung up first, within `drop_window_s` of the answer,
    is DEBTOR_HUNG_UP: the debtor hung up before any conversation could happen, whether or
    not an agent had been connected in that instant (a softphone auto-answers in
    milliseconds). Not a call dropped as it was answered: Asterisk hung both sides up in
    the same instant, in either order; it is ANSWERED (the engine stores it as abandoned).
    Reasons 0 ("failed") and 1 ("hung up before answer") are refined by the debtor side's
    hangup cause.
    """
    if facts.answered_at is not None or facts.reason == 4:
        if (
            facts.answered_at is not None
            and not facts.dropped_at_answer
            and facts.first_hangup_side is Side.DEBTOR
            and facts.first_hangup_at is not None
            and facts.first_hangup_at - facts.answered_at <= drop_window_s
        ):
            return CallOutcome.DEBTOR_HUNG_UP
        return CallOutcome.ANSWERED
    if facts.lost:
        return CallOutcome.LOST
    if facts.reason in _REASON_OUTCOME and facts.reason != 0:
        return _REASON_OUTCOME[facts.reason]
    if facts.debtor_cause in _CAUSE_OUTCOME:  # Asterisk says only "failed" (0) or "hung up" (1)
        return _CAUSE_OUTCOME[facts.debtor_cause]
    return CallOutcome.NO_ANSWER if facts.reason == 1 else CallOutcome.FAILED


_RANK = {CallState.DIALING: 0, CallState.RINGING: 1, CallState.ANSWERED: 2, CallState.BRIDGED: 3}


def next_state(current: CallState, proposed: CallState) -> CallState | None:
    """The state to move to, or None to stay. Events can arrive late or repeat (e.g. the
    ;1 and ;2 halves both go Up), so progress only moves forward; ENDED is final."""
    if current is CallState.ENDED or proposed is current:
        return None
    if proposed in (CallState.ENDED, CallState.UNKNOWN) or current is CallState.UNKNOWN:
        return proposed
    return proposed if _RANK[proposed] > _RANK[current] else None


class Call:
    """One originated call. Read-only for users of the registry; `Calls` mutates it."""

    def __init__(self, request: OriginateRequest, sent_at: float) -> None:
        self.request = request
        self.call_id = request.call_id
        self.action_id = actions.originate_action_id(request.call_id)
        self.sent_at = sent_at
        self.state = CallState.DIALING
        self.history: list[tuple[CallState, float]] = [(CallState.DIALING, sent_at)]
        self.events: list[Event] = []
        self.outcome: CallOutcome | None = None
        self.ended_unobserved = False
        self.failure_message = ""
        self.reason: int | None = None
        self.answered_at: float | None = None
        self.reached_us_at: float | None = None  # see CallFacts
        self.bridged_at: float | None = None
        self.ended_at: float | None = None
        self.first_hangup_side: Side | None = None
        self.first_hangup_at: float | None = None
        self.debtor_cause: int | None = None
        self.lost = False
        #: What AMD() concluded in the dialplan (UserEvent DunningAMD): AMDSTATUS and AMDCAUSE,
        #: and when the engine heard it; None while AMD listens, or with no AMD.
        self.amd_status: str | None = None
        self.amd_cause = ""
        self.amd_at: float | None = None
        #: When the agent's attended transfer to a supervisor completed (UserEvent
        #: DunningTransfer, complete): the agent is free from then on, the call goes on.
        self.transferred_at: float | None = None
        #: Events of this call may have been missed (adopted from an earlier run, resumed after
        #: a reconnect, or ended without its hang-up seen): its times are to be taken from
        #: Asterisk's own record (dialer/cel.py), not from what was observed.
        self.gap = False
        self.sides: dict[str, Side | None] = {
            request.call_id: Side.OURS,
            actions.debtor_uniqueid(request.call_id): Side.DEBTOR,
        }
        self.channel_names: dict[str, str] = {}
        self.live: set[str] = set()
        self.hung_up: set[str] = set()
        self._done = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Call {self.call_id} {self.state.value} outcome={self.outcome and self.outcome.value}>"

    def facts(self) -> CallFacts:
        return CallFacts(
            reason=self.reason, answered_at=self.answered_at, reached_us_at=self.reached_us_at,
            bridged_at=self.bridged_at,
            first_hangup_side=self.first_hangup_side, first_hangup_at=self.first_hangup_at,
            debtor_cause=self.debtor_cause, lost=self.lost,
        )

    async def ended(self, timeout: float | None = None) -> CallOutcome:
        """Wait until the call has ENDED and return its outcome (asyncio.TimeoutError after `timeout`)."""
        await asyncio.wait_for(self._done.wait(), timeout)
        assert self.outcome is not None
        return self.outcome


class Calls:
    """Registry of in-flight calls over one AmiConnection."""

    def __init__(self, connection: AmiConnection, *, drop_window_s: float = 2.0,
                 settle_interval_s: float = 1.0, settle_margin_s: float = 5.0) -> None:
        self._conn = connection
        self.drop_window_s = drop_window_s
        #: After an Originate timed out on a live connection: how often to look for its
        #: channels, and how long past its ring timeout a call with none is given up as LOST
        #: (Asterisk may still be working through a backlog when the answer times out).
        self.settle_interval_s = settle_interval_s
        self.settle_margin_s = settle_margin_s
        self._settling: set[asyncio.Task[None]] = set()
        self._active: dict[str, Call] = {}
        self._by_uniqueid: dict[str, Call] = {}
        self._by_linkedid: dict[str, Call] = {}
        self._by_action_id: dict[str, Call] = {}
        self._listeners: list[Callable[[Call, CallState], None]] = []
        self._unsubscribe = connection.subscribe(self._on_event)
        self._unhook = connection.on_connected(self.reconcile)
        #: When the Asterisk we are logged in to started (epoch seconds, from CoreStatus at each
        #: login), and how many times a login found a newer one: a restart cuts every call.
        self.asterisk_started_at: float | None = None
        self.asterisk_restarts = 0
        #: When Asterisk last said it shuts down or restarts (its Shutdown event; our clock).
        self.shutdown_at: float | None = None

    @property
    def connection(self) -> AmiConnection:
        """The AMI session the calls are placed on (its clock, whether Asterisk is ready)."""
        return self._conn

    @property
    def active(self) -> Mapping[str, Call]:
        return MappingProxyType(self._active)

    @property
    def routing_entries(self) -> int:
        """How many routing keys are held; 0 once every call has ended (no leak)."""
        return len(self._by_uniqueid) + len(self._by_linkedid) + len(self._by_action_id)

    def close(self) -> None:
        self._unsubscribe()
        self._unhook()
        for task in list(self._settling):
            task.cancel()

    def add_listener(self, listener: Callable[[Call, CallState], None]) -> None:
        """Call `listener(call, new_state)` after every state change of every call, and with
        the call's state again when AMD's result comes (`Call.amd_status` set)."""
        self._listeners.append(listener)

    def adopt(self, req: OriginateRequest) -> Call:
        """Track a call placed by an earlier run of the engine (after a crash), without
        sending anything: it starts UNKNOWN and `reconcile()` finds it in Asterisk's
        channel list, or ends it as never seen."""
        if req.call_id in self._active:
            raise ValueError(f"call {req.call_id} is already in flight")
        call = Call(req, self._conn.now())
        call.gap = True
        self._register(call)
        self._transition(call, CallState.UNKNOWN, "adopted from an earlier run")
        return call

    # --------------------------------------------------------------- commands
    async def originate(self, req: OriginateRequest) -> Call:
        """Send the Originate exactly once and return the tracked call.

        Raises ValueError (bad request / duplicate call_id) and AmiNotConnected (nothing
        was written: not logged in, or Asterisk not fully booted yet). Any other failure is reflected in the returned call's state.
        """
        if req.call_id in self._active:
            raise ValueError(f"call {req.call_id} is already in flight")
        if self._conn.state is ConnectionState.CONNECTED and not self._conn.fully_booted:
            # Logged in to an Asterisk still loading its dialplan: the call would fail.
            raise AmiNotConnected(f"Asterisk has not said FullyBooted yet; {req.call_id} not sent")
        action = actions.originate(req)
        call = Call(req, self._conn.now())
        self._register(call)  # before the write: events may precede the acknowledgement
        try:
            await self._conn.send(action)
        except AmiNotConnected:
            self._unregister(call)
            raise
        except AmiActionError as exc:
            call.failure_message = exc.message
            self._transition(call, CallState.ENDED, f"Originate refused: {exc.message}")
        except AmiConnectionLost as exc:  # the reconcile after the next login settles it
            self._transition(call, CallState.UNKNOWN, f"Originate unacknowledged: {exc}")
        except AmiActionTimeout as exc:  # the link is up: no login will come to settle it
            self._transition(call, CallState.UNKNOWN, f"Originate unacknowledged: {exc}")
            self._settle_later(call)
        return call

    async def hangup(self, call: Call, cause: int = 16) -> bool:
        """Hang up our half; False if Asterisk no longer has it. Its Hangup event ends the call."""
        channel = call.channel_names.get(call.call_id, call.call_id)
        try:
            await self._conn.send(actions.hangup(channel, cause))
        except AmiActionError as exc:
            log.info("hangup of %s: %s", call.call_id, exc.message)
            return False
        return True

    async def give_up(self, call: Call, reason: str) -> None:
        """End a call whose end never came (the engine's backstop, so that no agent stays
        reserved for good): hang up our half if Asterisk still has it, then end the call
        unobserved (LOST unless it was answered). Nothing is re-sent."""
        if call.state is CallState.ENDED:
            return
        try:
            await self.hangup(call)
        except AmiError as exc:
            log.info("hangup of %s while giving up: %s", call.call_id, exc)
        self._end_unobserved(call, reason, self._conn.now())

    async def set_variable(self, call: Call, name: str, value: str) -> bool:
        """Set a variable on our half of the call (the one running the answered-call
        dialplan); False if Asterisk no longer has it."""
        channel = call.channel_names.get(call.call_id)
        if channel is None:
            return False
        try:
            await self._conn.send(actions.setvar(channel, name, value))
        except AmiActionError as exc:
            log.info("setvar on %s: %s", call.call_id, exc.message)
            return False
        return True

    async def _core_started(self) -> None:
        """Note when Asterisk started (CoreStatus; its local time, the engine's host's)."""
        import time as _time
        try:
            result = await self._conn.send({"Action": "CoreStatus"})
            day, clock = result.headers.get("CoreStartupDate"), result.headers.get("CoreStartupTime")
            started = _time.mktime(_time.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S"))
        except (AmiError, ValueError, TypeError) as exc:
            log.info("CoreStatus: %s", exc)
            return
        if self.asterisk_started_at is not None and started > self.asterisk_started_at + 1:
            self.asterisk_restarts += 1
        self.asterisk_started_at = started

    async def reconcile(self) -> None:
        """After a (re)login: keep calls Asterisk still has, end those it doesn't."""
        try:
            await self.audit(min_age_s=0.0, reason="not in CoreShowChannels after reconnect")
        finally:
            await self._core_started()

    async def audit(self, *, min_age_s: float = 2.0, reason: str = "not in Asterisk's channel list (audit)") -> int:
        """Compare the calls in flight with Asterisk's channel list: follow those it has, end
        (unobserved, to be settled from Asterisk's record) those it no longer has. With
        `min_age_s` = 0 (after a login) every call not listed is ended; otherwise only calls
        whose channels Asterisk had and that were sent at least `min_age_s` ago. Returns how
        many calls were ended."""
        if not self._active:
            return 0
        result = await self._conn.send(actions.core_show_channels())
        listed = [e for e in result.events if isinstance(e, CoreShowChannel)]
        ended = 0
        for call in list(self._active.values()):
            mine = _channels_of(call, listed)
            if mine:
                if min_age_s == 0.0:  # after a login: events may have been missed meanwhile
                    self._resume(call, mine, result.received_at)
            elif min_age_s == 0.0 or (
                    # Only a call Asterisk had (an Originate still unanswered, or whose fate is
                    # unknown, is settled by its own deadline: it may yet be dialled).
                    call.channel_names and call.state is not CallState.UNKNOWN
                    and result.received_at - call.sent_at >= min_age_s):
                self._end_unobserved(call, reason, result.received_at)
                ended += 1
        return ended

    async def asterisk_going_down(self, call: Call) -> bool:
        """Whether Asterisk is shutting down or restarting (it answers actions with "Asterisk
        is shutting down", or the link is gone): asked when an answered call has ended. A
        call sent after Asterisk last said it shuts down was placed on the Asterisk that came
        back: that shutdown did not cut it (a debtor who hangs up at once just after a
        restart did)."""
        return await self.going_down_since(call.sent_at)

    async def going_down_since(self, placed_at: float) -> bool:
        """`asterisk_going_down` for any channel placed at `placed_at` (an agent's line too)."""
        if (self.shutdown_at is not None and placed_at <= self.shutdown_at
                and self._conn.now() - self.shutdown_at < 5):
            return True
        try:
            await self._conn.send(actions.ping())
        except AmiActionError as exc:
            return "shutting down" in exc.message.lower()
        except AmiError:
            return True
        return False

    def lose_all(self, reason: str, at: float) -> list[Call]:
        """End every call in flight, unobserved, as of `at`: the Asterisk that carried them is
        gone (unreachable past the engine's bound), so each is settled from Asterisk's record
        with the moment the link went as its end at the latest."""
        lost = list(self._active.values())
        for call in lost:
            self._end_unobserved(call, reason, at)
        return lost

    def _settle_later(self, call: Call) -> None:
        task = asyncio.ensure_future(self._settle(call))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, call: Call) -> None:
        """Find out what became of an Originate whose answer timed out on a live connection.

        Its events, if Asterisk dials it late, reach the call as usual; this only covers the
        Originate Asterisk never acted on, which would otherwise stay UNKNOWN for good (and
        keep its reserved agent). Nothing is re-sent.
        """
        deadline = call.sent_at + call.request.timeout_s + self.settle_margin_s
        while call.state is CallState.UNKNOWN:
            await asyncio.sleep(self.settle_interval_s)
            try:
                result = await self._conn.send(actions.core_show_channels())
            except AmiActionTimeout:
                continue  # still slow: look again
            except AmiError as exc:  # the link went: the reconcile after the next login settles it
                log.info("call %s: not settled here (%s)", call.call_id, exc)
                return
            if call.state is not CallState.UNKNOWN:
                return
            mine = _channels_of(call, [e for e in result.events if isinstance(e, CoreShowChannel)])
            if mine:
                self._resume(call, mine, result.received_at)
            elif result.received_at >= deadline:
                self._end_unobserved(call, "no channel in CoreShowChannels by its ring timeout",
                                     result.received_at)

    def _end_unobserved(self, call: Call, reason: str, at: float) -> None:
        call.ended_unobserved = True
        call.gap = True
        call.lost = call.answered_at is None
        call.live.clear()
        self._transition(call, CallState.ENDED, reason, at=at)

    # --------------------------------------------------------------- events
    def _on_event(self, event: Event) -> None:
        if isinstance(event, Shutdown):
            self.shutdown_at = event.received_at
            return
        if isinstance(event, OriginateResponse):
            call = self._by_action_id.get(event.action_id)
            if call is not None:
                call.events.append(event)
                self._on_originate_response(call, event)
        elif isinstance(event, ChannelEvent):
            call = self._route(event)
            if call is not None:
                call.events.append(event)
                self._on_channel_event(call, event)
        else:
            return
        if call is not None and call.state is not CallState.ENDED and self._finished(call):
            self._transition(call, CallState.ENDED, "all channels hung up", at=event.received_at)

    def _route(self, event: ChannelEvent) -> Call | None:
        keys = [event.uniqueid]
        if isinstance(event, (DialBegin, DialEnd)):
            keys.append(event.dest_uniqueid)
        for key in keys:
            if key and key in self._by_uniqueid:
                call = self._by_uniqueid[key]
                break
        else:
            linked = [event.linkedid] + ([event.dest_linkedid] if isinstance(event, (DialBegin, DialEnd)) else [])
            call = next((self._by_linkedid[k] for k in linked if k and k in self._by_linkedid), None)
        if call is not None:
            for uid in keys:
                if uid and uid not in call.sides:
                    call.sides[uid] = None
                    self._by_uniqueid[uid] = call
        return call

    def _on_originate_response(self, call: Call, event: OriginateResponse) -> None:
        call.reason = event.reason
        if event.reason == 4:
            self._answered(call, event.received_at)

    def _on_channel_event(self, call: Call, event: ChannelEvent) -> None:
        at = event.received_at
        if isinstance(event, Newchannel):
            call.live.add(event.uniqueid)
            call.channel_names[event.uniqueid] = event.channel
        elif isinstance(event, DialBegin):
            # What a half dials belongs to that half's side (agent leg vs public network).
            caller_side = call.sides.get(event.uniqueid)
            if event.uniqueid and caller_side is not None and call.sides.get(event.dest_uniqueid) is None:
                call.sides[event.dest_uniqueid] = caller_side
        elif isinstance(event, Newstate):
            call.channel_names[event.uniqueid] = event.channel
            if event.channel_state in (STATE_RING, STATE_RINGING):
                self._transition(call, CallState.RINGING, f"{event.channel} {event.channel_state_desc}", at=at)
            elif event.channel_state == STATE_UP and call.sides.get(event.uniqueid) is not None:
                self._answered(call, at, ours=event.uniqueid == call.call_id)
        elif isinstance(event, BridgeEnter) and event.uniqueid == call.call_id:
            if call.bridged_at is None:
                call.bridged_at = at
            self._transition(call, CallState.BRIDGED, f"bridge {event.bridge_uniqueid}", at=at)
        elif isinstance(event, UserEvent) and event.name == "DunningAMD":
            if call.amd_status is None:
                call.amd_status, call.amd_cause, call.amd_at = event.status, event.cause, at
                log.info("call %s: AMD %s (%s)", call.call_id, event.status, event.cause)
                self._tell(call, call.state)
        elif isinstance(event, UserEvent) and event.name == "DunningTransfer":
            log.info("call %s: transfer %s (%s)", call.call_id, event.status, event.cause)
            if event.status == "complete" and call.transferred_at is None:
                call.transferred_at = at
                self._tell(call, call.state)
        elif isinstance(event, Hangup):
            call.live.discard(event.uniqueid)
            call.hung_up.add(event.uniqueid)
            side = call.sides.get(event.uniqueid)
            if side is not None and call.first_hangup_side is None:
                call.first_hangup_side, call.first_hangup_at = side, at
            # The first debtor-side cause that says something: on a busy line the inner
            # Local half hangs up first with cause 0 ("Unknown"), the outer with 17.
            if side is Side.DEBTOR and not call.debtor_cause and event.cause:
                call.debtor_cause = event.cause

    def _answered(self, call: Call, at: float, *, ours: bool = False) -> None:
        """A half of the call went up (`ours`: our half, the call goes on in the dialplan)."""
        if call.answered_at is None:
            call.answered_at = at
        if ours and call.reached_us_at is None:
            call.reached_us_at = at
        self._transition(call, CallState.ANSWERED, "answered", at=at)

    @staticmethod
    def _finished(call: Call) -> bool:
        if call.live:
            return False
        if call.answered_at is not None:
            return call.call_id in call.hung_up
        return call.reason is not None and call.reason != 4

    def _resume(self, call: Call, channels: list[CoreShowChannel], at: float) -> None:
        call.gap = True
        call.live = {c.uniqueid for c in channels}
        for c in channels:
            call.channel_names[c.uniqueid] = c.channel
            if c.uniqueid not in call.sides:
                call.sides[c.uniqueid] = None
                self._by_uniqueid[c.uniqueid] = call
        up = {c.uniqueid for c in channels if c.channel_state == STATE_UP}
        if up:
            self._answered(call, at, ours=call.call_id in up)
        if any(c.uniqueid == call.call_id and c.bridge_id for c in channels):
            call.bridged_at = call.bridged_at or at
            self._transition(call, CallState.BRIDGED, "bridged (reconciled)", at=at)
        elif call.state is CallState.UNKNOWN:
            self._transition(call, CallState.DIALING, "channels exist (reconciled)", at=at)

    # --------------------------------------------------------------- bookkeeping
    def _transition(self, call: Call, proposed: CallState, reason: str, *, at: float | None = None) -> None:
        state = next_state(call.state, proposed)
        if state is None:
            return
        when = self._conn.now() if at is None else at
        log.info("call %s %s -> %s (%s)", call.call_id, call.state.value, state.value, reason)
        call.state = state
        call.history.append((state, when))
        if state is CallState.ENDED:
            call.ended_at = when
            call.outcome = classify(call.facts(), self.drop_window_s)
            self._unregister(call)
            call._done.set()
        self._tell(call, state)

    def _tell(self, call: Call, state: CallState) -> None:
        for listener in list(self._listeners):
            try:
                listener(call, state)
            except Exception:
                log.exception("call listener %r failed on %s", listener, call)

    def _register(self, call: Call) -> None:
        self._active[call.call_id] = call
        for uid in call.sides:
            self._by_uniqueid[uid] = call
        self._by_linkedid[call.call_id] = call
        self._by_action_id[call.action_id] = call

    def _unregister(self, call: Call) -> None:
        self._active.pop(call.call_id, None)
        for uid in call.sides:
            if self._by_uniqueid.get(uid) is call:
                del self._by_uniqueid[uid]
        if self._by_linkedid.get(call.call_id) is call:
            del self._by_linkedid[call.call_id]
        if self._by_action_id.get(call.action_id) is call:
            del self._by_action_id[call.action_id]


def _channels_of(call: Call, listed: list[CoreShowChannel]) -> list[CoreShowChannel]:
    """The listed channels that belong to `call` (its halves, or anything linked to it)."""
    return [c for c in listed if c.uniqueid in call.sides or c.linkedid == call.call_id]
