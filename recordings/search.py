"""Full-text search over transcripts: Chinese (no spaces between words) and English, on
SQLite and PostgreSQL through the same SQL.

What matches: the query and each leg's words are normalised the same way
(``recordings.search_index``, with the normaliser findings use: traditional characters as
simplified, full width as half width, lower case, Chinese numerals as digits, punctuation
dropped, Chinese/Japanese/Korean characters run together without spaces, other words
separated by one space). A query matches a leg whose normalised text contains it, where
Chinese text matches as any substring ("起诉" inside "我们会起诉你", "電話" finds "电话",
"一万二千" finds "12000") and other words match whole ("pay" matches "I can pay", not
"payment").

How it is found: ``transcript_postings`` holds, for each transcript, its distinct grams
(every character and character bigram of a Chinese/Korean run, every other word) with the
legs that hold them, keyed (gram, call time, transcript). The search counts (up to `DENSE`)
the postings of each of the query's grams in the date range (one statement), then reads the
rarest gram's postings **newest first**, straight from the key, in rounds (all of a rare
gram's at once; 50, 200, 800 … of a common one), and keeps the calls of each round whose
text contains the query (LIKE on those rows only, by primary key) and that pass the filters,
until it has `limit`. A rare word costs its few postings; a common one stops after the first
matches; a date range is a range of the key. Two plain statements per round, so neither
database's planner can turn them into a scan of every transcript. The one slow case left is
a query whose every gram is common but which is itself rare or absent.

Both databases run the same statements (SQLite's FTS5 and PostgreSQL's pg_trgm were set
aside: neither indexes 1–2 Chinese characters, and neither returns the newest matches
first without reading them all). ``python -m bench.search`` measures it against a plain
LIKE scan.

Filters (`Filters`): dates, agent (extension or name), campaign, and through the
``findings`` table (when the findings rules have created it): category, severity, and
whether the finding was reviewed. Each hit gives the call, and for each match the leg, the
time offset in the call (from the word timings) and a snippet with the match's offsets in it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    and_,
    column,
    exists,
    func,
    inspect,
    literal,
    or_,
    select,
    table,
)
from sqlalchemy.orm import Session

from campaigns.models import Agent, Attempt, Campaign, Recording

from .search_index import (  # noqa: F401  (re-exported: what search reads and shows)
    GRAM_MAX,
    LEG_BITS,
    grams,
    is_cjk,
    leg_pieces,
    leg_texts,
    normalize,
    normalize_words,
    rank,
    tokens,
)
from .transcript import LEGS, Transcript
from .transcripts import (  # noqa: F401
    StoredTranscript,
    TranscriptPosting,
    drop_index,
    index_rows,
    write_index,
)

#: Postings counted per gram, at most, to pick the rarest.
DENSE = 1000
FINDING_STATUSES = ("confirmed", "review", "false_positive")


class SearchError(ValueError):
    """A query or filter that cannot be run; the message says why and what to do."""


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
            else:  # every character is indexed on its own too
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


def _rank_range(statement, column_, filters: Filters):
    if filters.since is not None:
        statement = statement.where(column_ >= rank(filters.since))
    if filters.until is not None:
        statement = statement.where(column_ < rank(filters.until))
    return statement


def _legs(column_, leg: str | None):
    return column_.op("&")(LEG_BITS[leg]) != 0


def gram_count_statement(gram: str, filters: Filters = None, cap: int = DENSE):
    """How many calls in the date range have `gram` posted, counted up to `cap`."""
    g = TranscriptPosting
    inner = _rank_range(select(literal(1).label("one")).where(g.gram == gram), g.rank, filters or Filters())
    return select(func.count()).select_from(inner.limit(cap).subquery())


def counts_statement(grams_: Sequence[str], filters: Filters = None, cap: int = DENSE):
    """Every gram's count (`gram_count_statement`) in one round trip."""
    return select(*(gram_count_statement(g, filters, cap).scalar_subquery() for g in grams_))


def candidates_statement(rarest: str, filters: Filters, batch: int, after: tuple[int, int] | None = None):
    """The next `batch` postings of the rarest gram, newest first, older than `after` (the
    last (rank, transcript_id) already read): an index range scan, nothing else."""
    g = TranscriptPosting
    statement = _rank_range(select(g.rank, g.transcript_id).where(g.gram == rarest), g.rank, filters)
    if filters.leg is not None:
        statement = statement.where(_legs(g.legs, filters.leg))
    if after is not None:
        statement = statement.where(or_(g.rank < after[0], and_(g.rank == after[0], g.transcript_id < after[1])))
    return statement.order_by(g.rank.desc(), g.transcript_id.desc()).limit(batch)


def verify_statement(p: Pattern, filters: Filters, has_findings: bool, ids: Sequence[int]):
    """Which of these transcripts (primary-key lookups) hold the query and pass the filters."""
    t = StoredTranscript
    return select(t.id).where(t.id.in_(ids), text_clause(p, filters.leg), *filter_clauses(filters, has_findings))


def text_clause(p: Pattern, leg: str | None):
    t = StoredTranscript
    if leg == "agent":
        return t.agent_text.like(p.like)
    if leg == "debtor":
        return t.debtor_text.like(p.like)
    return or_(t.agent_text.like(p.like), t.debtor_text.like(p.like))


def matches_statement(p: Pattern, filters: Filters, has_findings: bool, limit: int, offset: int = 0):
    """The plain scan: every transcript's text with LIKE, newest first (what the index is
    measured against, ``bench.search``)."""
    t = StoredTranscript
    statement = select(t.id).where(text_clause(p, filters.leg), *filter_clauses(filters, has_findings))
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

    kind: str  # "index" or "none" (a gram of the query is in no call)
    gram_counts: dict[str, int]


def plan(session: Session, p: Pattern, filters: Filters = Filters()) -> tuple[Plan, str | None]:
    """Which gram to read the postings of (the rarest in the date range), or None when one
    of the query's grams is posted for no call there."""
    counts = dict(zip(p.grams, session.execute(counts_statement(p.grams, filters)).one()))
    if min(counts.values()) == 0:
        return Plan("none", counts), None
    rarest = min(counts, key=lambda g: (counts[g], -len(g), g))
    return Plan("index", counts), rarest


#: Postings read per round: the first round reads a rare gram whole; each next round reads
#: four times more (50, 200, 800 …), so a common gram whose calls rarely hold the whole query
#: costs few rounds, and one whose calls mostly do reads few rows.
FIRST_BATCH = 50


def matching_ids(session: Session, p: Pattern, rarest: str, filters: Filters, has_findings: bool, limit: int,
                 offset: int = 0, first_batch: int = DENSE) -> list[int]:
    """The newest `limit` matching transcripts after `offset`, read from the rarest gram's
    postings newest first, in rounds (`candidates_statement` then `verify_statement`): two
    statements whose plans cannot go wrong on either database (no join for a planner to
    turn into a scan of every transcript)."""
    want = limit + offset
    found: list[int] = []
    after = None
    batch = first_batch
    while len(found) < want:
        rows = session.execute(candidates_statement(rarest, filters, batch, after)).all()
        if not rows:
            break
        ids = [r.transcript_id for r in rows]
        ok = set(session.scalars(verify_statement(p, filters, has_findings, ids)))
        found += [i for i in ids if i in ok]  # the postings' order: newest first
        if len(rows) < batch:
            break
        after = (rows[-1].rank, rows[-1].transcript_id)
        batch = min(batch * 4, 5000)
    return found[offset:want]


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
    how, rarest = plan(session, p, filters)
    if rarest is None:
        return [], how
    # a rare gram's postings were all counted: read them in one round (one more than there are)
    first = how.gram_counts[rarest] + 1 if how.gram_counts[rarest] < DENSE else FIRST_BATCH
    found = matching_ids(session, p, rarest, filters, has_findings, limit, offset, max(first, limit + offset))
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
        texts = {"agent": stored.agent_text, "debtor": stored.debtor_text}
        for one_leg in LEGS if leg is None else (leg,):
            if p.find_all(texts[one_leg]):  # only a leg that holds the query is read again for snippets
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
