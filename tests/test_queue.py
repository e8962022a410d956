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


def test_contacts_are_not_dialled_by_the_engine_until_the_console_can_warn_the_agent(database, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("案件编号,姓名,欠款金额,逾期天数,手机,联系人姓名,联系人关系,联系人电话\n"
                    "A,甲,900,10,13800138000,王,配偶,13900139000\n", encoding="utf-8")
    factory = sessions(database)
    assert import_batch(factory, path, "C", now=SHANGHAI_0930).ok
    with transaction(factory) as s:
        admin.create_campaign(s, "c", "C", SHANGHAI_0930)
        queue.change_campaign(s, "c", "start", SHANGHAI_0930)
        from campaigns.models import Phone
        for phone in s.query(Phone):
            if phone.role == "own_mobile":
                phone.valid = False  # every debtor number invalid: the client's rules allow the contact
    with transaction(factory) as s:
        campaign = queue.campaign_named(s, "c")
        (_, decision), = queue.decisions(s, campaign, SHANGHAI_0930)
        assert decision.allowed and decision.third_party
        assert queue.plan_next(s, campaign, None, "c1", SHANGHAI_0930) is None
