"""Pacing policies (dialer/pacing.py) at hand-worked states, and the simulator (dialer/sim).

Every expected number is worked out in the test from the rule it checks. The simulated
campaigns are small (a few agents, hours not days) so that the file runs in well under a
minute; they are deterministic (seeded), so their figures are exact regressions, not odds.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from dialer.pacing import (
    AbandonController,
    Abandoned,
    AdaptMethod,
    AgentPhase,
    AgentView,
    ControllerSettings,
    DialEnded,
    DropStats,
    Learner,
    LearnerSettings,
    LineView,
    Model,
    Observation,
    Predictive,
    PredictiveSettings,
    Progressive,
    Rate,
    ShiftingRate,
    Snapshot,
    TalkEnded,
    VicidialAdaptive,
    VicidialSettings,
    Window,
    WrapUpEnded,
    adapt_dial_level,
    line_cap,
    plan_launches,
    vicidial_calls_to_place,
)
from dialer.sim import (
    TEXTBOOK,
    AttemptRow,
    Constant,
    Distributions,
    Empirical,
    NoHistory,
    SimConfig,
    campaign_days,
    prime,
    rows_from_attempts,
    run_one,
    simulate,
    what_if,
)

R, RES, CALL, WRAP, PAUSED = (AgentPhase.READY, AgentPhase.RESERVED, AgentPhase.ON_CALL, AgentPhase.WRAP_UP,
                              AgentPhase.PAUSED)


def agents(*spec: tuple[AgentPhase, float] | AgentPhase) -> tuple[AgentView, ...]:
    return tuple(AgentView(s) if isinstance(s, AgentPhase) else AgentView(*s) for s in spec)


def ringing(*ring_s: float) -> tuple[LineView, ...]:
    return tuple(LineView(r) for r in ring_s)


# ===================================================================== progressive


def test_progressive_dials_for_each_ready_agent_not_yet_covered() -> None:
    # 3 ready + 1 reserved (its line rings) = 4 agents a line could reach; 2 lines ring → 2.
    snap = Snapshot(0.0, agents(R, R, R, RES, (CALL, 30), (WRAP, 5), PAUSED), ringing(3, 9))
    assert Progressive().decide(snap) == 4 - 2


def test_progressive_counts_an_answered_debtor_waiting_as_covering_an_agent() -> None:
    snap = Snapshot(0.0, agents(R, R), (LineView(8.0, waiting_s=0.5), LineView(2.0)))
    assert Progressive().decide(snap) == 0
    assert Progressive().decide(Snapshot(0.0, agents(R), ringing(1, 2, 3))) == 0   # never negative


# ===================================================================== VICIdial's adaptive level

S = VicidialSettings()


def test_vicidial_level_grows_with_agents_waiting() -> None:
    # differential 2 over 10 agents: mul 0.2, 20 %; intensity 0 → ×(1 + 0.2): 1.5 → 1.8
    assert adapt_dial_level(1.5, 2.0, 10.0, DropStats(), S, 1000) == pytest.approx(1.8)


def test_vicidial_intensity_pushes_up_harder_and_down_softer() -> None:
    s = VicidialSettings(intensity=20)
    # up: 20 % × (0.2 + 1) = 24 % → 1.5 × 1.24 = 1.86
    assert adapt_dial_level(1.5, 2.0, 10.0, DropStats(), s, 1000) == pytest.approx(1.86)
    # down: −10 % × |0.2 − 1| = −8 % → 1.5 × 0.92 = 1.38
    assert adapt_dial_level(1.5, -1.0, 10.0, DropStats(), s, 1000) == pytest.approx(1.38)


def test_vicidial_level_is_rounded_capped_and_floored() -> None:
    # 1.234 × (1 + 1/3) = 1.64533… → sprintf("%.3f") → 1.645
    assert adapt_dial_level(1.234, 1.0, 3.0, DropStats(), S, 1000) == 1.645
    # 2.8 × 1.5 = 4.2 → adaptive_maximum_level 3.0
    assert adapt_dial_level(2.8, 5.0, 10.0, DropStats(), S, 1000) == 3.0
    # 1.2 × (1 − 0.5) = 0.6 → never under 1.0
    assert adapt_dial_level(1.2, -5.0, 10.0, DropStats(), S, 1000) == 1.0
    # no agents: no change
    assert adapt_dial_level(2.0, 3.0, 0.0, DropStats(), S, 1000) == 2.0


TODAY_OVER = DropStats(calls_one=10, drops_one_pct=0.0, calls_today=51, drops_answers_today_pct=3.5)


@pytest.mark.parametrize("method, hhmm, expected", [
    (AdaptMethod.HARD_LIMIT, 1330, 1.0),     # hard limit: back to 1.0
    (AdaptMethod.AVERAGE, 1330, 1.2),        # average: 2.4 / 2
    (AdaptMethod.TAPERED, 1330, 1.848),      # 2100 − 1330 = 770 "left" → × 0.77 = 1.848
    (AdaptMethod.TAPERED, 900, 2.4),         # 2100 − 900 = 1200 > 1000 → × 1
    (AdaptMethod.TAPERED, 2130, 1.0),        # past 21:00 → 1.0
])
def test_vicidial_drop_guard_for_today(method: AdaptMethod, hhmm: int, expected: float) -> None:
    # differential 0: the level stays 2.4 before the guard
    assert adapt_dial_level(2.4, 0.0, 10.0, TODAY_OVER, VicidialSettings(method=method), hhmm) == pytest.approx(expected)


def test_vicidial_drop_guards_need_enough_calls() -> None:
    fifty = DropStats(calls_today=50, drops_answers_today_pct=10.0)   # "> 50" calls today
    assert adapt_dial_level(2.4, 0.0, 10.0, fifty, S, 1330) == 2.4
    minute = DropStats(calls_one=21, drops_one_pct=51.0)              # > 20 calls, > 50 % dropped
    assert adapt_dial_level(2.4, 0.0, 10.0, minute, S, 1330) == 1.2
    assert adapt_dial_level(2.4, 0.0, 10.0, DropStats(calls_one=20, drops_one_pct=90.0), S, 1330) == 2.4


def test_vicidial_calls_to_place() -> None:
    # agents: 3 ready + 5 on call (wrap-up "dead" and paused not counted) = 8; goal 2.0 × 8 = 16;
    # calls it has: 4 ringing + 1 waiting + 5 with agents = 10 → 6 more
    snap = Snapshot(0.0, agents(R, R, R, CALL, CALL, CALL, CALL, CALL, WRAP, WRAP, PAUSED),
                    ringing(1, 2, 3, 4) + (LineView(9, waiting_s=1),))
    assert vicidial_calls_to_place(2.0, snap) == 6
    # sprintf("%.0f", 2.5) is "2" (halves to even), as is Python's round: 1.25 × 2 agents → 2
    assert vicidial_calls_to_place(1.25, Snapshot(0.0, agents(R, R))) == 2
    # adaptive_dl_diff_target −1: one agent fewer in the goal
    assert vicidial_calls_to_place(2.0, snap, dl_diff_target=-1) == 2 * 7 - 10


def test_vicidial_samples_each_second_and_adapts_every_15() -> None:
    policy = VicidialAdaptive()
    # 10 agents, 4 ready and 6 on a call, all the time
    def snap(t: float) -> Snapshot:
        return Snapshot(t, agents(*([R] * 4 + [(CALL, 30)] * 6)))
    for t in range(15):
        assert policy.decide(snap(float(t))) == 4   # level 1.0: 1 × 10 − 6 on call
    assert policy.level == 1.0
    # at 15 s: ready 4 − waiting 0 over 10 agents → +40 %: 1.4; goal round(14) − 6 = 8
    assert policy.decide(snap(15.0)) == 8
    assert policy.level == pytest.approx(1.4)
    assert policy.decide(snap(29.0)) == 8 and policy.level == pytest.approx(1.4)
    assert policy.decide(snap(30.0)) == round(1.96 * 10) - 6   # 1.4 × 1.4 = 1.96


def test_vicidial_hard_limit_from_observed_drops() -> None:
    policy = VicidialAdaptive()
    # 60 answered dials and 3 drops today: 5 % of answers > 3 %, with more than 50 calls
    # (times are seconds since midnight UTC: all of it "today" and within the last minute)
    for i in range(60):
        policy.observe(DialEnded(36000.0 + i / 10, True, 10.0))
    for i in range(3):
        policy.observe(Abandoned(36010.0 + i))
    def snap(t: float) -> Snapshot:
        return Snapshot(t, agents(R, R, R, R, (CALL, 5)))
    policy.decide(snap(36020.0))     # the first pass takes the drop statistics at once
    assert policy.drops == DropStats(calls_one=60, drops_one_pct=5.0, calls_today=60, drops_answers_today_pct=5.0)
    policy.decide(snap(36035.0))    # 4 of 5 agents waiting would raise the level by 80 %…
    assert policy.level == 1.0   # …but today's drops hold it at 1.0


# ===================================================================== learning


def test_rate_and_window_arithmetic() -> None:
    rate = Rate(prior=0.25, prior_weight=10, size=300)
    for i in range(100):
        rate.add(i < 30)
    assert rate.value == pytest.approx((30 + 0.25 * 10) / (100 + 10))
    window = Window(prior=(20.0,), prior_weight=10, size=3, limit_s=60)
    for v in (10.2, 9.8, 30.0, 10.0):   # the window keeps the last 3: 9.8, 30, 10
        window.add(v)
    pmf = window.pmf()
    assert (pmf[10], pmf[20], pmf[30]) == pytest.approx((2 / 13, 10 / 13, 1 / 13))


def test_answer_rate_keeps_a_long_window_until_the_recent_dials_say_it_moved() -> None:
    rate = ShiftingRate(prior=0.25, prior_weight=10, size=3000, recent=300, shift_z=4.0)
    for i in range(2000):                       # steady 25 %: one long window, no restart
        rate.add(i % 4 == 0)
    assert rate.shifts == 0
    assert rate.value == pytest.approx((500 + 2.5) / 2010)
    # 60 dials at 50 %: the last 300 are 30 % answered against 25.7 %, 1.7 standard errors: no shift
    for i in range(60):
        rate.add(i % 2 == 0)
    assert rate.shifts == 0
    for i in range(240):                        # the last 300 all at 50 %: a shift
        rate.add(i % 2 == 0)
    assert rate.shifts == 1
    assert rate.value > 0.4                     # restarted from the recent dials (a plain window: 28 %)
    assert rate.added == 2300                   # every dial still counted (for table rebuilds)
    # a plain long window when restarts are off
    plain = ShiftingRate(prior=0.25, prior_weight=10, size=3000, recent=300, shift_z=None)
    for i in range(2300):
        plain.add(i % 4 == 0 if i < 2000 else i % 2 == 0)
    assert plain.shifts == 0 and plain.value < 0.3


def test_learner_tables() -> None:
    learner = Learner(LearnerSettings(prior_answer_p=0.25, prior_answer_s=(10.0,), prior_give_up_s=(25.0,),
                                      wrap_prior_s=20.0))
    model = learner.model()
    assert model.horizon == 10 and model.grace == 2
    # a call dialled now: answered by k with probability 0.25 once k reaches 10 s
    assert model.new_call == (0.0,) * 10 + (0.25,)
    # a line 12 s into ringing has passed the only answer time: it will not be answered
    assert model.line(12.0) == (0.0,) * 11
    # 5 s in: nobody has answered or given up yet, so still 0.25, at 5 s more
    assert model.line(5.0) == (0.0,) * 5 + (0.25,) * 6
    # wrap-up is 20 s: 15 s in, free by k + 2 s of grace once k ≥ 3
    assert model.wrap(15.0) == (0.0,) * 3 + (1.0,) * 8
    # talk takes minutes and is followed by 20 s of wrap-up: nobody on a call frees in 12 s
    assert all(f == 0.0 for e in range(0, 400, 7) for f in model.on_call(e))


def test_learner_follows_what_it_observes() -> None:
    learner = Learner()
    for i in range(400):
        learner.observe(DialEnded(float(i), answered=i % 5 < 2, ring_s=12.0 if i % 5 < 2 else 25.0))
    for i in range(100):
        learner.observe(TalkEnded(float(i), 60.0))
        learner.observe(WrapUpEnded(float(i), 30.0))
    model = learner.model()
    # all 400 dials are in the long window, 40 % answered; the prior (25 %, weight 10) pulls a little
    assert model.answer_p == pytest.approx((160 + 2.5) / 410)
    # 30 s wrap-up now: an agent 20 s in is free by k + 2 once k ≥ 8
    assert model.wrap(20.0)[7] < 0.5 < model.wrap(20.0)[8]


# ===================================================================== our decision, hand-worked

# A model small enough to work by hand: a call dialled now (or ringing) is answered 1 s
# later with probability ½; an agent 1 s into wrap-up is surely free by then, one 0 s in
# is free with probability ½ (supply is looked at 2 s later than demand: built into rows).
TINY = Model(answer_p=0.5, horizon=1, grace=2, new_call=(0.0, 0.5), line_rows=((0.0, 0.5),),
             talk_rows=((0.0, 0.0),), wrap_rows=((0.0, 0.5), (0.0, 1.0)))


def z_for(chance: float) -> float:
    """The z whose threshold Φ(−z) is `chance`."""
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * math.erfc(mid / math.sqrt(2)) > chance else (lo, mid)
    return (lo + hi) / 2


def test_plan_one_ready_agent() -> None:
    snap = Snapshot(0.0, agents(R))
    # 1st call: no other debtor, 1 agent → risk 0. 2nd: the 1st answered (½) takes the agent → ½.
    # 3rd: P(Bin(2, ½) ≥ 1) = ¾.
    assert plan_launches(snap, TINY, z_for(0.49), limit=10) == 1
    assert plan_launches(snap, TINY, z_for(0.51), limit=10) == 2
    assert plan_launches(snap, TINY, z_for(0.76), limit=10) == 3
    assert plan_launches(snap, TINY, z_for(0.76), limit=2) == 2   # the limit wins


def test_plan_counts_agents_freeing_and_lines_ringing() -> None:
    # ready + an agent surely free by then = 2 agents; 2nd call: P(Bin(1, ½) ≥ 2) = 0;
    # 3rd: P(Bin(2, ½) ≥ 2) = ¼; 4th: P(Bin(3, ½) ≥ 2) = ½
    snap = Snapshot(0.0, agents(R, (WRAP, 1.0)))
    assert plan_launches(snap, TINY, z_for(0.24), limit=10) == 2
    assert plan_launches(snap, TINY, z_for(0.26), limit=10) == 3
    # a line already ringing is one more debtor ahead: the 2nd call now risks ¼, the 3rd ½
    with_line = Snapshot(0.0, snap.agents, ringing(3.0))
    assert plan_launches(with_line, TINY, z_for(0.24), limit=10) == 1
    assert plan_launches(with_line, TINY, z_for(0.26), limit=10) == 2
    # an agent only half sure to be free counts as an agent who may be one debtor short:
    # 1st call: P(busy) = ½ → P(others + busy ≥ 2) = P(Bern(½) ≥ 2) = 0; 2nd: P(Bin(2, ½) ≥ 2) = ¼
    unsure = Snapshot(0.0, agents(R, (WRAP, 0.0)))
    assert plan_launches(unsure, TINY, z_for(0.24), limit=10) == 1
    assert plan_launches(unsure, TINY, z_for(0.26), limit=10) == 2


def test_plan_a_waiting_debtor_takes_the_ready_agent() -> None:
    snap = Snapshot(0.0, agents(R), (LineView(6.0, waiting_s=0.5),))
    assert plan_launches(snap, TINY, z_for(0.99), limit=10) == 0   # no agent left: risk 1
    expired = Snapshot(0.0, agents(R), (LineView(6.0, waiting_s=2.5),))   # past the grace: gone
    assert plan_launches(expired, TINY, z_for(0.49), limit=10) == 1


def test_line_cap() -> None:
    # 4 agents at work (the paused one is not) × 1.5 = 6 lines, 1 already ringing → 5 more
    snap = Snapshot(0.0, agents(R, R, (WRAP, 19.0), (WRAP, 19.0), PAUSED), ringing(2.0))
    assert line_cap(snap, 1.5) == 5
    with pytest.raises(ValueError):
        PredictiveSettings(max_lines_per_agent=0.5)


def test_predictive_never_exceeds_max_lines_per_agent() -> None:
    # warmed up at once and as bold as it gets: only the cap holds it
    policy = Predictive(PredictiveSettings(warmup_dials=0, max_lines_per_agent=1.5),
                        controller=AbandonController(ControllerSettings(z_start=-2.0)))
    snap = Snapshot(0.0, agents(R, R, (WRAP, 19.0), (WRAP, 19.0), PAUSED), ringing(2.0))
    assert policy.decide(snap) == 5
    assert Predictive(PredictiveSettings(warmup_dials=0, max_lines_per_agent=3.0),
                      controller=AbandonController(ControllerSettings(z_start=-2.0))).decide(snap) > 5


def test_predictive_behaves_as_progressive_while_warming_up() -> None:
    policy = Predictive(PredictiveSettings(warmup_dials=60))
    soon_free = Snapshot(0.0, agents(*[(WRAP, 15.0)] * 5))   # 5 agents free in 5 s
    ready = Snapshot(0.0, agents(R, R, (CALL, 40.0)), ringing(4.0))
    for i in range(59):
        policy.observe(DialEnded(float(i), i % 4 == 0, 10.0 if i % 4 == 0 else 25.0))
        assert policy.decide(soon_free) == Progressive().decide(soon_free) == 0
        assert policy.decide(ready) == Progressive().decide(ready) == 1
    policy.observe(DialEnded(60.0, False, 25.0))
    assert not policy.warming_up
    assert policy.decide(soon_free) > 0      # now it dials for agents about to be free
    assert policy.decide(ready) >= 1         # and never less than progressive


# ===================================================================== the abandonment controller


def test_controller_steps() -> None:
    c = AbandonController(ControllerSettings(target=0.03, aim=0.8, gain=0.05, z_start=2.0))
    # too few answered to trust the window: setpoint is the aim, 2.4 %
    c.observe(DialEnded(0.0, True, 10.0))
    assert c.z == pytest.approx(2.0 - 0.05 * 0.024)
    c.observe(Abandoned(2.0))
    assert c.z == pytest.approx(2.0 - 0.05 * 0.024 + 0.05 * (1 - 0.024))
    c.observe(DialEnded(3.0, False, 25.0))   # unanswered: no step
    assert c.z == pytest.approx(2.0 - 0.05 * 0.024 + 0.05 * (1 - 0.024))


def test_controller_setpoint_pays_back_and_spends() -> None:
    def after(answered: int, abandoned: int) -> AbandonController:
        c = AbandonController(ControllerSettings(window_s=3600.0, aim=0.8))
        for i in range(answered):
            c.observe(DialEnded(float(i), True, 10.0))
        for i in range(abandoned):
            c.observe(Abandoned(float(i)))
        return c
    # 5 % over the window: 2.4 % − 2 × (5 % − 2.4 %) < 0 → the floor, a tenth of the aim
    assert after(100, 5).setpoint(200.0) == pytest.approx(0.0024)
    # 1 %: 2.4 % + 2 × 1.4 % = 5.2 % → capped at the 3 % target
    assert after(100, 1).setpoint(200.0) == pytest.approx(0.03)
    # 3 %: 2.4 % − 2 × 0.6 % = 1.2 %
    assert after(100, 3).setpoint(200.0) == pytest.approx(0.012)
    # an hour later the window has moved past all of it
    late = after(100, 5)
    assert late.rate(200.0) == pytest.approx(0.05)
    assert late.rate(3600.0 + 200.0) is None


# ===================================================================== the simulator


@dataclass
class Burst:
    """A test policy: `count` dials at the first tick, none after."""

    count: int
    seen: list[Observation]

    def decide(self, snapshot: Snapshot) -> int:
        count, self.count = self.count, 0
        return count

    def observe(self, event: Observation) -> None:
        self.seen.append(event)


ALWAYS = Distributions(answer_p=1.0, answer_after=Constant(5.0), give_up_after=Constant(25.0),
                       talk=Constant(100.0), wrap=Constant(20.0))


def test_simulated_day_of_one_progressive_agent() -> None:
    # each cycle: dial, 5 s ringing (idle), 100 s talk, 20 s wrap-up → 125 s; 3600 s hold 28
    # full cycles and a 29th cut at the end: talk 28 × 100 + 95, wrap 28 × 20, idle 29 × 5
    r = simulate(Progressive(), ALWAYS, SimConfig(agents=1, hours=1.0))
    assert (r.dials, r.answered, r.connects, r.abandoned) == (29, 29, 29, 0)
    assert (r.talk_s, r.wrap_s, r.idle_s, r.agent_s) == pytest.approx((2895.0, 560.0, 145.0, 3600.0))
    assert r.occupancy == pytest.approx(3455 / 3600)
    assert r.wait_per_connect_s == pytest.approx(5.0)
    assert r.connects_per_agent_hour == pytest.approx(29.0)


def test_a_second_debtor_with_no_agent_is_abandoned_after_the_grace() -> None:
    seen: list[Observation] = []
    config = SimConfig(agents=1, hours=0.1)
    r = simulate(Burst(2, seen), ALWAYS, config)
    start = config.start_s
    assert (r.dials, r.answered, r.connects, r.abandoned) == (2, 2, 1, 1)
    assert seen[:3] == [DialEnded(start + 5, True, 5.0), DialEnded(start + 5, True, 5.0), Abandoned(start + 7)]
    assert TalkEnded(start + 105, 100.0) in seen and WrapUpEnded(start + 125, 20.0) in seen


def test_breaks_are_not_logged_in_time() -> None:
    # nobody ever answers, so the agent is ready whenever a break falls due: at 500 s (staggered),
    # then every 1000 s from the last start: 500, 1500, 2500, 3500 → 4 × 100 s paused
    never = Distributions(answer_p=0.0)
    r = simulate(Progressive(), never, SimConfig(agents=1, hours=1.0, break_every_s=1000.0, break_s=100.0))
    assert r.agent_s == pytest.approx(3600.0 - 400.0)
    assert r.idle_s == pytest.approx(3200.0) and r.talk_s == 0


def test_progressive_never_abandons_and_ours_keeps_agents_busier() -> None:
    config = SimConfig(agents=8, hours=2.0)
    progressive = simulate(Progressive(), Distributions(), config, seed=3)
    ours = simulate(Predictive(), Distributions(), config, seed=3)
    assert progressive.abandoned == 0
    assert ours.abandon_rate <= 0.03
    assert ours.occupancy > progressive.occupancy + 0.1


def test_controller_brings_a_campaign_whose_answer_rate_jumps_back_under_target() -> None:
    """20 agents, 4 hours; 1.5 hours in, debtors answer twice as often (25 % → 50 %). The
    learner is made slow to notice (it averages 100,000 dials), so only the controller can
    react: without it (gain 0) the day ends over 3 %; with it, under, last hour included."""
    jump = SimConfig(agents=20, hours=4.0, changes=((1.5 * 3600, Distributions(answer_p=0.5)),))
    slow = LearnerSettings(dials_window=100_000, shift_z=None)

    def day(gain: float) -> tuple[float, float, AbandonController]:
        policy = Predictive(PredictiveSettings(learner=slow, controller=ControllerSettings(gain=gain)))
        r = simulate(policy, Distributions(answer_p=0.25), jump, seed=1)
        last_hour = r.abandoned_by_hour[3] / r.answered_by_hour[3]
        return r.abandon_rate, last_hour, policy.controller

    unchecked, _, _ = day(0.0)
    assert unchecked > 0.03
    overall, last_hour, controller = day(0.05)
    assert overall <= 0.03 and last_hour <= 0.03
    assert controller.rate(jump.start_s + 4 * 3600) <= 0.03   # the rolling 24 h window too


def test_predictive_keeps_up_when_the_learner_follows_the_jump() -> None:
    jump = SimConfig(agents=10, hours=3.0, changes=((1.0 * 3600, Distributions(answer_p=0.5)),))
    policy = Predictive()
    r = simulate(policy, Distributions(answer_p=0.25), jump, seed=2)
    assert r.abandon_rate <= 0.03
    assert policy.learner.answered.value > 0.4   # it learned the new answer rate


# ===================================================================== what if, from real attempts

T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def attempt(dialed: float | None, answered: float | None, bridged: float | None, ended: float | None) -> SimpleNamespace:
    def at(s: float | None) -> dt.datetime | None:
        return None if s is None else T0 + dt.timedelta(seconds=s)
    return SimpleNamespace(dialed_at=at(dialed), answered_at=at(answered), bridged_at=at(bridged), ended_at=at(ended))


def test_rows_from_attempts_and_distributions() -> None:
    rows = rows_from_attempts([
        attempt(0, 8, 8.5, 128.5),        # answered after 8 s, talked 120 s
        attempt(10, None, None, 35),      # no answer, given up after 25 s
        attempt(20, 26, None, 27),        # answered after 6 s, abandoned: no talk
        attempt(None, None, None, None),  # planned, never dialled: left out
        attempt(40, None, None, None),    # still ringing: left out
    ])
    assert rows == [AttemptRow(True, 8.0, 120.0), AttemptRow(False, 25.0, None), AttemptRow(True, 6.0, None)]
    d = Distributions.from_attempts(rows, wrap=Constant(15.0))
    assert d.answer_p == pytest.approx(2 / 3)
    assert d.answer_after == Empirical((8.0, 6.0)) and d.give_up_after == Empirical((25.0,))
    assert d.talk == Empirical((120.0,)) and d.wrap == Constant(15.0)
    with pytest.raises(NoHistory):
        Distributions.from_attempts([])


def test_what_if_runs_every_policy_on_learned_distributions() -> None:
    rows = [AttemptRow(i % 3 == 0, 9.0 if i % 3 == 0 else 24.0, 140.0 if i % 3 == 0 else None) for i in range(60)]
    reports = what_if(rows, agents=3, hours=0.5, seeds=(1,))
    assert set(reports) == {"progressive", "vicidial", "ours"}
    assert all(r.dials > 0 for r in reports.values())
    assert reports["progressive"].abandoned == 0


def test_prime_teaches_the_learner_from_past_attempts() -> None:
    # 300 past dials, 40 % answered: the learner starts there rather than at its 25 % prior
    rows = [AttemptRow(i % 5 < 2, 9.0 if i % 5 < 2 else 24.0, 140.0 if i % 5 < 2 else None) for i in range(300)]
    learner = prime(Learner(), rows)
    assert learner.dials == 300
    assert learner.model().answer_p == pytest.approx((120 + 2.5) / 310)
    assert learner.talk_s.n == 120


def test_the_next_day_of_a_campaign_goes_on_from_the_day_before() -> None:
    config = SimConfig(agents=5, hours=1.0)
    first, second = campaign_days(Predictive, TEXTBOOK, config, seed=4, count=2)
    assert first == run_one(Predictive, TEXTBOOK, config, 4), "day 1 is a new campaign's day"

    policy = Predictive()
    simulate(policy, TEXTBOOK, config, seed=4)
    policy.controller.z = 1.2
    after = policy.next_run()
    assert after.learner is policy.learner and not after.warming_up, "what it learned is kept: no warm-up again"
    assert (after.controller.answered, after.controller.abandoned) == (first.answered, first.abandoned)
    assert after.controller.z == after.controller.settings.z_start, "the caution starts afresh"
    assert after.controller.rate(config.start_s + 86400.0) is not None, "yesterday's calls are in today's 24 h window"
    after.observe(Abandoned(config.start_s + 86400.0))
    assert after.controller.abandoned == first.abandoned + 1 and policy.controller.abandoned == first.abandoned, \
        "the next run counts on its own copy of the window"
    assert after.controller.rate(config.start_s + 2 * 86400.0) is None, "and they are gone from tomorrow's"
    assert second.dials > 0 and second != first


def test_the_alternatives_benchmark_counts_abandons_and_idle_time_at_a_hand_worked_state(monkeypatch) -> None:
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))  # bench/ is run from the repository
    from bench.pacing import at_abandon
    from bench.pacing_alternatives import outcomes, plan_lookahead, plan_marginal
    model = Learner().model()          # the priors: 25 % answered, after 5–15 s
    p = model.new_call[-1]
    one_ready = Snapshot(0.0, (AgentView(R),))
    abandoned, idle, answered = outcomes(one_ready, model, 3)
    assert answered == pytest.approx(p)
    assert abandoned[0] == abandoned[1] == 0, "one call, one ready agent: nobody abandoned"
    # Two calls both answered find one agent: one abandoned; three: P(2 answered) + 2 P(3 answered).
    # Within the Monte Carlo's error (1,000 draws: a standard error of about 0.013).
    assert abandoned[2] == pytest.approx(p * p, abs=0.03)
    assert abandoned[3] == pytest.approx(3 * p * p * (1 - p) + 2 * p ** 3, abs=0.04)
    steps = len(model.new_call)
    assert idle[0] == pytest.approx(steps), "no call: the agent idles through every second of the horizon"
    assert idle[0] > idle[1] > idle[2] > idle[3]
    # The marginal rule stops where the next call's extra abandonment per answer passes Φ(−z).
    assert plan_marginal(one_ready, model, z=3.0, limit=10) == 1    # 2nd call: p ≈ 25 % > 0.1 %
    assert plan_marginal(one_ready, model, z=0.0, limit=10) >= 2     # under 50 %: go on
    assert plan_lookahead(1e6, one_ready, model, 0.0, 10) == 1 and plan_lookahead(0.0, one_ready, model, 0.0, 10) == 10
    assert at_abandon([(0.02, 0.86), (0.04, 0.90)], 0.03) == "88.0%"
    assert at_abandon([(0.01, 0.86), (0.02, 0.87)], 0.03) == "(not bracketed by the measured points)"
