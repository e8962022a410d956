"""Simulated campaigns for pacing: the same policy objects the engine runs, on a virtual clock.

    simulate(policy, distributions, config, seed) -> Report       one day
    days(distributions, config, seeds) -> {policy: [Report]}      a day per seed and policy
    compare(distributions, config, seeds) -> {policy: Report}     the same days, pooled
    campaign_days(policy, distributions, config, seed, count)     one campaign's consecutive days
    what_if(rows_from_attempts(attempts), agents=12)              on what real attempts showed
    prime(learner, rows_from_attempts(attempts))                  start a campaign's learner from them
"""
from .campaign import Report, SimConfig, Simulation, simulate
from .distributions import (
    TEXTBOOK,
    AttemptRow,
    AttemptTimes,
    Constant,
    Distributions,
    Empirical,
    LogNormal,
    NoHistory,
    Sampler,
    Uniform,
    rows_from_attempts,
)
from .whatif import POLICIES, campaign_days, compare, days, prime, run_one, what_if

__all__ = [
    "POLICIES", "TEXTBOOK", "AttemptRow", "AttemptTimes", "Constant", "Distributions", "Empirical", "LogNormal", "NoHistory", "Report",
    "Sampler", "SimConfig", "Simulation", "Uniform", "campaign_days", "compare", "days", "prime", "rows_from_attempts", "run_one", "simulate",
    "what_if",
]
