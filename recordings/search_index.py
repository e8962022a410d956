"""What transcript search indexes, as pure functions (no database): the searchable text of
each leg and its postings. ``recordings.transcripts`` writes them with the transcript;
``recordings.search`` reads them. (This module is imported by both, and imports neither.)

Text: the one normaliser (``recordings.normalise``: OpenCC traditional → simplified, NFKC,
lower case, Chinese numerals as digits), then runs of Chinese/Japanese/Korean characters
joined without spaces and other words separated by one space.

Postings (table ``transcript_postings``): one row per transcript and gram, with the legs that
hold it (bit 1 agent, bit 2 debtor) and the call's time (``rank``: microseconds since the
epoch), so that a gram's calls are read newest first straight from the primary key
(gram, rank, transcript_id). Grams: every character and every character bigram of a CJK run,
and every other word (its first `GRAM_MAX` characters).
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from .normalise import normalise_map, simplify
from .transcript import LEGS, Transcript

_CJK = ("\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
        "\U00020000-\U0002fa1f")
#: A run of CJK characters (group 1), or of other characters up to a space or a CJK one.
_RUN = re.compile(f"([{_CJK}]+)|[^\\s{_CJK}]+")
GRAM_MAX = 40  # characters of a word kept as its gram (longer words: prefix; LIKE checks the rest)
LEG_BITS = {"agent": 1, "debtor": 2}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def is_cjk(ch: str) -> bool:
    """A character of a script written without spaces between words (Han, kana) or whose
    words take particles (Hangul): matched as substrings."""
    code = ord(ch)
    return (0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF
            or 0xF900 <= code <= 0xFAFF or 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF
            or 0x3130 <= code <= 0x318F or 0x20000 <= code <= 0x2FA1F)


def tokens(text: str) -> list[str]:
    """Runs of CJK characters and other words, normalised, punctuation dropped."""
    out: list[str] = []
    current: list[str] = []
    kind = None
    for ch in simplify(text):
        if not ch.isalnum():
            ch_kind = None
        else:
            ch_kind = "cjk" if is_cjk(ch) else "word"
        if ch_kind != kind and current:
            out.append("".join(current))
            current = []
        if ch_kind is not None:
            current.append(ch)
        kind = ch_kind
    if current:
        out.append("".join(current))
    return out


def normalize_words(pieces: Iterable[str]) -> tuple[str, list[int]]:
    """The searchable text of a sequence of words, and for each of its characters the index
    of the word it came from (-1 for a separator). CJK runs join without spaces across words
    (Vosk gives Chinese as words, QA types phrases); other tokens are separated by one
    space; the text starts and ends with a space (so whole words can be matched by LIKE).
    Chinese numerals are read across Vosk's words (一万 二千 → 12000)."""
    pieces = list(pieces)
    # Numerals split over several Vosk words are read as one number: normalise the joined
    # text, then give each character back the word it came from.
    joined, starts = [], []
    for index, piece in enumerate(pieces):
        if joined and not (is_cjk(joined[-1][-1:] or " ") and piece[:1] and is_cjk(piece[0])):
            joined.append(" ")
            starts.append(-1)
        joined.append(piece)
        starts.append(index)
    source = "".join(joined)
    owner_of_char: list[int] = []
    for part, index in zip(joined, starts):
        owner_of_char.extend([index] * len(part))
    normal, spans = normalise_map(source, keep_spaces=True)
    text: list[str] = [" "]
    owner: list[int] = [-1]
    previous_cjk = False
    for m in _RUN.finditer(normal):
        cjk = m.group(1) is not None
        if len(text) > 1 and not (cjk and previous_cjk):
            text.append(" ")
            owner.append(-1)
        text.append(m.group())
        owner.extend(owner_of_char[spans[i][0]] for i in range(m.start(), m.end()))
        previous_cjk = cjk
    if len(text) == 1:
        return "", []
    text.append(" ")
    owner.append(-1)
    return "".join(text), owner


def normalize(text: str) -> str:
    return normalize_words([text])[0]


def leg_pieces(transcript: Transcript, leg: str) -> list[tuple[str, float]]:
    """A leg's words with their start times (an utterance without word timings is one piece)."""
    pieces: list[tuple[str, float]] = []
    for utterance in transcript.leg(leg):
        if utterance.words:
            pieces += [(w.text, w.start) for w in utterance.words]
        else:
            pieces.append((utterance.text, utterance.start))
    return pieces


def leg_texts(transcript: Transcript) -> dict[str, str]:
    return {leg: normalize_words(p for p, _ in leg_pieces(transcript, leg))[0] for leg in LEGS}


def grams(text: str) -> set[str]:
    """The index grams of a normalised text (see the module docstring)."""
    out: set[str] = set()
    for token in text.split():
        if is_cjk(token[0]):
            out.update(token)
            out.update(token[i:i + 2] for i in range(len(token) - 1))
        else:
            out.add(token[:GRAM_MAX])
    return out


def rank(recorded_at: dt.datetime) -> int:
    """A call's time as the postings order it: microseconds since the epoch (UTC)."""
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=dt.timezone.utc)
    delta = recorded_at - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def postings(transcript_id: int, recorded_at: dt.datetime, agent_text: str, debtor_text: str) -> list[dict]:
    """The index rows of one transcript: one per gram, with the legs that hold it."""
    legs: dict[str, int] = {}
    for leg, text in (("agent", agent_text), ("debtor", debtor_text)):
        for gram in grams(text):
            legs[gram] = legs.get(gram, 0) | LEG_BITS[leg]
    at = rank(recorded_at)
    return [{"gram": gram, "rank": at, "transcript_id": transcript_id, "legs": bits}
            for gram, bits in sorted(legs.items())]
