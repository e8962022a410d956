"""Agent targets: is an agent on track for the day's 200 dials and 50 effective calls, and
how large must a queue be for the targets to be reachable at all. Pure arithmetic; the
caller passes the counts and the agent's local time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time

DIALS_TARGET = 200       # ≥ 200 dials per agent per day
EFFECTIVE_TARGET = 50    # ≥ 50 effective calls (有效通话) per agent per day
CASES_PER_AGENT = 80     # ≥ 80 cases followed per agent per day
#: Fewer dials than this today say too little about the effective-call rate: the queue's size
#: is then judged on ASSUMED_RATE (a typical day's) instead.
RATE_FROM_DIALS = 50
ASSUMED_RATE = 0.25


@dataclass(frozen=True)
class TargetStatus:
    """expected_by_now and behind_by are (dials, effective calls); alert_text is "" unless the
    agent is behind once `alert_from` of the shift has passed (mid-day by default)."""

    on_track: bool
    expected_by_now: tuple[int, int]
    behind_by: tuple[int, int]
    alert_text: str


def _seconds(at: time) -> int:
    return at.hour * 3600 + at.minute * 60 + at.second


def targets_status(dials: int, effective: int, now_local: datetime | time, shift_start: time, shift_end: time,
                   targets: tuple[int, int] = (DIALS_TARGET, EFFECTIVE_TARGET), *, alert_from: float = 0.5,
                   agent: str = "the agent") -> TargetStatus:
    """Where an agent stands against the day's targets at `now_local` (the agent's wall clock).

    The targets are spread evenly over the shift [shift_start, shift_end): by now an agent on
    track has made floor(target x elapsed share) dials and effective calls. Behind on either
    counts as behind; the alert is raised only from `alert_from` of the shift on (0.5: mid-day),
    and says how many an hour the rest of the shift needs."""
    if not shift_start < shift_end:
        raise ValueError(f"the shift {shift_start:%H:%M}-{shift_end:%H:%M} must start before it ends")
    clock = now_local.time() if isinstance(now_local, datetime) else now_local
    length = _seconds(shift_end) - _seconds(shift_start)
    share = min(max(_seconds(clock) - _seconds(shift_start), 0), length) / length
    expected = (math.floor(targets[0] * share), math.floor(targets[1] * share))
    behind = (max(expected[0] - dials, 0), max(expected[1] - effective, 0))
    on_track = behind == (0, 0)
    if on_track or share < alert_from:
        return TargetStatus(on_track, expected, behind, "")
    hours_left = (length - share * length) / 3600
    rates = ", ".join(f"{math.ceil(max(target - done, 0) / hours_left)} {what} an hour" if hours_left else
                      f"{max(target - done, 0)} {what} more (the shift is over)"
                      for target, done, what in ((targets[0], dials, "dials"), (targets[1], effective, "effective calls")))
    text = (f"{agent} is behind at {clock:%H:%M} ({share:.0%} of the shift {shift_start:%H:%M}-{shift_end:%H:%M}): "
            f"{dials} dials of {expected[0]} expected by now (target {targets[0]}), {effective} effective calls of "
            f"{expected[1]} (target {targets[1]}); the rest of the day needs {rates}")
    return TargetStatus(False, expected, behind, text)


def effective_rate(dials: int, effective: int) -> tuple[float, bool]:
    """The share of today's dials that became effective calls, and whether it was measured
    (True) or assumed (ASSUMED_RATE: fewer than RATE_FROM_DIALS dials so far)."""
    if dials >= RATE_FROM_DIALS:
        return effective / dials, True
    return ASSUMED_RATE, False


def queue_size_needed(agents: int, answer_rate: float, targets: tuple[int, int] = (DIALS_TARGET, EFFECTIVE_TARGET),
                      *, dials_per_case: int = 3, cases_per_agent: int = CASES_PER_AGENT) -> int:
    """How many cases a queue must hold for `agents` agents to reach their targets in a day.

    The arithmetic. Let p = `answer_rate` (the share of dials that become an effective call)
    and k = `dials_per_case` (the most dials a case can take in a day: its dialable numbers
    times the tries each number is allowed, e.g. 1 number x 3 tries under the client preset).
    A case is dialled until its debtor is reached (then not again that day) or its k dials are
    spent, so in a day one case yields

        R = 1 - (1 - p)^k         effective calls (the chance it is reached), and
        E = R / p = 1 + (1 - p) + ... + (1 - p)^(k-1)   dials.

    With D dials and F effective calls as each agent's targets, and at least
    `cases_per_agent` cases followed per agent, the queue needs

        N = ceil(agents x max(D / E, F / R, cases_per_agent)) cases.

    Example: 10 agents, p = 0.25, k = 3: R = 0.578, E = 2.31, so D / E = 86.5 and F / R = 86.5
    cases per agent (equal because F / D = p), above the 80 followed: N = 865. With p = 0.1,
    F / R = 184.5 per agent: N = 1846 (and 200 dials then give only 20 effective calls each).
    """
    if agents < 0 or dials_per_case < 1 or cases_per_agent < 0:
        raise ValueError("agents and cases_per_agent must be at least 0, dials_per_case at least 1")
    if not 0 < answer_rate <= 1:
        raise ValueError(f"answer_rate must be above 0 and at most 1, got {answer_rate}")
    reached = 1 - (1 - answer_rate) ** dials_per_case
    dialled = reached / answer_rate
    per_agent = max(targets[0] / dialled, targets[1] / reached, cases_per_agent)
    return math.ceil(agents * per_agent - 1e-9)
