"""`dunning run`: one engine on one campaign, with the agents at their softphones.

Wires the parts together (AMI session, call registry, agent pool, engine) and turns
SIGTERM / SIGINT into a clean stop: no new dial, calls in progress end, rows written.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ami_bridge import AmiConnection, Calls
from asterisk_conf.site import Site
from campaigns.amd import amd_setting, message_sound
from campaigns.models import Agent, Campaign
from campaigns.queue import CampaignError, campaign_named, rules_for

from . import memory, presence
from .agents import AgentEvent, AgentPool
from .engine import Clock, Engine, EngineSettings, RunSummary, SystemClock
from .pacing import Pacing
from .sandbox_session import ami_settings


def settings_for(factory: sessionmaker[Session], campaign: str,
                 now: dt.datetime) -> tuple[EngineSettings, Pacing | None]:
    """The engine's settings for a campaign, and its pacing policy in predictive mode (with
    the campaign's abandonment window and what its earlier runs showed: dialer/memory.py)."""
    with factory() as session:
        found: Campaign = campaign_named(session, campaign)
        extra, mode = found.settings or {}, found.mode
        amd = amd_setting(extra, f"campaign {found.name}")
        settings = EngineSettings(amd=amd.mode, amd_message=message_sound(rules_for(found).amd_message),ring_timeout_s=float(extra.get("ring_seconds", 25)),
                                  wrap_up_s=float(extra.get("wrap_up_seconds", 10)), mode=mode,
                                  wrap_up_limit_s=presence.wrap_up_limit_s(extra),
                                  agent_line=str(extra.get("agent_line", EngineSettings.agent_line)),
                                  whisper=str(extra.get("whisper", EngineSettings.whisper)))
        if mode != "predictive":
            return settings, None
        return settings, memory.predictive_for(session, found, settings.wrap_up_s, now)


def check_agents(factory: sessionmaker[Session], extensions: Sequence[str]) -> None:
    with factory() as session:
        known = set(session.scalars(select(Agent.extension).where(Agent.active.is_(True))))
    if unknown := [e for e in extensions if e not in known]:
        raise CampaignError(f"no active agent {', '.join(unknown)}: add with `dunning agents add EXT`")
    if not extensions:
        raise CampaignError("no agents given: --agents 6001,6002")


async def run_campaign(site: Site, factory: sessionmaker[Session], campaign: str, extensions: Sequence[str], *,
                       until_idle: bool = False, echo: Callable[[str], None] = print,
                       clock: Clock | None = None, stop: asyncio.Event | None = None,
                       console: bool = False, stt_model: Path | None = None,
                       server: str | None = None) -> RunSummary:
    """Run the engine on `campaign` with the agents at these softphones. With `console`, the
    agents log in, go ready and pause in the browser console, and their wrap-up lasts until
    the disposition is saved (dialer/presence.py); otherwise they are ready at once and a
    wrap-up lasts the campaign's `wrap_up_seconds`. Each stored call is queued for
    speech-to-text; with a speech model (`stt_model`, else the installed one if any) worker
    processes transcribe it in the background and the QA rules run on each transcript.
    `server`: the name of the Asterisk server this engine drives (`dunning run --server`),
    written on each attempt; after a crash the engine takes up only that server's calls."""
    clock = clock or SystemClock()
    settings, pacing = settings_for(factory, campaign, clock.now())
    if console:
        settings = dataclasses.replace(settings, console=True)
    from recordings.codecs import codec_named
    from recordings.errors import VaultError
    try:
        settings = dataclasses.replace(settings, codec=codec_named(site.codec).name)
    except VaultError as exc:
        raise CampaignError(f"DUNNING_RECORDING_CODEC: {exc}") from None
    settings = dataclasses.replace(settings, min_free_bytes=site.min_free_mb * 1024 * 1024, server=server)
    check_agents(factory, extensions)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    conn = AmiConnection(ami_settings(site))
    calls = Calls(conn)
    pool = AgentPool()
    # The jobs kept in the database (campaigns/schedule.py): this campaign's window edges, mid-day
    # targets check and queue sweep, and the daily purge of recordings past retention (one job
    # for every process; whichever scheduler is up runs it, under the purge's lock).
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from campaigns import jobs, schedule
    from recordings.retention import schedule_purge
    with factory() as session:
        found = campaign_named(session, campaign)
        rules = rules_for(found)
    scheduler = BackgroundScheduler(timezone="UTC", jobstores={
        "default": MemoryJobStore(), "campaigns": jobs.job_store(site.database)})
    scheduler.start(paused=True)  # registering sees what the database holds already
    schedule_purge(scheduler, site.database, site.recordings_root, jobstore="campaigns")
    schedule.schedule_campaign(scheduler, site.database, found, rules, jobstore="campaigns")
    scheduler.resume()
    from recordings.after_call import Transcriber
    from recordings.speech_models import configured_model
    installed = configured_model()
    model = stt_model or (installed if installed.exists() else None)
    transcriber = Transcriber(factory, site.recordings_root, model).start() if model else None
    if model:
        echo(f"speech-to-text: {model} (each call is transcribed and checked after it is stored)")
    try:
        await conn.start(wait=False)
        await conn.wait_fully_booted(30)
        for extension in extensions:
            pool.add(extension)
            if not console:
                pool.apply(extension, AgentEvent.LOGIN, clock.now())
        engine = Engine(factory, calls, pool, campaign, spool=site.recordings_spool,
                        recordings_root=site.recordings_root, settings=settings, clock=clock, echo=echo,
                        pacing=pacing, cel=site.cel_log)
        return await engine.run(stop, until_idle=until_idle)
    finally:
        if transcriber is not None:
            transcriber.stop()
        scheduler.shutdown(wait=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        echo(conn.counters.line())
        calls.close()
        await conn.close()
