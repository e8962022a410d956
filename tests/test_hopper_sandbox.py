"""A campaign past PostgreSQL's 65,535-parameter limit (70,000 cases) imported, built,
started, dialled through the real sandbox by two baresip agents, and reported: the dials go
to the highest-priority cases, each is dialled once (Asterisk's own log), each answered call
is recorded, and the figures and the daily report read the whole campaign."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from asterisk_conf.softphone import Softphone
from campaigns import admin, hopper, queue
from campaigns.db import sessions, transaction
from campaigns.importing import import_batch
from campaigns.models import Attempt, Case, DialState, Recording
from campaigns.report import daily, render
from dialer.demo import daytime_zone
from dialer.runner import run_campaign
from helpers import dial_lines

pytestmark = pytest.mark.asterisk
CASES = 70_000
DIALS = 4


def batch(path, zone: str):
    """70,000 debtors; the simulated network answers numbers ending in 0 after 3 s. The ten
    largest debts answer; the others never would (ending in 7)."""
    lines = ["案件编号,姓名,欠款金额,逾期天数,手机,时区"]
    for i in range(CASES):
        amount = 900_000 - i if i < 10 else 1000 + i % 50_000
        ending = "0" if i < 10 else "7"
        lines.append(f"P{i:06d},债务人{i},{amount}.00,{30 + i % 300},139{i:07d}{ending},{zone}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_a_70000_case_campaign_on_postgresql_through_the_sandbox(database, sandbox_up, creds, agent_speech,
                                                                     tmp_path):
    if database.dialect.name != "postgresql":
        pytest.skip("the parameter limit is PostgreSQL's; SQLite's campaigns of this size are benchmarked")
    site = dataclasses.replace(sandbox_up, recordings=tmp_path / "recordings",
                               database_url=database.url.render_as_string(hide_password=False))
    factory = sessions(database)
    now = dt.datetime.now(dt.timezone.utc)
    zone = daytime_zone(now)
    report = import_batch(factory, batch(tmp_path / "big.csv", zone), "BIG", now=now)
    assert report.ok and report.imported == CASES, report.problems[:3]
    extensions = sorted(creds.agent_passwords)[:2]
    with transaction(factory) as s:
        for ext in extensions:
            admin.add_agent(s, ext, f"agent {ext}", now)
        campaign, count = admin.create_campaign(s, "big", "BIG", now, timezone=zone,
                                                settings={"ring_seconds": 15, "wrap_up_seconds": 1})
        assert count == CASES
        assert hopper.refresh(s, campaign, now) == CASES
        queue.change_campaign(s, "big", "start", now)
    with transaction(factory) as s:
        figures = admin.campaign_figures(s, "big", dt.datetime.now(dt.timezone.utc))
    assert (figures.cases, figures.dialable_now, figures.unasked) == (CASES, CASES, 0)

    phones = [Softphone(ext, creds.agent_passwords[ext], agent_speech, tmp_path / ext,
                        sip_server=f"127.0.0.1:{site.sip_port}") for ext in extensions]
    for phone in phones:
        phone.start()
    before = set(dial_lines(site))
    stop = asyncio.Event()
    dialled = []

    def echo(line: str) -> None:
        if ": dialling " in line:
            dialled.append(line)
            if len(dialled) >= DIALS:
                stop.set()
    try:
        summary = await asyncio.wait_for(run_campaign(site, factory, "big", extensions, stop=stop, echo=echo), 240)
    finally:
        for phone in phones:
            phone.stop()
    assert not summary.problems, summary.problems

    with sessions(database)() as s:
        attempts = list(s.scalars(select(Attempt).order_by(Attempt.id)))
        refs = [s.get(Case, a.case_id).reference for a in attempts]
        recorded = set(s.scalars(select(Recording.attempt_id)))
        states = s.scalar(select(func.count()).select_from(DialState))
    assert len(attempts) >= DIALS and all(a.state == "ended" for a in attempts)
    assert sorted(refs) == sorted(f"P{i:06d}" for i in range(len(attempts))), "the largest debts first"
    assert sorted(refs) == sorted(set(refs)), "no case dialled twice"
    log = dial_lines(site)
    assert {a.call_id for a in attempts} == set(log) - before and all(log[a.call_id] == 1 for a in attempts)
    assert {a.id for a in attempts if a.answered_at is not None} <= recorded
    assert any(a.outcome == "answered" for a in attempts)
    assert states == CASES

    with transaction(factory) as s:
        figures = admin.campaign_figures(s, "big", dt.datetime.now(dt.timezone.utc))
        found = daily(s, dt.datetime.now(ZoneInfo(zone)).date(), zone, 5.0, campaign="big")
    assert figures.cases == CASES and figures.dialable_now == CASES - len(attempts)
    text = render(found)
    assert "big" in text and f"{len(attempts)}" in text
