"""The engine loop without the sandbox: the real call registry (ami_bridge.Calls) over the
fake AMI peer (tests/ami_peer.py), a SQLite and a PostgreSQL database, a clock the test sets.

What the sandbox tests cannot pin down to the second: the window checked again at the dial,
the attempt row committed before the Originate goes out, a paused or stopped campaign."""
from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from ami_peer import BUSY, eventually
from click.testing import CliRunner
from sqlalchemy import func, select

from campaigns import queue
from campaigns.db import make_engine, sessions, transaction
from campaigns.models import Attempt, EngineStatus
from dialer.agents import AgentEvent, AgentPool, AgentState
from dialer.engine import Engine, EngineSettings, SetClock
from helpers import all_attempts, local, one_debtor_campaign

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.timezone.utc


@pytest.fixture
def database_url(database) -> str:
    """The engine's database, SQLite and the real PostgreSQL (the same code on both)."""
    return database.url.render_as_string(hide_password=False)


@pytest.fixture
def factory(database_url, tmp_path):
    """One debtor with one mobile, agent 6001, campaign `e` (Asia/Shanghai) running."""
    engine = make_engine(database_url)
    factory = sessions(engine)
    one_debtor_campaign(factory, tmp_path, local(8, 0), timezone="Asia/Shanghai")
    yield factory
    engine.dispose()


def engine_for(factory, calls, clock: SetClock, tmp_path) -> Engine:
    pool = AgentPool()
    pool.add("6001")
    pool.apply("6001", AgentEvent.LOGIN, clock.now())
    return Engine(factory, calls, pool, "e", spool=tmp_path / "spool", recordings_root=tmp_path / "recordings",
                  settings=EngineSettings(tick_s=0.01, wrap_up_s=0), clock=clock)


def status_rows(factory) -> int:
    """Rows the engine writes every tick (its live figures)."""
    with factory() as s:
        return s.scalar(select(func.count()).select_from(EngineStatus))


async def test_a_number_picked_at_205959_is_not_dialled_at_2100(factory, calls, peer, tmp_path):
    clock = SetClock(local(20, 59, 59))
    engine = engine_for(factory, calls, clock, tmp_path)
    plan = engine._plan

    def plan_then_the_clock_strikes_nine(*args):  # the row is written at 20:59:59, then it is 21:00
        planned = plan(*args)
        clock.at = local(21, 0, 0)  # between the pick and the dial
        return planned
    engine._plan = plan_then_the_clock_strikes_nine

    summary = await asyncio.wait_for(engine.run(asyncio.Event(), until_idle=True), 10)

    assert peer.received["Originate"] == 0, "nothing is sent to Asterisk"
    assert summary.dials == 0 and summary.outcomes == {"cancelled": 1}
    (attempt,) = all_attempts(factory)
    assert (attempt.state, attempt.outcome, attempt.dialed_at, attempt.answered_at) == ("ended", "cancelled", None, None)
    assert (attempt.planned_at, attempt.ended_at) == (local(20, 59, 59), local(21, 0, 0))
    assert attempt.note.endswith("calling window closed before the dial"), attempt.note
    seat = engine.pool.seats["6001"]
    assert seat.state is AgentState.READY and seat.attempt is None
    assert [(state, why) for _, state, why in seat.history[:3]] == [
        (AgentState.READY, "login"), (AgentState.RESERVED, "reserve"), (AgentState.READY, "window closed")]
    # The next round, at 21:00, finds nothing to dial.
    assert {why for _, _, why in seat.history[3:]} <= {"reserve", "nothing to dial now"}


async def test_the_attempt_row_is_committed_before_the_originate_is_sent(factory, calls, peer, tmp_path):
    peer.on_originate = lambda p, h: p.replay(BUSY, call_id=h["channelid"], action_id=h["actionid"])
    seen: list[tuple[str, str, str | None]] = []
    originate = calls.originate

    async def originate_after_looking(request):
        with factory() as s:  # a session of its own: sees only what is committed
            row = s.scalar(select(Attempt).where(Attempt.call_id == request.call_id))
            seen.append((request.call_id, row.state if row else "no row", row.number if row else None))
        assert peer.received["Originate"] == 0, "the row is looked at before Asterisk has anything"
        return await originate(request)
    calls.originate = originate_after_looking

    engine = engine_for(factory, calls, SetClock(local(10, 0)), tmp_path)
    summary = await asyncio.wait_for(engine.run(asyncio.Event(), until_idle=True), 10)

    (attempt,) = all_attempts(factory)
    assert seen == [(attempt.call_id, "planned", "13800138000")]
    assert peer.received["Originate"] == 1 and summary.dials == 1
    assert (attempt.state, attempt.outcome, attempt.hangup_cause) == ("ended", "busy", 17)
    assert attempt.planned_at == attempt.dialed_at == local(10, 0)
    assert engine.pool.seats["6001"].state is AgentState.READY


@pytest.mark.parametrize("command, status", [("pause", "paused"), ("stop", "stopped")])
async def test_a_paused_or_stopped_campaign_is_not_dialled(factory, calls, peer, tmp_path, database_url, command,
                                                           status):
    from cli import main
    result = CliRunner().invoke(main, ["campaign", command, "e"], env={"DUNNING_DATABASE_URL": database_url})
    assert (result.exit_code, result.stdout) == (0, f"campaign e: {status}\n"), result.output

    engine = engine_for(factory, calls, SetClock(local(10, 0)), tmp_path)
    stop = asyncio.Event()
    task = asyncio.ensure_future(engine.run(stop))
    await eventually(lambda: status_rows(factory) > 0, 5, "the engine's first tick")
    await asyncio.sleep(0.3)  # some 30 ticks
    assert peer.received["Originate"] == 0 and all_attempts(factory) == []
    if command == "pause":  # resumed while the engine runs: the next tick dials
        with transaction(factory) as s:
            queue.change_campaign(s, "e", "start", local(10, 0))
        peer.on_originate = lambda p, h: p.replay(BUSY, call_id=h["channelid"], action_id=h["actionid"])
        await eventually(lambda: peer.received["Originate"] == 1, 5, "a dial once the campaign runs again")
    stop.set()
    summary = await asyncio.wait_for(task, 10)
    dialled = 1 if command == "pause" else 0
    assert summary.dials == peer.received["Originate"] == len(all_attempts(factory)) == dialled
    assert engine.pool.seats["6001"].state is AgentState.READY
