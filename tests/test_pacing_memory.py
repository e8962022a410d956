"""What a predictive campaign carries from one engine run to the next (dialer/memory.py): its
abandonment window (24 h or 30 days) and its learner, rebuilt from the attempts in the
database — on SQLite and the real PostgreSQL — and the window on `dunning campaign status`."""
from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from campaigns import queue
from campaigns.db import transaction
from campaigns.models import Campaign
from campaigns.queue import CampaignError
from dialer.memory import abandonment
from dialer.pacing import THIRTY_DAYS_S, TWENTY_FOUR_HOURS_S, AbandonController, Abandoned, ControllerSettings, DialEnded
from dialer.runner import settings_for
from helpers import at, attempts

NOW = at(15, 0)   # 2026-11-25 15:00 in Shanghai


@pytest.fixture
def factory(report_campaign):
    """conftest.report_campaign: campaign q's session factory."""
    return report_campaign


def make_predictive(factory, **settings) -> None:
    with transaction(factory) as s:
        campaign = queue.campaign_named(s, "q")
        campaign.mode = "predictive"
        campaign.settings = {**(campaign.settings or {}), **settings}


def test_the_controller_remembers_earlier_calls_without_moving_its_caution() -> None:
    c = AbandonController(ControllerSettings(window_s=3600.0, z_start=2.0))
    for i in range(100):
        c.remember(1000.0 + 10 * i, abandoned=i % 25 == 0)   # 4 abandoned of 100
    assert (c.answered, c.abandoned, c.z) == (100, 4, 2.0)
    assert c.rate(2000.0) == 0.04
    c.observe(DialEnded(2000.0, True, 8.0))
    c.observe(Abandoned(2002.0))
    assert c.rate(2002.0) == 5 / 101 and c.z > 2.0, "live calls count into the same window and move z"
    # Counted by the minute: the minute from 960 s (calls at 1000 and 1010, the first abandoned)
    # leaves the window once that whole minute is an hour old.
    assert c.rate(1020.0 + 3600 - 1) == 5 / 101
    assert c.rate(1020.0 + 3600) == (5 - 1) / (101 - 2), "the remembered calls leave the window in time"


def test_the_window_counts_answered_calls_of_the_last_24_hours(factory):
    day = dt.timedelta(days=1)
    attempts(
        factory,
        ("6001", "answered", NOW - day - dt.timedelta(seconds=3), 3, 60.0),   # answered exactly 24 h ago: out
        ("6001", "abandoned", NOW - day - dt.timedelta(seconds=2), 3, None),  # answered 24 h − 1 s ago: in
        ("6001", "answered", at(9, 0), 5, 120.0),
        ("6002", "abandoned", at(10, 0), 8, None),
        ("6002", "no_answer", at(11, 0), None, None),                          # not answered: not counted
        ("6002", "answered", NOW - dt.timedelta(seconds=4), 5, 1.0),           # answered after NOW: not yet
        ("6001", "abandoned", NOW - dt.timedelta(days=10), 6, None),           # 10 days ago: only in 30 d
    )
    make_predictive(factory)
    with factory() as s:
        figures = abandonment(s, queue.campaign_named(s, "q"), NOW)
    assert (figures.window, figures.answered, figures.abandoned) == ("24h", 3, 2)
    assert figures.line() == "abandoned over the last 24h: 66.67% (2 of 3 answered); target 3.0%"

    make_predictive(factory, abandon_window="30d", abandon_target=0.05)
    with factory() as s:
        month = abandonment(s, queue.campaign_named(s, "q"), NOW)
    assert (month.window, month.answered, month.abandoned, month.target) == ("30d", 5, 3, 0.05)

    make_predictive(factory, abandon_window="7d")
    with factory() as s, pytest.raises(CampaignError, match="abandon_window '7d' is not one of 24h, 30d"):
        abandonment(s, queue.campaign_named(s, "q"), NOW)


def test_a_new_engine_run_starts_from_the_campaigns_window_and_what_it_learned(factory):
    base = at(9, 0)
    calls = []
    for i in range(200):   # one dial a minute since 09:00: one in four answered, one answered in ten abandoned
        answered = i % 4 == 0
        outcome = ("abandoned" if i % 40 == 0 else "answered") if answered else "no_answer"
        calls.append(("6001", outcome, base + dt.timedelta(minutes=i), 7 if answered else None,
                      None if outcome != "answered" else 90.0))
    attempts(factory, *calls)
    make_predictive(factory, abandon_window="30d", abandon_target=0.04, wrap_up_seconds=15)

    settings, policy = settings_for(factory, "q", NOW)
    assert settings.mode == "predictive" and settings.wrap_up_s == 15
    assert policy.controller.settings.window_s == THIRTY_DAYS_S and policy.controller.settings.target == 0.04
    assert (policy.controller.answered, policy.controller.abandoned) == (50, 5)
    assert policy.controller.z == policy.controller.settings.z_start
    assert policy.learner.dials == 200 and not policy.warming_up, "60 past dials: no progressive warm-up again"
    assert policy.learner.answered.value == pytest.approx(0.25, abs=0.01)
    assert policy.learner.talk_s.added == 45 and policy.learner.wrap_s.pmf()[15] == 1.0

    # Before the campaign's first dial, as of 08:00: nothing to remember, so it warms up.
    _, fresh = settings_for(factory, "q", at(8, 0))
    assert (fresh.controller.answered, fresh.learner.dials, fresh.warming_up) == (0, 0, True)
    make_predictive(factory, abandon_window="24h")
    _, daily = settings_for(factory, "q", at(11, 0) + dt.timedelta(days=1))
    assert daily.controller.settings.window_s == TWENTY_FOUR_HOURS_S
    assert daily.controller.answered == 20, "the 24 h window ending 11:00 tomorrow: today's calls from 11:00"


def test_campaign_status_shows_the_window_of_a_predictive_campaign(factory, database):
    from cli import main
    attempts(factory, ("6001", "abandoned", at(10, 0), 8, None), ("6002", "answered", at(11, 0), 5, 60.0))
    env = {"DUNNING_DATABASE_URL": database.url.render_as_string(hide_password=False)}
    status = ["campaign", "status", "q", "--at", NOW.isoformat()]
    progressive = CliRunner().invoke(main, status, env=env)
    assert progressive.exit_code == 0, progressive.output
    assert "abandoned over" not in progressive.stdout
    make_predictive(factory, abandon_window="30d")
    predictive = CliRunner().invoke(main, status, env=env)
    assert predictive.exit_code == 0, predictive.output
    assert predictive.stdout.splitlines()[-1] == "abandoned over the last 30d: 50.00% (1 of 2 answered); target 3.0%"

    created = CliRunner().invoke(main, ["campaign", "create", "monthly", "--client", "R", "--mode", "predictive",
                                        "--abandon-window", "30d", "--abandon-target", "2.5"], env=env)
    assert created.exit_code == 0, created.output
    with factory() as s:
        settings = s.scalar(select(Campaign).where(Campaign.name == "monthly")).settings
    assert (settings["abandon_window"], settings["abandon_target"]) == ("30d", 0.025)
    wrong = CliRunner().invoke(main, ["campaign", "create", "weekly", "--client", "R", "--abandon-window", "7d"],
                               env=env)
    assert wrong.exit_code == 2 and "'7d' is not one of '24h', '30d'" in wrong.stderr


def test_simulate_learns_from_the_campaigns_dials_on_the_command_line(factory, database):
    from cli import main
    attempts(factory, *[("6001", "answered", at(10, minute), 6, 45.0) for minute in range(0, 40, 2)],
             *[("6002", "no_answer", at(10, minute), None, None) for minute in range(1, 41, 2)])
    env = {"DUNNING_DATABASE_URL": database.url.render_as_string(hide_password=False)}
    done = CliRunner().invoke(main, ["simulate", "--campaign", "q", "--agents", "2", "--hours", "0.5",
                                     "--seeds", "1"], env=env)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("40 attempts of campaign q learned; 2 agents, 0.5 h, 1 simulated day(s) per policy")
    assert {"progressive", "pacing"} <= {line.split()[0] for line in done.stdout.splitlines()[1:] if line.strip()}
