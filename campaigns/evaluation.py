"""The whole-campaign evaluation: the policy asked about every case of a campaign at one
moment, with no cache. The hopper (campaigns/hopper.py) answers the same questions from its
stored states; this is what it is checked against (tests, `bench/hopper.py`). Streams the
campaign `case_views.CHUNK` cases at a time; only `decisions` and `first_pick` hold every
case, to order them."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from sqlalchemy.orm import Session

from . import case_views
from .dial_state import Verdict, verdict
from .hopper import history_for
from .lifecycle import rules_for
from .models import Campaign, HopperPhase
from .policy import CaseView, Decision, Rules, decide, priority_key


def evaluate(session: Session, campaign: Campaign, now: dt.datetime,
             rules: Rules | None = None) -> Iterator[tuple[case_views.CaseRecord, Verdict]]:
    """Every case of the campaign with the policy's answer at `now`, in case id order."""
    rules = rules or rules_for(campaign)
    for ids in case_views.campaign_case_ids(session, campaign.id):
        for record in case_views.records(session, campaign.id, ids, now, history_for(rules)).values():
            yield record, verdict(record.view, record.history, now, rules, campaign.timezone, busy=record.busy)


def decisions(session: Session, campaign: Campaign, now: dt.datetime,
              rules: Rules | None = None) -> list[tuple[CaseView, Decision]]:
    """The policy's decision for every case of the campaign, in priority order."""
    rules = rules or rules_for(campaign)
    found = [(record.view, decide(record.view, record.history, now, campaign.timezone, rules))
             for ids in case_views.campaign_case_ids(session, campaign.id)
             for record in case_views.records(session, campaign.id, ids, now, history_for(rules)).values()]
    return sorted(found, key=lambda pair: priority_key(pair[0]))


def first_pick(session: Session, campaign: Campaign, now: dt.datetime, rules: Rules | None = None, *,
               agent_reserved: bool = True, only_abandoned: bool = False) -> tuple[int, int] | None:
    """(case id, phone id) of the dial the engine must make at `now`: the highest-priority case
    whose follow-up is due and that the policy allows, with no call in progress; with no agent
    reserved, not a case whose last call was abandoned nor one whose allowed number is a
    contact's; with `only_abandoned`, among those whose last call was. None: nothing."""
    best = None
    for record, answer in evaluate(session, campaign, now, rules):
        if answer.phase is not HopperPhase.READY:
            continue
        if only_abandoned and not record.last_abandoned:
            continue
        if not agent_reserved and (record.last_abandoned or answer.decision.third_party):
            continue
        key = priority_key(record.view)
        if best is None or key < best[0]:
            best = (key, record.view.id, answer.decision.phone.id)
    return None if best is None else best[1:]
