"""The supervisor's clockwork: APScheduler jobs that open and close campaigns at the calling
window's edges, check the agents' targets at mid-day, and sweep the queue for follow-ups and
coverage, raising alerts.

Jobs live in the database (campaigns/jobs.py: APScheduler's SQLAlchemy job store), each
with a fixed id per campaign and kind: registering them again (every `dunning run` does)
replaces them instead of adding twins, and a job whose moment passed while nothing ran is run
once when the scheduler starts again (``coalesce``), within its grace time. The job functions
(`open_campaign`, `close_campaign`, `check_targets`, `sweep_queue`) take `now` and are pure
enough to test at 20:59:59 and 21:00:00; the scheduler passes the wall clock.

A campaign closed by the schedule is paused with a note (``settings.closed_by_schedule``) so
that the opening job starts only campaigns the schedule closed, never one a supervisor
paused.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import Agent, Alert, Campaign, CampaignCase, CampaignStatus
from .policy import Rules, local_now
from . import hopper
from .clock import utc_now
from .jobs import keep_or_add
from .lifecycle import CAMPAIGN_TRANSITIONS, campaign_named, rules_for
from .report import daily
from .targets import TargetStatus, effective_rate, queue_size_needed, targets_status

KINDS = ("open", "close", "targets", "sweep")
#: How many cases one sweep asks the policy about again, at most.
SWEEP_ASKS = 50_000
#: Mid-day: when the targets check runs (the share of the calling window that has passed).
MIDDAY_SHARE = 0.5


@dataclass(frozen=True)
class Edges:
    """Today's calling window for a campaign, on its own clock."""

    opens: dt.time
    closes: dt.time
    midday: dt.time
    timezone: str


def edges(campaign: Campaign, rules: Rules) -> Edges:
    start = dt.datetime.combine(dt.date(2000, 1, 1), rules.window_start)
    end = dt.datetime.combine(dt.date(2000, 1, 1), rules.window_end)
    midday = (start + (end - start) * MIDDAY_SHARE).time()
    return Edges(rules.window_start, rules.window_end, midday, campaign.timezone)


def job_id(kind: str, campaign: str) -> str:
    return f"{kind}:{campaign}"


# ---------------------------------------------------------------- the jobs' work (take `now`)

def _schedule_note(campaign: Campaign, closed: bool) -> None:
    settings = dict(campaign.settings or {})
    if closed:
        settings["closed_by_schedule"] = True
    else:
        settings.pop("closed_by_schedule", None)
    campaign.settings = settings


def open_campaign(session: Session, name: str, now: dt.datetime) -> str:
    """At the window's opening: start the campaign again if the schedule closed it."""
    campaign = campaign_named(session, name)
    if campaign.status == CampaignStatus.PAUSED.value and (campaign.settings or {}).get("closed_by_schedule"):
        campaign.status = CAMPAIGN_TRANSITIONS[(CampaignStatus.PAUSED, "start")].value
        campaign.status_changed_at = now
        _schedule_note(campaign, closed=False)
        return f"campaign {name} opened at {_local(now, campaign)}"
    return f"campaign {name} left {campaign.status} (not closed by the schedule)"


def close_campaign(session: Session, name: str, now: dt.datetime) -> str:
    """At the window's close: pause a running campaign (the engine stops dialling it)."""
    campaign = campaign_named(session, name)
    if campaign.status == CampaignStatus.RUNNING.value:
        campaign.status = CAMPAIGN_TRANSITIONS[(CampaignStatus.RUNNING, "pause")].value
        campaign.status_changed_at = now
        _schedule_note(campaign, closed=True)
        return f"campaign {name} closed at {_local(now, campaign)}"
    return f"campaign {name} left {campaign.status}"


def _local(now: dt.datetime, campaign: Campaign) -> str:
    return f"{local_now(now, campaign.timezone):%H:%M:%S} {campaign.timezone}"


def raise_alert(session: Session, key: str, kind: str, message: str, now: dt.datetime, *,
                campaign_id: int | None = None, agent_id: int | None = None) -> bool:
    """Write an alert once per key; False when it was raised already."""
    if session.scalar(select(Alert.id).where(Alert.key == key)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Alert(key=key, kind=kind, message=message, raised_at=now, campaign_id=campaign_id,
                              agent_id=agent_id))
    except IntegrityError:  # raised by another process in the meantime
        return False
    return True


def alerts(session: Session, campaign: str | None = None, *, acknowledged: bool = False) -> list[Alert]:
    """The alerts raised, oldest first: of one campaign, or all; the acknowledged ones too if asked."""
    query = select(Alert).order_by(Alert.raised_at)
    if campaign:
        query = query.where(Alert.campaign_id == campaign_named(session, campaign).id)
    if not acknowledged:
        query = query.where(Alert.acknowledged_at.is_(None))
    return list(session.scalars(query))


def acknowledge_alert(session: Session, alert_id: int, by: str, now: dt.datetime) -> Alert | None:
    """Mark an alert seen by `by`; None when there is no such alert."""
    found = session.get(Alert, alert_id)
    if found is not None:
        found.acknowledged_by, found.acknowledged_at = by, now
    return found


def _effective_s(campaign: Campaign) -> float:
    return float((campaign.settings or {}).get("effective_seconds", 30))


def agent_counts(session: Session, campaign: Campaign, now: dt.datetime) -> Iterator[tuple[Agent, int, int]]:
    """Each active agent's dials and effective calls so far today (the campaign's day), as the
    daily report counts them."""
    zone = ZoneInfo(campaign.timezone)
    today = daily(session, local_now(now, zone).date(), campaign.timezone, _effective_s(campaign), until=now)
    rows = {row.extension: row for row in today.agents}
    for agent in session.scalars(select(Agent).where(Agent.active.is_(True)).order_by(Agent.extension)):
        row = rows.get(agent.extension)
        yield agent, row.dials if row else 0, row.effective if row else 0


@dataclass(frozen=True)
class AgentTargets:
    extension: str
    name: str
    dials: int
    effective: int
    status: TargetStatus


@dataclass(frozen=True)
class TargetsToday:
    """`dunning targets`: each active agent against the day's targets at `local` (the
    campaign's clock), and the queue's size against what the agents need."""

    campaign: str
    timezone: str
    local: dt.datetime
    agents: tuple[AgentTargets, ...]
    cases: int
    working: int        # the agents the queue must feed: every active one
    rate: float         # effective calls per dial
    rate_measured: bool  # today's rate (True) or the assumed one (too few dials today)
    needed: int         # cases the queue needs for the targets to be reachable


def targets_today(session: Session, name: str, now: dt.datetime) -> TargetsToday:
    campaign = campaign_named(session, name)
    rules = rules_for(campaign)
    local = local_now(now, campaign.timezone)
    rows = tuple(AgentTargets(agent.extension, agent.name, dials, effective,
                              targets_status(dials, effective, local, rules.window_start, rules.window_end,
                                             alert_from=MIDDAY_SHARE))
                 for agent, dials, effective in agent_counts(session, campaign, now))
    rate, measured = effective_rate(sum(r.dials for r in rows), sum(r.effective for r in rows))
    working = len(rows)
    cases = session.scalar(select(func.count()).select_from(CampaignCase)
                           .where(CampaignCase.campaign_id == campaign.id)) or 0
    return TargetsToday(campaign.name, campaign.timezone, local, rows, cases, working, rate, measured,
                        queue_size_needed(working, rate, dials_per_case=rules.max_attempts_per_number_per_day))


def check_targets(session: Session, name: str, now: dt.datetime) -> list[str]:
    """At mid-day: an alert for every agent behind the day's 200 dials / 50 effective calls."""
    campaign = campaign_named(session, name)
    rules = rules_for(campaign)
    local = local_now(now, campaign.timezone)
    raised = []
    for agent, dials, effective in agent_counts(session, campaign, now):
        if dials == 0:
            continue  # not working today
        status = targets_status(dials, effective, local, rules.window_start, rules.window_end,
                                alert_from=MIDDAY_SHARE, agent=f"agent {agent.extension}")
        if status.alert_text and raise_alert(session, f"behind_target:{agent.id}:{local.date()}", "behind_target",
                                             status.alert_text, now, campaign_id=campaign.id, agent_id=agent.id):
            raised.append(status.alert_text)
    return raised


def sweep_queue(session: Session, name: str, now: dt.datetime) -> list[str]:
    """Every so often in the window: ask the policy again about the cases waiting for it (the
    hopper's refresh, ahead of the next window's opening too), then alert on follow-ups overdue
    by more than a day and on the new-queue coverage deadline. Reads the stored states only."""
    campaign = campaign_named(session, name)
    rules = rules_for(campaign)
    hopper.refresh(session, campaign, now, rules, limit=SWEEP_ASKS, ahead=True)
    local = local_now(now, campaign.timezone)
    messages = []
    count, overdue = hopper.overdue_follow_ups(session, campaign, now)
    if count:
        text = (f"campaign {name}: {count} follow-up(s) overdue by more than a day: "
                + "; ".join(f"case {case_id} ({kind}, due {due.astimezone(ZoneInfo(campaign.timezone)):%m-%d %H:%M})"
                            for case_id, kind, due in overdue))
        if raise_alert(session, f"follow_ups_overdue:{campaign.id}:{local.date()}", "follow_ups_overdue", text, now,
                       campaign_id=campaign.id):
            messages.append(text)
    coverage, waiting = hopper.coverage(session, campaign, now, rules)
    if coverage.deadline is not None and coverage.working_days_left <= 1 and waiting:
        text = (f"campaign {name}: {waiting} case(s) never called, and the queue must be covered by "
                f"{coverage.deadline.astimezone(ZoneInfo(campaign.timezone)):%Y-%m-%d %H:%M}")
        if raise_alert(session, f"coverage_at_risk:{campaign.id}:{local.date()}", "coverage_at_risk", text, now,
                       campaign_id=campaign.id):
            messages.append(text)
    return messages


# ---------------------------------------------------------------- the scheduler

def run_job(kind: str, database_url: str, campaign: str) -> list[str] | str:
    """What the scheduler calls (by reference, so that the job store can keep it)."""
    from .db import job_transaction
    with job_transaction(database_url) as session:
        now = utc_now()
        return {"open": open_campaign, "close": close_campaign, "targets": check_targets,
                "sweep": sweep_queue}[kind](session, campaign, now)


def schedule_campaign(scheduler, database_url: str, campaign: Campaign, rules: Rules, *,
                      jobstore: str = "default", sweep_minutes: int = 10) -> list[str]:
    """Register the campaign's jobs (kept when unchanged, see `keep_or_add`); returns their ids."""
    from apscheduler.triggers.cron import CronTrigger

    from .db import stored_url
    at = edges(campaign, rules)
    zone = campaign.timezone
    window_hours = f"{at.opens.hour}-{max(at.opens.hour, (at.closes.hour - 1) % 24)}"
    triggers = {
        "open": CronTrigger(hour=at.opens.hour, minute=at.opens.minute, second=at.opens.second, timezone=zone),
        "close": CronTrigger(hour=at.closes.hour, minute=at.closes.minute, second=at.closes.second, timezone=zone),
        "targets": CronTrigger(hour=at.midday.hour, minute=at.midday.minute, timezone=zone),
        "sweep": CronTrigger(hour=window_hours, minute=f"*/{sweep_minutes}", timezone=zone),
    }
    ids = []
    for kind, trigger in triggers.items():
        job = keep_or_add(scheduler, run_job, trigger, args=(kind, stored_url(database_url), campaign.name),
                          id=job_id(kind, campaign.name), name=f"{kind} {campaign.name}", jobstore=jobstore,
                          misfire_grace_time=3600)
        ids.append(job.id)
    return ids
