"""Pacing: how many calls to launch now. Three policies behind one interface, all pure.

    decide(snapshot) -> int     how many new dials to start at `snapshot.now` (≥ 0)
    observe(event)              what happened to an earlier dial (the policies that learn)

A policy never reads the clock and never does I/O: the engine (or the simulator in
`dialer.sim`) builds a frozen `Snapshot` of agents and lines in flight and passes it in, so
the same objects run live, in the simulator and in the tests, and every decision can be
reproduced to the second.

Time is float seconds on one steady clock: `now` and every event's `at`. Floats rather than
datetimes because the policies do duration arithmetic several times a second and the
simulator runs a working day in seconds; the engine passes `clock.now().timestamp()`. Only
VICIdial's port needs the time of day (its "today" drop statistics and its TAPERED method):
it gets it from `VicidialSettings.seconds_since_midnight(now)`, UTC by default.

The policies:

* `Progressive` — one line per ready agent not already covered by a line in flight. The
  floor: no agent waits for a dial, and no answered debtor can miss an agent.
* `VicidialAdaptive` — a port of VICIdial's adaptive dial level (see its docstring for the
  source of every constant), the baseline our predictive mode must beat.
* `Predictive` — ours. A `Learner` keeps, per campaign, the answer probability and the
  distributions of time to answer, time to give up on a no-answer, talk and wrap-up (sliding
  windows over a prior). From the snapshot it works out, second by second over the answer
  horizon, which agents will be free (an agent in wrap-up frees at a well-known moment) and
  which lines will have been answered; it launches calls one at a time while the chance that
  the next one, if answered, finds no agent within the 2 s grace stays under a threshold
  Φ(−z). An `AbandonController` moves `z` so that the abandon rate (answered calls with no
  agent within 2 s, over a rolling 24 h or 30 days) stays under its target, 3 % by default.
  Until it has seen `warmup_dials` dials it behaves as Progressive, then starts cautious;
  it never launches fewer calls than Progressive would, nor more lines than
  `max_lines_per_agent` per agent at work.
"""
from __future__ import annotations

import bisect
import enum
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# ===================================================================== the snapshot


class AgentPhase(enum.Enum):
    """What an agent is doing, as pacing needs to know it (a view of `dialer.agents`)."""

    READY = "ready"          # waiting for a call
    RESERVED = "reserved"    # ready, but a ringing line was dialled for them (engine's progressive mode)
    ON_CALL = "on_call"      # talking to a debtor
    WRAP_UP = "wrap_up"      # recording the disposition
    PAUSED = "paused"        # on a break: not available, not expected back within the horizon


@dataclass(frozen=True, slots=True)
class AgentView:
    phase: AgentPhase
    elapsed_s: float = 0.0   # time in this phase: talk so far, wrap-up so far


@dataclass(frozen=True, slots=True)
class LineView:
    """A dial not yet bridged to an agent."""

    ring_s: float                    # since the dial
    waiting_s: float | None = None   # since the debtor answered, when waiting for an agent


@dataclass(frozen=True)
class Snapshot:
    """The campaign at `now`, as the engine (or the simulator) sees it at a tick: every
    logged-in agent, and every dial in flight (ringing, or answered and not yet bridged).
    Bridged calls are not lines: their agent is ON_CALL."""

    now: float
    agents: tuple[AgentView, ...] = ()
    lines: tuple[LineView, ...] = ()

    def count(self, *phases: AgentPhase) -> int:
        return sum(1 for a in self.agents if a.phase in phases)

    @property
    def waiting(self) -> int:
        """Answered calls waiting for an agent (VICIdial's LIVE calls)."""
        return sum(1 for line in self.lines if line.waiting_s is not None)


# ===================================================================== what is observed


@dataclass(frozen=True, slots=True)
class DialEnded:
    """A dial's ringing is over: answered (at the answer) or not (at give-up / busy / failure).
    With AMD, a person's answer counts when AMD says HUMAN (the agent is needed from then);
    a MACHINE result is `machine`, not answered: it needs no agent, and its line is free
    again at `ring_s`."""

    at: float
    answered: bool
    ring_s: float   # dial → answer, or dial → end
    machine: bool = False


@dataclass(frozen=True, slots=True)
class Abandoned:
    """An answered debtor had no agent within the grace time (2 s)."""

    at: float


@dataclass(frozen=True, slots=True)
class TalkEnded:
    at: float
    talk_s: float   # bridged → hangup


@dataclass(frozen=True, slots=True)
class WrapUpEnded:
    at: float
    wrap_s: float   # hangup → ready (or pause)


Observation = DialEnded | Abandoned | TalkEnded | WrapUpEnded


class Pacing(Protocol):
    def decide(self, snapshot: Snapshot) -> int: ...

    def observe(self, event: Observation) -> None: ...


def uncovered_ready(snapshot: Snapshot) -> int:
    """Ready agents no line in flight is already for (reserved agents count as ready: their
    ringing line covers them)."""
    agents = snapshot.count(AgentPhase.READY, AgentPhase.RESERVED)
    return max(0, agents - len(snapshot.lines))


@dataclass(frozen=True)
class Progressive:
    """One line per ready agent not already covered: an answered debtor always has an agent."""

    def decide(self, snapshot: Snapshot) -> int:
        return uncovered_ready(snapshot)

    def observe(self, event: Observation) -> None:
        return None


# ===================================================================== VICIdial's adaptive level


class AdaptMethod(enum.Enum):
    HARD_LIMIT = "ADAPT_HARD_LIMIT"
    AVERAGE = "ADAPT_AVERAGE"
    TAPERED = "ADAPT_TAPERED"


def utc_seconds_since_midnight(now: float) -> float:
    return now % 86400.0


@dataclass(frozen=True)
class VicidialSettings:
    """The campaign fields AST_VDadapt.pl reads; defaults are VICIdial's column defaults."""

    method: AdaptMethod = AdaptMethod.HARD_LIMIT   # dial_method
    initial_level: float = 1.0                     # auto_dial_level when the campaign starts
    dropped_percentage: float = 3.0                # adaptive_dropped_percentage
    maximum_level: float = 3.0                     # adaptive_maximum_level
    intensity: float = 0.0                         # adaptive_intensity
    dl_diff_target: int = 0                        # adaptive_dl_diff_target
    latest_server_time: int = 2100                 # adaptive_latest_server_time, HHMM
    sample_every_s: float = 1.0                    # the adapt loop's delay ($CLIdelay)
    samples: int = 15                              # $stat_it: samples averaged
    level_every_s: float = 15.0                    # $diff_ratio_updater >= 15
    drops_every_s: float = 60.0                    # $drop_count_updater >= 60
    seconds_since_midnight: Callable[[float], float] = utc_seconds_since_midnight


@dataclass(frozen=True)
class DropStats:
    """What `calculate_drops` leaves for `calculate_dial_level`."""

    calls_one: int = 0                 # dials in the last minute
    drops_one_pct: float = 0.0         # drops / dials in the last minute, %
    calls_today: int = 0
    drops_answers_today_pct: float = 0.0   # drops / answers today, %


def _pct(part: int, whole: int) -> float:
    """sprintf("%.2f", part / whole * 100), as the Perl stores it."""
    return round(part / whole * 100, 2)


def adapt_dial_level(level: float, differential: float, agents_avg: float, drops: DropStats,
                     settings: VicidialSettings, hhmm: int) -> float:
    """`calculate_dial_level` of AST_VDadapt.pl: the next auto_dial_level.

    `differential` is ready-agents minus waiting-calls, `agents_avg` logged-in agents, both
    averaged over the last 15 samples; `hhmm` the server's time of day as HHMM.
    """
    target = differential + settings.dl_diff_target
    mul = target / agents_avg if target != 0 and agents_avg != 0 else 0.0
    pct_raw = mul * 100
    intensity_mul = settings.intensity / 100
    if pct_raw < 0:
        intensity_diff = pct_raw * abs(intensity_mul - 1)
    else:
        intensity_diff = pct_raw * (intensity_mul + 1)
    new = round(level * (intensity_diff / 100 + 1), 3)
    new = min(new, settings.maximum_level)
    new = max(new, 1.0)
    # Tapered: HHMM minus HHMM, as the Perl does (2100 - 1330 = 770 "left", rate 0.77).
    hours_left = settings.latest_server_time - hhmm
    tapered_rate = 1.0 if hours_left > 1000 else hours_left / 1000
    if drops.calls_one > 20 and drops.drops_one_pct > 50:
        new = new / 2
    if drops.calls_today > 50 and drops.drops_answers_today_pct > settings.dropped_percentage:
        if settings.method is AdaptMethod.HARD_LIMIT:
            new = 1.0
        elif settings.method is AdaptMethod.AVERAGE:
            new = new / 2
        elif hours_left < 0:
            new = 1.0
        else:
            new = new * tapered_rate
    return max(new, 1.0)


def vicidial_calls_to_place(level: float, snapshot: Snapshot, dl_diff_target: int = 0) -> int:
    """AST_VDauto_dial.pl: goal = sprintf("%.0f", level × agents), minus the calls it already has.

    Agents are those not paused and not "dead" (in wrap-up); calls are every auto-call of the
    campaign in SENT/RINGING/LIVE/XFER/CLOSER, i.e. lines in flight plus calls with an agent.
    Python's round() rounds halves to even like C's printf, which Perl uses.
    """
    on_call = snapshot.count(AgentPhase.ON_CALL)
    agents = snapshot.count(AgentPhase.READY, AgentPhase.RESERVED) + on_call
    agents = max(0, agents + dl_diff_target)
    goal = round(level * agents)
    return max(0, goal - len(snapshot.lines) - on_call)


class VicidialAdaptive:
    """VICIdial's adaptive predictive dialing (AST_VDadapt.pl + AST_VDauto_dial.pl), ported.

    Source: VICIdial `bin/AST_VDadapt.pl` version 2.4 (build 110513-0721, as in the
    inktel/Vicidial repository, commit 9e65b4ce); `calculate_dial_level` is unchanged in
    version 2.14 (build 240219-1514). Line numbers could not be taken (no raw copy was
    reachable), so each constant is given with the statement it comes from:

    * one sample a second: main loop `usleep($CLIdelay*1000*1000)`, `$CLIdelay = '1'`;
    * 15 samples averaged: `count_agents_lines`, `$stat_it=15` and `if ($stat_count < 15)`;
      ready = agents in READY|DONE, waiting = `vicidial_auto_calls` in LIVE, total = every
      live agent (paused ones too); `$stat_differential = $ready_diff_avg - $waiting_diff_avg`;
    * a new level every 15 s: `if ($diff_ratio_updater>=15) { &calculate_dial_level; }`;
    * drop statistics every 60 s: `if ($drop_count_updater>=60) { &calculate_drops; }`,
      first pass at once (`$drop_count_updater=61`);
    * the level: `$differential_mul = $differential_target / $agents_average_onemin`,
      intensity `($adaptive_intensity / 100)`, `abs($intensity_mul - 1)` when the difference is
      negative and `($intensity_mul + 1)` otherwise, `$auto_dial_level * ($intensity_diff_mul + 1)`
      rounded `sprintf("%.3f")`, capped at `$adaptive_maximum_level`, floored at 1.0;
    * the guards: last minute `($VCScalls_one > 20) && ($VCSdrops_one_pct > 50)` halves the
      level; today `($VCScalls_today > 50) && ($VCSdrops_answers_today_pct >
      $adaptive_dropped_percentage)` sets 1.0 (HARD_LIMIT), halves (AVERAGE) or multiplies by
      `$tapered_rate` (TAPERED; 1.0 once past `adaptive_latest_server_time`), where
      `$tapered_hours_left = $last_target_hour_final - $current_hourmin` (HHMM arithmetic) and
      `$tapered_rate = 1` above 1000, else `/ 1000`; last, `if ($intensity_dial_level < 1)` 1.0;
    * defaults from `extras/MySQL_AST_CREATE_tables.sql`: `adaptive_dropped_percentage` '3',
      `adaptive_maximum_level` '3.0', `adaptive_latest_server_time` '2100',
      `adaptive_intensity` '0', `adaptive_dl_diff_target` '0';
    * how the level is used, `bin/AST_VDauto_dial.pl`: `$DBIPgoalcalls = ($DBIPadlevel *
      $DBIPcount)` then `sprintf("%.0f", ...)` — rounded, not ceil — and `$DBIPmakecalls =
      ($DBIPgoalcalls - $DBIPexistcalls)`, existing calls counted in
      SENT/RINGING/LIVE/XFER/CLOSER; agents counted exclude paused and DEAD (wrap-up) ones.

    Left out (off by default in VICIdial): the dial-level and available-only tally
    thresholds, inbound blending, drop-rate groups, trunk limits, and the hopper check (we
    assume leads to dial). Dials are counted when they end, not by `call_date`.
    """

    def __init__(self, settings: VicidialSettings = VicidialSettings()) -> None:
        self.settings = settings
        self.level = settings.initial_level
        self.drops = DropStats()
        self.history: list[tuple[float, float]] = []   # (at, level) after each recalculation
        self._samples: deque[tuple[int, int, int]] = deque(maxlen=settings.samples)
        self._sampled_at: float | None = None
        self._level_at: float | None = None
        self._drops_at: float | None = None
        self._dials_minute: deque[float] = deque()
        self._drops_minute: deque[float] = deque()
        self._today: float | None = None   # start of "today" on our clock
        self._today_counts = [0, 0, 0]     # dials, answers, drops

    # -------------------------------------------------------------- observe
    def observe(self, event: Observation) -> None:
        self._roll_day(event.at)
        if isinstance(event, DialEnded):
            self._dials_minute.append(event.at)
            self._today_counts[0] += 1
            self._today_counts[1] += int(event.answered)
        elif isinstance(event, Abandoned):
            self._drops_minute.append(event.at)
            self._today_counts[2] += 1

    def _roll_day(self, now: float) -> None:
        start = now - self.settings.seconds_since_midnight(now)
        if self._today is None or start - self._today > 1.0:
            self._today, self._today_counts = start, [0, 0, 0]

    # -------------------------------------------------------------- decide
    def decide(self, snapshot: Snapshot) -> int:
        now = snapshot.now
        self._roll_day(now)
        s = self.settings
        if self._sampled_at is None or now - self._sampled_at >= s.sample_every_s:
            self._sampled_at = now
            self._samples.append((snapshot.count(AgentPhase.READY, AgentPhase.RESERVED), snapshot.waiting,
                                  len(snapshot.agents)))
            agents_avg = sum(t for _, _, t in self._samples) / len(self._samples)
            if agents_avg > 0:
                if self._drops_at is None or now - self._drops_at >= s.drops_every_s:
                    self._drops_at = now
                    self.drops = self._drop_stats(now)
                if self._level_at is None:
                    self._level_at = now
                elif now - self._level_at >= s.level_every_s:
                    self._level_at = now
                    ready = sum(r for r, _, _ in self._samples) / len(self._samples)
                    waiting = sum(w for _, w, _ in self._samples) / len(self._samples)
                    sod = s.seconds_since_midnight(now)
                    hhmm = int(sod // 3600) * 100 + int(sod % 3600 // 60)
                    self.level = adapt_dial_level(self.level, ready - waiting, agents_avg, self.drops, s, hhmm)
                    self.history.append((now, self.level))
        return vicidial_calls_to_place(self.level, snapshot, s.dl_diff_target)

    def _drop_stats(self, now: float) -> DropStats:
        for times in (self._dials_minute, self._drops_minute):
            while times and times[0] <= now - 60:
                times.popleft()
        dials, answers, drops = self._today_counts
        one = len(self._dials_minute)
        return DropStats(
            calls_one=one,
            drops_one_pct=_pct(len(self._drops_minute), one) if one and self._drops_minute else 0.0,
            calls_today=dials,
            drops_answers_today_pct=_pct(drops, max(answers, 1)) if drops else 0.0)


# ===================================================================== learning (ours)


class Window:
    """The last `size` durations on a 1-second grid, plus a prior that fades as data comes.

    A sliding window rather than all history so that a campaign whose debtors change (a new
    batch, another time of day) is followed within `size` observations.
    """

    def __init__(self, prior: Sequence[float], prior_weight: float, size: int, limit_s: int) -> None:
        self.limit_s = limit_s
        self.counts = [0] * (limit_s + 1)
        self.prior = [0.0] * (limit_s + 1)
        for value in prior:
            self.prior[self._bin(value)] += prior_weight / len(prior)
        self.prior_weight = prior_weight if prior else 0.0
        self._recent: deque[int] = deque(maxlen=size)
        self.added = 0

    def _bin(self, seconds: float) -> int:
        return min(self.limit_s, max(0, round(seconds)))

    def add(self, seconds: float) -> None:
        if len(self._recent) == self._recent.maxlen:
            self.counts[self._recent[0]] -= 1
        b = self._bin(seconds)
        self._recent.append(b)
        self.counts[b] += 1
        self.added += 1

    @property
    def n(self) -> int:
        return len(self._recent)

    def pmf(self) -> list[float]:
        total = self.n + self.prior_weight
        if total <= 0:
            return [1.0] + [0.0] * self.limit_s
        return [(c + p) / total for c, p in zip(self.counts, self.prior)]


class Rate:
    """The share of True among the last `size` outcomes, with a Beta prior."""

    def __init__(self, prior: float, prior_weight: float, size: int) -> None:
        self.prior, self.prior_weight = prior, prior_weight
        self._recent: deque[bool] = deque(maxlen=size)
        self._true = 0
        self.added = 0

    def add(self, value: bool) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._true -= self._recent[0]
        self._recent.append(value)
        self._true += value
        self.added += 1

    @property
    def value(self) -> float:
        seen = len(self._recent) + self.prior_weight
        return (self._true + self.prior * self.prior_weight) / seen if seen else self.prior


class ShiftingRate:
    """A long-window rate that drops what it knew when the recent outcomes say it moved.

    The answer probability drives every launch: at 25 % a 300-dial window still errs by
    ±2.5 points (10 % of the rate) and the dialer swings between over- and under-dialling
    with it. So the rate is taken over `size` dials (3,000: ±0.8 points) — unless the last
    `recent` dials differ from it by more than `shift_z` standard errors, a real change (a
    new batch of debtors, another time of day): then the long window restarts from those
    recent dials, and the learner follows a jump as fast as a short window would.
    `shift_z=None` keeps the plain long window.
    """

    def __init__(self, prior: float, prior_weight: float, size: int, recent: int = 300,
                 shift_z: float | None = 4.0) -> None:
        self.long = Rate(prior, prior_weight, size)
        self.recent: deque[bool] = deque(maxlen=min(recent, size))
        self.shift_z = shift_z
        self.shifts = 0
        self.added = 0

    def add(self, value: bool) -> None:
        self.long.add(value)
        self.recent.append(value)
        self.added += 1
        if self.shift_z is None or len(self.recent) < (self.recent.maxlen or 0):
            return
        if len(self.long._recent) <= len(self.recent):
            return
        p = self.long.value
        n = len(self.recent)
        deviation = abs(sum(self.recent) / n - p)
        if deviation > self.shift_z * math.sqrt(max(p * (1 - p), 1e-6) / n):
            fresh = Rate(self.long.prior, self.long.prior_weight, self.long._recent.maxlen or n)
            for outcome in self.recent:
                fresh.add(outcome)
            fresh.added = self.long.added
            self.long = fresh
            self.shifts += 1

    @property
    def value(self) -> float:
        return self.long.value


def _cdf(pmf: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for p in pmf:
        total += p
        out.append(min(1.0, total))
    return out


def _quantile(cdf: Sequence[float], q: float) -> int:
    return min(len(cdf) - 1, bisect.bisect_left(cdf, q))


Row = tuple[float, ...]


@dataclass(frozen=True)
class Model:
    """What the learner knows, as lookup tables on a 1-second grid over the answer horizon.

    For k = 0..horizon seconds from now:
    * `new_call[k]`: probability a call dialled now has been answered by k;
    * `line_rows[r][k]`: same for a line that has rung r seconds without an answer yet;
    * `talk_rows[e][k]`, `wrap_rows[w][k]`: probability an agent e seconds into a call
      (w into wrap-up) is free by k + grace — supply is looked at `grace_s` later than
      demand because an answered debtor may wait that long.
    """

    answer_p: float
    horizon: int
    grace: int
    new_call: Row
    line_rows: tuple[Row, ...]
    talk_rows: tuple[Row, ...]
    wrap_rows: tuple[Row, ...]

    @staticmethod
    def _row(rows: tuple[Row, ...], elapsed: float) -> Row:
        return rows[min(len(rows) - 1, max(0, int(elapsed)))]

    def line(self, ring_s: float) -> Row:
        return self._row(self.line_rows, ring_s)

    def on_call(self, talk_s: float) -> Row:
        return self._row(self.talk_rows, talk_s)

    def wrap(self, wrap_s: float) -> Row:
        return self._row(self.wrap_rows, wrap_s)


def _line_rows(p: float, answer_pmf: list[float], give_up_pmf: list[float], horizon: int) -> tuple[Row, ...]:
    """P(answered within k more seconds | rung r seconds, not ended), for every r."""
    ca, cn = _cdf(answer_pmf), _cdf(give_up_pmf)
    last = max(_quantile(ca, 0.999), _quantile(cn, 0.999))
    rows = []
    for r in range(last + 1):
        sa = 1 - (ca[r - 1] if r else 0.0)       # P(answer time >= r)
        alive = p * sa + (1 - p) * (1 - (cn[r - 1] if r else 0.0))
        if alive <= 1e-9:
            rows.append(tuple(0.0 for _ in range(horizon + 1)))
            continue
        rows.append(tuple(p * max(0.0, ca[min(r + k, len(ca) - 1)] - (1 - sa)) / alive for k in range(horizon + 1)))
    rows.append(tuple(0.0 for _ in range(horizon + 1)))   # past every observed ring: it will end
    return tuple(rows)


def _free_rows(pmf: list[float], then: list[float], horizon: int, grace: int) -> tuple[Row, ...]:
    """P(remaining duration + a `then` duration <= k + grace | duration > e), for every e.

    With `then` = [1.0] (nothing after) this is the wrap-up table; with the wrap-up pmf it
    is the talk table (an agent on a call is free after the talk and the wrap-up).
    """
    cdf = _cdf(pmf)
    last = _quantile(cdf, 0.995)
    then_terms = [(w, p) for w, p in enumerate(then[:horizon + grace + 1]) if p > 0]
    rows = []
    for e in range(last + 1):
        done = cdf[e - 1] if e else 0.0          # P(duration < e): excluded
        alive = 1 - done
        if alive <= 1e-9:
            rows.append(rows[-1] if rows else tuple(1.0 for _ in range(horizon + 1)))
            continue
        row = []
        for k in range(horizon + 1):
            u = k + grace
            total = sum(p * max(0.0, cdf[min(e + u - w, len(cdf) - 1)] - done) for w, p in then_terms if w <= u)
            row.append(min(1.0, total / alive))
        rows.append(tuple(row))
    return tuple(rows)


@dataclass(frozen=True)
class LearnerSettings:
    """Windows, priors and grid. Priors are what a campaign starts from: a typical
    collections campaign (25 % answered after 5–15 s, 20–30 s before a no-answer is given up,
    about two minutes of talk, `wrap_prior_s` of wrap-up — pass the engine's wrap_up_s)."""

    dials_window: int = 3000     # the answer rate's window...
    dials_recent: int = 300      # ...restarted from the last 300 dials when they differ by
    shift_z: float | None = 4.0  # more than 4 standard errors (None: never restarted)
    durations_window: int = 1000
    prior_answer_p: float = 0.25
    prior_weight: float = 10.0
    prior_answer_s: tuple[float, ...] = (5, 7.5, 10, 12.5, 15)
    prior_give_up_s: tuple[float, ...] = (20, 22.5, 25, 27.5, 30)
    prior_talk_s: tuple[float, ...] = (40, 70, 100, 130, 170, 230, 330)
    wrap_prior_s: float = 20.0
    grace_s: float = 2.0
    limit_s: int = 3600
    lines_every: int = 10        # dials between two rebuilds of the line table
    durations_every: int = 50    # talks / wrap-ups between two rebuilds of the agent tables


class Learner:
    """Per campaign: answer probability, time to answer, time to give up, talk, wrap-up."""

    def __init__(self, settings: LearnerSettings = LearnerSettings()) -> None:
        s = self.settings = settings
        self.answered = ShiftingRate(s.prior_answer_p, s.prior_weight, s.dials_window, s.dials_recent, s.shift_z)
        #: The share of dials an answering machine took (AMD's MACHINE results), learnt apart
        #: from `answered` (people): machines take lines, never agents.
        self.machines = Rate(0.0, s.prior_weight, s.dials_window)
        self.answer_s = Window(s.prior_answer_s, s.prior_weight, s.durations_window, 300)
        self.give_up_s = Window(s.prior_give_up_s, s.prior_weight, s.durations_window, 300)
        self.talk_s = Window(s.prior_talk_s, s.prior_weight, s.durations_window, s.limit_s)
        self.wrap_s = Window((s.wrap_prior_s,), s.prior_weight, s.durations_window, 600)
        self.dials = 0
        self._model: Model | None = None
        self._built_at = (0, 0)   # dials, talks + wrap-ups seen when the tables were built

    def observe(self, event: Observation) -> None:
        if isinstance(event, DialEnded):
            self.dials += 1
            self.answered.add(event.answered)
            self.machines.add(event.machine)
            (self.answer_s if event.answered else self.give_up_s).add(event.ring_s)
        elif isinstance(event, TalkEnded):
            self.talk_s.add(event.talk_s)
        elif isinstance(event, WrapUpEnded):
            self.wrap_s.add(event.wrap_s)

    def model(self) -> Model:
        """The tables, rebuilt only when enough was observed since: the line table (cheap,
        and it follows the answer rate, which may move within the hour) every `lines_every`
        dials, the agent tables (one row per second of talk) every `durations_every`."""
        s = self.settings
        dials, durations = self.answered.added, self.talk_s.added + self.wrap_s.added
        old = self._model
        lines_stale = old is None or dials - self._built_at[0] >= s.lines_every
        agents_stale = old is None or durations - self._built_at[1] >= s.durations_every
        if not (lines_stale or agents_stale):
            assert old is not None
            return old
        if lines_stale or old is None:
            answer_pmf = self.answer_s.pmf()
            horizon = max(1, _quantile(_cdf(answer_pmf), 0.99))
            line_rows = _line_rows(self.answered.value, answer_pmf, self.give_up_s.pmf(), horizon)
            self._built_at = (dials, self._built_at[1])
        else:
            horizon, line_rows = old.horizon, old.line_rows
        grace = math.ceil(s.grace_s)
        if agents_stale or old is None or old.horizon != horizon:
            wrap_pmf = self.wrap_s.pmf()
            wrap_rows = _free_rows(wrap_pmf, [1.0], horizon, grace)
            talk_rows = _free_rows(self.talk_s.pmf(), wrap_pmf, horizon, grace)
            self._built_at = (self._built_at[0], durations)
        else:
            wrap_rows, talk_rows = old.wrap_rows, old.talk_rows
        self._model = Model(answer_p=self.answered.value, horizon=horizon, grace=grace, new_call=line_rows[0],
                            line_rows=line_rows, talk_rows=talk_rows, wrap_rows=wrap_rows)
        return self._model


# ===================================================================== the abandonment controller


TWENTY_FOUR_HOURS_S = 86400.0   # Ofcom: per campaign per 24 h
THIRTY_DAYS_S = 30 * 86400.0    # US (FCC / Reg F): per campaign per 30 days


@dataclass(frozen=True)
class ControllerSettings:
    """Abandonment: an answered debtor with no agent within 2 s. Target as a share of
    answered calls over a rolling window: 24 h (Ofcom) by default, 30 days for Reg F."""

    target: float = 0.03
    window_s: float = TWENTY_FOUR_HOURS_S   # or THIRTY_DAYS_S
    aim: float = 0.9             # aim at 90 % of the target (2.7 %): room for chance
    z_start: float = 2.0         # cautious at the end of warm-up
    z_min: float = -2.0
    z_max: float = 8.0
    gain: float = 0.05           # z moves by gain × (1 − setpoint) per abandon, gain × setpoint per connect
    min_answered: int = 50       # below this the window's rate is not trusted
    payback: float = 2.0         # setpoint = aim − payback × (window rate − aim)
    #: With AMD: the estimated share of MACHINE results that were people (campaigns/amd.py);
    #: each MACHINE result counts as that much of an answered call and of an abandoned one.
    machine_human_share: float = 0.0



class AbandonController:
    """Turns the abandon rate into `z`: Predictive launches a call only if, answered, it would
    find no agent with a chance of at most Φ(−z). A normal quantile rather than the chance
    itself, so that equal steps of `z` are equal steps of caution from 0.1 % to 30 %.

    Every answered call nudges `z`: up by gain × (1 − setpoint) if it was abandoned, down by
    gain × setpoint if not, so `z` settles where the local abandon rate equals the setpoint.
    The setpoint itself follows the rolling window: it is the aim (90 % of the target) when
    the window is on aim, lower when the window is over it, up to the target when under it —
    so a bad morning is paid back in the afternoon, and an unused budget is spent.
    """

    def __init__(self, settings: ControllerSettings = ControllerSettings()) -> None:
        self.settings = settings
        self.z = settings.z_start
        self._minutes: deque[list[float]] = deque()   # [minute start, answered, abandoned]
        self.answered = 0
        self.abandoned = 0

    def _bucket(self, at: float) -> list[float]:
        minute = at - at % 60
        if not self._minutes or self._minutes[-1][0] < minute:
            self._minutes.append([minute, 0, 0])
        return self._minutes[-1]

    def _evict(self, now: float) -> None:
        while self._minutes and self._minutes[0][0] + 60 <= now - self.settings.window_s:
            _, answered, abandoned = self._minutes.popleft()
            self.answered -= answered
            self.abandoned -= abandoned

    def rate(self, now: float) -> float | None:
        """Abandoned / answered over the window ending at `now`; None when nothing answered."""
        self._evict(now)
        return self.abandoned / self.answered if self.answered else None

    def setpoint(self, now: float) -> float:
        s = self.settings
        aim = s.aim * s.target
        rate = self.rate(now)
        if rate is None or self.answered < s.min_answered:
            return aim
        return min(s.target, max(0.1 * aim, aim - s.payback * (rate - aim)))

    def _count(self, at: float, answered: float, abandoned: float) -> None:
        bucket = self._bucket(at)
        bucket[1] += answered
        bucket[2] += abandoned
        self.answered += answered
        self.abandoned += abandoned

    def remember(self, at: float, abandoned: bool, machine: bool = False) -> None:
        """Count an answered call of an earlier run into the window (oldest first) without
        moving `z`: the window is about the campaign, `z` about this run's conditions. A
        MACHINE result counts as the estimated share of a person abandoned."""
        if machine:
            share = self.settings.machine_human_share
            self._count(at, share, share)
        else:
            self._count(at, 1, int(abandoned))

    def next_run(self) -> AbandonController:
        """A controller for the campaign's next run: the same window, `z` back at its start."""
        fresh = AbandonController(self.settings)
        fresh._minutes = deque(list(bucket) for bucket in self._minutes)
        fresh.answered, fresh.abandoned = self.answered, self.abandoned
        return fresh

    def observe(self, event: Observation) -> None:
        s = self.settings
        if isinstance(event, DialEnded) and event.machine and s.machine_human_share:
            # Partly a person hung up on: the answered nudge and the abandoned one, in that share.
            share = s.machine_human_share
            self._count(event.at, share, share)
            self.z += s.gain * share * (1 - 2 * self.setpoint(event.at))
        elif isinstance(event, DialEnded) and event.answered:
            self._count(event.at, 1, 0)
            self.z -= s.gain * self.setpoint(event.at)
        elif isinstance(event, Abandoned):
            self._count(event.at, 0, 1)
            self.z += s.gain * (1 - self.setpoint(event.at))
        self.z = min(s.z_max, max(s.z_min, self.z))


# ===================================================================== ours


@dataclass(frozen=True)
class PredictiveSettings:
    warmup_dials: int = 60
    max_lines_per_agent: float = 3.0
    learner: LearnerSettings = field(default_factory=LearnerSettings)
    controller: ControllerSettings = field(default_factory=ControllerSettings)

    def __post_init__(self) -> None:
        if self.max_lines_per_agent < 1:
            raise ValueError("max_lines_per_agent must be at least 1 (one line per ready agent)")


def line_cap(snapshot: Snapshot, max_lines_per_agent: float) -> int:
    """New lines allowed: max_lines_per_agent × agents at work (not paused), less lines in flight."""
    working = len(snapshot.agents) - snapshot.count(AgentPhase.PAUSED)
    return max(0, math.floor(max_lines_per_agent * working + 1e-9) - len(snapshot.lines))


def _add_bernoulli(below: list[float], q: float) -> float:
    """Add a Bernoulli(q) to a count whose pmf is kept only below a threshold (in place);
    return the mass that crossed it."""
    if not below:
        return 0.0
    r = 1 - q
    crossed = below[-1] * q
    below[1:] = [x * r + y * q for x, y in zip(below[1:], below)]
    below[0] *= r
    return crossed


def plan_launches(snapshot: Snapshot, model: Model, z: float, limit: int) -> int:
    """The most new calls (≤ limit) each of which, if answered, has at most a chance
    Φ(−z) of finding no agent.

    A new call answered at second k finds no agent when the other debtors answered by k
    (waiting now, lines in flight, the new calls before it) are at least as many as the
    agents free by k + grace (ready now; on a call or in wrap-up, free by then with the
    learner's probability). Both are sums of independent Bernoullis, so the chance is
    computed exactly (a pmf kept only below the number of agents), then weighed by when the
    new call would be answered.
    """
    ready = waiting = 0
    agents: list[Row] = []
    for agent in snapshot.agents:
        if agent.phase in (AgentPhase.READY, AgentPhase.RESERVED):
            ready += 1
        elif agent.phase in (AgentPhase.ON_CALL, AgentPhase.WRAP_UP):
            row = model.on_call(agent.elapsed_s) if agent.phase is AgentPhase.ON_CALL else model.wrap(agent.elapsed_s)
            if row[-1] > 0.0:
                agents.append(row)
    lines: list[Row] = []
    for line in snapshot.lines:
        if line.waiting_s is not None:
            waiting += line.waiting_s < model.grace
        else:
            lines.append(model.line(line.ring_s))
    answered_by = model.new_call
    total = answered_by[-1]
    if total <= 0:
        return 0
    points = []   # (chance the new call is answered at k, others' pmf below the agents free, mass at/above, a_k)
    for k, a in enumerate(answered_by):
        da = a - (answered_by[k - 1] if k else 0.0)
        if da <= 0:
            continue
        free = ready - waiting
        busy: list[float] = []      # an agent not free by then counts as one more debtor
        for row in agents:
            f = row[k]
            if f >= 1 - 1e-9:
                free += 1
            elif f > 1e-9:
                free += 1
                busy.append(1 - f)
        if free <= 0:
            points.append((da, [], 1.0, a))
            continue
        below = [1.0] + [0.0] * (free - 1)
        over = 0.0
        for q in busy:
            over += _add_bernoulli(below, q)
        for row in lines:
            if row[k] > 1e-9:
                over += _add_bernoulli(below, row[k])
        points.append((da, below, over, a))
    threshold = 0.5 * math.erfc(z / math.sqrt(2))
    n = 0
    while n < limit:
        if sum(da * over for da, _, over, _ in points) / total > threshold:
            break
        n += 1
        points = [(da, below, over + _add_bernoulli(below, a), a) for da, below, over, a in points]
    return n


Planner = Callable[[Snapshot, Model, float, int], int]   # plan_launches(snapshot, model, z, limit)


class Predictive:
    """Ours: learn the campaign, predict agents freeing and debtors answering, dial to match.

    One object per campaign: it learns from what that campaign's dials and agents did.
    """

    def __init__(self, settings: PredictiveSettings = PredictiveSettings(), *, learner: Learner | None = None,
                 controller: AbandonController | None = None, planner: Planner | None = None) -> None:
        self.settings = settings
        self.learner = learner or Learner(settings.learner)
        self.controller = controller or AbandonController(settings.controller)
        # How many calls a state is worth; another rule can be put in its place to compare
        # (bench/pacing_alternatives.py).
        self.planner: Planner = planner or plan_launches

    @property
    def warming_up(self) -> bool:
        return self.learner.dials < self.settings.warmup_dials

    def decide(self, snapshot: Snapshot) -> int:
        floor = uncovered_ready(snapshot)
        cap = line_cap(snapshot, self.settings.max_lines_per_agent)
        if self.warming_up:
            return min(floor, cap)
        planned = self.planner(snapshot, self.learner.model(), self.controller.z, cap)
        return min(cap, max(floor, planned))

    def observe(self, event: Observation) -> None:
        self.learner.observe(event)
        self.controller.observe(event)

    def next_run(self) -> Predictive:
        """The campaign's policy for its next run (the simulator's next day), as the engine
        rebuilds it from the database (dialer/memory.py): what was learned and the window's
        calls are kept, the caution starts afresh."""
        return Predictive(self.settings, learner=self.learner, controller=self.controller.next_run(),
                          planner=self.planner)
