"""One supervised, logged-in AMI connection to Asterisk.

panoramisk 1.4's `Manager` re-sends unanswered actions after a reconnect (a duplicate
Originate is a duplicate phone call to a debtor), reconnects after a fixed 2 s, never checks
the ping reply and drops the connection when a callback raises. So this module uses only
panoramisk's wire layer (`AMIProtocol` framing, `Action` serialisation and response
matching, `Message` parsing) and owns the lifecycle itself:

* one supervisor task connects, logs in (bounded), serves, and on loss waits an
  exponential backoff with jitter before trying again;
* a heartbeat task pings under a deadline; a missed pong means a silent peer (a SIGSTOPped
  Asterisk still accepts TCP), so the transport is aborted and the supervisor reconnects;
* every action has a deadline; actions unanswered when the transport goes are failed with
  `AmiConnectionLost` and never re-sent — callers reconcile from Asterisk's state instead;
* subscribers get typed events; one that raises is logged and cannot hurt the connection.

This is also the only module of `ami_bridge` that reads the clock (`clock`, injectable).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from . import actions as build
from .counters import Counters, CountersSnapshot
from .errors import (
    AmiActionError,
    AmiActionTimeout,
    AmiAuthError,
    AmiConnectionLost,
    AmiError,
    AmiNotConnected,
    AmiProtocolError,
)
from .events import Event, FullyBooted, Shutdown, parse_event

log = logging.getLogger(__name__)

_ERROR_RESPONSES = frozenset({"error", "fail", "failure"})


class ConnectionState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"  # TCP up *and* logged in
    CLOSED = "closed"  # final: close() was called, or Asterisk refused our credentials


@dataclass(frozen=True)
class AmiSettings:
    host: str
    port: int
    username: str
    secret: str = field(repr=False)
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 3.0
    action_timeout: float = 10.0
    # Asterisk sleeps 1 s before answering a failed Login, so keep this well above 1 s or
    # a wrong secret looks like a silent peer and is retried forever.
    login_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    events: str = "system,call,user"

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "heartbeat_timeout", "action_timeout", "login_timeout",
                     "backoff_initial", "backoff_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AmiSettings.{name} must be positive")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("AmiSettings.backoff_max must be >= backoff_initial")


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float, rnd: float) -> float:
    """Delay before reconnect attempt `attempt` (0-based since the last good login).

    Doubles from `initial` up to `maximum`, then scales into [1 - jitter, 1] of that with
    `rnd` in [0, 1): many dialers restarting with one Asterisk must not reconnect in step.
    """
    base = min(maximum, initial * (2 ** min(attempt, 62)))
    return base * (1.0 - jitter + jitter * rnd)


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive view of one AMI message (AMI header case varies)."""

    def __init__(self, message: Mapping[str, Any]) -> None:
        self._store = {}
        for key, value in message.items():
            if key.lower() == "content":
                continue
            self._store[key.lower()] = (key, value if isinstance(value, str) else ",".join(map(str, value)))

    def __getitem__(self, key: str) -> str:
        return self._store[key.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass(frozen=True)
class ActionResult:
    """Asterisk's answer to one action. For list actions, `items` are the listed entries
    (the closing `...Complete` event excluded) and `events` their typed form where modelled."""

    action: str
    action_id: str
    response: str
    message: str
    headers: Headers
    items: tuple[Headers, ...]
    events: tuple[Event, ...]
    received_at: float
    latency_s: float


EventCallback = Callable[[Event], Any]
ConnectedCallback = Callable[[], Any]
StateListener = Callable[[ConnectionState, str], Any]


class _Protocol(AMIProtocol):
    """panoramisk's framing and response matching, minus its re-queue-and-resend.

    Differences from `AMIProtocol`: on close, pending actions fail with AmiConnectionLost
    instead of being queued for re-sending; events are never fed to a non-list action's
    future (an early OriginateResponse would otherwise be swallowed as the response); an
    error answer to a list action completes it; the Login secret never reaches a log line.
    """

    def __init__(self, owner: AmiConnection) -> None:
        super().__init__()
        self._owner = owner
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.drop_reason = "peer closed the connection"
        #: Asterisk said FullyBooted on this session (right after login once it has booted).
        self.booted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.encoding = "utf8"
        self.log = log

    def write_action(self, action: Action) -> None:
        if self.closed:
            raise AmiNotConnected("connection closed before the action could be written")
        self.responses[action.id] = action
        self.transport.write(str(action).encode(self.encoding))

    def forget(self, action: Action) -> None:
        self.responses.pop(action.id, None)

    def handle_message(self, message: Message) -> None:
        action = self.responses.get(message.id) if message.id else None
        is_event = "event" in message
        if action is not None and (not is_event or action.as_list):
            if not action.responses and message.response.lower() in _ERROR_RESPONSES:
                # panoramisk would wait forever for the list an error answer never starts
                action.responses.append(message)
                if not action.future.done():
                    action.future.set_result(message)
                self.responses.pop(action.id, None)
            elif action.add_message(message):
                self.responses.pop(action.id, None)
        elif is_event:
            try:
                self._owner._on_event_message(self, message)
            except Exception:  # an exception escaping data_received would drop the connection
                log.exception("failed to handle AMI event %s", message.get("event", "?"))
        else:
            log.debug("AMI response for no pending action (late, after its deadline?): %s",
                      message.get("actionid", ""))

    def drop(self, reason: str) -> None:
        """Abort now: a silent peer will never flush a graceful close."""
        if not self.closed:
            self.drop_reason = reason
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.drop_reason == "peer closed the connection":
            self.drop_reason = f"connection error: {exc}"
        self._fail_pending()
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(self.drop_reason)

    def close(self) -> None:
        if not self.closed:
            self.drop_reason = "closed by us"
        self._fail_pending()
        if not self.closed:
            self.closed = True
            self.transport.close()

    def _fail_pending(self) -> None:
        pending = {id(a): a for a in self.responses.values()}.values()
        self.responses.clear()
        for action in pending:
            if not action.future.done():
                action.future.set_exception(AmiConnectionLost(
                    f"{action.get('action', '?')} (ActionID {action.id}) unanswered when the connection "
                    f"was lost ({self.drop_reason}); not re-sent"))


class AmiConnection:
    """A logged-in AMI session that reconnects by itself and never re-sends an action.

    `start(wait=True)` returns once logged in; `start(wait=False)` returns at once and the
    connection comes up in the background (see `wait_connected`). Either way, an
    unreachable or silent Asterisk is retried with backoff until `close()`; only refused
    credentials stop it (AmiAuthError, state CLOSED).
    """

    def __init__(
        self,
        settings: AmiSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random_source: Callable[[], float] = random.random,
        backoff_jitter: float = 0.2,
        rate_window_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep  # used for reconnect backoff only
        self._random = random_source
        self._jitter = backoff_jitter
        self._counters = Counters(rate_window_s)
        self._state = ConnectionState.DISCONNECTED
        self.history: list[tuple[ConnectionState, str]] = [(self._state, "created")]
        self._protocol: _Protocol | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscribers: list[EventCallback] = []
        self._connected_hooks: list[ConnectedCallback] = []
        self._state_listeners: list[StateListener] = []
        self._state_waiters: list[asyncio.Future[None]] = []
        self._fatal: AmiError | None = None
        self._closing = False

    def __repr__(self) -> str:
        s = self.settings
        return f"<AmiConnection {s.username}@{s.host}:{s.port} {self._state.value}>"

    # ----------------------------------------------------------------- observation
    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def fully_booted(self) -> bool:
        """Logged in, and Asterisk has said FullyBooted on this session: its dialplan and
        modules are loaded, so a call placed now can work. Right after a restart Asterisk
        accepts logins some time before that."""
        protocol = self._protocol
        return self._state is ConnectionState.CONNECTED and protocol is not None and protocol.booted

    @property
    def counters(self) -> CountersSnapshot:
        return self._counters.snapshot(self._clock())

    def now(self) -> float:
        """The connection's clock, for components of ami_bridge that need a timestamp."""
        return self._clock()

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call `callback(event)` for every typed event; returns an unsubscribe function.

        A coroutine function is run as a task owned by the connection.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def on_connected(self, callback: ConnectedCallback) -> Callable[[], None]:
        """Run `callback()` (sync or async) after every successful login, first one included.

        This is where state lost during an outage is reconciled. Returns an unregister function.
        """
        self._connected_hooks.append(callback)
        return lambda: self._connected_hooks.remove(callback) if callback in self._connected_hooks else None

    def add_state_listener(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)

    # ----------------------------------------------------------------- lifecycle
    async def start(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Start the supervisor. With `wait`, return once logged in, raise AmiAuthError on
        refused credentials, or AmiNotConnected after `timeout` (retrying continues)."""
        if self._supervisor is not None:
            raise RuntimeError("AmiConnection.start() called twice")
        self._supervisor = self._spawn(self._supervise(), "ami-supervisor")
        if wait:
            await self.wait_connected(timeout)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once logged in; AmiAuthError if credentials were refused, AmiNotConnected
        if closed, not started, or still not logged in after `timeout` seconds."""
        await self._wait_until(lambda: self._state is ConnectionState.CONNECTED, timeout, "logged in")

    async def wait_fully_booted(self, timeout: float | None = None) -> None:
        """Like `wait_connected`, and also until Asterisk has said FullyBooted."""
        await self._wait_until(lambda: self.fully_booted, timeout, "fully booted")

    async def _wait_until(self, condition: Callable[[], bool], timeout: float | None, what: str) -> None:
        if self._supervisor is None:
            raise AmiNotConnected("AmiConnection.start() was not called")

        async def wait() -> None:
            while not condition():
                if self._state is ConnectionState.CLOSED:
                    raise self._fatal or AmiNotConnected("connection is closed")
                waiter = asyncio.get_running_loop().create_future()
                self._state_waiters.append(waiter)
                await waiter

        try:
            await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            raise AmiNotConnected(
                f"not {what} at {self.settings.host}:{self.settings.port} after {timeout:g}s "
                "(still retrying in the background)") from None

    async def close(self) -> None:
        """Log off politely if possible, cancel every task we own, end in CLOSED."""
        if self._closing:
            return
        self._closing = True
        protocol = self._protocol
        if protocol is not None and not protocol.closed and self._state is ConnectionState.CONNECTED:
            try:
                await self._execute(protocol, build.logoff(), self.settings.heartbeat_timeout)
            except AmiError as exc:
                log.info("AMI Logoff not acknowledged: %s", exc)
        if protocol is not None:
            protocol.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._protocol = None
        self._set_state(ConnectionState.CLOSED, "closed by us")

    # ----------------------------------------------------------------- actions
    async def send(self, action: Mapping[str, Any], timeout: float | None = None) -> ActionResult:
        """Write `action` once and wait for its answer under a deadline.

        Raises AmiNotConnected (not written), AmiActionTimeout / AmiConnectionLost (written,
        fate unknown), AmiActionError (Asterisk said Error).
        """
        protocol = self._protocol
        if self._state is not ConnectionState.CONNECTED or protocol is None or protocol.closed:
            raise AmiNotConnected(f"cannot send {action.get('Action', '?')}: AMI is {self._state.value}")
        return await self._execute(protocol, action, timeout or self.settings.action_timeout)

    async def _execute(self, protocol: _Protocol, action: Mapping[str, Any], timeout: float) -> ActionResult:
        name = _action_name(action)
        is_list = name.lower() in build.LIST_ACTIONS
        pa = Action(dict(action), as_list=is_list)
        self._counters.action_sent(name)  # counted before the write: a lost originate still counts
        log.debug("AMI -> %s", build.redacted(pa))
        started = self._clock()
        protocol.write_action(pa)
        try:
            result = await asyncio.wait_for(pa.future, timeout)
        except asyncio.TimeoutError:
            self._counters.action_timed_out(name)
            raise AmiActionTimeout(name, pa.id, timeout) from None
        finally:
            protocol.forget(pa)
        now = self._clock()
        messages = result if isinstance(result, list) else [result]
        first = messages[0]
        failed = first.response.lower() in _ERROR_RESPONSES
        self._counters.action_answered(name, now - started, error=failed)
        if failed:
            raise AmiActionError(name, pa.id, first.message)
        return self._result(name, pa.id, messages, now, now - started)

    def _result(self, name: str, action_id: str, messages: list[Message], now: float, latency: float) -> ActionResult:
        items = [m for m in messages[1:] if not m.event.endswith("Complete")]
        typed: list[Event] = []
        for item in items:
            try:
                event = parse_event(item, now)
            except AmiProtocolError as exc:
                log.warning("ignoring malformed %s list item: %s", name, exc)
                continue
            if event is not None:
                typed.append(event)
        first = messages[0]
        return ActionResult(
            action=name, action_id=action_id, response=first.response, message=first.message,
            headers=Headers(first), items=tuple(Headers(m) for m in items), events=tuple(typed),
            received_at=now, latency_s=latency,
        )

    # ----------------------------------------------------------------- supervision
    async def _supervise(self) -> None:
        attempt = 0
        while not self._closing:
            self._set_state(ConnectionState.CONNECTING, f"attempt {attempt + 1}")
            try:
                protocol = await self._open()
            except AmiAuthError as exc:
                self._fatal = exc
                self._set_state(ConnectionState.CLOSED, str(exc))
                return
            except (OSError, asyncio.TimeoutError, AmiError) as exc:
                self._counters.connect_failures += 1
                reason = f"connect/login failed: {exc.__class__.__name__}: {exc}"
            else:
                attempt = 0
                reason = await self._serve(protocol)
            if self._closing:
                return
            delay = backoff_delay(attempt, self.settings.backoff_initial, self.settings.backoff_max,
                                  self._jitter, self._random())
            attempt += 1
            self._set_state(ConnectionState.DISCONNECTED, f"{reason}; retrying in {delay:.2f}s")
            await self._sleep(delay)

    async def _open(self) -> _Protocol:
        s = self.settings
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), s.host, s.port), s.login_timeout)
        try:
            await self._execute(protocol, build.login(s.username, s.secret, s.events), s.login_timeout)
        except AmiActionError as exc:
            protocol.close()
            raise AmiAuthError(
                f"Asterisk refused AMI login for user {s.username!r}: {exc.message}; "
                "check the username/secret and manager.conf") from None
        except BaseException:
            protocol.drop("login not answered")
            raise
        return protocol

    async def _serve(self, protocol: _Protocol) -> str:
        """Run one logged-in session; return why it ended."""
        self._protocol = protocol
        self._counters.logins += 1
        self._set_state(ConnectionState.CONNECTED, "logged in")
        heartbeat = self._spawn(self._heartbeat(protocol), "ami-heartbeat")
        hooks = self._spawn(self._run_connected_hooks(), "ami-on-connected")
        try:
            return await asyncio.shield(protocol.lost)
        finally:
            self._protocol = None
            for task in (heartbeat, hooks):
                task.cancel()
            await asyncio.gather(heartbeat, hooks, return_exceptions=True)

    async def _heartbeat(self, protocol: _Protocol) -> None:
        s = self.settings
        while not protocol.closed:
            await asyncio.sleep(s.heartbeat_interval)
            try:
                await self._execute(protocol, build.ping(), s.heartbeat_timeout)
            except AmiActionTimeout:
                self._counters.heartbeat_misses += 1
                log.warning("AMI Ping unanswered after %gs: Asterisk is silent; dropping the connection",
                            s.heartbeat_timeout)
                protocol.drop("heartbeat missed")
                return
            except (AmiConnectionLost, AmiNotConnected):
                return

    async def _run_connected_hooks(self) -> None:
        for hook in list(self._connected_hooks):
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("on_connected hook %r failed", hook)

    # ----------------------------------------------------------------- events
    def _on_event_message(self, protocol: _Protocol, message: Message) -> None:
        now = self._clock()
        self._counters.event(now)
        try:
            event = parse_event(message, now)
        except AmiProtocolError as exc:
            log.warning("ignoring malformed AMI event: %s", exc)
            return
        if event is None:
            return
        if isinstance(event, FullyBooted):
            protocol.booted = True
            self._wake_waiters()
        for callback in list(self._subscribers):
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    self._spawn(_awaited(result), f"ami-subscriber-{type(event).__name__}")
            except Exception:
                log.exception("AMI event subscriber %r raised on %s; connection unaffected", callback, event)
        if isinstance(event, Shutdown):
            protocol.drop(f"Asterisk shutting down ({event.shutdown})")

    # ----------------------------------------------------------------- plumbing
    def _set_state(self, state: ConnectionState, reason: str) -> None:
        if state is self._state and state is not ConnectionState.CONNECTING:
            return
        log.info("AMI %s:%s %s -> %s (%s)", self.settings.host, self.settings.port,
                 self._state.value, state.value, reason)
        self._state = state
        self.history.append((state, reason))
        self._wake_waiters()
        for listener in list(self._state_listeners):
            try:
                listener(state, reason)
            except Exception:
                log.exception("AMI state listener %r failed", listener)

    def _wake_waiters(self) -> None:
        waiters, self._state_waiters = self._state_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("AMI task %s failed", task.get_name(), exc_info=task.exception())


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _action_name(action: Mapping[str, Any]) -> str:
    for key, value in action.items():
        if key.lower() == "action":
            return str(value)
    raise ValueError(f"not an AMI action (no Action key): {build.redacted(action)}")
