"""The supervisor's wallboard: live agent states, calls in progress, each campaign's dial
level, abandon rate, connects in the last hour and progress (campaigns.admin.campaign_figures).

The handlers (supervisors and administrators) come first: the page, the data it polls, and
pausing or resuming a campaign of the reader's team. `wallboard` reads the database at `now`
and returns JSON-ready data.
"""
from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.admin import campaign_figures
from campaigns.models import Agent, AgentPresence, Attempt, AttemptState, Campaign, EngineStatus
from campaigns.queue import ABANDONED, CampaignError, change_campaign

from .accounts import audit, team_campaign_ids
from .pages import CLOCK, DB, LANG, SETTINGS, WHO, error, render, strings
from .schema import Account
from .settings import Settings


async def wallboard_page(request: web.Request) -> web.Response:
    return render(request, "wallboard.html", {"strings": strings(request, "state.", "wall.", "pause."),
                                              "can_listen": request[WHO].role == "supervisor"})


async def wallboard_data(request: web.Request) -> web.Response:
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    return web.json_response(await app[DB](wallboard, who.account_id, now, app[SETTINGS], app[CACHE]))


async def campaign_command(request: web.Request) -> web.Response:
    app, now, who = request.app, request.app[CLOCK](), request[WHO]
    name, command = request.match_info["name"], request.match_info["command"]
    command = {"pause": "pause", "resume": "start"}.get(command)
    if command is None:
        return error(request, 404, "not_found", request[LANG])
    try:
        status = await app[DB](pause_or_resume, who.account_id, name, command, now, app[CACHE])
    except CampaignError as exc:
        return web.json_response({"ok": False, "message": str(exc)}, status=409)
    return web.json_response({"ok": True, "status": status})


# ---------------------------------------------------------------- the database work


class FiguresCache:
    """campaign_figures runs the policy over every case: computed at most every `ttl_s`."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, dict]] = {}

    def get(self, session: Session, name: str, now: dt.datetime) -> dict:
        hit = self._cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        try:
            f = campaign_figures(session, name, now)
        except CampaignError as exc:
            figures = {"error": str(exc)}
        else:
            figures = {"cases": f.cases, "dialable_now": f.dialable_now,
                       "next_dialable_at": f.next_dialable_at.isoformat() if f.next_dialable_at else None,
                       "attempts_today": dict(f.attempts_today), "blocked_by": dict(f.blocked_by)}
        self._cache[name] = (time.monotonic(), figures)
        return figures

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)


CACHE = web.AppKey("figures", FiguresCache)


def visible_campaigns(session: Session, account: Account) -> list[Campaign]:
    """A supervisor with a team sees the campaigns assigned to it; administrators (and a
    supervisor without a team) see all."""
    query = select(Campaign).order_by(Campaign.name)
    if account.role == "supervisor" and account.team_id is not None:
        query = query.where(Campaign.id.in_(team_campaign_ids(session, account.team_id)))
    return list(session.scalars(query))


def wallboard(session: Session, account_id: int, now: dt.datetime, settings: Settings,
              cache: FiguresCache) -> dict:
    account = session.get(Account, account_id)
    campaigns = visible_campaigns(session, account)
    ids = {c.id for c in campaigns}
    zone = ZoneInfo(settings.report_timezone)
    midnight = dt.datetime.combine(now.astimezone(zone).date(), dt.time(0), zone)
    hour_ago = now - dt.timedelta(hours=1)
    agents = {a.id: a for a in session.scalars(select(Agent))}
    names = {c.id: c.name for c in campaigns}
    rows = []
    presences = list(session.scalars(select(AgentPresence)))
    # the calls agents are talking on now (the attempt's bridged_at is written when it ends)
    talking = {p.call_id: p.agent_id for p in presences if p.state == "on_call" and p.call_id}
    for presence in presences:
        agent = agents.get(presence.agent_id)
        if agent is None or (presence.campaign_id is not None and presence.campaign_id not in ids
                             and account.role == "supervisor" and account.team_id is not None):
            continue
        since = presence.state_since
        rows.append({"extension": agent.extension, "name": agent.name, "state": presence.state,
                     "requested": presence.requested, "reason": presence.requested_reason,
                     "seconds": int((now - since).total_seconds()) if since else None,
                     "call_id": presence.call_id, "campaign": names.get(presence.campaign_id),
                     "line": presence.line})
    rows.sort(key=lambda r: r["extension"])
    live = list(session.scalars(select(Attempt).where(
        Attempt.campaign_id.in_(ids), Attempt.state != AttemptState.ENDED.value,
        Attempt.planned_at >= now - dt.timedelta(hours=6)).order_by(Attempt.planned_at)))
    calls = [{"call_id": a.call_id, "campaign": names.get(a.campaign_id), "number": _masked_number(a.number),
              "agent": agents[talking.get(a.call_id, a.agent_id)].extension
              if talking.get(a.call_id, a.agent_id) in agents else None,
              "stage": "talking" if a.bridged_at or a.call_id in talking else "answered" if a.answered_at else a.state,
              "seconds": int((now - (a.bridged_at or a.answered_at or a.dialed_at or a.planned_at)).total_seconds())}
             for a in live]
    engine = {s.campaign_id: s for s in session.scalars(select(EngineStatus).where(EngineStatus.campaign_id.in_(ids)))}
    today = list(session.scalars(select(Attempt).where(Attempt.campaign_id.in_(ids), Attempt.planned_at >= midnight)))
    alerts = open_alerts(session, ids)
    out = []
    for campaign in campaigns:
        mine = [a for a in today if a.campaign_id == campaign.id]
        answered = [a for a in mine if a.answered_at is not None]
        abandoned = sum(a.outcome == ABANDONED for a in answered)
        status = engine.get(campaign.id)
        fresh = status is not None and now - status.updated_at < dt.timedelta(minutes=1)
        out.append({"name": campaign.name, "status": campaign.status, "mode": campaign.mode,
                    "dial_level": float(status.dial_level) if fresh else None,
                    "lines": status.lines if fresh else None, "engine_agents": status.agents if fresh else None,
                    "dials_today": len(mine), "answered_today": len(answered), "abandoned_today": abandoned,
                    "abandon_rate": (abandoned / len(answered)) if answered else 0.0,
                    "connects_last_hour": sum(1 for a in mine if a.bridged_at is not None and a.bridged_at >= hour_ago),
                    "figures": cache.get(session, campaign.name, now) if campaign.status != "stopped" else None,
                    "alerts": alerts.get(campaign.id, [])})
    return {"at": now.astimezone(zone).strftime("%H:%M:%S"), "agents": rows, "calls": calls, "campaigns": out}


def open_alerts(session: Session, campaign_ids) -> dict[int, list[dict]]:
    """The alerts not yet acknowledged (`dunning alerts --ack`), by campaign, oldest first:
    e.g. dialling paused because recordings cannot be kept."""
    from campaigns.models import Alert
    out: dict[int, list[dict]] = {}
    for alert in session.scalars(select(Alert).where(Alert.campaign_id.in_(campaign_ids),
                                                     Alert.acknowledged_at.is_(None)).order_by(Alert.raised_at)):
        out.setdefault(alert.campaign_id, []).append(
            {"id": alert.id, "kind": alert.kind, "message": alert.message,
             "raised_at": alert.raised_at.isoformat(timespec="seconds"), "call_id": alert_call_id(alert)})
    return out


def alert_call_id(alert) -> str | None:
    """The call a live finding is about (its key is ``live:<call id>:<rule id>``,
    recordings/live.py), so the wallboard can offer to barge into it; None for other alerts."""
    if alert.kind != "live_finding" or not alert.key.startswith("live:"):
        return None
    return alert.key[len("live:"):].partition(":")[0] or None  # call ids have no ':'


def _masked_number(number: str) -> str:
    return number if len(number) <= 7 else number[:3] + "****" + number[-4:]


def pause_or_resume(session: Session, account_id: int, name: str, command: str, now: dt.datetime,
                    cache: FiguresCache) -> str:
    """Pause a running campaign or start (resume) a paused one, as `dunning campaign pause|start`,
    for the account (audited); returns the campaign's status."""
    account = session.get(Account, account_id)
    if command not in ("pause", "start"):
        raise CampaignError(f"unknown command {command!r}")
    if name not in {c.name for c in visible_campaigns(session, account)}:
        raise CampaignError(f"no campaign {name!r}")
    campaign = change_campaign(session, name, command, now)
    cache.forget(name)
    audit(session, now, f"campaign_{command}", "ok", account=account, subject=f"campaign {name}")
    return campaign.status
