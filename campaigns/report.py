"""The daily report: per agent dials, connects and effective calls against the targets,
per campaign connect rate and recording coverage.

`daily` builds plain rows from the database (a day is the supervisor's local calendar
day); `render` turns rows into a text table. No clock is read: the day is a parameter.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .amd import ABANDONED, MACHINE, Abandonment, estimated_abandonment, human_share_of
from .models import Agent, Attempt, Campaign, Recording, VaultFile

DIALS_TARGET = 200
EFFECTIVE_TARGET = 50


@dataclass(frozen=True)
class AgentDay:
    extension: str
    name: str
    dials: int
    connects: int
    effective: int
    talk_s: float

    @property
    def dials_pct(self) -> float:
        return 100.0 * self.dials / DIALS_TARGET

    @property
    def effective_pct(self) -> float:
        return 100.0 * self.effective / EFFECTIVE_TARGET


@dataclass(frozen=True)
class CampaignDay:
    name: str
    dials: int
    answered: int
    bridged: int
    recorded: int
    outcomes: dict[str, int]
    #: With AMD: the estimated share of its MACHINE results that were people (campaigns/amd.py).
    human_share: float = 0.0

    @property
    def abandonment(self) -> Abandonment:
        """The day's abandoned calls, the people estimated among AMD's machines counted in."""
        machines = self.outcomes.get(MACHINE, 0)
        return estimated_abandonment(self.answered - machines, self.outcomes.get(ABANDONED, 0), machines,
                                     self.human_share)

    @property
    def connect_rate(self) -> float:
        return self.answered / self.dials if self.dials else 0.0

    @property
    def recording_coverage(self) -> float:
        return self.recorded / self.answered if self.answered else 1.0


@dataclass(frozen=True)
class DailyReport:
    day: dt.date
    timezone: str
    effective_s: float
    agents: tuple[AgentDay, ...]
    campaigns: tuple[CampaignDay, ...]
    #: (answered calls with a verified recording in the vault, answered calls)
    coverage: tuple[int, int] = (0, 0)


def day_bounds(day: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    zone = ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(0), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), zone)
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def daily(session: Session, day: dt.date, timezone: str = "Asia/Shanghai", effective_s: float = 30.0,
          campaign: str | None = None, until: dt.datetime | None = None) -> DailyReport:
    """The day's figures, for every campaign or only `campaign`; with `until`, the day so far
    (dials up to that moment)."""
    start, end = day_bounds(day, timezone)
    query = select(Attempt).where(Attempt.dialed_at >= start, Attempt.dialed_at < end)
    if until is not None:
        query = query.where(Attempt.dialed_at <= until)
    if campaign is not None:
        query = query.where(Attempt.campaign_id.in_(select(Campaign.id).where(Campaign.name == campaign)))
    attempts = list(session.scalars(query))
    recorded = set(session.scalars(select(Recording.attempt_id).where(
        Recording.attempt_id.in_([a.id for a in attempts]))))
    agents = {a.id: a for a in session.scalars(select(Agent))}
    campaigns = {c.id: c.name for c in session.scalars(select(Campaign))}
    shares = {c.id: human_share_of(c) for c in session.scalars(select(Campaign))}

    def talk(a: Attempt) -> float:
        return (a.ended_at - a.bridged_at).total_seconds() if a.bridged_at and a.ended_at else 0.0

    agent_rows = []
    for agent in sorted(agents.values(), key=lambda a: a.extension):
        mine = [a for a in attempts if a.agent_id == agent.id]
        if not mine and not agent.active:
            continue
        bridged = [a for a in mine if a.bridged_at is not None]
        agent_rows.append(AgentDay(agent.extension, agent.name, len(mine), len(bridged),
                                   sum(1 for a in bridged if talk(a) >= effective_s), sum(map(talk, bridged))))
    campaign_rows = []
    for campaign_id, name in sorted(campaigns.items(), key=lambda kv: kv[1]):
        mine = [a for a in attempts if a.campaign_id == campaign_id]
        if not mine:
            continue
        outcomes: dict[str, int] = {}
        for a in mine:
            outcomes[a.outcome or "in progress"] = outcomes.get(a.outcome or "in progress", 0) + 1
        answered = [a for a in mine if a.answered_at is not None]
        campaign_rows.append(CampaignDay(name, len(mine), len(answered), sum(a.bridged_at is not None for a in mine),
                                         sum(a.id in recorded for a in answered), outcomes, shares[campaign_id]))
    answered_ids = [a.id for a in attempts if a.answered_at is not None]
    return DailyReport(day, timezone, effective_s, tuple(agent_rows), tuple(campaign_rows),
                       (verified_recordings(session, answered_ids), len(answered_ids)))


def verified_recordings(session: Session, attempt_ids) -> int:
    """How many of these attempts (ids, or a select of ids) have a recording in the vault
    whose last check found it intact and that has not been purged: the daily report's
    coverage, and ``recordings.integrity.coverage``'s."""
    return session.scalar(
        select(func.count()).select_from(VaultFile).join(Recording, VaultFile.recording_id == Recording.id)
        .where(Recording.attempt_id.in_(attempt_ids), VaultFile.integrity == "ok",
               VaultFile.purged_at.is_(None))) or 0


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as an aligned text table (first row: the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _abandoned(day: CampaignDay) -> str:
    """The day's abandon rate; with AMD's machines, marked as an estimate (the footnote says how)."""
    figure = day.abandonment
    if figure.rate is None:
        return "n/a"
    return f"{figure.rate:.1%}" + (" est." if figure.machines and figure.human_share else "")


def render(report: DailyReport) -> str:
    head = (f"Daily report for {report.day.isoformat()} ({report.timezone}); an effective call is "
            f"a conversation of at least {report.effective_s:g} s; targets {DIALS_TARGET} dials and "
            f"{EFFECTIVE_TARGET} effective calls per agent per day.")
    agents = [("agent", "name", "dials", "of target", "connects", "effective", "of target", "talk")]
    for a in report.agents:
        agents.append((a.extension, a.name, str(a.dials), f"{a.dials_pct:.0f} %", str(a.connects), str(a.effective),
                       f"{a.effective_pct:.0f} %", f"{a.talk_s / 60:.1f} min"))
    campaigns = [("campaign", "dials", "answered", "connect rate", "bridged", "recorded", "abandoned", "outcomes")]
    for c in report.campaigns:
        campaigns.append((c.name, str(c.dials), str(c.answered), f"{100 * c.connect_rate:.0f} %", str(c.bridged),
                          f"{100 * c.recording_coverage:.0f} %", _abandoned(c),
                          ", ".join(f"{k} {v}" for k, v in sorted(c.outcomes.items()))))
    verified, answered = report.coverage
    share = f"{100 * verified / answered:.0f} %" if answered else "n/a"
    parts = [head, "", table(agents) if report.agents else "(no agents)", "",
             table(campaigns) if report.campaigns else "(no dials that day)", "",
             f"recording coverage: {verified} of {answered} answered calls have a verified recording "
             f"in the vault ({share}; it must be 100 %)"]
    for c in report.campaigns:
        figure = c.abandonment
        if figure.machines and figure.human_share:
            parts.append(f"{c.name}: abandoned {figure.rate:.1%} est. = ({figure.abandoned} abandoned + "
                         f"{figure.estimated_humans_among_machines:.1f} people estimated among {figure.machines} "
                         f"answering machines at {figure.human_share:.0%}) / ({figure.humans} answered by people "
                         f"+ {figure.estimated_humans_among_machines:.1f})")
    return "\n".join(parts)


def plot(report: DailyReport, path) -> None:
    """The report as a picture: per agent, dials and effective calls against the targets."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    agents = report.agents
    figure, (dials, effective) = pyplot.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    names = [a.extension for a in agents]
    for axis, values, target, title in ((dials, [a.dials for a in agents], DIALS_TARGET, "dials"),
                                        (effective, [a.effective for a in agents], EFFECTIVE_TARGET,
                                         f"effective calls (>= {report.effective_s:g} s)")):
        axis.bar(names, values, color="#4477aa")
        axis.axhline(target, color="#cc3311", linestyle="--", label=f"target {target}")
        axis.set_title(f"{title}, {report.day.isoformat()} ({report.timezone})")
        axis.set_xlabel("agent")
        axis.legend()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
