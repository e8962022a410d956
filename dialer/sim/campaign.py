"""A discrete-event simulation of one campaign's day, driving a real pacing object.

Every `tick_s` the simulator builds the same `Snapshot` the engine would and asks the policy
how many calls to launch; it reports to the policy what the engine would report
(`DialEnded`, `Abandoned`, `TalkEnded`, `WrapUpEnded`). Time is the simulator's own clock,
randomness one seeded `random.Random`, so a run is reproducible to the call.

A dialled line is answered (with the answer probability, after `answer_after`) or given up
(after `give_up_after`). An answered debtor takes the longest-idle ready agent; with none,
they wait, and if no agent frees within `grace_s` (2 s) the call is abandoned. An agent
talks, wraps up, and becomes ready — or goes on a break due meanwhile.
"""
from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..pacing import (
    Abandoned,
    AgentPhase,
    AgentView,
    DialEnded,
    LineView,
    Observation,
    Pacing,
    Snapshot,
    TalkEnded,
    WrapUpEnded,
)
from .distributions import TEXTBOOK, Distributions

P = AgentPhase


@dataclass(frozen=True)
class SimConfig:
    agents: int = 10
    hours: float = 8.0
    tick_s: float = 1.0
    grace_s: float = 2.0
    start_s: float = 9 * 3600.0          # the clock at the start: 09:00 if read as seconds since midnight
    break_every_s: float | None = None   # each agent takes a break this often (staggered), if set
    break_s: float = 900.0
    # (seconds into the day, distributions from then on): a campaign that changes mid-day
    changes: tuple[tuple[float, Distributions], ...] = ()


@dataclass(frozen=True)
class Report:
    """A day's figures; `+` pools days (several seeds) before the ratios are taken."""

    agent_s: float = 0.0      # logged in and not on a break
    talk_s: float = 0.0
    wrap_s: float = 0.0
    idle_s: float = 0.0       # ready, waiting for a call
    dials: int = 0
    answered: int = 0
    connects: int = 0
    abandoned: int = 0
    answered_by_hour: tuple[int, ...] = ()
    abandoned_by_hour: tuple[int, ...] = ()

    def __add__(self, other: Report) -> Report:
        def hourly(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(x + y for x, y in itertools.zip_longest(a, b, fillvalue=0))
        return Report(self.agent_s + other.agent_s, self.talk_s + other.talk_s, self.wrap_s + other.wrap_s,
                      self.idle_s + other.idle_s, self.dials + other.dials, self.answered + other.answered,
                      self.connects + other.connects, self.abandoned + other.abandoned,
                      hourly(self.answered_by_hour, other.answered_by_hour),
                      hourly(self.abandoned_by_hour, other.abandoned_by_hour))

    @property
    def occupancy(self) -> float:
        """(talk + wrap-up) / logged-in time (breaks excluded)."""
        return (self.talk_s + self.wrap_s) / self.agent_s if self.agent_s else 0.0

    @property
    def abandon_rate(self) -> float:
        return self.abandoned / self.answered if self.answered else 0.0

    @property
    def wait_per_connect_s(self) -> float:
        return self.idle_s / self.connects if self.connects else float("inf")

    @property
    def connects_per_agent_hour(self) -> float:
        return self.connects / (self.agent_s / 3600) if self.agent_s else 0.0

    @property
    def dials_per_agent_hour(self) -> float:
        return self.dials / (self.agent_s / 3600) if self.agent_s else 0.0


@dataclass
class _Agent:
    phase: AgentPhase
    since: float
    time_in: dict[AgentPhase, float] = field(default_factory=lambda: dict.fromkeys(AgentPhase, 0.0))
    break_due: bool = False


@dataclass
class _Line:
    dialed_at: float
    answered_at: float | None = None


class Simulation:
    """One day: agents, lines in flight, answered debtors waiting, and the event queue."""

    def __init__(self, policy: Pacing, distributions: Distributions, config: SimConfig = SimConfig(),
                 seed: int = 0) -> None:
        self.policy = policy
        self.config = config
        self.rng = random.Random(seed)
        self.start = config.start_s
        self.end = config.start_s + config.hours * 3600
        self.dists = distributions
        self.now = self.start
        self.agents = [_Agent(P.READY, self.start) for _ in range(config.agents)]
        self.ready: deque[_Agent] = deque(self.agents)   # longest idle first
        self.waiting: dict[int, _Line] = {}              # answered, no agent yet; oldest first
        self.lines: dict[int, _Line] = {}
        self._ids = itertools.count()
        self._seq = itertools.count()
        self._events: list[tuple[float, int, Callable[..., None], tuple[object, ...]]] = []
        hours = int(config.hours) + 1
        self.dials = self.answered = self.connects = self.abandoned = 0
        self.answered_by_hour = [0] * hours
        self.abandoned_by_hour = [0] * hours

    # -------------------------------------------------------------- the event queue
    def _at(self, when: float, handler: Callable[..., None], *args: object) -> None:
        heapq.heappush(self._events, (when, next(self._seq), handler, args))

    def run(self) -> Report:
        self._at(self.start, self._tick)
        for offset, dists in self.config.changes:
            self._at(self.start + offset, self._change, dists)
        if self.config.break_every_s:
            for i, agent in enumerate(self.agents):
                first = self.config.break_every_s * (i + 1) / (len(self.agents) + 1)
                self._at(self.start + first, self._break_due, agent)
        while self._events and self._events[0][0] <= self.end:
            self.now, _, handler, args = heapq.heappop(self._events)
            handler(*args)
        self.now = self.end
        for agent in self.agents:
            self._set_phase(agent, agent.phase)
        return self._report()

    def _observe(self, event: Observation) -> None:
        self.policy.observe(event)

    def _hour(self) -> int:
        return min(len(self.answered_by_hour) - 1, int((self.now - self.start) // 3600))

    # -------------------------------------------------------------- agents
    def _set_phase(self, agent: _Agent, phase: AgentPhase) -> None:
        """The one place an agent changes phase: time accounting and the ready queue."""
        agent.time_in[agent.phase] += self.now - agent.since
        if agent.phase is P.READY and phase is not P.READY:
            self.ready.remove(agent)
        elif phase is P.READY and agent.phase is not P.READY:
            self.ready.append(agent)
        agent.phase, agent.since = phase, self.now

    def _connect(self, agent: _Agent, line_id: int) -> None:
        self.connects += 1
        self._set_phase(agent, P.ON_CALL)
        self._at(self.now + self.dists.talk.sample(self.rng), self._talk_end, agent)
        del self.lines[line_id]

    def _talk_end(self, agent: _Agent) -> None:
        self._observe(TalkEnded(self.now, self.now - agent.since))
        self._set_phase(agent, P.WRAP_UP)
        self._at(self.now + self.dists.wrap.sample(self.rng), self._wrap_end, agent)

    def _wrap_end(self, agent: _Agent) -> None:
        self._observe(WrapUpEnded(self.now, self.now - agent.since))
        if agent.break_due:
            self._start_break(agent)
        else:
            self._free(agent)

    def _free(self, agent: _Agent) -> None:
        """The agent is free: take the oldest waiting debtor, or wait for one."""
        self._set_phase(agent, P.READY)
        if self.waiting:
            line_id = next(iter(self.waiting))
            del self.waiting[line_id]
            self._connect(agent, line_id)

    def _break_due(self, agent: _Agent) -> None:
        if agent.phase is P.READY:
            self._start_break(agent)
        else:
            agent.break_due = True

    def _start_break(self, agent: _Agent) -> None:
        agent.break_due = False
        self._set_phase(agent, P.PAUSED)
        self._at(self.now + self.config.break_s, self._free, agent)
        assert self.config.break_every_s is not None
        self._at(self.now + self.config.break_every_s, self._break_due, agent)

    # -------------------------------------------------------------- lines
    def _dial(self) -> None:
        line_id = next(self._ids)
        self.lines[line_id] = _Line(self.now)
        self.dials += 1
        if self.rng.random() < self.dists.answer_p:
            self._at(self.now + self.dists.answer_after.sample(self.rng), self._answer, line_id)
        else:
            self._at(self.now + self.dists.give_up_after.sample(self.rng), self._give_up, line_id)

    def _give_up(self, line_id: int) -> None:
        line = self.lines.pop(line_id)
        self._observe(DialEnded(self.now, False, self.now - line.dialed_at))

    def _answer(self, line_id: int) -> None:
        line = self.lines[line_id]
        line.answered_at = self.now
        self.answered += 1
        self.answered_by_hour[self._hour()] += 1
        self._observe(DialEnded(self.now, True, self.now - line.dialed_at))
        if self.ready:
            self._connect(self.ready[0], line_id)
        else:
            self.waiting[line_id] = line
            self._at(self.now + self.config.grace_s, self._deadline, line_id)

    def _deadline(self, line_id: int) -> None:
        if self.waiting.pop(line_id, None) is None:
            return
        del self.lines[line_id]
        self.abandoned += 1
        self.abandoned_by_hour[self._hour()] += 1
        self._observe(Abandoned(self.now))

    # -------------------------------------------------------------- pacing
    def snapshot(self) -> Snapshot:
        now = self.now
        agents = tuple(AgentView(a.phase, now - a.since) for a in self.agents)
        lines = tuple(LineView(now - line.dialed_at, None if line.answered_at is None else now - line.answered_at)
                      for line in self.lines.values())
        return Snapshot(now, agents, lines)

    def _tick(self) -> None:
        for _ in range(self.policy.decide(self.snapshot())):
            self._dial()
        if self.now + self.config.tick_s < self.end:
            self._at(self.now + self.config.tick_s, self._tick)

    def _change(self, distributions: Distributions) -> None:
        self.dists = distributions

    def _report(self) -> Report:
        total = {phase: sum(a.time_in[phase] for a in self.agents) for phase in AgentPhase}
        return Report(agent_s=sum(total.values()) - total[P.PAUSED], talk_s=total[P.ON_CALL],
                      wrap_s=total[P.WRAP_UP], idle_s=total[P.READY], dials=self.dials, answered=self.answered,
                      connects=self.connects, abandoned=self.abandoned,
                      answered_by_hour=tuple(self.answered_by_hour), abandoned_by_hour=tuple(self.abandoned_by_hour))


def simulate(policy: Pacing, distributions: Distributions = TEXTBOOK, config: SimConfig = SimConfig(),
             seed: int = 0) -> Report:
    """One simulated day of `policy` (a fresh object: policies learn)."""
    return Simulation(policy, distributions, config, seed).run()
