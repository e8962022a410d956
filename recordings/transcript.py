"""What was said on a call, as the rest of the project sees it.

A transcript is a list of utterances in time order. Each utterance belongs to one leg
(``agent`` or ``debtor``: the vault stores the agent on the left channel and the debtor on the
right, and each leg is recognised on its own), has start and end offsets in seconds from the
start of the recording, and the recognised words with their own timings and confidences.

Speech-to-text (``recordings.transcribe``) produces these; findings (``recordings.findings``),
search and the QA pages read them. Plain-text transcripts (``agent: ...`` / ``debtor: ...``
per line, as QA staff write them to test rules) parse into the same shape.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

LEGS = ("agent", "debtor")


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the start of the recording
    end: float
    conf: float = 1.0  # the recogniser's confidence, 0..1


@dataclass(frozen=True)
class Utterance:
    leg: str  # "agent" or "debtor"
    start: float
    end: float
    text: str  # the words joined as the language writes them (no spaces between Chinese characters)
    words: tuple[Word, ...] = field(default_factory=tuple)

    @property
    def conf(self) -> float:
        """The lowest word confidence (1.0 when there are no word timings)."""
        return min((w.conf for w in self.words), default=1.0)


@dataclass(frozen=True)
class Transcript:
    utterances: tuple[Utterance, ...]
    language: str = "zh"

    def leg(self, leg: str) -> list[Utterance]:
        return [u for u in self.utterances if u.leg == leg]

    def text(self, leg: str | None = None) -> str:
        return "\n".join(u.text for u in self.utterances if leg is None or u.leg == leg)

    def to_json(self) -> str:
        return json.dumps({"language": self.language, "utterances": [asdict(u) for u in self.utterances]},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str | dict) -> Transcript:
        obj = json.loads(data) if isinstance(data, str) else data
        return cls(tuple(Utterance(u["leg"], float(u["start"]), float(u["end"]), u["text"],
                                   tuple(Word(**w) for w in u.get("words", ())))
                         for u in obj["utterances"]), obj.get("language", "zh"))


class TranscriptFormatError(ValueError):
    """A plain-text transcript line that is not ``agent: ...`` or ``debtor: ...``."""


def join_words(words: Sequence[str], language: str) -> str:
    """Words as the language writes them: Chinese without spaces, others with."""
    if language.startswith("zh"):
        return "".join(words)
    return " ".join(words)


def merge(utterances: Iterable[Utterance], language: str = "zh") -> Transcript:
    """Both legs' utterances in one transcript, in order of start time (agent first on ties)."""
    ordered = sorted(utterances, key=lambda u: (u.start, LEGS.index(u.leg) if u.leg in LEGS else 9))
    return Transcript(tuple(ordered), language)


def parse_plain(text: str, *, language: str = "zh", source: str = "<text>",
                seconds_per_line: float = 3.0) -> Transcript:
    """A transcript written by hand: one sentence per line, prefixed ``agent:`` or ``debtor:``
    (also ``坐席:`` / ``客户:``, and full-width colons). Blank lines and ``#`` comments are
    skipped. Lines get synthetic offsets, `seconds_per_line` apart."""
    aliases = {"agent": "agent", "a": "agent", "坐席": "agent", "催收员": "agent",
               "debtor": "debtor", "d": "debtor", "客户": "debtor", "债务人": "debtor"}
    utterances = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, body = line.replace("：", ":", 1).partition(":")
        leg = aliases.get(head.strip().lower())
        if not sep or leg is None:
            raise TranscriptFormatError(
                f"{source}, line {number}: expected 'agent: ...' or 'debtor: ...', got {raw.strip()[:60]!r}")
        start = (len(utterances)) * seconds_per_line
        utterances.append(Utterance(leg, start, start + seconds_per_line, body.strip()))
    return Transcript(tuple(utterances), language)
