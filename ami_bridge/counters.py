"""Connection counters: what an operator needs to see whether AMI is healthy.

The arithmetic is pure: every method takes `now` as an argument, so the connection (the
only reader of the clock) decides what time it is and tests can pass any time they like.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class ActionStats:
    count: int
    errors: int
    timeouts: int
    mean_latency_s: float
    max_latency_s: float


@dataclass(frozen=True)
class CountersSnapshot:
    at: float
    events_received: int
    events_per_second: float  # over the last `window_s` seconds
    window_s: float
    actions_sent: int
    actions: Mapping[str, ActionStats]  # by action name, as sent ("Ping", "Originate", ...)
    originates_sent: int
    logins: int
    reconnects: int  # successful logins after the first one
    connect_failures: int
    heartbeat_misses: int

    def line(self) -> str:
        """One line for an operator: is AMI healthy, and how fast does Asterisk answer?"""
        originate = self.actions.get("Originate")
        dials = (f"{self.originates_sent} originates" + (
            f" (answered in {originate.mean_latency_s * 1000:.0f} ms on average, {originate.max_latency_s * 1000:.0f} ms"
            f" at most; {originate.timeouts} timed out, {originate.errors} refused)" if originate else ""))
        return (f"AMI: {self.events_received} events ({self.events_per_second:.1f}/s over the last "
                f"{self.window_s:.0f} s), {self.actions_sent} actions, {dials}, {self.logins} login(s), "
                f"{self.reconnects} reconnect(s), {self.connect_failures} failed connect(s), "
                f"{self.heartbeat_misses} heartbeat miss(es)")


class EventRate:
    """Events per second over a sliding window, in one-second buckets (bounded memory)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._buckets: deque[list[int]] = deque()  # [second, count]

    def add(self, now: float) -> None:
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([second, 1])
        self._expire(now)

    def rate(self, now: float) -> float:
        self._expire(now)
        return sum(count for _, count in self._buckets) / self.window_s

    def _expire(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= now - self.window_s:
            self._buckets.popleft()


class _ActionTally:
    __slots__ = ("count", "answered", "errors", "timeouts", "total", "max")

    def __init__(self) -> None:
        self.count = self.answered = self.errors = self.timeouts = 0
        self.total = self.max = 0.0


class Counters:
    """Mutable tallies owned by one AmiConnection; `snapshot(now)` is what others see."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.events_received = 0
        self.originates_sent = 0
        self.logins = 0
        self.connect_failures = 0
        self.heartbeat_misses = 0
        self._rate = EventRate(window_s)
        self._actions: dict[str, _ActionTally] = {}

    def event(self, now: float) -> None:
        self.events_received += 1
        self._rate.add(now)

    def action_sent(self, name: str) -> None:
        self._actions.setdefault(name, _ActionTally()).count += 1
        if name.lower() == "originate":
            self.originates_sent += 1

    def action_answered(self, name: str, latency_s: float, *, error: bool = False) -> None:
        tally = self._actions.setdefault(name, _ActionTally())
        tally.answered += 1
        tally.total += latency_s
        tally.max = max(tally.max, latency_s)
        if error:
            tally.errors += 1

    def action_timed_out(self, name: str) -> None:
        self._actions.setdefault(name, _ActionTally()).timeouts += 1

    def snapshot(self, now: float) -> CountersSnapshot:
        actions = {}
        for name, t in self._actions.items():
            actions[name] = ActionStats(
                count=t.count, errors=t.errors, timeouts=t.timeouts,
                mean_latency_s=t.total / t.answered if t.answered else 0.0, max_latency_s=t.max,
            )
        return CountersSnapshot(
            at=now,
            events_received=self.events_received,
            events_per_second=self._rate.rate(now),
            window_s=self._rate.window_s,
            actions_sent=sum(t.count for t in self._actions.values()),
            actions=MappingProxyType(actions),
            originates_sent=self.originates_sent,
            logins=self.logins,
            reconnects=max(0, self.logins - 1),
            connect_failures=self.connect_failures,
            heartbeat_misses=self.heartbeat_misses,
        )
