"""Transcript search latency: the gram index against a plain LIKE scan, in the same run.

Run from the repository root: ``python -m bench.search`` (SQLite in a temporary file) or
``python -m bench.search --postgres postgresql+psycopg://…`` (in a schema of its own,
``bench_search``, dropped afterwards). It builds ``--rows`` synthetic transcripts (default
1,000,000): calls spread over a year, 20 agents in 4 campaigns, 80 % Mandarin and 20 %
English, the agent saying three sentences and the debtor two, drawn from collection-call
phrases with names, amounts and days filled in; a few phrases are rare on purpose (a threat
of prison in 1 call in 2,000, a lawyer's letter in 1 in 100, an insult in 1 in 50,000). Each transcript is stored with
its search index the way ``recordings.transcripts.store`` writes it (same normalisation,
same postings, ``recordings.search_index``), by bulk insert.

Then each query runs ``--repeat`` times (after one warm-up) through ``recordings.search``
(newest 20 matching calls, with snippets and time offsets) and as the plain scan with the
same filters (``LIKE '%…%'`` on both legs' text, newest first, LIMIT 20), and it prints
p50/p95 of each and their ratio.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from campaigns.db import make_engine, migrate, sessions
from recordings import search, search_index

UTC = dt.timezone.utc
START = dt.datetime(2025, 11, 1, tzinfo=UTC)
AGENTS, CAMPAIGNS, CASES = 20, 4, 1000

ZH_AGENT = ["您好我是{bank}催收中心的工作人员", "请问是{name}先生吗", "您的信用卡已经逾期{days}天了",
            "欠款金额是{amount}元", "请您今天之内还款", "我们可以给您办理分期还款", "如果继续拖欠会影响您的征信",
            "请问您什么时候可以还款", "本次通话会被录音", "请您核实一下身份证后四位"]
ZH_DEBTOR = ["我现在没有钱", "我下个月发工资就还", "我已经还过了", "这不是我的卡", "你们别再打电话了", "我要投诉你们",
             "我可以先还{amount}元", "好的我知道了", "我在开会晚点再说", "能不能减免一点利息"]
EN_AGENT = ["hello this is the collections department of {bank}", "your account is {days} days overdue",
            "the balance is {amount} dollars", "when can you make a payment", "this call is recorded",
            "can you confirm your date of birth"]
EN_DEBTOR = ["i can pay five hundred dollars next friday", "i already paid", "stop calling me",
             "that is not my account", "i will call you back", "i lost my job last month"]
RARE = [(1 / 2000, "zh", "再不还钱就让你去坐牢"), (1 / 100, "zh", "我们会给你单位发律师函"),
        (1 / 2000, "en", "we will send a lawyer to your house"), (1 / 50000, "zh", "你这种人就该去死")]
NAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
BANKS = ["工商银行", "建设银行", "招商银行", "平安银行"]
EN_BANKS = ["first national", "city savings", "metro credit"]

#: (label, query, filters): rare, medium, common, single character, absent, English, filtered.
QUERIES: list[tuple[str, str, dict]] = [
    ("zh rare 2 chars", "坐牢", {}),
    ("zh rare phrase", "就让你去坐牢", {}),
    ("zh very rare phrase", "就该去死", {}),
    ("zh 1 % phrase", "律师函", {}),
    ("zh common", "还款", {}),
    ("zh common 4 chars", "分期还款", {}),
    ("zh absent", "火星移民", {}),
    ("zh 1 char, rare", "牢", {}),
    ("zh 1 char, common", "钱", {}),
    ("en rare word", "lawyer", {}),
    ("en phrase", "pay five hundred", {}),
    ("en common", "overdue", {}),
    ("en absent", "bankruptcy court", {}),
    ("zh rare + agent filter", "坐牢", {"agent": "8003"}),
    ("zh 1 % + campaign + 30 days", "律师函", {"campaign": "bench-2", "days": 30}),
    ("zh common + agent leg + 7 days", "还款", {"leg": "agent", "days": 7}),
]


def sentence(rng: random.Random, template: str, english: bool) -> str:
    return template.format(bank=rng.choice(EN_BANKS if english else BANKS), name=rng.choice(NAMES),
                           days=rng.randint(1, 180), amount=rng.randint(100, 99999))


def synthetic(rng: random.Random) -> tuple[str, list[str], list[str]]:
    english = rng.random() < 0.2
    agent = [sentence(rng, t, english) for t in rng.sample(EN_AGENT if english else ZH_AGENT, 3)]
    debtor = [sentence(rng, t, english) for t in rng.sample(EN_DEBTOR if english else ZH_DEBTOR, 2)]
    for rate, language, phrase in RARE:
        if (language == "en") == english and rng.random() < rate:
            agent.insert(rng.randint(0, len(agent)), phrase)
    return ("en" if english else "zh"), agent, debtor


def document(language: str, agent: list[str], debtor: list[str]) -> str:
    """The Transcript JSON (utterances without word timings: the first word's time is the
    utterance's)."""
    utterances, at = [], 0.0
    for a, d in zip(agent, debtor + [None] * len(agent)):
        for leg, said in (("agent", a), ("debtor", d)):
            if said:
                utterances.append({"leg": leg, "start": at, "end": at + 3.0, "text": said, "words": []})
                at += 3.5
    return json.dumps({"language": language, "utterances": utterances}, ensure_ascii=False)


def stamp(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Loader:
    """Bulk insert: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.raw = engine.raw_connection()
        self.postgres = engine.dialect.name == "postgresql"
        if not self.postgres:
            cursor = self.raw.cursor()
            cursor.execute("PRAGMA synchronous = OFF")
            cursor.execute("PRAGMA cache_size = -1000000")

    def rows(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        cursor = self.raw.cursor()
        if self.postgres:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                               rows)

    def commit(self) -> None:
        self.raw.commit()

    def close(self) -> None:
        self.raw.close()


def build(engine, rows: int, seed: int, say: Callable[[str], None], chunk: int = 20_000) -> None:
    rng = random.Random(seed)
    load = Loader(engine)
    created = stamp(START)
    load.rows("clients", ["id", "code", "name", "created_at"], [(1, "BENCH", "bench", created)])
    load.rows("batches", ["id", "client_id", "name", "file_name", "sha256", "rows", "imported_at"],
              [(1, 1, "b", "b.csv", "0" * 64, CASES, created)])
    load.rows("campaigns", ["id", "name", "client_id", "status", "mode", "timezone", "settings", "created_at",
                            "status_changed_at"],
              [(i, f"bench-{i}", 1, "stopped", "progressive", "Asia/Shanghai", "{}", created, created)
               for i in range(1, CAMPAIGNS + 1)])
    load.rows("agents", ["id", "extension", "name", "active", "created_at"],
              [(i, f"80{i:02d}", f"agent {i}", True, created) for i in range(1, AGENTS + 1)])
    load.rows("cases", ["id", "client_id", "batch_id", "reference", "debtor_name", "amount_due", "currency",
                        "days_past_due", "status", "extra", "created_at"],
              [(i, 1, 1, f"C{i}", "李伟", "1000.00", "CNY", 30, "active", "{}", created) for i in range(1, CASES + 1)])
    load.rows("phones", ["id", "case_id", "role", "e164", "dial", "valid", "do_not_call"],
              [(i, i, "own_mobile", "+8613800138000", "13800138000", True, False) for i in range(1, CASES + 1)])
    load.commit()
    seconds_apart = 365 * 86400 / rows
    started = time.monotonic()
    for first in range(1, rows + 1, chunk):
        ids = range(first, min(rows, first + chunk - 1) + 1)
        attempts, recordings, transcripts, postings = [], [], [], []
        for i in ids:
            when = START + dt.timedelta(seconds=i * seconds_apart)
            at = stamp(when)
            agent_id, campaign_id, case_id = 1 + i % AGENTS, 1 + (i // 7) % CAMPAIGNS, 1 + i % CASES
            attempts.append((i, f"bench-{i}", campaign_id, case_id, case_id, agent_id, "13800138000", "ended", at, at,
                             "answered"))
            recordings.append((i, i, at, "180.00"))
            language, agent, debtor = synthetic(rng)
            texts = {"agent": search.normalize_words(agent)[0], "debtor": search.normalize_words(debtor)[0]}
            transcripts.append((i, i, language, "bench", document(language, agent, debtor), texts["agent"],
                                texts["debtor"], "180.00", "40.00", at, agent_id, campaign_id, at))
            postings += [(r["gram"], r["rank"], i, r["legs"])
                         for r in search_index.postings(i, when, texts["agent"], texts["debtor"])]
        postings.sort()
        load.rows("attempts", ["id", "call_id", "campaign_id", "case_id", "phone_id", "agent_id", "number", "state",
                               "planned_at", "answered_at", "outcome"], attempts)
        load.rows("recordings", ["id", "attempt_id", "recorded_at", "seconds"], recordings)
        load.rows("transcripts", ["id", "recording_id", "language", "model", "document", "agent_text", "debtor_text",
                                  "audio_seconds", "speech_seconds", "recorded_at", "agent_id", "campaign_id",
                                  "created_at"], transcripts)
        load.rows("transcript_postings", ["gram", "rank", "transcript_id", "legs"], postings)
        load.commit()
        done = ids[-1]
        rate = done / (time.monotonic() - started)
        say(f"built {done:,} of {rows:,} transcripts ({rate:,.0f}/s, {len(postings) / len(ids):.0f} postings each)")
    load.close()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))



def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def filters_for(options: dict, newest: dt.datetime) -> search.Filters:
    days = options.get("days")
    return search.Filters(agent=options.get("agent"), campaign=options.get("campaign"), leg=options.get("leg"),
                          since=newest - dt.timedelta(days=days) if days else None)


def run_queries(factory, repeat: int, say: Callable[[str], None]) -> list[dict]:
    newest = START + dt.timedelta(days=365)
    out = []
    for label, query, options in QUERIES:
        filters = filters_for(options, newest)
        p = search.pattern(query)
        timings: dict[str, list[float]] = {"index": [], "like": []}
        hits = like_hits = 0
        kind = "?"
        for round_ in range(repeat + 1):
            with factory() as session:
                start = time.perf_counter()
                found, how = search.search_with_plan(session, query, filters)
                elapsed = time.perf_counter() - start
            if round_:
                timings["index"].append(elapsed)
            hits, kind = len(found), how.kind
            with factory() as session:
                start = time.perf_counter()
                like = session.scalars(search.matches_statement(p, filters, False, 20)).all()
                elapsed = time.perf_counter() - start
                scanned = [session.get(search.StoredTranscript, i).recording_id for i in like]
            if round_:
                timings["like"].append(elapsed)
            like_hits = len(like)
            if [h.recording_id for h in found] != scanned:
                raise AssertionError(f"{label}: the index and the scan disagree")
        out.append({"label": label, "query": query, "plan": kind, "hits": hits, "like_hits": like_hits, **timings})
        say(f"{label}: {kind}, {hits} hits, index p50 {statistics.median(timings['index']) * 1000:.1f} ms, "
            f"LIKE p50 {statistics.median(timings['like']) * 1000:.1f} ms")
    return out


def report(results: list[dict], rows: int, database: str) -> str:
    def ms(value: float) -> str:
        return f"{value * 1000:.1f}"
    lines = [f"{rows:,} transcripts on {database}; newest 20 matching calls per query.", "",
             "| query | plan | hits | index p50 ms | index p95 ms | LIKE p50 ms | LIKE p95 ms | LIKE / index (p50) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        i50, i95 = percentile(r["index"], 0.5), percentile(r["index"], 0.95)
        l50, l95 = percentile(r["like"], 0.5), percentile(r["like"], 0.95)
        lines.append(f"| {r['label']}: `{r['query']}` | {r['plan']} | {r['hits']} | {ms(i50)} | {ms(i95)} "
                     f"| {ms(l50)} | {ms(l95)} | {l50 / i50:.1f}x |")
    every_index = [t for r in results for t in r["index"]]
    every_like = [t for r in results for t in r["like"]]
    i50, i95 = percentile(every_index, 0.5), percentile(every_index, 0.95)
    l50, l95 = percentile(every_like, 0.5), percentile(every_like, 0.95)
    lines += ["", f"All queries: index p50 {ms(i50)} ms, p95 {ms(i95)} ms; LIKE scan p50 {ms(l50)} ms, "
              f"p95 {ms(l95)} ms; LIKE / index: {l50 / i50:.1f}x at p50, {l95 / i95:.1f}x at p95."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic transcripts (default: 1,000,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each query (default: 5)")
    parser.add_argument("--postgres", metavar="URL", help="run on PostgreSQL (schema bench_search, dropped after)")
    parser.add_argument("--sqlite", type=Path, help="SQLite file to build or reuse (default: a temporary file)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true",
                        help="PostgreSQL: keep the schema bench_search afterwards, and reuse it when it is there")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as work:
        if args.postgres:
            admin = create_engine(args.postgres)
            with admin.begin() as conn:
                reuse = args.keep and conn.execute(text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'bench_search' "
                    "AND table_name = 'transcript_postings'")).scalar() > 0
                if not reuse:
                    conn.execute(text("DROP SCHEMA IF EXISTS bench_search CASCADE"))
                    conn.execute(text("CREATE SCHEMA bench_search"))
            engine = create_engine(args.postgres, connect_args={"options": "-csearch_path=bench_search"})
        else:
            path = args.sqlite or Path(work) / "bench.db"
            reuse = path.exists()
            engine = make_engine(f"sqlite:///{path}")
        try:
            migrate(engine)
            if not reuse:
                started = time.monotonic()
                build(engine, args.rows, args.seed, say)
                say(f"built in {time.monotonic() - started:.0f} s")
            results = run_queries(sessions(engine), args.repeat, say)
            print(report(results, args.rows, engine.dialect.name))
        finally:
            engine.dispose()
            if args.postgres:
                if not args.keep:
                    with admin.begin() as conn:
                        conn.execute(text("DROP SCHEMA IF EXISTS bench_search CASCADE"))
                admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
