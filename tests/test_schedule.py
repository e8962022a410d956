"""The scheduler's jobs: window edges in several time zones, mid-day target alerts, and jobs
kept in the database across a restart without being lost or doubled."""
from __future__ import annotations

import contextlib
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from campaigns import admin, queue, schedule
from campaigns.jobs import job_store, scheduled_jobs
from campaigns.db import make_engine, migrate, sessions, transaction
from campaigns.importing import import_batch
from campaigns.models import Alert, Attempt
from campaigns.policy import Rules
from helpers import set_next_run

UTC = dt.timezone.utc


def local(zone: str, day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def make_campaign(factory, tmp_path, name: str, zone: str, now: dt.datetime):
    path = tmp_path / f"{name}.csv"
    path.write_text("案件编号,姓名,欠款金额,逾期天数,手机\n" + "\n".join(
        f"{name}{i},甲{i},{900 + i},10,1380013800{i}" for i in range(4)) + "\n", encoding="utf-8")
    assert import_batch(factory, path, f"C-{name}", now=now).ok
    with transaction(factory) as s:
        admin.create_campaign(s, name, f"C-{name}", now, timezone=zone)
        queue.change_campaign(s, name, "start", now)


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "Europe/London"])
def test_the_close_job_fires_at_21_00_00_local_and_the_open_job_at_08_00(zone, sqlite_db, tmp_path):
    factory = sessions(sqlite_db)
    make_campaign(factory, tmp_path, "z", zone, local(zone, 25, 9))
    scheduler = BackgroundScheduler(timezone="UTC")
    with factory() as s:
        campaign = queue.campaign_named(s, "z")
        schedule.schedule_campaign(scheduler, "sqlite://", campaign, queue.rules_for(campaign))
    jobs = {job.id.split(":")[0]: job for job in scheduler.get_jobs()}
    assert set(jobs) == set(schedule.KINDS)
    close = jobs["close"].trigger
    assert close.get_next_fire_time(None, local(zone, 25, 20, 59, 59)) == local(zone, 25, 21)
    assert close.get_next_fire_time(None, local(zone, 25, 21, 0, 0)) == local(zone, 25, 21)
    assert close.get_next_fire_time(None, local(zone, 25, 21, 0, 1)) == local(zone, 26, 21)
    assert jobs["open"].trigger.get_next_fire_time(None, local(zone, 25, 21)) == local(zone, 26, 8)
    assert jobs["targets"].trigger.get_next_fire_time(None, local(zone, 25, 8)) == local(zone, 25, 14, 30)


def test_closing_pauses_and_opening_starts_only_what_the_schedule_closed(sqlite_db, tmp_path):
    factory = sessions(sqlite_db)
    zone = "Asia/Shanghai"
    make_campaign(factory, tmp_path, "a", zone, local(zone, 25, 9))
    make_campaign(factory, tmp_path, "b", zone, local(zone, 25, 9))
    with transaction(factory) as s:
        queue.change_campaign(s, "b", "pause", local(zone, 25, 15))  # a supervisor paused it
        assert "closed" in schedule.close_campaign(s, "a", local(zone, 25, 21))
        assert "left paused" in schedule.close_campaign(s, "b", local(zone, 25, 21))
    with transaction(factory) as s:
        assert queue.campaign_named(s, "a").status == "paused"
        assert "opened" in schedule.open_campaign(s, "a", local(zone, 26, 8))
        assert "not closed by the schedule" in schedule.open_campaign(s, "b", local(zone, 26, 8))
    with factory() as s:
        assert queue.campaign_named(s, "a").status == "running"
        assert queue.campaign_named(s, "b").status == "paused"
        assert "closed_by_schedule" not in queue.campaign_named(s, "a").settings


def test_an_agent_behind_at_mid_day_raises_one_alert(database, tmp_path):
    factory = sessions(database)
    zone = "Asia/Shanghai"
    make_campaign(factory, tmp_path, "t", zone, local(zone, 25, 8))
    with transaction(factory) as s:
        slow = admin.add_agent(s, "6001", "slow", local(zone, 25, 8))
        admin.add_agent(s, "6002", "absent", local(zone, 25, 8))
        campaign = queue.campaign_named(s, "t")
        for i in range(30):  # 30 dials by 14:30, none effective: behind on both targets
            at = local(zone, 25, 9) + dt.timedelta(minutes=10 * i)
            s.add(Attempt(call_id=f"x{i}", campaign_id=campaign.id, case_id=1, phone_id=1, agent_id=slow.id,
                          number="13800138000", state="ended", planned_at=at, dialed_at=at, ended_at=at,
                          outcome="no_answer"))
    with transaction(factory) as s:
        assert schedule.check_targets(s, "t", local(zone, 25, 14, 0)) == [], "before mid-day, no alert"
    with transaction(factory) as s:
        raised = schedule.check_targets(s, "t", local(zone, 25, 14, 30))
    assert len(raised) == 1 and "agent 6001 is behind" in raised[0] and "30 dials" in raised[0]
    with transaction(factory) as s:
        assert schedule.check_targets(s, "t", local(zone, 25, 14, 40)) == [], "raised once a day"
    with factory() as s:
        alerts = list(s.scalars(select(Alert)))
    assert [(a.kind, a.agent_id) for a in alerts] == [("behind_target", slow.id)]


def test_a_job_keeps_no_database_password_and_its_process_still_connects(sqlite_db, tmp_path):
    """Job arguments are stored in the database's own `scheduler_jobs` table: the password
    is masked there; the process that registered the job knows the real URL."""
    from campaigns.db import real_url
    from recordings import retention
    factory = sessions(sqlite_db)
    make_campaign(factory, tmp_path, "m", "Asia/Shanghai", local("Asia/Shanghai", 25, 9))
    url = "postgresql+psycopg://dunning:s3cr3t-Pw@db.example:5432/dunning"
    scheduler = BackgroundScheduler(timezone="UTC")
    with factory() as s:
        campaign = queue.campaign_named(s, "m")
        schedule.schedule_campaign(scheduler, url, campaign, queue.rules_for(campaign))
    retention.schedule_purge(scheduler, url, tmp_path / "recordings")
    jobs = scheduler.get_jobs()
    assert len(jobs) == 5 and not any("s3cr3t" in repr(job.args) for job in jobs)
    stored = {arg for job in jobs for arg in job.args if str(arg).startswith("postgresql")}
    assert stored == {"postgresql+psycopg://dunning:***@db.example:5432/dunning"}
    assert real_url(stored.pop()) == url
    with pytest.raises(RuntimeError, match="no password for postgresql.*other.example"):
        real_url("postgresql+psycopg://dunning:***@other.example/dunning")
    assert real_url("sqlite:///x.db") == "sqlite:///x.db"


def test_jobs_survive_a_restart_without_being_lost_or_doubled(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    engine = make_engine(url)
    migrate(engine)
    factory = sessions(engine)
    zone = "America/New_York"
    make_campaign(factory, tmp_path, "r", zone, local(zone, 25, 9))
    with factory() as s:
        campaign = queue.campaign_named(s, "r")
    before = {}
    for run in range(2):  # `dunning run`, stopped, and run again
        with paused_scheduler(url) as scheduler:
            schedule.schedule_campaign(scheduler, url, campaign, Rules())
            jobs = {job.id: job.next_run_time for job in scheduler.get_jobs()}
        if run == 0:
            before = jobs
    assert len(before) == 4 and jobs == before
    listed = scheduled_jobs(url)
    assert sorted(job for job, _ in listed) == sorted(before)
    with paused_scheduler(url) as scheduler:
        assert all(job.coalesce and job.misfire_grace_time == 3600 for job in scheduler.get_jobs())

    # A close missed while no engine ran (due ten minutes ago): registering again on the
    # next start keeps it due, so the starting scheduler runs it once, within the hour.
    close_id = schedule.job_id("close", "r")
    missed = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)).replace(microsecond=0)
    set_next_run(url, close_id, missed)
    with paused_scheduler(url) as scheduler:
        schedule.schedule_campaign(scheduler, url, campaign, Rules())
        assert scheduler.get_job(close_id).next_run_time == missed
        scheduler.remove_all_jobs()   # nothing to run here: the close itself is tested above


@contextlib.contextmanager
def paused_scheduler(url: str):
    """A scheduler on the database's job store, started paused (as `dunning run` registers
    its jobs), shut down after."""
    scheduler = BackgroundScheduler(timezone="UTC", jobstores={"default": job_store(url)})
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def test_targets_alerts_and_schedule_on_the_command_line(tmp_path):
    """`dunning targets`, `dunning alerts` and `dunning schedule`, run as a supervisor runs them."""
    import os
    import subprocess
    from pathlib import Path
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    migrate(engine)
    factory = sessions(engine)
    zone = "Asia/Shanghai"
    make_campaign(factory, tmp_path, "c", zone, local(zone, 25, 8))
    with transaction(factory) as s:
        slow = admin.add_agent(s, "6001", "slow", local(zone, 25, 8))
        campaign = queue.campaign_named(s, "c")
        for i in range(30):
            at = local(zone, 25, 9) + dt.timedelta(minutes=10 * i)
            s.add(Attempt(call_id=f"x{i}", campaign_id=campaign.id, case_id=1, phone_id=1, agent_id=slow.id,
                          number="13800138000", state="ended", planned_at=at, dialed_at=at, ended_at=at,
                          outcome="no_answer"))
    with transaction(factory) as s:
        schedule.check_targets(s, "c", local(zone, 25, 14, 30))
    dunning = str(Path(__file__).resolve().parent.parent / ".venv/bin/dunning")
    env = {**os.environ, "DUNNING_DATABASE_URL": url, "DUNNING_HOME": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run([dunning, *args], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    out = run("targets", "c", "--at", "2026-11-25T14:30:00+08:00")
    row = next(line for line in out.splitlines() if line.startswith("6001"))
    assert row.split()[2:4] == ["30", "100"] and row.split()[-1] == "BEHIND", out  # 30 dials of 100 by now
    assert "queue: 4 cases" in out and "TOO SMALL" in out, out
    listed = run("alerts", "--campaign", "c")
    assert "behind_target: agent 6001 is behind at 14:30" in listed
    alert_id = listed.split("]", 1)[0].lstrip("[")
    assert f"alert {alert_id} acknowledged" in run("alerts", "--ack", alert_id)
    assert run("alerts") == "no alerts\n" and "behind_target" in run("alerts", "--all")
    assert "no jobs yet" in run("schedule")
