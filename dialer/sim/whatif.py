"""Compare pacing policies on the same simulated days: the benchmark and "what if" questions.

`compare` runs each policy over several seeds and pools the days; `what_if` does it on the
distributions real attempts showed (`Distributions.from_attempts(rows_from_attempts(...))`),
e.g. "how busy would these 12 agents have been with predictive dialing?".
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from functools import reduce

from ..pacing import (
    DialEnded,
    Learner,
    Pacing,
    Predictive,
    Progressive,
    TalkEnded,
    VicidialAdaptive,
)
from .campaign import Report, SimConfig, simulate
from .distributions import AttemptRow, Distributions, Sampler

PolicyFactory = Callable[[], Pacing]

POLICIES: Mapping[str, PolicyFactory] = {
    "progressive": Progressive,
    "vicidial": VicidialAdaptive,
    "ours": Predictive,
}


def run_one(policy: PolicyFactory, distributions: Distributions, config: SimConfig, seed: int) -> Report:
    """A day of a fresh policy (module-level, and factories picklable, so a process pool can run it)."""
    return simulate(policy(), distributions, config, seed)


def campaign_days(policy: PolicyFactory, distributions: Distributions, config: SimConfig, seed: int,
                  count: int) -> list[Report]:
    """`count` consecutive days of one campaign, a day apart on the same clock. A policy that
    carries over (`next_run`: ours) goes on from the day before as the engine does after a
    restart; the others start afresh. Day 1 is `run_one`'s day for the same seed."""
    reports: list[Report] = []
    current = policy()
    for day in range(count):
        if day:
            carry = getattr(current, "next_run", None)
            current = carry() if carry is not None else policy()
        when = replace(config, start_s=config.start_s + day * 86400.0)
        reports.append(simulate(current, distributions, when, seed + 100_003 * day))
    return reports


def days(distributions: Distributions, config: SimConfig, seeds: Sequence[int],
         policies: Mapping[str, PolicyFactory] = POLICIES, executor: Executor | None = None) -> dict[str, list[Report]]:
    """Each policy's day for each of `seeds` (the same seeds for every policy)."""
    jobs = [(factory, distributions, config, seed) for factory in policies.values() for seed in seeds]
    if executor is None:
        reports = [run_one(*job) for job in jobs]
    else:
        reports = list(executor.map(run_one, *zip(*jobs)))
    return {name: reports[i * len(seeds):(i + 1) * len(seeds)] for i, name in enumerate(policies)}


def compare(distributions: Distributions, config: SimConfig, seeds: Sequence[int],
            policies: Mapping[str, PolicyFactory] = POLICIES, executor: Executor | None = None) -> dict[str, Report]:
    """Each policy's days, pooled over `seeds`."""
    return {name: reduce(Report.__add__, reports, Report())
            for name, reports in days(distributions, config, seeds, policies, executor).items()}


def what_if(rows: Iterable[AttemptRow], agents: int, *, hours: float = 8.0, seeds: Sequence[int] = (1, 2, 3),
            wrap: Sampler | None = None, policies: Mapping[str, PolicyFactory] = POLICIES) -> dict[str, Report]:
    """The policies on a day like the one the attempts describe, with `agents` agents."""
    distributions = Distributions.from_attempts(rows, wrap=wrap)
    return compare(distributions, replace(SimConfig(), agents=agents, hours=hours), seeds, policies)


def prime(learner: Learner, rows: Iterable[AttemptRow]) -> Learner:
    """Teach a campaign's learner what its past attempts showed, so that a new engine run
    starts from the campaign rather than from the priors. Only the learner: the abandonment
    controller's window is about time, and these rows carry none."""
    for row in rows:
        learner.observe(DialEnded(0.0, row.answered, row.ring_s, row.machine))
        if row.talk_s is not None:
            learner.observe(TalkEnded(0.0, row.talk_s))
    return learner
