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
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from functools import cached_property
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from .models import CaseStatus, PhoneRole

SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
#: How many local days ahead `next_window_open` and `Decision.next_at` look. A week is far more
#: than the rules need (tomorrow's first slot resets every daily count); it also covers a zone
#: that skips a whole calendar day (Pacific/Apia, 2011-12-30).
SEARCH_DAYS = 8


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", PhoneRole(self.role))  # rows hold the enum's value

    @property
    def label(self) -> str:
        """'own mobile 13800138000 (phone 3)': how messages name a number."""
        return f"{_role_name(self.role)} {self.dial} (phone {self.id})"


@dataclass(frozen=True)
class AttemptView:
    """One dial of one of the case's numbers; `at` is when it was planned or dialled."""

    phone_id: int
    at: datetime
    answered: bool

    def __post_init__(self) -> None:
        _require_aware(self.at, f"attempt on phone {self.phone_id}: at")


@dataclass(frozen=True)
class CaseView:
    id: int
    status: CaseStatus
    amount_due: Decimal
    days_past_due: int
    phones: tuple[PhoneView, ...]
    timezone: str | None = None  # the debtor's, when known; overrides the campaign's

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", CaseStatus(self.status))
        object.__setattr__(self, "phones", tuple(self.phones))


CLIENT_SLOTS = (
    Slot(time(8), time(12), "morning"),
    Slot(time(12), time(17), "noon"),
    Slot(time(17), time(21), "evening"),
)
CLIENT_BLOCKING_STATUSES = frozenset({
    CaseStatus.CLIENT_STOP, CaseStatus.COMPLAINT, CaseStatus.DISPUTE, CaseStatus.FRAUD_CLAIM,
    CaseStatus.DECEASED, CaseStatus.IMPRISONED, CaseStatus.PAID, CaseStatus.CLOSED,
})


@dataclass(frozen=True)
class Rules:
    """The dialling rules; the defaults are the client's. The slots must cover the calling
    window exactly, in order (a window across midnight is not supported)."""

    window_start: time = time(8)
    window_end: time = time(21)  # exclusive: 20:59:59 is inside, 21:00:00 is not
    default_timezone: str = "Asia/Shanghai"
    slots: tuple[Slot, ...] = CLIENT_SLOTS
    retry_before: time = time(20)  # a number unanswered today is retried only before this
    max_attempts_per_number_per_day: int = 3
    max_connected_per_case_per_day: int = 1
    blocking_statuses: frozenset[CaseStatus] = CLIENT_BLOCKING_STATUSES
    dial_roles: tuple[PhoneRole, ...] = (PhoneRole.OWN_MOBILE, PhoneRole.HOME, PhoneRole.WORK)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", tuple(Slot(*slot) for slot in self.slots))
        object.__setattr__(self, "blocking_statuses", frozenset(map(CaseStatus, self.blocking_statuses)))
        object.__setattr__(self, "dial_roles", tuple(map(PhoneRole, self.dial_roles)))
        ZoneInfo(self.default_timezone)  # an unknown zone fails here, not at the first dial
        if not self.dial_roles:
            raise ValueError("dial_roles is empty: no number would ever be dialled")
        if not self.window_start < self.window_end:
            raise ValueError(f"the calling window {_span(self.window_start, self.window_end)} must "
                             "start before it ends (a window across midnight is not supported)")
        edges = [self.window_start, *(slot.end for slot in self.slots)]
        if [slot.start for slot in self.slots] != edges[:-1] or edges[-1] != self.window_end \
                or any(slot.start >= slot.end for slot in self.slots):
            slots = ", ".join(f"{slot.name} {_span(slot.start, slot.end)}" for slot in self.slots)
            raise ValueError(f"the slots ({slots or 'none'}) must cover the calling window "
                             f"{_span(self.window_start, self.window_end)} exactly, in order, "
                             "without gaps or overlaps")


RULES = Rules()


@dataclass(frozen=True)
class Block:
    """One reason a dial is not allowed. `rule` is a stable id; `until` (aware UTC) is when
    this block lifts by itself, None when it does not; `phone_id` is None for the whole case."""

    rule: str
    message: str
    until: datetime | None
    phone_id: int | None = None


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one case at one moment.

    allowed: a dial may start now, on `phone`. blocks: when refused, why (the case's blocks, or
    each number's); when allowed, why the numbers before `phone` in dial order were skipped.
    next_at: when refused, the earliest moment (aware UTC, after the moment decided) at which
    the same history allows a dial, None when nothing will change by itself (or when allowed).
    case_id, at: the case and the moment decided, in the debtor's local time.
    """

    allowed: bool
    phone: PhoneView | None
    blocks: tuple[Block, ...]
    next_at: datetime | None
    case_id: int
    at: datetime

    def explain(self) -> str:
        zone = self.at.tzinfo
        where = f"{self.at:%Y-%m-%d %H:%M:%S %Z}, {getattr(zone, 'key', zone)}"
        if self.allowed:
            head = f"case {self.case_id} may be dialled now ({where}) on {self.phone.label}"
            return "\n".join([head, *(f"  skipped, {b.rule}: {b.message}" for b in self.blocks)])
        after = (f"next possible at {_stamp(self.next_at, zone)}" if self.next_at
                 else "nothing will allow a dial by itself")
        head = f"case {self.case_id} may not be dialled now ({where}); {after}"
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


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got the naive {moment!r}")


def _wall(moment: datetime, zone: tzinfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


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


def _instant(day: date, at: time, zone: tzinfo) -> datetime:
    """The first instant at which the wall clock reads `day` `at` (or jumps past it)."""
    return _occurrences(day, at, zone)[0]


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
    """What the rules look at: the debtor's clock at `now` and this local day's attempts
    (their `at` on the debtor's clock, oldest first)."""

    now: datetime
    zone: tzinfo
    local: datetime
    attempts: tuple[AttemptView, ...]

    @classmethod
    def at(cls, now: datetime, zone: tzinfo, attempts: Iterable[AttemptView]) -> _Today:
        local = local_now(now, zone)
        seen = (replace(attempt, at=attempt.at.astimezone(zone)) for attempt in attempts)
        todays = sorted((attempt for attempt in seen if attempt.at.date() == local.date()), key=lambda a: a.at)
        return cls(now, zone, local, tuple(todays))

    @cached_property
    def tomorrow(self) -> datetime:
        """When the next local day begins (UTC)."""
        return _instant(self.local.date() + DAY, time(0), self.zone)

    def of(self, phone: PhoneView) -> list[AttemptView]:
        return [attempt for attempt in self.attempts if attempt.phone_id == phone.id]


def _status_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    if case.status not in rules.blocking_statuses:
        return None
    return Block("case_status", f"the case status is '{case.status.value}', which stops all dialling "
                 "until the status changes", None)


def _window_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    if in_window(today.now, today.zone, rules):
        return None
    opens = next_window_open(today.now, today.zone, rules)
    return Block("calling_window", f"it is {today.local:%H:%M:%S} for the debtor and the calling window "
                 f"{_span(rules.window_start, rules.window_end)} is closed; it opens at "
                 f"{_stamp(opens, today.zone)}", opens)


def _connected_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    # An answered attempt on any of the case's numbers counts as the debtor reached.
    reached = [attempt for attempt in today.attempts if attempt.answered]
    limit = rules.max_connected_per_case_per_day
    if len(reached) < limit:
        return None
    return Block("connected_today", f"the debtor was reached {_times(reached)} today{_at_times(reached)} "
                 f"and the limit is {limit} a day; no more calls today", today.tomorrow)


def _no_number_block(case: CaseView, today: _Today, rules: Rules) -> Block | None:
    numbers = dial_order(case.phones, rules)
    if any(not _unusable(phone, today, rules) for phone in numbers):
        return None
    reasons = [block.message for phone in numbers for block in _unusable(phone, today, rules)]
    others = [phone for phone in case.phones if phone not in numbers]
    also = (f"; {len(others)} other number{'s are' if len(others) > 1 else ' is'} not dialled "
            f"({_either(phone.role for phone in others)})") if others else ""
    return Block("no_dialable_number", f"no {_either(rules.dial_roles)} number may be dialled: "
                 f"{'; '.join(reasons) or 'the case has none'}{also}", None)


def _invalid_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    return None if phone.valid else Block("invalid_number", f"{phone.label} is marked invalid", None, phone.id)


def _do_not_call_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    if not phone.do_not_call:
        return None
    return Block("do_not_call", f"{phone.label} is marked do-not-call", None, phone.id)


def _daily_cap_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    dialled, limit = today.of(phone), rules.max_attempts_per_number_per_day
    if len(dialled) < limit:
        return None
    return Block("number_daily_cap", f"{phone.label} was dialled {_times(dialled)} today{_at_times(dialled)} "
                 f"and the limit is {limit} a day; it may be dialled again tomorrow", today.tomorrow, phone.id)


def _slot_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    slot = slot_of(today.local.time(), rules)
    used = [attempt for attempt in today.of(phone) if slot is not None and slot_of(attempt.at.time(), rules) == slot]
    if not used:
        return None
    return Block("slot_used", f"{phone.label} was already dialled in the {slot.name} slot "
                 f"{_span(slot.start, slot.end)}{_at_times(used)}; one try per slot, and this slot ends "
                 f"at {_hm(slot.end)}", _instant(today.local.date(), slot.end, today.zone), phone.id)


def _retry_block(phone: PhoneView, today: _Today, rules: Rules) -> Block | None:
    missed = [attempt for attempt in today.of(phone) if not attempt.answered]
    if not missed or today.local.time() < rules.retry_before:
        return None
    return Block("retry_after_20", f"{phone.label} went unanswered today{_at_times(missed)}; a retry must "
                 f"start before {_hm(rules.retry_before)} and it is {today.local:%H:%M:%S}; it may be "
                 "dialled again tomorrow", today.tomorrow, phone.id)


_Check = Callable[[Any, _Today, Rules], Block | None]  # (a CaseView or a PhoneView, today, rules)
_CASE_CHECKS: tuple[_Check, ...] = (_status_block, _window_block, _connected_block, _no_number_block)
_UNUSABLE_CHECKS: tuple[_Check, ...] = (_invalid_block, _do_not_call_block)
_SPENT_CHECKS: tuple[_Check, ...] = (_daily_cap_block, _slot_block, _retry_block)


def _blocks(checks: tuple[_Check, ...], subject: Any, today: _Today, rules: Rules) -> tuple[Block, ...]:
    return tuple(block for check in checks if (block := check(subject, today, rules)) is not None)


def _unusable(phone: PhoneView, today: _Today, rules: Rules) -> tuple[Block, ...]:
    return _blocks(_UNUSABLE_CHECKS, phone, today, rules)


def dial_order(phones: Iterable[PhoneView], rules: Rules = RULES) -> tuple[PhoneView, ...]:
    """The numbers the rules dial, in order: by role as in `rules.dial_roles` (own mobile, home,
    work), then by phone id. Numbers of other roles (contacts) are left out."""
    rank = {role: index for index, role in enumerate(rules.dial_roles)}
    return tuple(sorted((phone for phone in phones if phone.role in rank), key=lambda p: (rank[p.role], p.id)))


def _assess(case: CaseView, attempts: tuple[AttemptView, ...], now: datetime, zone: tzinfo,
            rules: Rules) -> tuple[PhoneView | None, tuple[Block, ...]]:
    """The number to dial at `now` (None if none) and the blocks met: the case's, if any (the
    numbers are then not looked at), else those of each number tried before the chosen one."""
    today = _Today.at(now, zone, attempts)
    case_blocks = _blocks(_CASE_CHECKS, case, today, rules)
    if case_blocks:
        return None, case_blocks
    skipped: tuple[Block, ...] = ()
    for phone in dial_order(case.phones, rules):
        blocks = _unusable(phone, today, rules) or _blocks(_SPENT_CHECKS, phone, today, rules)
        if not blocks:
            return phone, skipped
        skipped += blocks
    return None, skipped


def decide(case: CaseView, attempts: Iterable[AttemptView], now: datetime, campaign_tz: str | None = None,
           rules: Rules = RULES) -> Decision:
    """May `case` be dialled at `now`, and on which number? `attempts` is the case's history
    (all its numbers). The debtor's zone is `case.timezone`, else `campaign_tz`, else
    `rules.default_timezone`."""
    zone = ZoneInfo(case.timezone or campaign_tz or rules.default_timezone)
    history = tuple(attempts)
    phone, blocks = _assess(case, history, now, zone, rules)
    local = local_now(now, zone)
    if phone is not None:
        return Decision(True, phone, blocks, None, case.id, local)
    return Decision(False, None, blocks, _next_allowed(case, history, now, zone, rules, blocks), case.id, local)


def _next_allowed(case: CaseView, attempts: tuple[AttemptView, ...], now: datetime, zone: tzinfo,
                  rules: Rules, blocks: tuple[Block, ...]) -> datetime | None:
    """The first moment after `now` at which the same history allows a dial. With a fixed
    history a refusal can only turn into a dial when a slot starts (the window opening is the
    first slot's start; daily counts reset overnight, before it), so only slot starts are tried."""
    if any(block.until is None and block.phone_id is None for block in blocks):
        return None
    starts = [slot.start for slot in rules.slots]
    return next((moment for moment in _moments(now, zone, starts)
                 if _assess(case, attempts, moment, zone, rules)[0] is not None), None)


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
