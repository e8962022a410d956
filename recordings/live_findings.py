"""Live findings, the pure part: what the agent has said so far on a call in progress, checked
by the QA rules as the words are recognised, and when each alert was due. No sockets, no
database, no clock (times are given).

The streaming recogniser (Vosk) gives, every fraction of a second, either a *partial* result
(the words of the utterance still being said, which may still change) or a *final* one (the
utterance is over). `LiveCall` keeps the final utterances and the current partial one and runs
the live rules over them after each result, so a phrase is found while the agent is still
speaking, not only once they pause. Each rule alerts once a call (`LiveAlert`): a wallboard
line per breach, not one per partial result.

Which rules run live (`live_rules`): the rule set's phrase rules on the agent's leg (or
either leg) at the given severities (critical by default), without a condition on what the
debtor said earlier (``after:``; only the agent's leg is streamed) and without debtor-side
triggers. Must-say and order rules need the whole call: they stay with the after-call check,
whose stored transcript and findings remain the record. A live alert is a prompt to a
supervisor, not a finding.

`StreamClock` maps a time in the stream (seconds of audio received) to the moment that
audio had arrived, so an alert knows when its words were said; `LATENCY_BUDGET_S` is the
target from the words to the wallboard (issue #18: 5 s).
"""
from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .findings import Finding, RuleSet, find, words_end
from .transcript import Transcript, Utterance, Word, join_words

#: From the end of the words to the alert on the supervisor's wallboard.
LATENCY_BUDGET_S = 5.0
LIVE_SEVERITIES = ("critical",)
LEG = "agent"  # the leg that is streamed


def live_rules(ruleset: RuleSet, severities: Iterable[str] = LIVE_SEVERITIES) -> RuleSet:
    """The part of `ruleset` that can be checked while the agent speaks (see the module)."""
    wanted = set(severities)
    rules = tuple(r for r in ruleset.rules
                  if r.kind == "phrase" and r.trigger is None and r.after is None
                  and r.leg in (LEG, "any") and r.severity in wanted)
    return replace(ruleset, rules=rules)


def utterance(result: dict, language: str, leg: str = LEG) -> Utterance | None:
    """A Vosk result as an utterance: ``result`` (final) or ``partial_result`` (partial, with
    ``SetPartialWords``) word lists, else the bare ``text`` / ``partial`` with no timings."""
    words = tuple(Word(w["word"], round(float(w["start"]), 3), round(float(w["end"]), 3),
                       round(float(w.get("conf", 1.0)), 4))
                  for w in result.get("result") or result.get("partial_result") or ())
    if words:
        return Utterance(leg, words[0].start, words[-1].end, join_words([w.text for w in words], language), words)
    text = (result.get("text") or result.get("partial") or "").strip()
    return Utterance(leg, 0.0, 0.0, text) if text else None


@dataclass(frozen=True)
class LiveAlert:
    """A rule broken on a call in progress: what, where in the stream, and when it was said."""

    call_id: str
    finding: Finding
    words_end_s: float  # the end of the matched words, seconds into the stream
    final: bool  # found in a final result (False: in a partial one)

    @property
    def key(self) -> str:
        """One alert per call and rule (the database's idempotency key)."""
        return f"live:{self.call_id}:{self.finding.rule_id}"


class LiveCall:
    """One call's agent leg as it is being recognised."""

    def __init__(self, call_id: str, ruleset: RuleSet) -> None:
        self.call_id, self.ruleset = call_id, ruleset
        self.final: list[Utterance] = []
        self.partial: Utterance | None = None
        self.alerted: set[str] = set()

    def text(self) -> str:
        """Everything heard so far (final utterances and the partial one), one per line."""
        return "\n".join(u.text for u in [*self.final, *([self.partial] if self.partial else [])])

    def heard(self, result: dict, final: bool) -> list[LiveAlert]:
        """Take one recogniser result; return the alerts it raises (rules not alerted before)."""
        said = utterance(result, self.ruleset.language)
        if final:
            self.partial = None
            if said is not None:
                self.final.append(said)
        else:
            self.partial = said
        if said is None or not self.ruleset.rules:
            return []
        transcript = Transcript(tuple([*self.final, *([self.partial] if self.partial else [])]),
                                self.ruleset.language)
        out = []
        for f in find(transcript, self.ruleset):
            if f.rule_id in self.alerted:
                continue
            self.alerted.add(f.rule_id)
            out.append(LiveAlert(self.call_id, f, words_end(transcript, f), final))
        return out


class StreamClock:
    """When each stretch of a stream had arrived: `add` the seconds of audio received so far
    at a moment; `arrived` gives the moment the audio up to a stream time was in."""

    def __init__(self) -> None:
        self._seconds: list[float] = []
        self._moments: list[dt.datetime] = []

    def add(self, seconds: float, at: dt.datetime) -> None:
        if self._seconds and seconds < self._seconds[-1]:
            raise ValueError(f"stream time went back: {seconds} s after {self._seconds[-1]} s")
        self._seconds.append(seconds)
        self._moments.append(at)

    @property
    def seconds(self) -> float:
        return self._seconds[-1] if self._seconds else 0.0

    def arrived(self, stream_s: float) -> dt.datetime | None:
        """The first moment the stream held `stream_s` seconds (None before any audio)."""
        if not self._seconds:
            return None
        i = bisect.bisect_left(self._seconds, stream_s)
        return self._moments[min(i, len(self._moments) - 1)]


@dataclass(frozen=True)
class Latency:
    """An alert's way from the words to the supervisor."""

    words_at: dt.datetime  # the matched words had been received
    raised_at: dt.datetime  # the alert was in the database (the wallboard's next poll shows it)

    @property
    def seconds(self) -> float:
        return (self.raised_at - self.words_at).total_seconds()

    def within(self, budget_s: float = LATENCY_BUDGET_S, poll_s: float = 0.0) -> bool:
        """Whether the alert reaches a wallboard that polls every `poll_s` inside the budget."""
        return self.seconds + poll_s <= budget_s


def alert_message(alert: LiveAlert, extension: str | None) -> str:
    """The wallboard's line for an alert: which rule, what was said, by whom, on which call."""
    f = alert.finding
    minutes, seconds = divmod(int(alert.words_end_s), 60)
    who = f"agent {extension}" if extension else "the agent"
    return (f"{f.severity} {f.category} ({f.rule_id}) by {who} on call {alert.call_id} "
            f"at {minutes}:{seconds:02d}: \u201c{f.matched_text}\u201d"
            f"{'' if f.status == 'confirmed' else ' (to review)'}")
