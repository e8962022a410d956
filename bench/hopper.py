"""Dial decisions that do not grow with the campaign: the hopper against the whole-campaign
evaluation, in the same run, at the sizes banks send.

Run from the repository root: ``python -m bench.hopper`` (SQLite in a temporary file) and
``python -m bench.hopper --postgres postgresql+psycopg://…`` (in a schema of its own,
``bench_hopper``, dropped afterwards); ``--sizes 10000,100000,1000000`` (the default).

Each size is a campaign with a realistic history, written by bulk insert: every case with an
own mobile and a home number; 30 days of attempts at about 3 a case (25 % answered and
bridged, 45 % no answer, 20 % busy, 5 % congestion, 2 % abandoned, 3 % cancelled); a promise
to pay on 2 % of the cases (a disposition on an answered call), an open appointment on 1 %, a
stop status on 3 % (complaint, dispute, paid). It is 10:00 in Shanghai on a weekday.

Measured, per size:
- hopper build: the policy asked about every case once (what `dunning campaign create` does);
- dial decision: `hopper.take` p50 / p99 over ``--dials`` decisions, each in its own
  transaction, each attempt then ended (no answer), as the engine does;
- the whole-campaign evaluation (today's `queue.plan_next` before the hopper: every case
  loaded and asked at every dial), p50 over a few decisions where it finishes in
  ``--baseline-budget`` seconds, and the ratio;
- `dunning campaign status` (`admin.campaign_figures`) and `dunning why` (`admin.why`);
- the engine's memory: the peak resident size of a fresh process making the dial decisions.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, event, text

from campaigns import admin, evaluation, hopper, queue
from campaigns.db import make_engine, migrate, sessions, transaction
from campaigns.models import (
    Agent,
    Appointment,
    Attempt,
    Batch,
    Case,
    Client,
    Disposition,
    Phone,
    PromiseToPay,
)
from dialer.engine import REFRESH_ASKS, REFRESH_EVERY_S

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Shanghai
CHUNK = 20_000
OUTCOMES = [("answered", 25), ("no_answer", 45), ("busy", 20), ("congestion", 5), ("abandoned", 2), ("cancelled", 3)]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _bulk(session, model, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        session.execute(model.__table__.insert(), rows[start:start + CHUNK])


def populate(factory, size: int, seed: int = 7) -> str:
    """A campaign of `size` cases with its history (see the module's doc); returns its name.
    Written `CHUNK` cases at a time: the cases and numbers, then the campaign, then the
    history (memory does not grow with the size)."""
    rng = random.Random(seed)
    name = f"bench-{size}"
    outcomes = [o for o, weight in OUTCOMES for _ in range(weight)]
    with transaction(factory) as s:
        client = Client(code=f"B{size}", name="bench", created_at=NOW)
        s.add(client)
        s.flush()
        batch = Batch(client_id=client.id, name=name, file_name=f"{name}.csv", sha256=f"{size:064d}", rows=size,
                      imported_at=NOW - dt.timedelta(days=40))
        s.add(batch)
        s.add(Agent(extension=f"bench-{size}", name="bench", active=True, created_at=NOW))
        s.flush()
        first_case = (s.execute(text("SELECT COALESCE(MAX(id), 0) FROM cases")).scalar() or 0) + 1
        first_phone = (s.execute(text("SELECT COALESCE(MAX(id), 0) FROM phones")).scalar() or 0) + 1
        attempt_id = (s.execute(text("SELECT COALESCE(MAX(id), 0) FROM attempts")).scalar() or 0) + 1
        for start in range(0, size, CHUNK):
            cases, phones = [], []
            for i in range(start, min(size, start + CHUNK)):
                roll = rng.random()
                status = "complaint" if roll < 0.01 else "dispute" if roll < 0.02 else "paid" if roll < 0.03 else "active"
                cases.append({"id": first_case + i, "client_id": client.id, "batch_id": batch.id,
                              "reference": f"{name}-{i}", "debtor_name": "王芳", "id_number": None,
                              "amount_due": rng.randint(1000, 9_999_999) / 100, "currency": "CNY",
                              "days_past_due": rng.randint(1, 720), "due_date": None, "status": status,
                              "timezone": None, "extra": {}, "created_at": NOW - dt.timedelta(days=40)})
                for offset, role, dial in ((0, "own_mobile", f"13{i:09d}"), (1, "home", f"0755{i:08d}")):
                    phones.append({"id": first_phone + 2 * i + offset, "case_id": first_case + i, "role": role,
                                   "e164": f"+86{dial.lstrip('0')}", "dial": dial, "extension": None,
                                   "contact_name": None, "relation": None, "valid": True, "do_not_call": False,
                                   "do_not_call_reason": None})
            _bulk(s, Case, cases)
            _bulk(s, Phone, phones)
            _say(f"  {name}: {start + len(cases):,} cases written")
        campaign, _ = admin.create_campaign(s, name, client.code, NOW - dt.timedelta(days=30),
                                            timezone="Asia/Shanghai")
        queue.change_campaign(s, name, "start", NOW - dt.timedelta(days=30))
        written = 0
        for start in range(0, size, CHUNK):
            attempts, dispositions, promises, appointments = [], [], [], []
            for i in range(start, min(size, start + CHUNK)):
                case_id, own, home = first_case + i, first_phone + 2 * i, first_phone + 2 * i + 1
                for _ in range(rng.choice((2, 3, 3, 4))):
                    day = NOW - dt.timedelta(days=rng.randint(1, 30), minutes=rng.randint(0, 600))
                    outcome = rng.choice(outcomes)
                    answered = outcome in ("answered", "abandoned")
                    phone = rng.choice((own, home))
                    attempts.append({"id": attempt_id, "call_id": f"{name}-{attempt_id}", "campaign_id": campaign.id,
                                     "case_id": case_id, "phone_id": phone, "agent_id": None,
                                     "number": f"13{i:09d}" if phone == own else f"0755{i:08d}",
                                     "state": "ended", "planned_at": day,
                                     "dialed_at": None if outcome == "cancelled" else day,
                                     "answered_at": day if answered else None,
                                     "bridged_at": day if outcome == "answered" else None,
                                     "ended_at": day + dt.timedelta(seconds=40), "outcome": outcome,
                                     "hangup_cause": None, "note": None})
                    if outcome == "answered" and rng.random() < 0.08:
                        dispositions.append({"id": attempt_id, "attempt_id": attempt_id, "case_id": case_id,
                                             "agent_id": None, "code": "promise_to_pay", "note": None,
                                             "created_at": day})
                        promises.append({"case_id": case_id, "disposition_id": attempt_id, "amount": 500,
                                         "due_date": (NOW + dt.timedelta(days=rng.randint(-5, 10))).date(),
                                         "status": "open", "created_at": day})
                    attempt_id += 1
                if rng.random() < 0.01:
                    appointments.append({"case_id": case_id, "phone_id": own, "requested_by": "debtor",
                                         "at": NOW + dt.timedelta(minutes=rng.randint(-60, 3 * 24 * 60)),
                                         "note": "下午三点再打", "recorded_by": "bench", "recorded_at": NOW,
                                         "attempt_id": None, "status": "open", "kept_attempt_id": None})
            _bulk(s, Attempt, attempts)
            _bulk(s, Disposition, dispositions)
            _bulk(s, PromiseToPay, promises)
            _bulk(s, Appointment, appointments)
            written += len(attempts)
            _say(f"  {name}: {written:,} attempts written")
    with factory() as s:
        if s.get_bind().dialect.name == "postgresql":
            for table in ("cases", "phones", "attempts", "dispositions"):  # ids were written explicitly
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT MAX(id) FROM {table}))"))
            s.execute(text("ANALYZE"))
            s.commit()
    return name


def build(factory, name: str) -> float:
    start = time.perf_counter()
    with transaction(factory) as s:
        campaign = queue.campaign_named(s, name)
        done = [0]

        def progress(n: int) -> None:
            done[0] += n
            if done[0] % 50_000 < n:
                _say(f"  {name}: hopper asked {done[0]:,}")
        hopper.rebuild(s, campaign, NOW, progress=progress)
    return time.perf_counter() - start


def decisions(factory, name: str, count: int, clock: dt.datetime, ends: list[float] | None = None,
              statements: list[int] | None = None, background: list[float] | None = None) -> list[float]:
    """`count` dial decisions through the hopper, one a second, each attempt then ended (no
    answer), and the hopper's background refresh every `REFRESH_EVERY_S` of that clock, as the
    engine does; the ends' times go to `ends` (an end asks the policy about the case again),
    the refreshes' to `background`, the number of SQL statements of each decision (its commit
    included) to `statements`."""
    times = []
    run = f"{os.getpid()}{int(time.time()) % 100000}"  # call ids unique across runs of a kept campaign
    bind = factory.kw["bind"]
    counted = [0]

    def count_one(*_args) -> None:
        counted[0] += 1
    event.listen(bind, "before_cursor_execute", count_one)
    try:
        with factory() as s:
            agent_id = s.execute(text("SELECT id FROM agents ORDER BY id DESC LIMIT 1")).scalar()
        refreshed = None
        for i in range(count):
            now = clock + dt.timedelta(seconds=i)
            if refreshed is None or (now - refreshed).total_seconds() >= REFRESH_EVERY_S:
                refreshed, start = now, time.perf_counter()
                with transaction(factory) as s:
                    hopper.refresh(s, queue.campaign_named(s, name), now, limit=REFRESH_ASKS, ahead=True)
                if background is not None:
                    background.append(time.perf_counter() - start)
            counted[0] = 0
            start = time.perf_counter()
            with transaction(factory) as s:
                planned = hopper.take(s, queue.campaign_named(s, name), agent_id, f"{name}-t{clock:%H%M}-{run}-{i}", now)
            times.append(time.perf_counter() - start)
            if statements is not None:
                statements.append(counted[0])
            if planned is None:
                break
            start = time.perf_counter()
            with transaction(factory) as s:
                queue.finish(s, planned.attempt_id, "no_answer", ended_at=now + dt.timedelta(seconds=25))
            if ends is not None:
                ends.append(time.perf_counter() - start)
    finally:
        event.remove(bind, "before_cursor_execute", count_one)
    return times


def baseline(factory, name: str, budget_s: float, projected: float | None) -> list[float]:
    """The whole-campaign evaluation's dial decision (no writes), while within the budget."""
    if projected is not None and projected > budget_s:
        return []
    times = []
    spent = 0.0
    while spent < budget_s and len(times) < 5:
        start = time.perf_counter()
        with transaction(factory) as s:
            evaluation.first_pick(s, queue.campaign_named(s, name), NOW + dt.timedelta(hours=1))
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return times


def timed(fn, repeat: int = 5) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def engine_memory(url: str, options: str | None, name: str, dials: int, clock: dt.datetime) -> float | None:
    """Peak resident MB of a fresh process making `dials` dial decisions (the database URL
    goes in its environment, never on a command line: it may hold a password). None, said on
    stderr, if the probe fails: the figures measured before it are not lost with it."""
    env = {**os.environ, "DUNNING_BENCH_URL": url, "DUNNING_BENCH_PG_OPTIONS": options or ""}
    out = subprocess.run([sys.executable, "-m", "bench.hopper", "--engine-memory", "--campaign", name,
                          "--dials", str(dials), "--clock", clock.isoformat()], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        _say(f"  the engine memory probe failed: {' '.join(out.stderr.strip().splitlines()[-1:])}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["rss_mb"]


def _engine(url: str, options: str | None):
    engine = create_engine(url, connect_args={"options": options}) if options else make_engine(url)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _prioritise_backend)
    return engine


def _prioritise(pid: int = 0) -> None:
    """Run ahead of the machine's other work where allowed (root): the figures are about the
    hopper, not about what else the machine is doing."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, -10)
    except OSError:
        pass


def _prioritise_backend(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    _prioritise(cursor.fetchone()[0])
    cursor.close()


def measure(url: str, options: str | None, size: int, dials: int, budget_s: float,
            projected: float | None) -> dict:
    engine = _engine(url, options)
    factory = sessions(engine)
    name = f"bench-{size}"
    clock = NOW + dt.timedelta(minutes=5)
    if _built(factory, name):
        # Later than anything the earlier run did: a clock set back would send the whole
        # campaign to be asked again, which is not what is measured here.
        with factory() as s:
            latest = s.execute(text("SELECT MAX(planned_at) FROM attempts a JOIN campaigns c ON c.id = a.campaign_id "
                                    "WHERE c.name = :n"), {"n": name}).scalar()
        latest = latest if isinstance(latest, dt.datetime) else dt.datetime.fromisoformat(str(latest))
        clock = max(clock, latest.replace(tzinfo=UTC, second=0, microsecond=0) + dt.timedelta(minutes=40))
        _say(f"  {name}: kept from an earlier run (--keep), measured again at {clock:%H:%M} UTC")
        populated = built = None
    else:
        start = time.perf_counter()
        name = populate(factory, size)
        populated = time.perf_counter() - start
        built = build(factory, name)
    ends: list[float] = []
    statements: list[int] = []
    refreshes: list[float] = []
    takes = decisions(factory, name, dials, clock, ends, statements, refreshes)
    _say(f"  {name}: {len(takes)} dial decisions, p50 {1000 * pct(takes, 0.5):.1f} ms, p99 {1000 * pct(takes, 0.99):.1f} ms; "
         f"background refresh p50 {1000 * pct(refreshes, 0.5):.1f} ms, p99 {1000 * pct(refreshes, 0.99):.1f} ms")
    base = baseline(factory, name, budget_s, projected)

    def status():
        with transaction(factory) as s:
            admin.campaign_figures(s, name, clock + dt.timedelta(minutes=25))

    def why():
        with transaction(factory) as s:
            admin.why(s, f"{name}-{size // 2}", clock + dt.timedelta(minutes=25))
    found = {"size": size, "populate_s": populated, "build_s": built, "take_p50": pct(takes, 0.5),
             "take_p99": pct(takes, 0.99), "takes": len(takes),
             "end_p50": pct(ends, 0.5) if ends else None, "refresh_p50": pct(refreshes, 0.5),
             "refresh_p99": pct(refreshes, 0.99), "statements_p50": pct(statements, 0.5),
             "statements_max": max(statements), "baseline": base,
             "status": statistics.median(timed(status, 3)), "why": statistics.median(timed(why, 5)),
             "memory_mb": engine_memory(url, options, name, min(dials, 300), clock + dt.timedelta(minutes=30))}
    engine.dispose()
    return found


def _built(factory, name: str) -> bool:
    """Whether an earlier `--keep` run left this campaign populated and its hopper built."""
    with factory() as s:
        campaign = s.execute(text("SELECT id FROM campaigns WHERE name = :n"), {"n": name}).scalar()
        return campaign is not None and s.execute(
            text("SELECT 1 FROM dial_states WHERE campaign_id = :c LIMIT 1"), {"c": campaign}).first() is not None


def run(url: str, options: str | None, label: str, sizes: list[int], dials: int, budget_s: float) -> list[dict]:
    results, per_case = [], None
    for size in sizes:
        _say(f"{label}: {size:,} cases")
        projected = None if per_case is None else per_case * size
        found = measure(url, options, size, dials, budget_s, projected)
        if found["baseline"]:
            per_case = statistics.median(found["baseline"]) / size
        results.append(found)
        _say(json.dumps(found))
    return results


def table(label: str, results: list[dict], budget_s: float) -> str:
    lines = [f"{label}:",
             f"{'cases':>10}  {'build':>8}  {'dial p50':>9}  {'dial p99':>9}  {'whole eval':>10}  {'ratio':>7}  "
             f"{'SQL':>7}  {'end p50':>8}  {'refresh p50/p99':>16}  {'status':>7}  {'why':>6}  {'engine':>7}"]
    for r in results:
        base = statistics.median(r["baseline"]) if r["baseline"] else None
        ratio = f"{base / r['take_p50']:.0f}x" if base else "-"
        built = f"{r['build_s']:>7.0f}s" if r["build_s"] is not None else f"{'kept':>8}"
        lines.append(f"{r['size']:>10,}  {built}  {1000 * r['take_p50']:>7.1f}ms  "
                     f"{1000 * r['take_p99']:>7.1f}ms  "
                     + (f"{base:>9.2f}s" if base else f"{'> ' + str(int(budget_s)) + 's':>10}")
                     + f"  {ratio:>7}  {r['statements_p50']:>3}/{r['statements_max']:<3}"
                     + f"  {1000 * (r['end_p50'] or 0):>6.1f}ms"
                     + f"  {1000 * r['refresh_p50']:>6.1f}/{1000 * r['refresh_p99']:>6.1f}ms  {r['status']:>6.2f}s  {1000 * r['why']:>4.0f}ms  "
                     + (f"{r['memory_mb']:>5.0f}MB" if r["memory_mb"] is not None else f"{'-':>7}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--postgres", metavar="URL", help="also run on PostgreSQL (schema bench_hopper, dropped after)")
    parser.add_argument("--dials", type=int, default=500, help="dial decisions measured per size")
    parser.add_argument("--baseline-budget", type=float, default=120.0,
                        help="seconds the whole-campaign evaluation may take per size (skipped beyond)")
    parser.add_argument("--databases", default="sqlite,postgres",
                        help="which to run, of sqlite,postgres (postgres only with --postgres)")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the populated campaigns (SQLite in DIR, PostgreSQL's schema bench_hopper) and "
                             "measure them again on the next run with the same DIR, skipping populate and build")
    parser.add_argument("--engine-memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--campaign", help=argparse.SUPPRESS)
    parser.add_argument("--clock", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _prioritise()
    if args.engine_memory:
        factory = sessions(_engine(os.environ["DUNNING_BENCH_URL"], os.environ.get("DUNNING_BENCH_PG_OPTIONS") or None))
        decisions(factory, args.campaign, args.dials, dt.datetime.fromisoformat(args.clock))
        # VmHWM: this process's own peak (ru_maxrss would carry the parent's across exec).
        peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
        print(json.dumps({"rss_mb": int(peak.split()[1]) / 1024}))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    databases = set(args.databases.split(","))
    outputs = []
    if "sqlite" in databases:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(args.keep) if args.keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{folder / 'bench.db'}"
            migrate(make_engine(url))
            outputs.append(table("SQLite", run(url, None, "SQLite", sizes, args.dials, args.baseline_budget),
                                 args.baseline_budget))
    if args.postgres and "postgres" in databases:
        admin_engine = create_engine(args.postgres)
        with admin_engine.begin() as conn:
            if not args.keep:
                conn.execute(text("DROP SCHEMA IF EXISTS bench_hopper CASCADE"))
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS bench_hopper"))
        options = "-csearch_path=bench_hopper"
        try:
            migrate(create_engine(args.postgres, connect_args={"options": options}))
            outputs.append(table("PostgreSQL", run(args.postgres, options, "PostgreSQL", sizes, args.dials,
                                                   args.baseline_budget), args.baseline_budget))
        finally:
            if not args.keep:
                with admin_engine.begin() as conn:
                    conn.execute(text("DROP SCHEMA IF EXISTS bench_hopper CASCADE"))
    print("SQL: statements per dial decision, median/most (its commit included; the same at every size)")
    print("dial decision: hopper.take, one transaction each; whole eval: the policy over every case per "
          "decision (before the hopper); ratio: whole eval / hopper p50; end: the attempt's end, which asks "
          "the policy about its case again; refresh: the engine's background work every 2 s (not in the decision); engine: peak resident memory of a process making the decisions")
    print("\n\n".join(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
