"""The scheduled jobs' store: APScheduler 3 with its jobs in the database (table
``scheduler_jobs``), and how a job is registered and listed there.

A leaf: it imports nothing of ours, so that both the campaign's jobs (campaigns/schedule.py)
and the recordings' purge (recordings/retention.py) can register theirs without importing
each other.
"""
from __future__ import annotations

import datetime as dt

JOB_TABLE = "scheduler_jobs"


def job_store(database_url: str):
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    return SQLAlchemyJobStore(url=database_url, tablename=JOB_TABLE)


def keep_or_add(scheduler, func, trigger, *, args: tuple, id: str, name: str, jobstore: str,
                misfire_grace_time: int | None):
    """Register a job under its fixed id, keeping the one the store already holds when it is
    the same (same arguments, trigger and grace): replacing it would reset its next run
    time, and a run missed while no scheduler ran would be lost instead of run once now
    (coalesce). The scheduler must be started (paused is enough) to see the store."""
    from apscheduler.schedulers.base import STATE_STOPPED
    existing = scheduler.get_job(id, jobstore) if scheduler.state != STATE_STOPPED else None
    if existing is not None and existing.args == args and repr(existing.trigger) == repr(trigger) \
            and existing.misfire_grace_time == misfire_grace_time:
        return existing
    return scheduler.add_job(func, trigger, args=args, id=id, name=name, jobstore=jobstore,
                             replace_existing=True, coalesce=True, max_instances=1,
                             misfire_grace_time=misfire_grace_time)


def scheduled_jobs(database_url: str) -> list[tuple[str, dt.datetime | None]]:
    """The jobs in the store and when each runs next, read from the store alone. No
    scheduler is started: APScheduler 3's loop goes round once more as a scheduler shuts
    down, even a paused one, and moves every job then due on to its next time without
    running it (a purge missed while nothing ran would be lost to a listing)."""
    from apscheduler.schedulers.background import BackgroundScheduler
    store = job_store(database_url)
    store.start(BackgroundScheduler(timezone="UTC"), "default")
    try:
        return [(job.id, job.next_run_time) for job in store.get_all_jobs()]
    finally:
        store.shutdown()
