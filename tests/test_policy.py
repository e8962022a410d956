"""The dialling policy (campaigns/policy.py), to the second and across time zones.

Moments are written in UTC and the test states what the debtor's wall clock reads, so each
conversion is proven rather than assumed. The property tests compare `decide` with `oracle`,
an independent reading of the client's rules written here with hour arithmetic only.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from campaigns.models import CaseStatus, PhoneRole
from campaigns.policy import (
    AttemptView,
    CaseView,
    PhoneView,
    Rules,
    decide,
    dial_order,
    in_window,
    local_now,
    next_window_open,
    order_cases,
    priority_key,
    slot_of,
)

SH, NY, LONDON, URUMQI = "Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Urumqi"
DAY = "2026-11-25"  # a Wednesday; Shanghai has no DST

MOBILE = PhoneView(1, PhoneRole.OWN_MOBILE, "13800138000")
HOME = PhoneView(2, PhoneRole.HOME, "075588888888")
WORK = PhoneView(3, PhoneRole.WORK, "02066666666")
CONTACT = PhoneView(4, PhoneRole.CONTACT, "13900139000")

# The client's rules, written out again here rather than read from the module under test.
BLOCKING = {"client_stop", "complaint", "dispute", "fraud_claim", "deceased", "imprisoned", "paid", "closed"}
ROLE_RANK = {"own_mobile": 0, "home": 1, "work": 2}


def utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0)
    return moment


def local(text: str, tz: str = SH) -> datetime:
    """A wall-clock reading in `tz` as an aware datetime (first occurrence)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


def case(*phones: PhoneView, status: CaseStatus = CaseStatus.ACTIVE, tz: str | None = None,
         amount: str = "5000.00", days: int = 45, id: int = 17) -> CaseView:
    return CaseView(id, status, Decimal(amount), days, phones, tz)


def tried(phone: PhoneView, clock: str, answered: bool = False, day: str = DAY, tz: str = SH) -> AttemptView:
    return AttemptView(phone.id, local(f"{day} {clock}", tz), answered)


def at(the_case: CaseView, clock: str, *history: AttemptView, day: str = DAY, tz: str = SH, **rules):
    return decide(the_case, history, local(f"{day} {clock}", tz), SH, Rules(**rules))


def rules_of(decision) -> list[tuple[str, int | None]]:
    return [(block.rule, block.phone_id) for block in decision.blocks]


# ---------------------------------------------------------------- the calling window

WINDOW_EDGES = [
    # zone, the moment in UTC, what the debtor's clock reads, inside 08:00–21:00?
    (SH, "2026-11-24T23:59:59+00:00", "2026-11-25 07:59:59", False),
    (SH, "2026-11-25T00:00:00+00:00", "2026-11-25 08:00:00", True),
    (SH, "2026-11-25T01:00:00+00:00", "2026-11-25 09:00:00", True),
    (SH, "2026-11-25T12:59:59+00:00", "2026-11-25 20:59:59", True),
    (SH, "2026-11-25T13:00:00+00:00", "2026-11-25 21:00:00", False),
    # New York, the day before DST starts (EST, UTC-5)
    (NY, "2026-03-07T12:59:59+00:00", "2026-03-07 07:59:59", False),
    (NY, "2026-03-07T13:00:00+00:00", "2026-03-07 08:00:00", True),
    # New York, 2026-03-08: clocks go 02:00 EST -> 03:00 EDT (UTC-4)
    (NY, "2026-03-08T11:59:59+00:00", "2026-03-08 07:59:59", False),
    (NY, "2026-03-08T12:00:00+00:00", "2026-03-08 08:00:00", True),
    (NY, "2026-03-09T00:59:59+00:00", "2026-03-08 20:59:59", True),
    (NY, "2026-03-09T01:00:00+00:00", "2026-03-08 21:00:00", False),
    # New York, 2026-11-01: clocks go 02:00 EDT -> 01:00 EST (UTC-5)
    (NY, "2026-11-01T12:59:59+00:00", "2026-11-01 07:59:59", False),
    (NY, "2026-11-01T13:00:00+00:00", "2026-11-01 08:00:00", True),
    (NY, "2026-11-02T01:59:59+00:00", "2026-11-01 20:59:59", True),
    (NY, "2026-11-02T02:00:00+00:00", "2026-11-01 21:00:00", False),
    # London, 2026-03-29: BST starts (UTC+1)
    (LONDON, "2026-03-29T06:59:59+00:00", "2026-03-29 07:59:59", False),
    (LONDON, "2026-03-29T07:00:00+00:00", "2026-03-29 08:00:00", True),
    (LONDON, "2026-03-29T19:59:59+00:00", "2026-03-29 20:59:59", True),
    (LONDON, "2026-03-29T20:00:00+00:00", "2026-03-29 21:00:00", False),
    # Urumqi (UTC+6, the debtor's zone differs from the campaign's Shanghai)
    (URUMQI, "2026-11-25T01:59:59+00:00", "2026-11-25 07:59:59", False),
    (URUMQI, "2026-11-25T02:00:00+00:00", "2026-11-25 08:00:00", True),
    (URUMQI, "2026-11-25T14:59:59+00:00", "2026-11-25 20:59:59", True),
    (URUMQI, "2026-11-25T15:00:00+00:00", "2026-11-25 21:00:00", False),
]


@pytest.mark.parametrize("tz, moment, wall, inside", WINDOW_EDGES)
def test_the_window_is_the_debtors_local_0800_to_2100(tz, moment, wall, inside):
    now = utc(moment)
    assert f"{local_now(now, tz):%Y-%m-%d %H:%M:%S}" == wall
    assert in_window(now, tz) is inside
    decision = decide(case(MOBILE, tz=tz), [], now, SH)
    assert decision.allowed is inside
    assert rules_of(decision) == ([] if inside else [("calling_window", None)])


@pytest.mark.parametrize("tz, moment, opens", [
    (SH, "2026-11-25T13:00:00+00:00", "2026-11-26T00:00:00+00:00"),  # 21:00 -> tomorrow 08:00
    (SH, "2026-11-24T23:59:59+00:00", "2026-11-25T00:00:00+00:00"),  # 07:59:59 -> in one second
    (SH, "2026-11-25T01:00:00+00:00", "2026-11-26T00:00:00+00:00"),  # open now -> the next opening
    (NY, "2026-03-08T02:00:00+00:00", "2026-03-08T12:00:00+00:00"),  # 21:00 EST -> 08:00 EDT: 10 h
    (NY, "2026-11-01T01:00:00+00:00", "2026-11-01T13:00:00+00:00"),  # 21:00 EDT -> 08:00 EST: 12 h
    (URUMQI, "2026-11-25T15:00:00+00:00", "2026-11-26T02:00:00+00:00"),
])
def test_next_window_open_follows_the_wall_clock(tz, moment, opens):
    assert next_window_open(utc(moment), tz) == utc(opens)


def rules_opening_at(start: time) -> Rules:
    return Rules(window_start=start, slots=[(start, time(12), "morning"), (time(12), time(17), "noon"),
                                            (time(17), time(21), "evening")])


def test_an_opening_skipped_by_the_dst_gap_opens_when_the_clock_jumps():
    early = rules_opening_at(time(2, 30))  # 02:30 does not exist in New York on 2026-03-08
    assert next_window_open(utc("2026-03-08T05:00:00+00:00"), NY, early) == utc("2026-03-08T07:00:00+00:00")
    assert in_window(utc("2026-03-08T07:00:00+00:00"), NY, early)
    assert not in_window(utc("2026-03-08T06:59:59+00:00"), NY, early)


def test_an_opening_repeated_by_the_dst_fold_opens_twice():
    early = rules_opening_at(time(1, 30))  # 01:30 happens twice in New York on 2026-11-01
    assert next_window_open(utc("2026-11-01T05:00:00+00:00"), NY, early) == utc("2026-11-01T05:30:00+00:00")
    # 01:45 EDT is inside; at 02:00 EDT the clock reads 01:00 EST, outside; 01:30 EST reopens it
    assert next_window_open(utc("2026-11-01T05:45:00+00:00"), NY, early) == utc("2026-11-01T06:30:00+00:00")


def test_a_skipped_calendar_day_has_no_window():
    # Samoa went from 2011-12-29 23:59:59 straight to 2011-12-31 00:00:00
    assert next_window_open(utc("2011-12-30T07:00:00+00:00"), "Pacific/Apia") == utc("2011-12-30T18:00:00+00:00")
    assert f"{local_now(utc('2011-12-30T18:00:00+00:00'), 'Pacific/Apia'):%Y-%m-%d %H:%M}" == "2011-12-31 08:00"


def test_the_debtors_zone_overrides_the_campaigns():
    now = utc("2026-11-25T01:00:00+00:00")  # 09:00 in Shanghai, 20:00 the day before in New York
    assert decide(case(MOBILE), [], now, SH).allowed
    assert decide(case(MOBILE, tz=NY), [], now, SH).allowed
    assert not decide(case(MOBILE, tz=LONDON), [], now, SH).allowed  # 01:00 in London
    assert not decide(case(MOBILE), [], now, LONDON).allowed


@pytest.mark.parametrize("clock, slot", [
    ("07:59:59", None), ("08:00:00", "morning"), ("11:59:59", "morning"), ("12:00:00", "noon"),
    ("16:59:59", "noon"), ("17:00:00", "evening"), ("20:59:59", "evening"), ("21:00:00", None),
])
def test_slot_of(clock, slot):
    found = slot_of(time.fromisoformat(clock))
    assert (found and found.name) == slot


# ---------------------------------------------------------------- case status

@pytest.mark.parametrize("status", list(CaseStatus))
def test_blocking_statuses_block_for_good(status):
    decision = at(case(MOBILE, status=status), "09:00:00")
    if status.value in BLOCKING:
        assert not decision.allowed and decision.next_at is None
        assert rules_of(decision) == [("case_status", None)]
        assert decision.blocks[0].until is None and f"'{status.value}'" in decision.blocks[0].message
    else:
        assert decision.allowed and decision.phone == MOBILE


def test_statuses_come_from_rows_as_text():
    assert CaseView(1, "dispute", Decimal(1), 1, ()).status is CaseStatus.DISPUTE
    assert Rules(blocking_statuses={"paid"}).blocking_statuses == {CaseStatus.PAID}


# ---------------------------------------------------------------- three tries a day

def test_three_tries_morning_noon_evening_and_no_fourth():
    morning, noon = tried(MOBILE, "09:00"), tried(MOBILE, "13:00")
    one = case(MOBILE)
    assert at(one, "12:00:00", morning).allowed
    assert at(one, "17:00:00", morning, noon).allowed
    fourth = at(one, "19:00:00", morning, noon, tried(MOBILE, "17:30"))
    assert not fourth.allowed
    assert rules_of(fourth) == [("number_daily_cap", 1), ("slot_used", 1)]
    assert fourth.next_at == local("2026-11-26 08:00")
    assert fourth.blocks[0].until == local("2026-11-26 00:00")


def test_a_second_try_in_the_same_slot_waits_for_the_next_slot():
    decision = at(case(MOBILE), "11:59:59", tried(MOBILE, "08:00"))
    assert rules_of(decision) == [("slot_used", 1)]
    assert decision.next_at == decision.blocks[0].until == local(f"{DAY} 12:00") == utc("2026-11-25T04:00:00+00:00")
    assert at(case(MOBILE), "12:00:00", tried(MOBILE, "08:00")).allowed


def test_a_retry_starts_before_2000():
    history = (tried(MOBILE, "09:00"), tried(MOBILE, "13:00"))
    assert at(case(MOBILE), "19:59:59", *history).allowed
    refused = at(case(MOBILE), "20:00:00", *history)
    assert rules_of(refused) == [("retry_after_20", 1)]
    assert refused.next_at == local("2026-11-26 08:00")


def test_a_first_try_after_2000_is_not_a_retry():
    assert at(case(MOBILE), "20:30:00").allowed
    assert at(case(MOBILE), "20:30:00", tried(MOBILE, "09:00", day="2026-11-24")).allowed


def test_a_new_local_day_resets_the_counts():
    spent = (tried(MOBILE, "09:00"), tried(MOBILE, "13:00"), tried(MOBILE, "17:30"))
    assert not at(case(MOBILE), "20:59:59", *spent).allowed
    assert not at(case(MOBILE), "07:59:59", *spent, day="2026-11-26").allowed  # the window, not the cap
    assert at(case(MOBILE), "08:00:00", *spent, day="2026-11-26").allowed


def test_today_is_the_debtors_day_not_utcs():
    spent = [tried(MOBILE, clock, tz=NY) for clock in ("09:00", "13:00", "17:30")]
    evening = utc("2026-11-26T01:30:00+00:00")  # already the 26th in UTC, 20:30 on the 25th in New York
    decision = decide(case(MOBILE, tz=NY), spent, evening, SH)
    assert ("number_daily_cap", 1) in rules_of(decision)
    assert decision.next_at == local("2026-11-26 08:00", NY)


def test_the_limits_are_settings():
    history = (tried(MOBILE, "09:00"), tried(MOBILE, "13:00"), tried(MOBILE, "17:30"))
    two_a_day = at(case(MOBILE), "19:00:00", *history[:2], max_attempts_per_number_per_day=2)
    assert rules_of(two_a_day) == [("number_daily_cap", 1)]
    assert at(case(MOBILE), "20:30:00", *history[:2], retry_before=time(20, 45)).allowed


@pytest.mark.parametrize("change, says", [
    ({"window_end": time(20)}, "must cover the calling window 08:00–20:00"),
    ({"window_start": time(21), "window_end": time(8)}, "must start before it ends"),
    ({"slots": [(time(8), time(13), "morning"), (time(12), time(21), "rest")]}, "without gaps or overlaps"),
    ({"dial_roles": ()}, "no number would ever be dialled"),
])
def test_inconsistent_rules_are_refused(change, says):
    with pytest.raises(ValueError, match=says):
        Rules(**change)


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="aware"):
        decide(case(MOBILE), [], datetime(2026, 11, 25, 9), SH)
    with pytest.raises(ValueError, match="aware"):
        AttemptView(1, datetime(2026, 11, 25, 9), False)


# ---------------------------------------------------------------- dial order and numbers

def test_dial_order_is_own_mobile_home_work_then_id():
    second_mobile = PhoneView(9, PhoneRole.OWN_MOBILE, "13700137000")
    assert dial_order([CONTACT, WORK, second_mobile, HOME, MOBILE]) == (MOBILE, second_mobile, HOME, WORK)
    assert at(case(WORK, HOME, MOBILE), "09:00:00").phone == MOBILE


@pytest.mark.parametrize("mobile, home, chosen, skipped", [
    ({"valid": False}, {}, HOME, [("invalid_number", 1)]),
    ({"do_not_call": True}, {}, HOME, [("do_not_call", 1)]),
    ({"do_not_call": True}, {"valid": False}, WORK, [("do_not_call", 1), ("invalid_number", 2)]),
])
def test_invalid_and_do_not_call_numbers_are_skipped(mobile, home, chosen, skipped):
    phones = (PhoneView(1, PhoneRole.OWN_MOBILE, MOBILE.dial, **mobile),
              PhoneView(2, PhoneRole.HOME, HOME.dial, **home))
    decision = at(case(*phones, WORK), "09:00:00")
    assert decision.allowed and decision.phone == chosen and rules_of(decision) == skipped
    assert "skipped" in decision.explain()


def test_the_next_number_may_be_tried_in_a_used_slot():
    decision = at(case(MOBILE, HOME), "09:05:00", tried(MOBILE, "09:00"))
    assert decision.phone == HOME and rules_of(decision) == [("slot_used", 1)]


@pytest.mark.parametrize("phones", [(), (CONTACT,), (PhoneView(1, PhoneRole.OWN_MOBILE, "1", valid=False), CONTACT)])
def test_no_dialable_number_blocks_for_good(phones):
    decision = at(case(*phones), "09:00:00")
    assert rules_of(decision) == [("no_dialable_number", None)] and decision.next_at is None


def test_a_debtor_reached_today_is_not_dialled_again_today():
    reached = tried(MOBILE, "09:00", answered=True)
    decision = at(case(MOBILE, HOME), "13:00:00", reached)
    assert rules_of(decision) == [("connected_today", None)]
    assert decision.blocks[0].until == local("2026-11-26 00:00")
    assert decision.next_at == local("2026-11-26 08:00")
    assert at(case(MOBILE, HOME), "13:00:00", tried(MOBILE, "09:00", answered=True, day="2026-11-24")).allowed


# ---------------------------------------------------------------- explanations

def test_explain_names_the_rule_and_the_local_times():
    text = at(case(MOBILE), "21:00:00").explain()
    assert text.splitlines()[0] == ("case 17 may not be dialled now (2026-11-25 21:00:00 CST, Asia/Shanghai); "
                                    "next possible at 2026-11-26 08:00 CST")
    assert "calling_window" in text and "08:00–21:00" in text
    assert at(case(MOBILE, status=CaseStatus.PAID), "09:00:00").explain().splitlines()[0].endswith(
        "nothing will allow a dial by itself")
    allowed = at(case(MOBILE), "09:00:00").explain()
    assert allowed == ("case 17 may be dialled now (2026-11-25 09:00:00 CST, Asia/Shanghai) "
                       "on own mobile 13800138000 (phone 1)")


# ---------------------------------------------------------------- queue order

def test_queue_order_amount_then_days_past_due_then_id():
    cases = [case(id=1, amount="100.00", days=90), case(id=2, amount="900.00", days=10),
             case(id=3, amount="900.00", days=30), case(id=4, amount="900.00", days=30)]
    assert [c.id for c in order_cases(cases)] == [3, 4, 2, 1]
    assert priority_key(cases[1]) > priority_key(cases[2])


@given(st.lists(st.tuples(st.decimals(0, 10**6, places=2), st.integers(0, 720)), max_size=12))
def test_queue_order_property(rows):
    ordered = order_cases(case(amount=str(amount), days=days, id=i) for i, (amount, days) in enumerate(rows))
    for first, second in pairwise(ordered):
        if first.amount_due != second.amount_due:
            assert first.amount_due > second.amount_due
        elif first.days_past_due != second.days_past_due:
            assert first.days_past_due > second.days_past_due
        else:
            assert first.id < second.id


# ---------------------------------------------------------------- properties

ZONES = st.sampled_from([SH, NY, LONDON, URUMQI, "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Apia",
                         "America/Santiago", "Asia/Tehran"]) | st.timezone_keys(allow_prefix=False)
EDGES = [time(h, m) for h, m in [(8, 0), (12, 0), (17, 0), (20, 0), (21, 0), (0, 0)]]
WALL_TIMES = st.times(time(8), time(21)) | st.times() | st.sampled_from(
    [t for edge in EDGES for t in (edge, (datetime.combine(date(2000, 1, 2), edge) - timedelta(seconds=1)).time())])


@st.composite
def moments(draw, zone: str) -> datetime:
    """A moment, drawn as the debtor's wall clock (often at a rule's edge), given in UTC."""
    wall = datetime.combine(draw(st.dates(date(2000, 1, 1), date(2037, 12, 31))), draw(WALL_TIMES))
    return wall.replace(tzinfo=ZoneInfo(zone), fold=draw(st.integers(0, 1))).astimezone(UTC)


@st.composite
def situations(draw):
    zone, campaign = draw(ZONES), draw(ZONES)
    own_zone = draw(st.booleans())
    dialled = [PhoneRole.OWN_MOBILE, PhoneRole.HOME, PhoneRole.WORK]
    roles = draw(st.lists(st.sampled_from(dialled * 3 + [PhoneRole.CONTACT]), min_size=1, max_size=3))
    phones = [PhoneView(i + 1, role, f"1380013800{i}", draw(st.sampled_from([True] * 5 + [False])),
                        draw(st.sampled_from([False] * 5 + [True]))) for i, role in enumerate(roles)]
    status = draw(st.sampled_from([CaseStatus.ACTIVE] * 20 + list(CaseStatus)))
    the_case = CaseView(7, status, Decimal("1000.00"), 60, tuple(draw(st.permutations(phones))),
                        zone if own_zone else None)
    now = draw(moments(zone if own_zone else campaign))
    history = [AttemptView(draw(st.sampled_from([p.id for p in phones] + [99])), now - timedelta(seconds=back),
                           draw(st.sampled_from([False] * 11 + [True])))
               for back in draw(st.lists(st.integers(0, 30 * 3600) | st.sampled_from([0, 60, 3600]), max_size=10))]
    return the_case, tuple(history), now, campaign


def part(moment: datetime) -> str | None:
    """The client's part of the day a wall-clock reading falls in."""
    hour = moment.hour
    return None if not 8 <= hour < 21 else "morning" if hour < 12 else "noon" if hour < 17 else "evening"


def oracle(the_case: CaseView, history, now: datetime, campaign: str) -> PhoneView | None:
    """The number the client's rules allow now, read independently of the policy module."""
    zone = ZoneInfo(the_case.timezone or campaign)
    wall = now.astimezone(zone)
    clock = (wall.hour, wall.minute, wall.second)
    todays = [(a, a.at.astimezone(zone)) for a in history if a.at.astimezone(zone).date() == wall.date()]
    if not (8, 0, 0) <= clock < (21, 0, 0) or the_case.status.value in BLOCKING or any(a.answered for a, _ in todays):
        return None
    dialled = (p for p in the_case.phones if p.role.value in ROLE_RANK)
    for phone in sorted(dialled, key=lambda p: (ROLE_RANK[p.role.value], p.id)):
        mine = [(a, seen) for a, seen in todays if a.phone_id == phone.id]
        if (phone.valid and not phone.do_not_call and len(mine) < 3
                and all(part(seen) != part(wall) for _, seen in mine)
                and not (clock >= (20, 0, 0) and any(not a.answered for a, _ in mine))):
            return phone
    return None


PROPERTY = settings(max_examples=300, deadline=None)


@PROPERTY
@given(situations())
def test_an_allowed_dial_keeps_every_rule(situation):
    the_case, history, now, campaign = situation
    decision = decide(the_case, history, now, campaign)
    assume(decision.allowed)
    wall = now.astimezone(ZoneInfo(the_case.timezone or campaign))
    assert time(8) <= wall.time() < time(21)
    assert the_case.status.value not in BLOCKING
    chosen = [a.at.astimezone(wall.tzinfo) for a in history if a.phone_id == decision.phone.id]
    same_day = [seen for seen in chosen if seen.date() == wall.date()]
    assert len(same_day) < 3
    assert part(wall) not in [part(seen) for seen in same_day]
    assert decision.phone.valid and not decision.phone.do_not_call


@PROPERTY
@given(situations())
def test_decide_agrees_with_an_independent_reading_of_the_rules(situation):
    the_case, history, now, campaign = situation
    decision = decide(the_case, history, now, campaign)
    assert decision.phone == oracle(the_case, history, now, campaign)
    assert decision.allowed is (decision.phone is not None)
    # the instant and the set of attempts decide, not how they are written down
    again = decide(the_case, reversed(history), now.astimezone(ZoneInfo("Pacific/Kiritimati")), campaign)
    assert (again.allowed, again.phone, again.blocks, again.next_at) == (decision.allowed, decision.phone,
                                                                         decision.blocks, decision.next_at)


@PROPERTY
@given(situations())
def test_next_at_is_the_first_moment_a_dial_is_allowed(situation):
    the_case, history, now, campaign = situation
    decision = decide(the_case, history, now, campaign)
    assume(not decision.allowed and decision.next_at is not None)
    assert decision.next_at > now
    assert decide(the_case, history, decision.next_at, campaign).allowed
    just_before = decision.next_at - timedelta(seconds=1)
    assert just_before <= now or not decide(the_case, history, just_before, campaign).allowed


@PROPERTY
@given(situations())
def test_each_block_lifts_when_it_says(situation):
    the_case, history, now, campaign = situation
    decision = decide(the_case, history, now, campaign)
    for block in decision.blocks:
        assert block.message
        if block.until is None:
            assert block.rule in {"case_status", "no_dialable_number", "invalid_number", "do_not_call"}
            continue
        assert block.until > now and block.until.utcoffset() == timedelta(0)
        later = decide(the_case, history, block.until, campaign)
        assert (block.rule, block.phone_id) not in rules_of(later)
    if any(block.until is None and block.phone_id is None for block in decision.blocks):
        assert decision.next_at is None


@settings(max_examples=300, deadline=None)
@given(ZONES.flatmap(lambda zone: st.tuples(st.just(zone), moments(zone))))
def test_next_window_open_property(zone_and_now):
    zone, now = zone_and_now
    opens = next_window_open(now, zone)
    assert now < opens <= now + timedelta(days=3)
    assert in_window(opens, zone) and not in_window(opens - timedelta(seconds=1), zone)
    assert f"{opens.astimezone(ZoneInfo(zone)):%H:%M:%S}" == "08:00:00"
