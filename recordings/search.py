"""Full-text search over transcripts: Chinese (no spaces between words) and English, on
SQLite and PostgreSQL through the same SQL.

What matches: the query and each leg's words are normalised the same way (`normalize_words`:
NFKC, lower case, punctuation dropped, Chinese/Japanese/Korean characters run together
without spaces, other words separated by one space). A query matches a leg whose normalised
text contains it, where Chinese text matches as any substring ("起诉" inside
"我们会起诉你") and other words match whole ("pay" matches "I can pay", not "payment").

How it is found: `transcript_grams` holds, for each transcript leg, its distinct grams:
every character bigram of a Chinese/Korean run (a one-character run is its own gram) and
every other word. A query needs all of its grams; the search counts (up to `DENSE`) how
many legs hold each, and

* when one is rare (fewer than `DENSE` legs), takes the legs holding the rarest and keeps
  those holding every other gram (primary-key probes), then checks the exact text with LIKE
  on those candidates only: cost follows the rarest gram, not the number of transcripts;
* when all are common, or the query has no gram (a single Chinese character), scans the
  transcripts newest first with LIKE and stops at `limit` matches: common words are found
  within the first few thousand calls. A rare single character is the one slow case (a full
  scan, as fast as a plain LIKE).

Both databases run the same statements (no FTS5 virtual tables or pg_trgm: their extra
tables would not be the models', and neither indexes 1–2 Chinese characters).
``python -m bench.search`` measures it against a plain LIKE scan.

Filters (`Filters`): dates, agent (extension or name), campaign, and through the
``findings`` table (when the findings rules have created it): category, severity, and
whether the finding was reviewed. Each hit gives the call, and for each match the leg, the
time offset in the call (from the word timings) and a snippet with the match's offsets in it.
"""
from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    case,
    column,
    delete,
    exists,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    table,
    tuple_,
)
from sqlalchemy.orm import Session

from campaigns.models import Agent, Attempt, Campaign, Recording

from .transcript import LEGS, Transcript
from .transcripts import LEG_CODES, StoredTranscript, TranscriptGram

#: A gram held by at least this many legs is "common": the search scans newest first instead.
DENSE = 2000
GRAM_MAX = 40  # characters of a word kept as its gram (longer words: prefix; LIKE checks the rest)
FINDING_STATUSES = ("confirmed", "review", "false_positive")


class SearchError(ValueError):
    """A query or filter that cannot be run; the message says why and what to do."""


# ── Normalising text ──

def is_cjk(ch: str) -> bool:
    """A character of a script written without spaces between words (Han, kana) or whose
    words take particles (Hangul): matched as substrings."""
    code = ord(ch)
    return (0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF
            or 0xF900 <= code <= 0xFAFF or 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF
            or 0x3130 <= code <= 0x318F or 0x20000 <= code <= 0x2FA1F)


def tokens(text: str) -> list[str]:
    """Runs of CJK characters and other words, lower case, punctuation dropped."""
    out: list[str] = []
    current: list[str] = []
    kind = None
    for ch in unicodedata.normalize("NFKC", text).lower():
        if not (ch.isalnum()):
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
    space; the text starts and ends with a space (so whole words can be matched by LIKE)."""
    text: list[str] = [" "]
    owner: list[int] = [-1]
    previous_cjk = False
    for index, piece in enumerate(pieces):
        for token in tokens(piece):
            cjk = is_cjk(token[0])
            if len(text) > 1 and not (cjk and previous_cjk):
                text.append(" ")
                owner.append(-1)
            text.extend(token)
            owner.extend([index] * len(token))
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
            if len(token) == 1:
                out.add(token)
            else:
                out.update(token[i:i + 2] for i in range(len(token) - 1))
        else:
            out.add(token[:GRAM_MAX])
    return out


def index_rows(stored: StoredTranscript) -> list[dict]:
    return [{"gram": gram, "transcript_id": stored.id, "leg": LEG_CODES[leg]}
            for leg, text in (("agent", stored.agent_text), ("debtor", stored.debtor_text))
            for gram in sorted(grams(text))]


def write_index(session: Session, stored: StoredTranscript) -> int:
    """Index a stored transcript (``recordings.transcripts.store`` calls it in its transaction)."""
    rows = index_rows(stored)
    if rows:
        session.execute(insert(TranscriptGram), rows)
    return len(rows)


def drop_index(session: Session, stored: StoredTranscript) -> None:
    """Remove a transcript's grams (found from its own texts: primary-key deletes)."""
    keys = [(r["gram"], r["transcript_id"], r["leg"]) for r in index_rows(stored)]
    for at in range(0, len(keys), 500):
        session.execute(delete(TranscriptGram).where(
            tuple_(TranscriptGram.gram, TranscriptGram.transcript_id, TranscriptGram.leg).in_(keys[at:at + 500])))


# ── Queries ──

@dataclass(frozen=True)
class Pattern:
    """A query, normalised: `core` is what must appear; `before`/`after` say whether a
    space must surround it (it starts/ends with a whole word)."""

    core: str
    before: bool
    after: bool
    grams: tuple[str, ...]

    @property
    def like(self) -> str:
        return f"%{' ' if self.before else ''}{self.core}{' ' if self.after else ''}%"

    def find_all(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each occurrence of `core` in a normalised text, as LIKE matches."""
        needle = f"{' ' if self.before else ''}{self.core}{' ' if self.after else ''}"
        found, at = [], text.find(needle)
        while at >= 0:
            start = at + (1 if self.before else 0)
            found.append((start, start + len(self.core)))
            at = text.find(needle, at + 1)
        return found


def pattern(query: str) -> Pattern:
    parts = tokens(query)
    if not parts:
        raise SearchError(f"nothing to search for in {query!r}: give a word or Chinese characters")
    core = normalize(query).strip()
    needed: set[str] = set()
    for token in parts:
        if is_cjk(token[0]):
            if len(token) > 1:
                needed.update(token[i:i + 2] for i in range(len(token) - 1))
            # a lone CJK character at the edge of the query may sit inside a longer run: no gram
            elif len(parts) > 1 and token not in (parts[0], parts[-1]):
                needed.add(token)
        else:
            needed.add(token[:GRAM_MAX])
    return Pattern(core, not is_cjk(parts[0][0]), not is_cjk(parts[-1][-1]), tuple(sorted(needed)))


@dataclass(frozen=True)
class Filters:
    since: dt.datetime | None = None  # recorded at or after
    until: dt.datetime | None = None  # recorded before
    agent: str | None = None  # extension or name
    campaign: str | None = None  # name
    leg: str | None = None  # "agent" or "debtor": only this party's words
    category: str | None = None  # a finding of this category (not a false positive)
    severity: str | None = None
    #: True: calls with a reviewed finding (confirmed or false positive); False: calls with a
    #: finding still waiting in the review queue. None: either.
    reviewed: bool | None = None

    @property
    def on_findings(self) -> bool:
        return self.category is not None or self.severity is not None or self.reviewed is not None


def findings_table():
    return table("findings", column("recording_id"), column("category"), column("severity"), column("status"))


def filter_clauses(filters: Filters, has_findings: bool) -> list:
    t = StoredTranscript
    clauses = []
    if filters.since is not None:
        clauses.append(t.recorded_at >= filters.since)
    if filters.until is not None:
        clauses.append(t.recorded_at < filters.until)
    if filters.agent is not None:
        clauses.append(t.agent_id.in_(select(Agent.id).where(or_(Agent.extension == filters.agent,
                                                                 Agent.name == filters.agent))))
    if filters.campaign is not None:
        clauses.append(t.campaign_id.in_(select(Campaign.id).where(Campaign.name == filters.campaign)))
    if filters.on_findings:
        if not has_findings:
            raise SearchError("the category/severity/reviewed filters need the findings table, which this "
                              "database does not have yet: run `dunning db migrate` (and the findings rules)")
        f = findings_table()
        conditions = [f.c.recording_id == t.recording_id]
        if filters.category is not None:
            conditions.append(f.c.category == filters.category)
        if filters.severity is not None:
            conditions.append(f.c.severity == filters.severity)
        conditions.append({None: f.c.status != "false_positive",
                           True: f.c.status.in_(("confirmed", "false_positive")),
                           False: f.c.status == "review"}[filters.reviewed])
        clauses.append(exists().where(*conditions))
    return clauses


def _leg_text(leg_code):
    return case((leg_code == 0, StoredTranscript.agent_text), else_=StoredTranscript.debtor_text)


def gram_count_statement(gram: str, leg: str | None, cap: int = DENSE):
    """How many legs hold `gram`, counted up to `cap`."""
    g = TranscriptGram
    inner = select(literal(1).label("one")).where(g.gram == gram)
    if leg is not None:
        inner = inner.where(g.leg == LEG_CODES[leg])
    return select(func.count()).select_from(inner.limit(cap).subquery())


def candidates_statement(p: Pattern, rarest: str, leg: str | None):
    """Transcript ids whose leg holds every gram of `p`, driven by the rarest gram."""
    g0 = TranscriptGram.__table__.alias("g0")
    statement = select(g0.c.transcript_id).where(g0.c.gram == rarest)
    if leg is not None:
        statement = statement.where(g0.c.leg == LEG_CODES[leg])
    for other in p.grams:
        if other == rarest:
            continue
        g = TranscriptGram.__table__.alias()
        statement = statement.where(exists().where(g.c.gram == other, g.c.transcript_id == g0.c.transcript_id,
                                                   g.c.leg == g0.c.leg))
    return statement.distinct()


def text_clause(p: Pattern, leg: str | None):
    t = StoredTranscript
    if leg == "agent":
        return t.agent_text.like(p.like)
    if leg == "debtor":
        return t.debtor_text.like(p.like)
    return or_(t.agent_text.like(p.like), t.debtor_text.like(p.like))


def matches_statement(p: Pattern, filters: Filters, has_findings: bool, limit: int, offset: int = 0,
                      ids: Sequence[int] | None = None):
    """The matching transcripts, newest first: among `ids` (the index's candidates), or all
    (the scan)."""
    t = StoredTranscript
    statement = select(t.id).where(text_clause(p, filters.leg), *filter_clauses(filters, has_findings))
    if ids is not None:
        statement = statement.where(t.id.in_(ids))
    return statement.order_by(t.recorded_at.desc(), t.id.desc()).limit(limit).offset(offset)


@dataclass(frozen=True)
class Match:
    leg: str
    seconds: float  # offset in the call of the word where the match starts
    snippet: str
    highlight: tuple[int, int]  # the match's [start, end) in `snippet`


@dataclass(frozen=True)
class Hit:
    recording_id: int
    call_id: str
    recorded_at: dt.datetime
    agent: str | None
    campaign: str | None
    matches: tuple[Match, ...] = field(default_factory=tuple)  # in time order, both legs


@dataclass(frozen=True)
class Plan:
    """How a query was run (for ``--explain`` and the benchmark)."""

    kind: str  # "index", "scan", "none"
    gram_counts: dict[str, int]


def plan(session: Session, p: Pattern, leg: str | None) -> tuple[Plan, list[int] | None]:
    counts = {g: session.scalar(gram_count_statement(g, leg)) or 0 for g in p.grams}
    if not counts or min(counts.values()) >= DENSE:
        return Plan("scan", counts), None
    if min(counts.values()) == 0:
        return Plan("none", counts), []
    rarest = min(counts, key=lambda g: (counts[g], g))
    return Plan("index", counts), list(session.scalars(candidates_statement(p, rarest, leg)))


def has_findings_table(session: Session) -> bool:
    return inspect(session.get_bind()).has_table("findings")


def search(session: Session, query: str, filters: Filters = Filters(), *, limit: int = 20, offset: int = 0,
           context: int = 24, per_leg: int = 5) -> list[Hit]:
    """Calls whose transcript contains `query`, newest first, with up to `per_leg` matches
    per leg (time offset, snippet of about `context` characters each side)."""
    return search_with_plan(session, query, filters, limit=limit, offset=offset, context=context,
                            per_leg=per_leg)[0]


def search_with_plan(session: Session, query: str, filters: Filters = Filters(), *, limit: int = 20,
                     offset: int = 0, context: int = 24, per_leg: int = 5) -> tuple[list[Hit], Plan]:
    if filters.leg not in (None, *LEGS):
        raise SearchError(f"leg must be 'agent' or 'debtor', not {filters.leg!r}")
    p = pattern(query)
    has_findings = has_findings_table(session) if filters.on_findings else False
    how, ids = plan(session, p, filters.leg)
    if ids == []:
        return [], how
    found = list(session.scalars(matches_statement(p, filters, has_findings, limit, offset, ids)))
    return hits(session, p, found, filters.leg, context, per_leg), how


def hits(session: Session, p: Pattern, transcript_ids: Sequence[int], leg: str | None, context: int,
         per_leg: int) -> list[Hit]:
    if not transcript_ids:
        return []
    t = StoredTranscript
    rows = session.execute(
        select(t, Attempt.call_id, Agent.extension, Campaign.name)
        .join(Recording, t.recording_id == Recording.id).join(Attempt, Recording.attempt_id == Attempt.id)
        .outerjoin(Agent, Attempt.agent_id == Agent.id).outerjoin(Campaign, Attempt.campaign_id == Campaign.id)
        .where(t.id.in_(transcript_ids))).all()
    by_id = {row[0].id: row for row in rows}
    out = []
    for transcript_id in transcript_ids:
        stored, call_id, extension, campaign = by_id[transcript_id]
        transcript = stored.transcript()
        matches = []
        for one_leg in LEGS if leg is None else (leg,):
            matches += leg_matches(transcript, one_leg, p, context, per_leg)
        matches.sort(key=lambda m: (m.seconds, m.leg))
        out.append(Hit(stored.recording_id, call_id, stored.recorded_at, extension, campaign, tuple(matches)))
    return out


def leg_matches(transcript: Transcript, leg: str, p: Pattern, context: int, limit: int) -> list[Match]:
    pieces = leg_pieces(transcript, leg)
    text, owner = normalize_words(p for p, _ in pieces)
    out = []
    for start, end in p.find_all(text)[:limit]:
        left, right = max(0, start - context), min(len(text), end + context)
        while left < start and text[left] == " ":
            left += 1
        snippet = text[left:right].rstrip()
        word = next((owner[i] for i in range(start, end) if owner[i] >= 0), -1)
        out.append(Match(leg, pieces[word][1] if word >= 0 else 0.0, snippet, (start - left, end - left)))
    return out


def describe(hit: Hit, mark: tuple[str, str] = ("[", "]")) -> list[str]:
    """A hit as lines for a terminal: the call, then each match with its leg, its offset
    (m:ss) and the snippet with the match between `mark`."""
    when = hit.recorded_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"recording {hit.recording_id}  call {hit.call_id}  {when}  agent {hit.agent or '-'}  "
             f"campaign {hit.campaign or '-'}"]
    for m in hit.matches:
        start, end = m.highlight
        minutes, seconds = divmod(m.seconds, 60)
        lines.append(f"  {m.leg:<6} {int(minutes)}:{seconds:04.1f}  "
                     f"{m.snippet[:start]}{mark[0]}{m.snippet[start:end]}{mark[1]}{m.snippet[end:]}")
    return lines
