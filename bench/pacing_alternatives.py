"""Other rules for how many calls to launch, against ours, on the same simulated days.

Run from the repository root: ``python -m bench.pacing_alternatives`` (about 12 minutes on
2 cores; ``--seeds N``, ``--agents N``). The claim in docs/benchmarks.md that these rules land
on the same occupancy-for-abandonment curve as ours rests on this script.

Each rule runs inside our `Predictive` (same learner, same warm-up, same line cap), with the
abandonment feedback off and its parameter held fixed, on a new campaign's 8-hour day
(answer rate 0.25, the benchmark's distributions), the same seeds for every rule. For each
rule it prints the measured points and the occupancy interpolated at exactly 3 % abandoned,
and each other rule's as a ratio to ours from the same run:

* ``ours``: `dialer.pacing.plan_launches` — launch while the next call, if answered, finds
  no agent within the grace with a chance under Φ(−z);
* ``marginal``: the same threshold on the *marginal* abandonment of the next call, which also
  counts the later debtors its answer pushes out (Monte Carlo over the lines' and agents'
  outcomes);
* ``lookahead``: the number of calls that minimises expected agent idle seconds over the
  answer horizon plus a price (in idle seconds) per expected abandoned call (Monte Carlo).

The Monte Carlo uses a fixed bank of stratified uniforms, so a decision is reproducible. With
the grace folded into each agent's free time and debtors matched first come first served, the
debtors abandoned within the horizon are max(0, max_k(B_k − A_k)) for B the debtors answered
by second k (plus those already waiting) and A the agents usable by then (plus the ready).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np

if __package__ in (None, ""):   # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.pacing import at_abandon, interpolate
from dialer.pacing import AgentPhase, ControllerSettings, Model, Predictive, PredictiveSettings, Snapshot
from dialer.sim import Distributions, SimConfig, compare

DRAWS = 1000
_rng = np.random.default_rng(12345)
# Column j is a random permutation of the strata (i + U) / DRAWS: one column per uncertain
# agent or line, the same bank for every decision.
_BANK = ((np.argsort(_rng.random((600, DRAWS)), axis=1) + _rng.random((600, DRAWS))) / DRAWS).astype(np.float32)


def _row(rows: tuple[tuple[float, ...], ...], elapsed: float) -> tuple[float, ...]:
    return rows[min(len(rows) - 1, max(0, int(elapsed)))]


def outcomes(snapshot: Snapshot, model: Model, most: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Expected debtors abandoned and agent idle seconds within the horizon, for 0..`most`
    new calls, and the chance a new call is answered within it."""
    ready = waiting = 0
    agents, lines = [], []
    for agent in snapshot.agents:
        if agent.phase in (AgentPhase.READY, AgentPhase.RESERVED):
            ready += 1
        elif agent.phase is AgentPhase.ON_CALL:
            agents.append(_row(model.talk_rows, agent.elapsed_s))
        elif agent.phase is AgentPhase.WRAP_UP:
            agents.append(_row(model.wrap_rows, agent.elapsed_s))
    for line in snapshot.lines:
        if line.waiting_s is not None:
            waiting += line.waiting_s < model.grace
        else:
            lines.append(_row(model.line_rows, line.ring_s))
    new = np.asarray(model.new_call, dtype=np.float32)
    steps, column = len(new), 0
    deficit = np.full((steps, DRAWS), waiting - ready, dtype=np.int16)   # debtors minus agents, by second
    for rows, sign in ((agents, -1), (lines, 1)):
        table = np.asarray([r for r in rows if r[-1] > 1e-12], dtype=np.float32).reshape(-1, steps)
        if len(table):
            hits = (_BANK[column:column + len(table), None, :] <= table[:, :, None]).sum(0, dtype=np.int16)
            deficit += sign * hits
            column += len(table)
    per_n = np.empty((most + 1, steps, DRAWS), dtype=np.int16)
    per_n[0] = deficit
    if most:
        np.cumsum(_BANK[column:column + most, None, :] <= new[None, :, None], axis=0, dtype=np.int16, out=per_n[1:])
        per_n[1:] += deficit
    lost = np.maximum.accumulate(np.maximum(per_n, 0), axis=1)   # abandoned so far, by second
    abandoned = lost[:, -1, :].mean(1)
    idle = (lost - per_n).sum((1, 2)) / DRAWS                     # unmatched agents, summed over the seconds
    return abandoned, idle, float(new[-1])


def _first(rule: Callable[[np.ndarray, np.ndarray, float], np.ndarray], snapshot: Snapshot, model: Model,
           limit: int) -> int:
    """The first n at which `rule(abandoned, idle, answered)` says stop, looking at ever more calls."""
    most = min(limit, 2)
    while True:
        abandoned, idle, answered = outcomes(snapshot, model, most)
        if answered <= 0:
            return 0
        stop = np.nonzero(rule(abandoned, idle, answered))[0]
        if len(stop):
            return int(stop[0])
        if most >= limit:
            return most
        most = min(limit, most * 2)


def plan_marginal(snapshot: Snapshot, model: Model, z: float, limit: int) -> int:
    """Launch while the next call's marginal abandonment, per answered call, is under Φ(−z)."""
    threshold = 0.5 * math.erfc(z / math.sqrt(2))
    return _first(lambda abandoned, _, answered: np.diff(abandoned) / answered > threshold, snapshot, model, limit)


def plan_lookahead(price: float, snapshot: Snapshot, model: Model, z: float, limit: int) -> int:
    """Launch while one more call lowers idle seconds + `price` × abandoned calls (z unused)."""
    return _first(lambda abandoned, idle, _: np.diff(idle + price * abandoned) >= 0, snapshot, model, limit)


def policy(planner: Callable[..., int] | None, z: float) -> Predictive:
    return Predictive(PredictiveSettings(controller=ControllerSettings(gain=0.0, z_start=z)), planner=planner)


OURS = "ours (z)"
RULES: dict[str, tuple[Callable[[float], Callable[[], Predictive]], tuple[float, ...]]] = {
    OURS: (lambda z: partial(policy, None, z), (1.7, 1.8, 1.9)),
    "marginal (z)": (lambda z: partial(policy, plan_marginal, z), (1.5, 1.6, 1.85)),
    "lookahead (price, s)": (lambda price: partial(policy, partial(plan_lookahead, price), 0.0), (120.0, 160.0, 220.0)),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pacing_alternatives", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=8, help="days per point (default 8)")
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    seeds = range(1, args.seeds + 1)
    config = SimConfig(agents=args.agents, hours=args.hours)
    started = time.monotonic()
    out = ["| rule | parameter | occupancy | abandoned |", "|---|---:|---:|---:|"]
    summary = []
    at_limit: dict[str, float | None] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for name, (factory, params) in RULES.items():
            points = []
            for param in params:
                r = compare(Distributions(answer_p=0.25), config, seeds, {name: factory(param)}, pool)[name]
                points.append((r.abandon_rate, r.occupancy))
                out.append(f"| {name} | {param:g} | {r.occupancy:.1%} | {r.abandon_rate:.2%} |")
            print(f"  {name}: done", file=sys.stderr, flush=True)
            at_limit[name] = interpolate(points, 0.03)
            summary.append(f"{name}: {at_abandon(points, 0.03)} occupancy at 3% abandoned")
    print(f"{args.agents} agents, answer rate 0.25, {len(seeds)} day(s) of {args.hours:g} h per point; "
          f"{time.monotonic() - started:.0f} s\n")
    ours = at_limit[OURS]
    ratios = [f"{name} vs {OURS}: {value / ours:.3f}×" for name, value in at_limit.items()
              if name != OURS and value is not None and ours]
    print("\n".join(out + [""] + summary + [""] + (ratios or ["(no ratio: a rule's points do not bracket 3 %)"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
