"""A campaign's lifecycle: finding it by name, its rules, and its state machine
(draft -> running <-> paused -> stopped)."""
from __future__ import annotations

import datetime as dt
import functools

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Campaign, CampaignStatus
from .policy import Rules
from .presets import DEFAULT_PRESET, PresetError, load_preset


class CampaignError(ValueError):
    """A campaign operation the user asked for cannot be done; the message says why."""


@functools.lru_cache(maxsize=64)
def _preset(name: str, overrides: tuple[tuple[str, str], ...]) -> Rules:
    return load_preset(name, dict(overrides) or None)


def rules_for(campaign: Campaign) -> Rules:
    """The campaign's rules: its preset (default: the client's rules) and its overrides."""
    settings = campaign.settings or {}
    overrides = tuple(sorted((str(k), str(v)) for k, v in (settings.get("overrides") or {}).items()))
    try:
        return _preset(settings.get("preset", DEFAULT_PRESET), overrides)
    except PresetError as exc:
        raise CampaignError(f"campaign {campaign.name}: {exc}") from None


def campaign_named(session: Session, name: str) -> Campaign:
    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        known = ", ".join(session.scalars(select(Campaign.name).order_by(Campaign.name))) or "none yet"
        raise CampaignError(f"no campaign named {name!r} (campaigns: {known})")
    return campaign


#: The campaign state machine: (from, command) -> to.
CAMPAIGN_TRANSITIONS = {
    (CampaignStatus.DRAFT, "start"): CampaignStatus.RUNNING,
    (CampaignStatus.PAUSED, "start"): CampaignStatus.RUNNING,
    (CampaignStatus.RUNNING, "pause"): CampaignStatus.PAUSED,
    (CampaignStatus.RUNNING, "stop"): CampaignStatus.STOPPED,
    (CampaignStatus.PAUSED, "stop"): CampaignStatus.STOPPED,
    (CampaignStatus.DRAFT, "stop"): CampaignStatus.STOPPED,
}


def next_campaign_status(status: CampaignStatus, command: str) -> CampaignStatus:
    try:
        return CAMPAIGN_TRANSITIONS[(status, command)]
    except KeyError:
        raise CampaignError(f"a {status.value} campaign cannot {command}") from None


def change_campaign(session: Session, name: str, command: str, now: dt.datetime) -> Campaign:
    campaign = campaign_named(session, name)
    campaign.status = next_campaign_status(CampaignStatus(campaign.status), command).value
    campaign.status_changed_at = now
    return campaign
