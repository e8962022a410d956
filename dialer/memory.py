"""What a predictive campaign remembers from one run of the engine to the next.

The pacing policy learns online, but the engine is a process: stopped at night, restarted
after a crash or a deployment. When it starts, the campaign's policy is rebuilt from the
campaign's attempts in the database:

* the **abandonment window**: every answered call within the campaign's rolling window
  (`--abandon-window 24h`, the default, or `30d`), abandoned or not, so that the calls
  abandoned in this morning's run still count this afternoon and a 30-day limit really
  spans 30 days;
* the **learner**: the campaign's last dials (as many as its windows hold: answer rate, time
  to answer, time to give up, talk time), so that a new run starts from what the campaign
  showed instead of warming up again on progressive dialing.

The controller's caution (`z`) is not carried over: it describes the conditions of one run
(who answers at this hour, with these agents), and starts cautious again; the window's rate
steers how fast it comes down.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from campaigns.amd import MACHINE, estimated_abandonment, human_share_of
from campaigns.models import Attempt, Campaign
from campaigns.queue import ABANDONED, CampaignError

from .pacing import (
    THIRTY_DAYS_S,
    TWENTY_FOUR_HOURS_S,
    ControllerSettings,
    LearnerSettings,
    Predictive,
    PredictiveSettings,
)
from .sim.distributions import rows_from_attempts
from .sim.whatif import prime

#: The rolling windows a campaign's abandonment is held over (`--abandon-window`).
ABANDON_WINDOWS = {"24h": TWENTY_FOUR_HOURS_S, "30d": THIRTY_DAYS_S}
DEFAULT_WINDOW = "24h"
DEFAULT_TARGET = 0.03
#: A call is answered within this of being planned (it rings at most a minute): the bound that
#: lets the window's calls be found by the (campaign, planned time) index.
PLANNED_BEFORE_ANSWER = dt.timedelta(hours=1)


def window_of(campaign: Campaign) -> str:
    """The campaign's abandonment window, as its name ("24h" or "30d")."""
    name = (campaign.settings or {}).get("abandon_window", DEFAULT_WINDOW)
    if name not in ABANDON_WINDOWS:
        raise CampaignError(f"campaign {campaign.name}: abandon_window {name!r} is not one of "
                            f"{', '.join(ABANDON_WINDOWS)}")
    return str(name)


def window_s(campaign: Campaign) -> float:
    """The campaign's abandonment window, in seconds."""
    return ABANDON_WINDOWS[window_of(campaign)]


def target_of(campaign: Campaign) -> float:
    return float((campaign.settings or {}).get("abandon_target", DEFAULT_TARGET))


@dataclass(frozen=True)
class Abandonment:
    """A campaign's answered and abandoned calls over its rolling window, with AMD's
    MACHINE results and the estimate of people among them counted as abandoned
    (campaigns/amd.py)."""

    window: str
    answered: int      # answered by people (MACHINE results apart)
    abandoned: int
    target: float
    machines: int = 0
    human_share: float = 0.0

    @property
    def rate(self) -> float | None:
        return estimated_abandonment(self.answered, self.abandoned, self.machines, self.human_share).rate

    def line(self) -> str:
        if self.rate is None:
            rate = "none answered"
        elif not self.machines:
            rate = f"{self.rate:.2%} ({self.abandoned} of {self.answered} answered)"
        else:
            figure = estimated_abandonment(self.answered, self.abandoned, self.machines, self.human_share)
            guess = figure.estimated_humans_among_machines
            rate = (f"{self.rate:.2%} ({self.abandoned} abandoned + {guess:.1f} people estimated among "
                    f"{self.machines} answering machines at {self.human_share:.0%}, of "
                    f"{self.answered} + {guess:.1f} answered by people)")
        return f"abandoned over the last {self.window}: {rate}; target {self.target:.1%}"


def answered_calls(session: Session, campaign: Campaign,
                   now: dt.datetime) -> list[tuple[dt.datetime, bool, bool]]:
    """(answer time, abandoned, machine) of the campaign's calls answered within its window,
    oldest first."""
    since = now - dt.timedelta(seconds=window_s(campaign))
    rows = session.execute(select(Attempt.answered_at, Attempt.outcome).where(
        Attempt.campaign_id == campaign.id, Attempt.planned_at > since - PLANNED_BEFORE_ANSWER,
        Attempt.answered_at.is_not(None),
        Attempt.answered_at > since, Attempt.answered_at <= now).order_by(Attempt.answered_at, Attempt.id))
    return [(at, outcome == ABANDONED, outcome == MACHINE) for at, outcome in rows]


def abandonment(session: Session, campaign: Campaign, now: dt.datetime) -> Abandonment:
    """The campaign's abandonment over its window ending at `now`: counted in the database
    (a month of a large floor's calls is not loaded to be counted)."""
    since = now - dt.timedelta(seconds=window_s(campaign))
    answered, abandoned, machines = session.execute(select(
        func.count(), func.coalesce(func.sum(case((Attempt.outcome == ABANDONED, 1), else_=0)), 0),
        func.coalesce(func.sum(case((Attempt.outcome == MACHINE, 1), else_=0)), 0)).where(
        Attempt.campaign_id == campaign.id, Attempt.planned_at > since - PLANNED_BEFORE_ANSWER,
        Attempt.answered_at.is_not(None), Attempt.answered_at > since, Attempt.answered_at <= now)).one()
    return Abandonment(window_of(campaign), answered - machines, abandoned, target_of(campaign), machines,
                       human_share_of(campaign))


def predictive_for(session: Session, campaign: Campaign, wrap_up_s: float, now: dt.datetime) -> Predictive:
    """The campaign's pacing policy, with what its earlier runs showed."""
    extra = campaign.settings or {}
    learner = LearnerSettings(wrap_prior_s=wrap_up_s)
    policy = Predictive(PredictiveSettings(
        warmup_dials=int(extra.get("warmup_dials", 60)), learner=learner,
        controller=ControllerSettings(target=target_of(campaign), window_s=window_s(campaign),
                                      machine_human_share=human_share_of(campaign))))
    for at, abandoned, machine in answered_calls(session, campaign, now):
        policy.controller.remember(at.timestamp(), abandoned, machine)
    recent = session.execute(select(Attempt.dialed_at, Attempt.answered_at, Attempt.bridged_at, Attempt.ended_at,
                                    Attempt.outcome).where(
        Attempt.campaign_id == campaign.id, Attempt.dialed_at.is_not(None), Attempt.ended_at.is_not(None),
        Attempt.dialed_at <= now).order_by(Attempt.planned_at.desc(), Attempt.id.desc()).limit(learner.dials_window))
    prime(policy.learner, reversed(rows_from_attempts(recent)))
    return policy
