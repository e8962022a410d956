"""The attempt ledger: what plan_next picks, on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

from campaigns import admin, queue
from campaigns.db import sessions, transaction
from campaigns.importing import import_batch
from campaigns.policy import Rules

SHANGHAI_0930 = dt.datetime(2026, 11, 25, 1, 30, tzinfo=dt.timezone.utc)  # 09:30 in Shanghai


def campaign_with(database, tmp_path, rows: list[str]):
    path = tmp_path / "b.csv"
    path.write_text("案件编号,姓名,欠款金额,逾期天数,手机,家庭电话\n" + "\n".join(rows) + "\n", encoding="utf-8")
    factory = sessions(database)
    assert import_batch(factory, path, "Q", now=SHANGHAI_0930).ok
    with transaction(factory) as s:
        admin.create_campaign(s, "q", "Q", SHANGHAI_0930)
        queue.change_campaign(s, "q", "start", SHANGHAI_0930)
    return factory


def plan(factory, call_id: str, now=SHANGHAI_0930):
    with transaction(factory) as s:
        return queue.plan_next(s, queue.campaign_named(s, "q"), None, call_id, now, Rules())


def test_a_case_with_a_call_in_progress_is_not_picked_again(database, tmp_path):
    factory = campaign_with(database, tmp_path, ["A,甲,900,10,13800138000,075588886661",
                                                 "B,乙,100,10,13800138001,"])
    first, second, third = plan(factory, "c1"), plan(factory, "c2"), plan(factory, "c3")
    assert (first.number, second.number) == ("13800138000", "13800138001"), "priority: the larger amount first"
    assert third is None, "A's home number is allowed, but A's debtor is on the line"
    with transaction(factory) as s:
        queue.finish(s, first.attempt_id, "busy", ended_at=SHANGHAI_0930, hangup_cause=17)
    after = plan(factory, "c4")
    assert after.number == "075588886661" and after.case_id == first.case_id


def test_a_number_the_network_says_does_not_exist_is_marked_invalid(database, tmp_path):
    factory = campaign_with(database, tmp_path, ["A,甲,900,10,13800138000,"])
    first = plan(factory, "c1")
    with transaction(factory) as s:
        queue.finish(s, first.attempt_id, "congestion", ended_at=SHANGHAI_0930, hangup_cause=1)
    noon = SHANGHAI_0930 + dt.timedelta(hours=3)
    assert plan(factory, "c2", noon) is None
    with transaction(factory) as s:
        (case_view, decision), = queue.decisions(s, queue.campaign_named(s, "q"), noon, Rules())
    assert decision.blocks[0].rule == "no_dialable_number"


def test_cancelled_dials_do_not_use_up_a_slot(database, tmp_path):
    factory = campaign_with(database, tmp_path, ["A,甲,900,10,13800138000,"])
    first = plan(factory, "c1")
    with transaction(factory) as s:
        queue.finish(s, first.attempt_id, queue.NotDialled.CANCELLED.value, ended_at=SHANGHAI_0930)
    again = plan(factory, "c2")
    assert again is not None and again.number == "13800138000"


def test_contacts_are_dialled_only_with_an_agent_reserved_and_the_screen_warned(database, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("案件编号,姓名,欠款金额,逾期天数,手机,联系人姓名,联系人关系,联系人电话\n"
                    "A,甲,900,10,13800138000,王,配偶,13900139000\n", encoding="utf-8")
    factory = sessions(database)
    assert import_batch(factory, path, "C", now=SHANGHAI_0930).ok
    with transaction(factory) as s:
        admin.create_campaign(s, "c", "C", SHANGHAI_0930)
        queue.change_campaign(s, "c", "start", SHANGHAI_0930)
        agent = admin.add_agent(s, "6001", "agent", SHANGHAI_0930)
        from campaigns.models import Phone
        for phone in s.query(Phone):
            if phone.role == "own_mobile":
                phone.valid = False  # every debtor number invalid: the client's rules allow the contact
    with transaction(factory) as s:
        campaign = queue.campaign_named(s, "c")
        (_, decision), = queue.decisions(s, campaign, SHANGHAI_0930)
        assert decision.allowed and decision.third_party
        assert queue.plan_next(s, campaign, None, "c1", SHANGHAI_0930) is None, "not ahead of an agent (predictive)"
        planned = queue.plan_next(s, campaign, s.get(type(agent), agent.id), "c2", SHANGHAI_0930)
        assert planned is not None and planned.third_party and planned.number == "13900139000"
        from campaigns.models import Attempt
        note = s.get(Attempt, planned.attempt_id).note
        assert "never mention the debt" in note


def answered(factory, planned, at, *, bridged=True, agent=None):
    with transaction(factory) as s:
        queue.finish(s, planned.attempt_id, "answered", answered_at=at, bridged_at=at if bridged else None,
                     ended_at=at + dt.timedelta(minutes=2), hangup_cause=16, agent_extension=agent)


def test_a_promise_to_pay_is_followed_up_the_day_before_its_due_date_not_before(database, tmp_path):
    factory = campaign_with(database, tmp_path, ["A,甲,900,10,13800138000,"])
    with transaction(factory) as s:
        admin.add_agent(s, "6001", "agent", SHANGHAI_0930)
    first = plan(factory, "c1")
    answered(factory, first, SHANGHAI_0930, agent="6001")
    due = dt.date(2026, 12, 4)
    with transaction(factory) as s:
        admin.record_disposition(s, "c1", "promise_to_pay", SHANGHAI_0930, promise_amount="500", promise_due=due)
    for days in (1, 2, 5, 7):  # the following days, 09:30 in Shanghai
        assert plan(factory, f"d{days}", SHANGHAI_0930 + dt.timedelta(days=days)) is None, f"day +{days}"
    day_before = SHANGHAI_0930 + dt.timedelta(days=8)  # 2026-12-03
    planned = plan(factory, "d8", day_before)
    assert planned is not None and planned.case_id == first.case_id
    with transaction(factory) as s:
        from campaigns.models import Attempt
        assert "promise to pay 500.00 due 2026-12-04" in s.get(Attempt, planned.attempt_id).note


def test_a_wrong_party_answer_is_no_conversation_and_the_debtor_is_tried_again(database, tmp_path):
    factory = campaign_with(database, tmp_path, ["A,甲,900,10,13800138000,075588886661"])
    with transaction(factory) as s:
        admin.add_agent(s, "6001", "agent", SHANGHAI_0930)
    first = plan(factory, "c1")
    answered(factory, first, SHANGHAI_0930, agent="6001")
    noon = SHANGHAI_0930 + dt.timedelta(hours=3)
    # A conversation with the debtor today: the connected-call cap (1 a day) stops the case.
    assert plan(factory, "c2", noon) is None
    with transaction(factory) as s:
        admin.record_disposition(s, "c1", "wrong_party", noon, note="a stranger has this number now")
    again = plan(factory, "c3", noon)
    assert again is not None and again.case_id == first.case_id


def test_an_appointment_the_debtor_asked_for_is_kept_outside_the_window(database, tmp_path):
    factory = campaign_with(database, tmp_path, ["A,甲,900,10,13800138000,"])
    with transaction(factory) as s:
        admin.add_agent(s, "6001", "agent", SHANGHAI_0930)
    first = plan(factory, "c1")
    answered(factory, first, SHANGHAI_0930, agent="6001")
    # Tomorrow evening (today the debtor has had the day's one conversation the rules allow).
    late = dt.datetime(2026, 11, 26, 21, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    try:
        with transaction(factory) as s:
            admin.record_disposition(s, "c1", "callback", SHANGHAI_0930, note="agent's idea",
                                     callback_at=late, requested_by="agent")
    except admin.AppointmentRefused as exc:
        assert "outside the calling window" in str(exc)
    else:
        raise AssertionError("an agent's 21:30 appointment was accepted")
    with transaction(factory) as s:
        admin.record_disposition(s, "c1", "callback", SHANGHAI_0930, note="客户说：晚上九点半以后再打，白天在上班",
                                 callback_at=late, requested_by="debtor")
    assert plan(factory, "c2", late - dt.timedelta(minutes=20)) is None, "21:10: the window is closed"
    # (the daily follow-up happened at 09:30 that day in real life; here the day's first look is at 21:10)
    kept = plan(factory, "c3", late)
    assert kept is not None and kept.appointment_until == late + dt.timedelta(minutes=5)
    with transaction(factory) as s:
        from campaigns.models import Appointment, Attempt
        appointment = s.query(Appointment).one()
        assert (appointment.status, appointment.kept_attempt_id) == ("kept", kept.attempt_id)
        assert appointment.recorded_by == "6001" and "晚上九点半" in appointment.note
        assert "appointment" in s.get(Attempt, kept.attempt_id).note
    assert plan(factory, "c4", late + dt.timedelta(minutes=1)) is None, "kept once; the window is closed"
