"""Progressive vs VICIdial's adaptive level vs our predictive pacing, on simulated days.

Run from the repository root: ``python -m bench.pacing`` (or ``python bench/pacing.py``).
For 10, 20 and 50 agents and answer probabilities 0.25 and 0.40 it simulates, with the same
seeds for every policy, an 8-hour day (answer after 5–15 s, no-answer given up after
20–30 s, talk lognormal with mean 150 s, 20 s wrap-up, abandoned when no agent within 2 s)
and prints a Markdown table: occupancy (with its standard error over the days), abandon
rate, agent wait per connect, connects and dials per agent-hour, pooled over the seeds, then
our figures as ratios to both baselines measured in the same run, and whether the issue's
targets were met.

Ours is measured twice: on a new campaign's first day (warm-up on progressive dialing
included) and on the same campaign's next day, which starts from what the first day taught
it and with the first day's calls in its 24-hour abandonment window, as `dunning run`
rebuilds them from the database. The baselines start each day afresh.

VICIdial runs as ADAPT_HARD_LIMIT with its default campaign settings (3 % drop limit,
maximum level 3.0, intensity 0); ``--vicidial-method`` picks another.

``--quick`` runs two 2-hour days per scenario; ``--plot FILE.png`` draws occupancy against
abandon rate if matplotlib is importable (it is skipped, with a note, otherwise).
``--frontier`` runs instead our policy at fixed caution levels (the abandonment feedback
off) on a campaign's next day, 10 and 20 agents at answer rate 0.25, and interpolates the
occupancy at exactly 3 % abandoned: the best any setting of the controller can land on.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import repeat

if __package__ in (None, ""):   # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dialer.pacing import (
    AdaptMethod,
    ControllerSettings,
    Predictive,
    PredictiveSettings,
    Progressive,
    VicidialAdaptive,
    VicidialSettings,
)
from dialer.sim import Distributions, Report, SimConfig, campaign_days, days

AGENTS = (10, 20, 50)
ANSWER_P = (0.25, 0.40)
MAX_ABANDON = 0.03
OCCUPANCY_TARGET = {10: 0.88, 20: 0.92, 50: 0.95}   # at answer probability 0.25
CONNECTS_VS_PROGRESSIVE = 1.25


@dataclass(frozen=True)
class Scenario:
    agents: int
    answer_p: float

    def __str__(self) -> str:
        return f"{self.agents} agents, p={self.answer_p:.2f}"


@dataclass(frozen=True)
class Days:
    """One policy's days in one scenario: pooled figures, and the spread of occupancy."""

    reports: tuple[Report, ...]

    @functools.cached_property
    def pooled(self) -> Report:
        return functools.reduce(Report.__add__, self.reports, Report())

    @property
    def occupancy_se(self) -> float:
        """Standard error of the mean of the days' occupancies (0 for a single day)."""
        values = [r.occupancy for r in self.reports]
        return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


NEXT_DAY = "ours, next day"


def first_and_next(pool: Executor, policy: Callable[[], Predictive], distributions: Distributions,
                   config: SimConfig, seeds: Sequence[int]) -> tuple[Days, Days]:
    """Two consecutive days of one campaign per seed: its first days, and its next days."""
    two = list(pool.map(campaign_days, repeat(policy), repeat(distributions), repeat(config), seeds, repeat(2)))
    return Days(tuple(first for first, _ in two)), Days(tuple(second for _, second in two))


def run(scenarios: Sequence[Scenario], hours: float, seeds: Sequence[int], jobs: int,
        method: AdaptMethod) -> dict[Scenario, dict[str, Days]]:
    """Per scenario: each baseline's day for every seed, and ours over two consecutive days of
    one campaign per seed — its first day ("ours": a new campaign, warm-up included) and the
    day after (what it learned and its abandonment window carried over, as `dunning run`
    rebuilds them from the database)."""
    baselines = {"progressive": Progressive, "vicidial": partial(VicidialAdaptive, VicidialSettings(method=method))}
    results: dict[Scenario, dict[str, Days]] = {}
    with ProcessPoolExecutor(jobs) as pool:
        for scenario in scenarios:
            config = SimConfig(agents=scenario.agents, hours=hours)
            distributions = Distributions(answer_p=scenario.answer_p)
            each = days(distributions, config, seeds, baselines, pool)
            first, following = first_and_next(pool, Predictive, distributions, config, seeds)
            results[scenario] = {**{name: Days(tuple(reports)) for name, reports in each.items()},
                                 "ours": first, NEXT_DAY: following}
            print(f"  {scenario}: done", file=sys.stderr, flush=True)
    return results


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


def table(results: dict[Scenario, dict[str, Days]]) -> list[str]:
    out = ["| scenario | policy | occupancy ± s.e. | abandoned | wait / connect | connects / agent-h | dials / agent-h |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for scenario, policies in results.items():
        for name, d in policies.items():
            r = d.pooled
            out.append(f"| {scenario} | {name} | {r.occupancy:.1%} ± {d.occupancy_se:.1%} | {r.abandon_rate:.2%} | "
                       f"{r.wait_per_connect_s:.1f} s | {r.connects_per_agent_hour:.1f} | "
                       f"{r.dials_per_agent_hour:.1f} |")
    out += ["", ("| scenario | ours | occupancy vs progressive | vs VICIdial | connects/h vs progressive | vs VICIdial "
                 "| targets |"), "|---|---|---:|---:|---:|---:|---|"]
    for scenario, policies in results.items():
        reports = {name: d.pooled for name, d in policies.items()}
        prog, vici = reports["progressive"], reports["vicidial"]
        for label, name in (("first day", "ours"), ("next day", NEXT_DAY)):
            ours = reports[name]
            out.append(f"| {scenario} | {label} | {_ratio(ours.occupancy, prog.occupancy)} "
                       f"| {_ratio(ours.occupancy, vici.occupancy)} "
                       f"| {_ratio(ours.connects_per_agent_hour, prog.connects_per_agent_hour)} "
                       f"| {_ratio(ours.connects_per_agent_hour, vici.connects_per_agent_hour)} "
                       f"| {'; '.join(verdict(scenario, ours, prog, vici))} |")
    return out


def verdict(scenario: Scenario, ours: Report, prog: Report, vici: Report) -> list[str]:
    """The issue's targets, each ✓ or ✗."""
    checks = [(f"abandon ≤ {MAX_ABANDON:.0%}", ours.abandon_rate <= MAX_ABANDON),
              (f"connects ≥ {CONNECTS_VS_PROGRESSIVE}× progressive",
               ours.connects_per_agent_hour >= CONNECTS_VS_PROGRESSIVE * prog.connects_per_agent_hour),
              ("beats VICIdial (busier, no more abandons)", ours.occupancy > vici.occupancy
               and ours.connects_per_agent_hour > vici.connects_per_agent_hour
               and ours.abandon_rate <= vici.abandon_rate)]
    if scenario.answer_p == 0.25 and scenario.agents in OCCUPANCY_TARGET:
        target = OCCUPANCY_TARGET[scenario.agents]
        checks.append((f"occupancy ≥ {target:.0%}", ours.occupancy >= target))
    return [f"{'✓' if ok else '✗'} {label}" for label, ok in checks]


def plot(results: dict[Scenario, dict[str, Days]], path: str) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        print(f"(--plot {path}: matplotlib is not installed, no plot drawn)", file=sys.stderr)
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, marker in zip(("progressive", "vicidial", "ours", NEXT_DAY), "osDv"):
        points = [(r[name].pooled.abandon_rate * 100, r[name].pooled.occupancy * 100) for r in results.values()]
        ax.scatter(*zip(*points), marker=marker, label=name)
    ax.axvline(MAX_ABANDON * 100, linestyle="--", color="grey")
    ax.set_xlabel("abandoned, % of answered")
    ax.set_ylabel("occupancy, %")
    ax.legend()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}", file=sys.stderr)


FRONTIER_Z = (1.6, 1.7, 1.8, 1.9, 2.0)


def frontier(agents: Sequence[int], hours: float, seeds: Sequence[int], jobs: int) -> list[str]:
    """Our policy with the abandonment feedback off and the caution z held fixed, on a
    campaign's next day (no warm-up): the occupancy each level of abandonment buys, and by
    interpolation the occupancy at exactly 3 % — what the controller can at best land on."""
    out = ["| agents | z | occupancy ± s.e. | abandoned |", "|---:|---:|---:|---:|"]
    summary = []
    with ProcessPoolExecutor(jobs) as pool:
        for n in agents:
            config, points = SimConfig(agents=n, hours=hours), []
            for z in FRONTIER_Z:
                fixed = partial(Predictive, PredictiveSettings(controller=ControllerSettings(gain=0.0, z_start=z)))
                _, second = first_and_next(pool, fixed, Distributions(answer_p=0.25), config, seeds)
                r = second.pooled
                points.append((r.abandon_rate, r.occupancy))
                out.append(f"| {n} | {z:.1f} | {r.occupancy:.1%} ± {second.occupancy_se:.1%} | {r.abandon_rate:.2%} |")
            print(f"  frontier, {n} agents: done", file=sys.stderr, flush=True)
            summary.append(f"{n} agents: {at_abandon(points, MAX_ABANDON)} occupancy at {MAX_ABANDON:.0%} abandoned")
    return out + [""] + summary


def interpolate(points: Sequence[tuple[float, float]], rate: float) -> float | None:
    """Occupancy at abandon `rate`, between the two measured (abandon, occupancy) points around
    it; None when no two points bracket it."""
    ordered = sorted(points)
    for (a0, o0), (a1, o1) in zip(ordered, ordered[1:]):
        if a0 <= rate <= a1 and a1 > a0:
            return o0 + (o1 - o0) * (rate - a0) / (a1 - a0)
    return None


def at_abandon(points: Sequence[tuple[float, float]], rate: float) -> str:
    """`interpolate`, as the tables print it."""
    occupancy = interpolate(points, rate)
    return "(not bracketed by the measured points)" if occupancy is None else f"{occupancy:.1%}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pacing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two 2-hour days per scenario instead of 8-hour days")
    parser.add_argument("--seeds", type=int, default=None, help="days per scenario (default 8, quick 2)")
    parser.add_argument("--hours", type=float, default=None, help="length of a day (default 8, quick 2)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes (default: CPUs)")
    parser.add_argument("--vicidial-method", choices=[m.value for m in AdaptMethod], default="ADAPT_HARD_LIMIT")
    parser.add_argument("--plot", metavar="FILE.png", help="occupancy against abandon rate (needs matplotlib)")
    parser.add_argument("--frontier", action="store_true",
                        help="instead: ours at fixed caution levels (feedback off), 10 and 20 agents, answer rate 0.25")
    args = parser.parse_args(argv)
    hours = args.hours or (2.0 if args.quick else 8.0)
    seeds = range(1, 1 + (args.seeds or (2 if args.quick else 8)))
    if args.frontier:
        started = time.monotonic()
        lines = frontier((10, 20), hours, seeds, args.jobs)
        print(f"{len(seeds)} next day(s) of {hours:g} h per point, seeds {seeds.start}–{seeds.stop - 1}; "
              f"{time.monotonic() - started:.0f} s\n")
        print("\n".join(lines))
        return 0
    scenarios = [Scenario(a, p) for a in AGENTS for p in ANSWER_P]
    started = time.monotonic()
    results = run(scenarios, hours, seeds, args.jobs, AdaptMethod(args.vicidial_method))
    print(f"{len(seeds)} day(s) of {hours:g} h per scenario and policy, seeds {seeds.start}–{seeds.stop - 1}; "
          f"VICIdial as {args.vicidial_method}; {time.monotonic() - started:.0f} s\n")
    print("\n".join(table(results)))
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
