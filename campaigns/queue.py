"""The dialer's side of the database, in one place for the engine and the commands: a
campaign's lifecycle (campaigns/lifecycle.py), the hopper that picks what to dial next
(campaigns/hopper.py), and the ledger of attempts (campaigns/ledger.py).

`plan_next` takes the highest-priority case the policy allows now and writes its attempt row
PLANNED in the caller's transaction, *before* anything is sent to Asterisk: a dial can never
happen without its row, and the row is what keeps the next pick from the same case.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from . import hopper
from .case_views import ABANDONED
from .evaluation import decisions
from .hopper import FOLLOW_UP_HISTORY
from . import ledger
from .ledger import (
    INVALID_CAUSES,
    NotDialled,
    Planned,
    attach_recording,
    in_flight,
    mark_dialing,
    set_agent,
)
from .lifecycle import (
    CAMPAIGN_TRANSITIONS,
    CampaignError,
    campaign_named,
    change_campaign,
    next_campaign_status,
    rules_for,
)
from .models import Agent, Attempt, Campaign
from .policy import Rules

__all__ = ["ABANDONED", "CAMPAIGN_TRANSITIONS", "FOLLOW_UP_HISTORY", "INVALID_CAUSES", "CampaignError",
           "NotDialled", "Planned", "attach_recording", "campaign_named", "change_campaign", "decisions", "finish",
           "in_flight", "mark_dialing", "next_campaign_status", "plan_next", "rules_for", "set_agent"]


def plan_next(session: Session, campaign: Campaign, agent: Agent | None, call_id: str,
              now: dt.datetime, rules: Rules | None = None, *, only_abandoned: bool = False,
              server: str | None = None) -> Planned | None:
    """The next dial (hopper.take): for `agent`, or ahead of agents when `agent` is None, on
    the Asterisk `server` the engine drives (None: the only one)."""
    return hopper.take(session, campaign, agent.id if agent is not None else None, call_id, now, rules,
                       only_abandoned=only_abandoned, server=server)


def finish(session: Session, attempt_id: int, outcome: str, *, ended_at: dt.datetime, **facts) -> None:
    """End an attempt with its outcome (ledger.finish) and ask the policy about its case again
    at once, as of `ended_at`, so that the next dial decision finds its answer ready."""
    ledger.finish(session, attempt_id, outcome, ended_at=ended_at, **facts)
    attempt = session.get(Attempt, attempt_id)
    campaign = session.get(Campaign, attempt.campaign_id)
    hopper.ask(session, campaign, rules_for(campaign), [attempt.case_id], ended_at)
