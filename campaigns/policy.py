"""The dialling policy: may this case be dialled now, on which number, and if not, why not
and from when.

Pure functions of a case, its attempt history and `now` (an aware datetime the caller passes;
nothing here reads the clock). The engine builds the frozen views below from database rows, so
the client's rules can be tested to the second without a database, and every refusal carries
its reasons as `Block`s: a stable rule id, a sentence with the debtor's local times, and the
moment the block lifts by itself.

Time: every rule reads the debtor's wall clock (the case's time zone, else the campaign's, else
`Rules.default_timezone`), and "today" is the debtor's local calendar day. Moments returned
(`Block.until`, `Decision.next_at`, `next_window_open`) are aware UTC. A wall time that a DST
change skips (02:30 on the spring-forward day in New York) happens when the clock jumps past
it; a wall time that a DST change repeats happens at each of its occurrences.

Rules come in presets (`campaigns/presets/*.toml`, read by `campaigns.presets.load_preset`);
`Rules()` is the client's base rule set (no contacts, no tracing, no hardship rule), which the
`client` preset extends. Every rule has a stable id (`RULE_IDS`). The only exception
to the rules is an appointment the debtor asked for (`AppointmentView`): within a few minutes of
it the rules its preset names (`Rules.appointment_lifts`, at most the calling window and the
time-of-day rules, never a status, a do-not-call number or a cap the preset keeps) are lifted
for one dial, and the `Decision` says it is an appointment so that the engine records it so.
"""
from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from .enums import CaseStatus, PhoneRole
from .workdays import WEEKENDS_ONLY, WorkCalendar, add_working_days

SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
#: How many local days ahead `next_window_open` looks. A week is far more than the window
#: needs; it also covers a zone that skips a whole calendar day (Pacific/Apia, 2011-12-30).
SEARCH_DAYS = 8
#: How far ahead `Decision.next_at` looks before it says that nothing will allow a dial.
HORIZON = timedelta(days=400)

#: Every rule, by its stable id: what it says. Case rules block the whole case; number rules
#: one number (their `Block.phone_id` is set).
RULE_IDS = {
    "case_status": "a stop or pause status (client stop, complaint, dispute, fraud claim, deceased, ...)",
    "appointments_only": "a status that allows no dialling except appointments the debtor asked for (hardship)",
    "tracing_interval": "a lost-contact case is traced once every N working days",
    "calling_window": "the calling window, on the debtor's local clock",
    "connected_today": "effective calls per debtor per local day",
    "rolling_cap": "calls per case in any rolling period (US: 7 in 7 x 24 h)",
    "after_conversation": "no call for N days after a conversation with the debtor (US: 7)",
    "no_dialable_number": "no number of the case may ever be dialled as things stand",
    "invalid_number": "the number is invalid",
    "do_not_call": "the number is not to be called (displeasure or complaint intent on a call)",
    "contact_not_yet": "a third party (contact) only after N consecutive failures or every debtor number invalid",
    "number_daily_cap": "attempts per number per local day",
    "slot_used": "one try per number per part of the day (morning, noon, evening)",
    "retry_after_20": "a number unanswered today is retried only before 20:00",
    "contact_rest": "a contact spoken to is not called again for N days",
}
#: What an appointment the debtor asked for may lift: the rules about the time of day and the
#: schedule. A status, an invalid or do-not-call number and the third-party rule never lift.
LIFTABLE = frozenset({"calling_window", "slot_used", "retry_after_20", "appointments_only", "tracing_interval",
                      "connected_today", "rolling_cap", "after_conversation", "number_daily_cap"})
#: Who may have asked for an appointment: only those in `Rules.appointment_requested_by` count.
REQUESTERS = frozenset({"debtor", "third_party", "agent"})


class Slot(NamedTuple):
    """A part of the calling day in which a number may be tried once: [start, end) local."""

    start: time
    end: time
    name: str


@dataclass(frozen=True)
class PhoneView:
    id: int
    role: PhoneRole
    dial: str
    valid: bool = True
    do_not_call: bool = False
    #: The last conversation on this number, however long ago (the attempts passed to
    #: `decide` cover only `Rules.history_needed`); used by the contact_rest rule.
    last_conversation_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", PhoneRole(self.role))  # rows hold the enum's value
        _require_aware(self.last_conversation_at, f"phone {self.id}: last_conversation_at")

    @property
    def label(self) -> str:
        """'own mobile 13800138000 (phone 3)': how messages name a number."""
        return f"{_role_name(self.role)} {self.dial} (phone {self.id})"


@dataclass(frozen=True)
class AttemptView:
    """One dial of one of the case's numbers; `at` is when it was planned or dialled.

    conversation: an effective call (有效通话): the agent spoke with the person the number
    belongs to (the debtor on the debtor's numbers, the contact on a contact's); None when not
    known, which counts as `answered`. appointment: the dial kept an appointment the debtor
    asked for (`Decision.appointment`)."""

    phone_id: int
    at: datetime
    answered: bool
    conversation: bool | None = None
    appointment: bool = False

    def __post_init__(self) -> None:
        _require_aware(self.at, f"attempt on phone {self.phone_id}: at")
        if self.conversation and not self.answered:
            raise ValueError(f"attempt on phone {self.phone_id} at {self.at}: a conversation needs an answered call")

    @property
    def talked(self) -> bool:
        """Whether this was an effective call (a conversation)."""
        return self.answered if self.conversation is None else self.conversation


@dataclass(frozen=True)
class AppointmentView:
    """A time agreed on a call for the next one (与客户约定, 明天下午再打).

    by: who asked for it: "debtor", "third_party" or "agent"; only the requesters the rules
    name (the debtor, by default) make it an exception to the calling window. note: the
    debtor's words or the agent's note, recorded as the evidence. phone_id: the number to
    call (None: the case's first number the rules allow)."""

    at: datetime
    by: str
    note: str
    phone_id: int | None = None

    def __post_init__(self) -> None:
        _require_aware(self.at, "appointment: at")
        if self.by not in REQUESTERS:
            raise ValueError(f"appointment at {self.at}: by must be one of {', '.join(sorted(REQUESTERS))}, got {self.by!r}")
        if not self.note.strip():
            raise ValueError(f"appointment at {self.at}: note is empty; record the debtor's words or the agent's note")


@dataclass(frozen=True)
class PromiseView:
    """A promise to pay (promises_to_pay row): status open, kept or broken."""

    due_date: date
    amount: Decimal
    status: str = "open"

    def __post_init__(self) -> None:
        if self.status not in ("open", "kept", "broken"):
            raise ValueError(f"promise due {self.due_date}: status must be open, kept or broken, got {self.status!r}")


@dataclass(frozen=True)
class CaseView:
    id: int
    status: CaseStatus
    amount_due: Decimal
    days_past_due: int
    phones: tuple[PhoneView, ...]
    timezone: str | None = None  # the debtor's, when known; overrides the campaign's
    urgent: bool = False         # 紧急案件: follow up the same day, then within 1–3 working days
    evening: bool = False        # 夜间催收: follow up in the evening slot
    due_date: date | None = None  # the instalment's due date, for the reminders before it
    assigned_at: datetime | None = None  # when the case entered the queue (new-case deadlines)
    #: The last conversation with the debtor, however long ago (an inbound call, or one older
    #: than the history passed): used by the after_conversation and contact rules.
    last_conversation_at: datetime | None = None
    appointments: tuple[AppointmentView, ...] = ()
    promises: tuple[PromiseView, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", CaseStatus(self.status))
        for name in ("phones", "appointments", "promises"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("assigned_at", "last_conversation_at"):
            _require_aware(getattr(self, name), f"case {self.id}: {name}")


CLIENT_SLOTS = (
    Slot(time(8), time(12), "morning"),
    Slot(time(12), time(17), "noon"),
    Slot(time(17), time(21), "evening"),
)
CLIENT_BLOCKING_STATUSES = frozenset({
    CaseStatus.CLIENT_STOP, CaseStatus.COMPLAINT, CaseStatus.DISPUTE, CaseStatus.FRAUD_CLAIM,
    CaseStatus.DECEASED, CaseStatus.IMPRISONED, CaseStatus.PAID, CaseStatus.CLOSED,
})
#: What a stop or pause status means, as `case_status` blocks say it.
STATUS_REASONS = {
    CaseStatus.CLIENT_STOP: "the client stopped collection (停催); nothing may be done until the client lifts it",
    CaseStatus.COMPLAINT: "the debtor complained; the case waits for a supervisor's review",
    CaseStatus.DISPUTE: "collection is paused until the disputed debt is verified (a supervisor)",
    CaseStatus.FRAUD_CLAIM: "collection is paused until the fraud claim is verified (a supervisor)",
    CaseStatus.DECEASED: "the case leaves the queue (deceased)",
    CaseStatus.IMPRISONED: "the case leaves the queue (imprisoned)",
    CaseStatus.PAID: "the debt is paid",
    CaseStatus.CLOSED: "the case is closed",
}
THIRD_PARTY_NOTE = ("a relative or colleague: ask only how to reach the debtor and leave a call-back number; "
                    "never mention the debt, the amount or the bank")
#: What a campaign with `amd = message` leaves on an answering machine: anyone may hear it, so
#: it names no debt, no amount, no bank and no collector, only a call-back number (the US Reg F
#: "limited-content message", 12 CFR 1006.2(j), is of this kind).
AMD_MESSAGE = "您好，我们有一件重要的事情需要与您本人联系，请您回电四零零八零零一二三四。谢谢。"


@dataclass(frozen=True)
class FollowUpRules:
    """The follow-up schedules (campaigns/follow_up.py); the defaults are the client's."""

    first_call_days: int = 2            # a new case is called within 2 days of its assignment
    coverage_working_days: int = 3      # ... and the whole queue within 3 working days after that day
    urgent_within_working_days: int = 3  # an urgent case: again the next working day, at the latest in 3
    tracing_deadline_working_days: int = 7  # lost contact: due after tracing_interval, at the latest in 7
    broken_promises: int = 2            # this many broken promises ...
    broken_promise_calls_per_week: int = 3  # ... call at least this often a week
    promise_days_before: int = 1        # an open promise: call the day before its due date
    reminder_days_before: tuple[int, ...] = (3, 1)  # the instalment's due date: remind 3 and 1 days before
    evening_start: time = time(17)      # the evening follow-up (夜间催收) starts then
    active_every_days: int = 1          # any other collectable case: once a day

    def __post_init__(self) -> None:
        object.__setattr__(self, "reminder_days_before", tuple(sorted(set(self.reminder_days_before), reverse=True)))
        for name in ("first_call_days", "coverage_working_days", "urgent_within_working_days",
                     "tracing_deadline_working_days", "broken_promises", "broken_promise_calls_per_week",
                     "active_every_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"follow_up.{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.broken_promise_calls_per_week <= 7:
            raise ValueError("follow_up.broken_promise_calls_per_week must be 1 to 7 (a call a day at most)")
        if self.promise_days_before < 0 or any(days < 1 for days in self.reminder_days_before):
            raise ValueError("follow_up.promise_days_before must be at least 0 and each reminder day at least 1")


@dataclass(frozen=True)
class Rules:
    """The dialling rules. The defaults are the client's base rules; the presets
    (`campaigns.presets.load_preset`) set them all. The slots, when given, must cover the
    calling window exactly, in order (a window across midnight is not supported)."""

    window_start: time = time(8)
    window_end: time = time(21)  # exclusive: 20:59:59 is inside, 21:00:00 is not
    default_timezone: str = "Asia/Shanghai"
    slots: tuple[Slot, ...] = CLIENT_SLOTS  # () for no one-try-per-slot rule
    retry_before: time | None = time(20)  # a number unanswered today is retried only before this; None: no rule
    max_attempts_per_number_per_day: int = 3
    max_connected_per_case_per_day: int = 1  # effective calls (AttemptView.talked)
    blocking_statuses: frozenset[CaseStatus] = CLIENT_BLOCKING_STATUSES
    dial_roles: tuple[PhoneRole, ...] = (PhoneRole.OWN_MOBILE, PhoneRole.HOME, PhoneRole.WORK)
    name: str = "default"
    description: str = ""
    appointments_only_statuses: frozenset[CaseStatus] = frozenset()
    tracing_statuses: frozenset[CaseStatus] = frozenset()
    tracing_interval_working_days: int = 6
    max_calls_per_period: int = 7
    period: timedelta = timedelta(0)  # the rolling cap's period; 0: no rolling cap
    quiet_after_conversation: timedelta = timedelta(0)  # 0: none
    dial_contacts: bool = False
    contacts_after_failures: int = 3
    contact_rest: timedelta = timedelta(0)
    third_party_note: str = THIRD_PARTY_NOTE
    amd_message: str = AMD_MESSAGE
    amd_voice: str = "cmn"  # espeak-ng's voice for the message (`espeak-ng --voices`)
    appointment_tolerance: timedelta = timedelta(minutes=5)  # either side of the appointment
    appointment_requested_by: frozenset[str] = frozenset({"debtor"})
    appointment_lifts: frozenset[str] = frozenset({"calling_window", "slot_used", "retry_after_20",
                                                   "appointments_only", "tracing_interval"})
    appointment_calls_counted: bool = True  # do appointment dials count in the rolling cap?
    calendar: WorkCalendar = WEEKENDS_ONLY
    follow_up: FollowUpRules = FollowUpRules()

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", tuple(Slot(*slot) for slot in self.slots))
        for name in ("blocking_statuses", "appointments_only_statuses", "tracing_statuses"):
            object.__setattr__(self, name, frozenset(map(CaseStatus, getattr(self, name))))
        object.__setattr__(self, "dial_roles", tuple(map(PhoneRole, self.dial_roles)))
        object.__setattr__(self, "appointment_requested_by", frozenset(self.appointment_requested_by))
        object.__setattr__(self, "appointment_lifts", frozenset(self.appointment_lifts))
        ZoneInfo(self.default_timezone)  # an unknown zone fails here, not at the first dial
        if not self.dial_roles:
            raise ValueError("dial_roles is empty: no number would ever be dialled")
        if PhoneRole.CONTACT in self.dial_roles:
            raise ValueError("dial_roles names the debtor's own numbers; contacts are dialled with dial_contacts")
        if not self.window_start < self.window_end:
            raise ValueError(f"the calling window {_span(self.window_start, self.window_end)} must "
                             "start before it ends (a window across midnight is not supported)")
        edges = [self.window_start, *(slot.end for slot in self.slots)]
        if self.slots and ([slot.start for slot in self.slots] != edges[:-1] or edges[-1] != self.window_end
                           or any(slot.start >= slot.end for slot in self.slots)):
            slots = ", ".join(f"{slot.name} {_span(slot.start, slot.end)}" for slot in self.slots)
            raise ValueError(f"the slots ({slots}) must cover the calling window "
                             f"{_span(self.window_start, self.window_end)} exactly, in order, "
                             "without gaps or overlaps")
        self._check_numbers()

    def _check_numbers(self) -> None:
        for name in ("max_attempts_per_number_per_day", "max_connected_per_case_per_day", "max_calls_per_period",
                     "tracing_interval_working_days", "contacts_after_failures"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("period", "quiet_after_conversation", "contact_rest"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not timedelta(0) < self.appointment_tolerance <= timedelta(hours=1):
            raise ValueError(f"appointment_tolerance must be more than 0 and at most an hour, got {self.appointment_tolerance}")
        if not self.appointment_requested_by <= REQUESTERS:
            raise ValueError(f"appointment_requested_by: each must be one of {', '.join(sorted(REQUESTERS))}, "
                             f"got {', '.join(sorted(self.appointment_requested_by))}")
        if not self.appointment_lifts <= LIFTABLE:
            wrong = ", ".join(sorted(self.appointment_lifts - LIFTABLE))
            raise ValueError(f"appointment_lifts: an appointment cannot lift {wrong} "
                             f"(it may lift {', '.join(sorted(LIFTABLE))})")
        groups = [("blocking_statuses", self.blocking_statuses), ("tracing_statuses", self.tracing_statuses),
                  ("appointments_only_statuses", self.appointments_only_statuses)]
        for index, (one, first) in enumerate(groups):
            for other, second in groups[index + 1:]:
                if first & second:
                    both = ", ".join(sorted(status.value for status in first & second))
                    raise ValueError(f"{both} is in both {one} and {other}")
        if not self.window_start <= self.follow_up.evening_start < self.window_end:
            raise ValueError(f"follow_up.evening_start {_hm(self.follow_up.evening_start)} must be inside the "
                             f"calling window {_span(self.window_start, self.window_end)}")

    @property
    def history_needed(self) -> timedelta:
        """How much attempt history `decide` must be given: today's (a local day is at most 26 h
        and starts at most 14 h from UTC), the rolling period, the quiet period, and for tracing
        and the contact rule a month (longer facts come in `last_conversation_at`)."""
        spans = [timedelta(hours=36), self.period + DAY, self.quiet_after_conversation + DAY]
        if self.tracing_statuses or self.dial_contacts:
            spans.append(timedelta(days=31))
        return max(spans)


RULES = Rules()


@dataclass(frozen=True)
class Block:
    """One reason a dial is not allowed. `rule` is a stable id (`RULE_IDS`); `until` (aware
    UTC) is when this block lifts by itself, None when it does not; `phone_id` is None for the
    whole case. A block holds from the moment decided until `until` with the same history."""

    rule: str
    message: str
    until: datetime | None
    phone_id: int | None = None


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one case (or one of its numbers) at one moment.

    allowed: a dial may start now, on `phone`. blocks: when refused, why (the case's blocks, or
    each number's); when allowed, why the numbers before `phone` in dial order were skipped.
    next_at: when refused, the earliest moment (aware UTC, after the moment decided) at which
    the same history allows a dial, None when nothing will change by itself (or when allowed).
    case_id, at: the case and the moment decided, in the debtor's local time.
    appointment: the appointment this dial keeps (record the attempt as an appointment call).
    third_party: `phone` is a contact's: the agent must not disclose the debt.
    instructions: what the agent's screen must say about this dial (appointment, third party).
    number: set when the question was about one number (`decide(..., phone_id=)`).
    """

    allowed: bool
    phone: PhoneView | None
    blocks: tuple[Block, ...]
    next_at: datetime | None
    case_id: int
    at: datetime
    appointment: AppointmentView | None = None
    third_party: bool = False
    instructions: tuple[str, ...] = ()
    number: PhoneView | None = None

    def explain(self) -> str:
        zone = self.at.tzinfo
        where = f"{self.at:%Y-%m-%d %H:%M:%S %Z}, {getattr(zone, 'key', zone)}"
        subject = f"case {self.case_id}" + (f", {self.number.label}," if self.number else "")
        notes = [f"  {line}" for line in self.instructions]
        if self.allowed:
            on = "" if self.number else f" on {self.phone.label}"
            head = f"{subject} may be dialled now ({where}){on}"
            return "\n".join([head, *notes, *(f"  skipped, {b.rule}: {b.message}" for b in self.blocks)])
        after = (f"next possible at {_stamp(self.next_at, zone)}" if self.next_at
                 else "nothing will allow a dial by itself")
        head = f"{subject} may not be dialled now ({where}); {after}"
        return "\n".join([head, *(f"  - {b.rule}: {b.message}" for b in self.blocks)])


# ---------------------------------------------------------------- the debtor's clock

def local_now(now: datetime, tz: str | tzinfo) -> datetime:
    """`now` on the wall clock of `tz` (a zone name or a tzinfo)."""
    _require_aware(now, "now")
    return now.astimezone(ZoneInfo(tz) if isinstance(tz, str) else tz)


def in_window(now: datetime, tz: str | tzinfo, rules: Rules = RULES) -> bool:
    """Whether the local time in `tz` is in [window_start, window_end)."""
    return rules.window_start <= local_now(now, tz).time() < rules.window_end


def next_window_open(now: datetime, tz: str | tzinfo, rules: Rules = RULES) -> datetime:
    """The next moment after `now` at which the calling window opens (aware UTC): today's
    opening if `now` is before it, else the next day's (also when `now` is inside the window).
    Found on the wall clock, so a DST change moves it in UTC; an opening time skipped by a DST
    gap opens when the clock jumps past it."""
    zone = local_now(now, tz).tzinfo
    opening = next((moment for moment in _moments(now, zone, [rules.window_start])
                    if in_window(moment, zone, rules) and not in_window(moment - SECOND, zone, rules)), None)
    if opening is None:
        raise ValueError(f"the calling window never opens in {zone} in the {SEARCH_DAYS} days after {now}")
    return opening


def slot_of(local_time: time, rules: Rules = RULES) -> Slot | None:
    """The slot a local wall time falls in, None outside the calling window."""
    return next((slot for slot in rules.slots if slot.start <= local_time < slot.end), None)


def _require_aware(moment: datetime | None, what: str) -> None:
    if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
        raise ValueError(f"{what} must be an aware datetime, got the naive {moment!r}")


def after(moment: datetime, span: timedelta) -> datetime:
    """`moment` plus `span` of real time, in UTC. (An aware datetime in a zone with DST adds
    wall time: 01 March 10:00 EST + 7 days is 08 March 10:00 EDT, 23 hours short of a week.)"""
    return moment.astimezone(UTC) + span


def _wall(moment: datetime, zone: tzinfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


@lru_cache(maxsize=16384)
def _occurrences(day: date, at: time, zone: tzinfo) -> tuple[datetime, ...]:
    """The UTC instants at which the wall clock of `zone` reads `day` `at`: one; two when a DST
    change sets the clock back over it; or, when a DST gap skips it, the instant of the jump."""
    wall = datetime.combine(day, at)
    candidates = sorted({wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)})
    real = tuple(moment for moment in candidates if _wall(moment, zone) == wall)
    return real or (_jump_past(wall, zone, candidates[0], candidates[-1]),)


def _jump_past(wall: datetime, zone: tzinfo, before: datetime, after: datetime) -> datetime:
    """The first whole second at which the clock reads later than the skipped `wall`, between
    an instant when it read earlier (`before`) and one when it read later (`after`)."""
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def wall_instant(day: date, at: time, tz: str | tzinfo) -> datetime:
    """The first instant (UTC) at which the wall clock of `tz` reads `day` `at` (or jumps past it)."""
    return _occurrences(day, at, ZoneInfo(tz) if isinstance(tz, str) else tz)[0]


def _moments(now: datetime, zone: tzinfo, times: Iterable[time]) -> Iterator[datetime]:
    """In order, every instant after `now` in the next SEARCH_DAYS local days at which the wall
    clock reads one of `times`. Days are computed as they are needed; an instant is given out
    once the next day's are known to come after it (a clock set back over midnight)."""
    today, times = local_now(now, zone).date(), tuple(times)
    waiting: list[datetime] = []
    for offset in range(SEARCH_DAYS + 1):
        day = [moment for at in times for moment in _occurrences(today + offset * DAY, at, zone)]
        while waiting and waiting[0] < min(day):
            yield heapq.heappop(waiting)
        for moment in day:
            if moment > now:
                heapq.heappush(waiting, moment)
    while waiting:
        yield heapq.heappop(waiting)


# ---------------------------------------------------------------- the rules

@dataclass(frozen=True)
class _Today:
    """What the rules look at: the case, its numbers in dial order, the debtor's clock at `now`,
    the case's whole history and this local day's attempts (their `at` on the debtor's clock,
    oldest first: `_on_clock`)."""

    case: CaseView
    numbers: tuple[PhoneView, ...]
    now: datetime
    zone: tzinfo
    local: datetime
    history: tuple[AttemptView, ...]
    attempts: tuple[AttemptView, ...]

    @classmethod
    def at(cls, case: CaseView, now: datetime, zone: tzinfo, history: tuple[AttemptView, ...],
           rules: Rules) -> _Today:
        local = local_now(now, zone)
        return cls(case, dial_order(case.phones, rules), now.astimezone(UTC), zone, local, history,
                   tuple(attempt for attempt in history if attempt.at.date() == local.date()))

    @cached_property
    def tomorrow(self) -> datetime:
        """When the next local day begins (UTC)."""
        return wall_instant(self.local.date() + DAY, time(0), self.zone)

    def of(self, phone: PhoneView) -> list[AttemptView]:
        return [attempt for attempt in self.attempts if attempt.phone_id == phone.id]

    @cached_property
    def debtor_ids(self) -> frozenset[int]:
        """The debtor's own numbers (every role but contact)."""
        return frozenset(phone.id for phone in self.case.phones if phone.role is not PhoneRole.CONTACT)

    @cached_property
    def last_conversation(self) -> datetime | None:
        """The last conversation with the debtor: on one of the debtor's numbers, or the case's
        `last_conversation_at`."""
        talks = [attempt.at for attempt in self.history if attempt.phone_id in self.debtor_ids and attempt.talked]
        return max([*talks, *filter(None, [self.case.last_conversation_at])], default=None)

    @cached_property
    def failures(self) -> list[AttemptView]:
        """The dials of the debtor's numbers since the last conversation with the debtor: each
        one a failure to reach the debtor, in a row."""
        since = self.last_conversation
        return [attempt for attempt in self.history
                if attempt.phone_id in self.debtor_ids and (since is None or attempt.at > since)]

    def stamp(self, moment: datetime) -> str:
        return _stamp(moment, self.zone)


def _status_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    if case.status not in rules.blocking_statuses:
        return None
    reason = STATUS_REASONS.get(case.status, "it stops all dialling")
    return Block("case_status", f"the case status is '{case.status.value}': {reason}; no dialling until the "
                 "status changes", None)


def _appointments_only_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    if case.status not in rules.appointments_only_statuses:
        return None
    return Block("appointments_only", f"the case status is '{case.status.value}': no dialling except at an "
                 "appointment the debtor asked for", None)


def _tracing_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    earlier = [attempt.at.date() for attempt in today.history if attempt.at.date() < today.local.date()]
    if case.status not in rules.tracing_statuses or not earlier:
        return None
    last, every = max(earlier), rules.tracing_interval_working_days
    due = add_working_days(last, every, rules.calendar)
    if today.local.date() >= due:
        return None
    return Block("tracing_interval", f"a '{case.status.value}' case is traced once every {every} working days: "
                 f"last on {last:%Y-%m-%d}, next on {due:%Y-%m-%d} ({due:%A})", wall_instant(due, time(0), today.zone))


def _window_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    if in_window(today.now, today.zone, rules):
        return None
    opens = next_window_open(today.now, today.zone, rules)
    return Block("calling_window", f"it is {today.local:%H:%M:%S} for the debtor and the calling window "
                 f"{_span(rules.window_start, rules.window_end)} is closed; it opens at "
                 f"{_stamp(opens, today.zone)}", opens)


def _connected_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    # An effective call on any of the case's numbers counts as the debtor reached.
    reached = [attempt for attempt in today.attempts if attempt.talked]
    limit = rules.max_connected_per_case_per_day
    if len(reached) < limit:
        return None
    return Block("connected_today", f"the debtor was reached {_times(reached)} today{_at_times(reached)} "
                 f"and the limit is {limit} a day; no more calls today", today.tomorrow)


def _rolling_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    if not rules.period:
        return None
    counted = [attempt for attempt in today.history if today.now - rules.period < attempt.at <= today.now
               and (rules.appointment_calls_counted or not attempt.appointment)]
    limit = rules.max_calls_per_period
    if len(counted) < limit:
        return None
    until = after(counted[len(counted) - limit].at, rules.period)
    also = "" if rules.appointment_calls_counted else " (appointment calls not counted)"
    return Block("rolling_cap", f"{len(counted)} calls in the last {_period(rules.period)}{also}, the first at "
                 f"{today.stamp(counted[0].at)}, and the limit is {limit} in any {_period(rules.period)}; "
                 f"the count falls below it at {today.stamp(until)}", until)


def _conversation_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    last = today.last_conversation
    if not rules.quiet_after_conversation or last is None or today.now >= after(last, rules.quiet_after_conversation):
        return None
    until = after(last, rules.quiet_after_conversation)
    return Block("after_conversation", f"the debtor was spoken to at {today.stamp(last)}; no call for "
                 f"{_period(rules.quiet_after_conversation)} after a conversation, so not before "
                 f"{today.stamp(until)}", until)


def _no_number_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    numbers = today.numbers
    if any(not _unusable(phone, today, rules) for phone in numbers):
        return None
    reasons = [block.message for phone in numbers for block in _unusable(phone, today, rules)]
    others = [phone for phone in case.phones if phone not in numbers]
    also = (f"; {len(others)} other number{'s are' if len(others) > 1 else ' is'} not dialled "
            f"({_either(phone.role for phone in others)})") if others else ""
    roles = [*rules.dial_roles, *([PhoneRole.CONTACT] if rules.dial_contacts else [])]
    return Block("no_dialable_number", f"no {_either(roles)} number may be dialled: "
                 f"{'; '.join(reasons) or 'the case has none'}{also}", None)


def _not_dialled_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    if phone in today.numbers:
        return None
    return Block("no_dialable_number", f"{phone.label}: these rules do not dial {_role_name(phone.role)} "
                 "numbers", None, phone.id)


def _invalid_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    return None if phone.valid else Block("invalid_number", f"{phone.label} is marked invalid", None, phone.id)


def _do_not_call_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    if not phone.do_not_call:
        return None
    return Block("do_not_call", f"{phone.label} is marked do-not-call", None, phone.id)


def _contact_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    if phone.role is not PhoneRole.CONTACT or not rules.dial_contacts:
        return None
    own = [number for number in today.case.phones if number.id in today.debtor_ids]
    failed, needed = today.failures, rules.contacts_after_failures
    if len(failed) >= needed or all(not number.valid for number in own):
        return None
    return Block("contact_not_yet", f"{phone.label} is a third party: contacts are called only after {needed} "
                 f"failures in a row to reach the debtor ({len(failed)} so far) or when every debtor number is "
                 "invalid", None, phone.id)


def _daily_cap_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    tracing = today.case.status in rules.tracing_statuses
    dialled, limit = today.of(phone), 1 if tracing else rules.max_attempts_per_number_per_day
    if len(dialled) < limit:
        return None
    kind = f" for a '{today.case.status.value}' case" if tracing else ""
    return Block("number_daily_cap", f"{phone.label} was dialled {_times(dialled)} today{_at_times(dialled)} "
                 f"and the limit is {limit} a day{kind}; it may be dialled again tomorrow", today.tomorrow, phone.id)


def _slot_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    slot = slot_of(today.local.time(), rules)
    used = [attempt for attempt in today.of(phone) if slot is not None and slot_of(attempt.at.time(), rules) == slot]
    if not used:
        return None
    return Block("slot_used", f"{phone.label} was already dialled in the {slot.name} slot "
                 f"{_span(slot.start, slot.end)}{_at_times(used)}; one try per slot, and this slot ends "
                 f"at {_hm(slot.end)}", wall_instant(today.local.date(), slot.end, today.zone), phone.id)


def _retry_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    missed = [attempt for attempt in today.of(phone) if not attempt.answered]
    if not missed or rules.retry_before is None or today.local.time() < rules.retry_before:
        return None
    return Block("retry_after_20", f"{phone.label} went unanswered today{_at_times(missed)}; a retry must "
                 f"start before {_hm(rules.retry_before)} and it is {today.local:%H:%M:%S}; it may be "
                 "dialled again tomorrow", today.tomorrow, phone.id)


def _contact_rest_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    talks = [attempt.at for attempt in today.history if attempt.phone_id == phone.id and attempt.talked]
    last = max([*talks, *filter(None, [phone.last_conversation_at])], default=None)
    if phone.role is not PhoneRole.CONTACT or last is None or today.now >= after(last, rules.contact_rest):
        return None
    until = after(last, rules.contact_rest)
    return Block("contact_rest", f"{phone.label}, a third party, was spoken to at {today.stamp(last)}; a contact is "
                 f"called at most once in {_period(rules.contact_rest)}, so not before {today.stamp(until)}",
                 until, phone.id)


_Check = Callable[[Any, _Today, Rules], Block | None]  # (a CaseView or a PhoneView, today, rules)
_CASE_CHECKS: tuple[_Check, ...] = (_status_block, _appointments_only_block, _tracing_block, _window_block,
                                    _connected_block, _rolling_block, _conversation_block)
_UNUSABLE_CHECKS: tuple[_Check, ...] = (_not_dialled_block, _invalid_block, _do_not_call_block, _contact_block)
_SPENT_CHECKS: tuple[_Check, ...] = (_daily_cap_block, _slot_block, _retry_block, _contact_rest_block)


def _blocks(checks: tuple[_Check, ...], subject: Any, today: _Today, rules: Rules) -> tuple[Block, ...]:
    return tuple(block for check in checks if (block := check(subject, today, rules)) is not None)


def _unusable(phone: PhoneView, today: _Today, rules: Rules) -> tuple[Block, ...]:
    return _blocks(_UNUSABLE_CHECKS, phone, today, rules)


def dial_order(phones: Iterable[PhoneView], rules: Rules = RULES) -> tuple[PhoneView, ...]:
    """The numbers the rules dial, in order: by role as in `rules.dial_roles` (own mobile, home,
    work), then by phone id; then, when the rules dial contacts, the contacts by id."""
    rank = {role: index for index, role in enumerate(rules.dial_roles)}
    if rules.dial_contacts:
        rank[PhoneRole.CONTACT] = len(rank)
    return tuple(sorted((phone for phone in phones if phone.role in rank), key=lambda p: (rank[p.role], p.id)))


@dataclass(frozen=True)
class _Outcome:
    """What the rules make of one moment: the number to dial (None: none) and the blocks met.
    `appointment`: the appointment the dial keeps. `missed`: an appointment was open but could
    not be kept: the blocks met on its way, and when it closes."""

    phone: PhoneView | None
    blocks: tuple[Block, ...]
    appointment: AppointmentView | None = None
    missed: tuple[tuple[Block, ...], datetime] | None = None


def _open_appointment(today: _Today, rules: Rules) -> AppointmentView | None:
    """An appointment someone the rules trust asked for, open now, and not yet kept (the case
    has no dial within its tolerance)."""
    margin = rules.appointment_tolerance
    return next((appointment for appointment in sorted(today.case.appointments, key=lambda a: a.at)
                 if appointment.by in rules.appointment_requested_by
                 and after(appointment.at, -margin) <= today.now < after(appointment.at, margin)
                 and not any(after(appointment.at, -margin) <= attempt.at < after(appointment.at, margin)
                             for attempt in today.history)), None)


def _pick(today: _Today, rules: Rules, numbers: tuple[PhoneView, ...], lifted: frozenset[str],
          single: bool) -> _Outcome:
    """The first of `numbers` that no block stops (blocks of the `lifted` rules ignored). For
    all the case's numbers, the case's blocks, if any, are the answer (the numbers are then not
    looked at); for a single number, its blocks come with the case's."""
    checks = _CASE_CHECKS if single else (*_CASE_CHECKS, _no_number_block)
    case_blocks = tuple(block for block in _blocks(checks, today.case, today, rules) if block.rule not in lifted)
    if case_blocks and not single:
        return _Outcome(None, case_blocks)
    skipped: tuple[Block, ...] = ()
    for phone in numbers:
        blocks = _unusable(phone, today, rules) or _blocks(_SPENT_CHECKS, phone, today, rules)
        blocks = tuple(block for block in blocks if block.rule not in lifted)
        if not blocks and not case_blocks:
            return _Outcome(phone, skipped)
        skipped += blocks
    return _Outcome(None, case_blocks + skipped)


def _assess(case: CaseView, attempts: tuple[AttemptView, ...], now: datetime, zone: tzinfo, rules: Rules,
            number: PhoneView | None) -> _Outcome:
    """The number to dial at `now` (one of the case's, or `number` only) and the blocks met;
    `attempts` as `_on_clock` gives them. An open appointment is tried first, with the rules it
    lifts set aside, on its own number."""
    today = _Today.at(case, now, zone, attempts, rules)
    numbers = (number,) if number is not None else today.numbers
    appointment = _open_appointment(today, rules)
    if appointment is None:
        return _pick(today, rules, numbers, frozenset(), number is not None)
    own = tuple(phone for phone in numbers if appointment.phone_id in (None, phone.id))
    kept = _pick(today, rules, own, rules.appointment_lifts, number is not None)
    if kept.phone is not None:
        return replace(kept, appointment=appointment)
    plain = _pick(today, rules, numbers, frozenset(), number is not None)
    return plain if plain.phone is not None else replace(
        plain, missed=(kept.blocks, after(appointment.at, rules.appointment_tolerance)))


def _earliest(blocks: tuple[Block, ...]) -> datetime | None:
    """The earliest moment these blocks can all be gone from a refusal: every block of the case
    and every block of at least one number has to lift (each holds until its `until`). None:
    some must stay."""
    if any(block.until is None and block.phone_id is None for block in blocks):
        return None
    per_number: dict[int, list[datetime | None]] = {}
    for block in blocks:
        if block.phone_id is not None:
            per_number.setdefault(block.phone_id, []).append(block.until)
    numbers = [max(untils) for untils in per_number.values() if None not in untils]
    if per_number and not numbers:
        return None
    bounds = [block.until for block in blocks if block.phone_id is None] + [min(numbers, default=None)]
    return max(filter(None, bounds), default=None)


def find_number(case: CaseView, number: int | str) -> PhoneView:
    """One of the case's phones: by phone id (an int), or by its number written any way
    ('138 0013 8000', '+86-138…', '0755-8888 8888')."""
    if isinstance(number, int):
        found = [phone for phone in case.phones if phone.id == number]
    else:
        wanted = re.sub(r"\D", "", number).lstrip("0")
        found = [phone for phone in case.phones if _same_number(wanted, re.sub(r"\D", "", phone.dial).lstrip("0"))]
    if not found:
        known = ", ".join(phone.label for phone in case.phones) or "none"
        raise ValueError(f"case {case.id} has no number {number!r} (its numbers: {known})")
    return found[0]


def _same_number(one: str, other: str) -> bool:
    shorter, longer = sorted((one, other), key=len)
    return len(shorter) >= 7 and longer.endswith(shorter) and len(longer) - len(shorter) <= 3


def decide(case: CaseView, attempts: Iterable[AttemptView], now: datetime, campaign_tz: str | None = None,
           rules: Rules = RULES, *, phone_id: int | None = None) -> Decision:
    """May `case` be dialled at `now`, and on which number? `attempts` is the case's history up
    to `now` (all its numbers; `rules.history_needed` of it). The debtor's zone is
    `case.timezone`, else `campaign_tz`, else `rules.default_timezone`. With `phone_id`, the
    question is about that number only."""
    zone = ZoneInfo(case.timezone or campaign_tz or rules.default_timezone)
    history = _on_clock(attempts, zone)
    number = None if phone_id is None else find_number(case, phone_id)
    outcome = _assess(case, history, now, zone, rules, number)
    local = local_now(now, zone)
    if outcome.phone is None:
        return Decision(False, None, outcome.blocks, _next_allowed(case, history, now, zone, rules, number, outcome),
                        case.id, local, number=number)
    third_party = outcome.phone.role is PhoneRole.CONTACT
    return Decision(True, outcome.phone, outcome.blocks, None, case.id, local, outcome.appointment, third_party,
                    _instructions(outcome, third_party, zone, rules), number)


def _on_clock(attempts: Iterable[AttemptView], zone: tzinfo) -> tuple[AttemptView, ...]:
    """The attempts, oldest first, each `at` on the debtor's clock."""
    return tuple(sorted((replace(attempt, at=attempt.at.astimezone(zone)) for attempt in attempts),
                        key=lambda attempt: attempt.at))


def _instructions(outcome: _Outcome, third_party: bool, zone: tzinfo, rules: Rules) -> tuple[str, ...]:
    lines = []
    if outcome.appointment is not None:
        kept = outcome.appointment
        lines.append(f"appointment: the {kept.by.replace('_', ' ')} asked to be called at {_stamp(kept.at, zone)} "
                     f"({kept.note!r}); record this dial as an appointment call")
    if third_party:
        lines.append(f"third party: {outcome.phone.label} is not the debtor: {rules.third_party_note}")
    return tuple(lines)


def _next_allowed(case: CaseView, attempts: tuple[AttemptView, ...], now: datetime, zone: tzinfo, rules: Rules,
                  number: PhoneView | None, outcome: _Outcome) -> datetime | None:
    """The first moment after `now` at which the same history allows a dial. Every block holds
    until its `until`, so a refusal cannot end before `_earliest` of its blocks; only an
    appointment lifts blocks sooner, so the openings of appointments are tried as well."""
    margin = rules.appointment_tolerance
    openings = sorted(after(appointment.at, -margin) for appointment in case.appointments
                      if appointment.by in rules.appointment_requested_by)
    moment = now
    while moment <= after(now, HORIZON):
        candidates = [opening for opening in openings if opening > moment]
        candidates += filter(None, [_earliest(outcome.blocks)])
        if outcome.missed is not None:
            blocks, closes = outcome.missed
            candidates += [early for early in filter(None, [_earliest(blocks)]) if early < closes]
        if not candidates:
            return None
        moment = min(candidates)
        outcome = _assess(case, attempts, moment, zone, rules, number)
        if outcome.phone is not None:
            return moment
    return None


def why(case: CaseView, attempts: Iterable[AttemptView], now: datetime, campaign_tz: str | None = None,
        rules: Rules = RULES, *, number: int | str | None = None) -> str:
    """Whether `case` (or one of its numbers: a phone id or the number as written) may be
    dialled at `now`; if not, each rule that blocks it and when it next may; then the
    appointments still to come, and the rules in force."""
    phone = None if number is None else find_number(case, number)
    decision = decide(case, attempts, now, campaign_tz, rules, phone_id=None if phone is None else phone.id)
    zone, margin = decision.at.tzinfo, rules.appointment_tolerance
    lines = [decision.explain()]
    for appointment in sorted(case.appointments, key=lambda a: a.at):
        if after(appointment.at, margin) <= now or appointment == decision.appointment:
            continue
        head = (f"  appointment at {_stamp(appointment.at, zone)}, asked for by the "
                f"{appointment.by.replace('_', ' ')} ({appointment.note!r}): ")
        if appointment.by in rules.appointment_requested_by:
            lines.append(head + f"may be kept from {_stamp(after(appointment.at, -margin), zone)} to "
                         f"{_hm(after(appointment.at, margin).astimezone(zone).time())}, whatever the "
                         f"{', '.join(sorted(rules.appointment_lifts))} rules say")
        else:
            lines.append(head + f"the rules lift nothing for it (only for an appointment asked for by the "
                         f"{' or '.join(sorted(rules.appointment_requested_by))})")
    lines.append(f"  rules: {rules.name}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the queue

def priority_key(case: CaseView) -> tuple[Decimal, int, int]:
    """The queue's sort key: the largest amount due first, then the most days past due, then
    the lowest case id (the oldest case), so that the order is total and stable."""
    return (-case.amount_due, -case.days_past_due, case.id)


def order_cases(cases: Iterable[CaseView]) -> list[CaseView]:
    """The cases in the order the queue offers them (`priority_key`)."""
    return sorted(cases, key=priority_key)


# ---------------------------------------------------------------- wording

def _role_name(role: PhoneRole) -> str:
    return role.value.replace("_", " ")


def _either(roles: Iterable[PhoneRole]) -> str:
    """'own mobile, home or work'."""
    names = list(dict.fromkeys(_role_name(role) for role in roles))
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def _hm(at: time) -> str:
    return at.strftime("%H:%M:%S" if at.second else "%H:%M")


def _span(start: time, end: time) -> str:
    return f"{_hm(start)}–{_hm(end)}"


def _stamp(moment: datetime, zone: tzinfo) -> str:
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d} {_hm(local.time())} {local:%Z}"


def _times(attempts: list[AttemptView]) -> str:
    return "once" if len(attempts) == 1 else f"{len(attempts)} times"


def _at_times(attempts: list[AttemptView]) -> str:
    return f" (at {', '.join(_hm(attempt.at.time()) for attempt in attempts)})" if attempts else ""


def _period(span: timedelta) -> str:
    """'7 days', '36 h', '90 min'."""
    if span % DAY == timedelta(0):
        return f"{span.days} day{'s' if span.days != 1 else ''}"
    if span % timedelta(hours=1) == timedelta(0):
        return f"{span // timedelta(hours=1)} h"
    return f"{span // timedelta(minutes=1)} min"
