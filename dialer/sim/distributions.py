"""What the simulated debtors and agents do: answer probability and four durations.

Either the textbook campaign (`Distributions()`: 25 % answer after 5–15 s, a no-answer is
given up after 20–30 s, talk lognormal with mean 150 s, 20 s wrap-up) or what real attempts
showed (`Distributions.from_attempts`), for "what if we had dialled this campaign
predictively" questions.
"""
from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol


class Sampler(Protocol):
    def sample(self, rng: random.Random) -> float: ...


@dataclass(frozen=True)
class Constant:
    value: float

    def sample(self, rng: random.Random) -> float:
        return self.value


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class LogNormal:
    """Lognormal given by its mean (what a supervisor knows) and the sigma of its log."""

    mean: float
    sigma: float = 0.6

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.mean) - self.sigma ** 2 / 2, self.sigma)


@dataclass(frozen=True)
class Empirical:
    """Resamples what was observed."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("an empirical distribution needs at least one value")

    def sample(self, rng: random.Random) -> float:
        return rng.choice(self.values)


@dataclass(frozen=True)
class AttemptRow:
    """One past dial, as the simulator needs it."""

    answered: bool
    ring_s: float              # dial → answer, or dial → end when not answered
    talk_s: float | None = None  # bridge → end, when an agent talked
    machine: bool = False      # an answering machine (AMD): not answered, its line held ring_s


class AttemptTimes(Protocol):
    """What `rows_from_attempts` reads: the times of `campaigns.models.Attempt`."""

    dialed_at: dt.datetime | None
    answered_at: dt.datetime | None
    bridged_at: dt.datetime | None
    ended_at: dt.datetime | None


def rows_from_attempts(attempts: Iterable[AttemptTimes]) -> list[AttemptRow]:
    """Rows from attempts (anything with `dialed_at`, `answered_at`, `bridged_at`,
    `ended_at`). Attempts never dialled or not yet ended are left out."""
    rows = []
    for a in attempts:
        if a.dialed_at is None or a.ended_at is None:
            continue
        machine = getattr(a, "outcome", None) == "machine"
        ring = ((a.ended_at if machine else a.answered_at or a.ended_at) - a.dialed_at).total_seconds()
        talk = (a.ended_at - a.bridged_at).total_seconds() if a.bridged_at is not None else None
        rows.append(AttemptRow(answered=a.answered_at is not None and not machine, ring_s=max(0.0, ring),
                               talk_s=talk, machine=machine))
    return rows


class NoHistory(ValueError):
    """There is nothing to learn distributions from."""


@dataclass(frozen=True)
class Distributions:
    answer_p: float = 0.25
    answer_after: Sampler = field(default_factory=lambda: Uniform(5.0, 15.0))
    give_up_after: Sampler = field(default_factory=lambda: Uniform(20.0, 30.0))
    talk: Sampler = field(default_factory=lambda: LogNormal(150.0))
    wrap: Sampler = field(default_factory=lambda: Constant(20.0))

    def with_answer_p(self, answer_p: float) -> Distributions:
        return replace(self, answer_p=answer_p)

    @classmethod
    def from_attempts(cls, rows: Iterable[AttemptRow], *, wrap: Sampler | None = None) -> Distributions:
        """Distributions learned from real attempts. Wrap-up is not in the attempts table:
        pass the campaign's (default: the textbook 20 s). A duration with no observation
        (no call answered yet, say) keeps the textbook one."""
        rows = list(rows)
        if not rows:
            raise NoHistory("no finished attempts to learn from: dial some first, or use the defaults")
        default = TEXTBOOK
        answer = tuple(r.ring_s for r in rows if r.answered)
        give_up = tuple(r.ring_s for r in rows if not r.answered)
        talk = tuple(r.talk_s for r in rows if r.talk_s is not None and r.talk_s > 0)
        return cls(answer_p=len(answer) / len(rows),
                   answer_after=Empirical(answer) if answer else default.answer_after,
                   give_up_after=Empirical(give_up) if give_up else default.give_up_after,
                   talk=Empirical(talk) if talk else default.talk,
                   wrap=wrap or default.wrap)


TEXTBOOK = Distributions()
