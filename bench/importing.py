"""Importing a bank's batch at the size banks send: rows/s and peak memory, ours against the
previous implementation, in the same run.

Run from the repository root: ``python -m bench.importing`` (SQLite in a temporary file,
and PostgreSQL if ``--postgres URL`` or ``$DUNNING_TEST_POSTGRES_URL`` names one: the
import runs in a schema of its own, ``bench_importing``, dropped afterwards; the URL's
password is never printed). It writes a realistic batch CSV in GB18030 for each of
``--rows`` (default 10,000 and 100,000): case references, names (one in 500 with a
character GBK lacks), resident ID numbers with the GB 11643 check digit (one in 50 a
15-digit one), amounts written as banks write them (``12,345.60``, ``￥8,000``, ``500元``),
days past due, due dates in three forms, the debtor's mobile in four forms, a home or work
landline for about half of them (a work switchboard shared by many debtors, some with an
extension), a contact with a name, relation and phone for nine in ten, a card number and a
remark kept as extra columns. Two or three phones a row, all valid: every row is imported.

Each implementation runs in a child process of its own, on a fresh database (migrated before
the clock starts), through ``campaigns.importing.import_batch`` exactly as ``dunning import``
calls it (with a progress callback): ours imports the batch for a new client, then the next
batch (as many cases, new references) for the same client; the previous implementation the
first only. The time is the call's, the rows/s the file's rows over it, and the memory the
child's peak resident set during the call (VmHWM, reset just before it), that peak's growth
over the child's size before the call (interpreter, modules, engine), and the peak of the
process checking the rows beside the import (``campaigns.parallel_check``, polled from
/proc). Not ``ru_maxrss``: a child's counts the parent's pages it held between fork and exec.

The baseline is the implementation this one replaced, loaded from git as it was
(``git show BASELINE_COMMIT:campaigns/importing.py``, as module ``campaigns._importing_baseline``)
and run on the same file and a database as fresh, in the same run; ``--no-baseline`` skips it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):   # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO = Path(__file__).resolve().parent.parent
#: The last commit with the previous implementation of campaigns/importing.py.
BASELINE_COMMIT = "a987ccc2799ecf005e5d9cfc3de67ded2365be0f"
SCHEMA = "bench_importing"
URL_VARIABLE = "BENCH_IMPORTING_URL"    # how the child gets the URL (not in argv, where ps shows it)
NOW = dt.datetime(2024, 3, 15, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))

HEADERS = ("案件编号", "姓名", "身份证号", "欠款金额", "逾期天数", "到期日", "手机", "家庭电话", "单位电话",
           "联系人姓名", "联系人关系", "联系人电话", "卡号", "备注")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红鹏辉建华志强"
GB18030_ONLY = "䶮"      # U+4DAE: in GB18030 (fe 9f), not in GBK
#: Area codes (6 digits) of the ID numbers.
REGIONS = ("110105", "310104", "440305", "440106", "510107", "320102", "330106", "420102", "610113", "650102")
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152",
                   "155", "156", "157", "158", "159", "166", "175", "176", "177", "178", "180", "181",
                   "182", "185", "186", "187", "188", "189", "191", "198", "199")
#: Area code and the digits of a subscriber number there.
LANDLINES = (("010", 8), ("021", 8), ("020", 8), ("0755", 8), ("028", 8), ("0571", 8), ("027", 8), ("029", 8),
             ("0991", 7), ("0512", 8))
RELATIONS = ("配偶", "父亲", "母亲", "子女", "兄弟", "姐妹", "同事", "朋友")
REMARKS = ("首次委托", "二次委托", "", "", "已失联", "客户称已还款", "")


def id_number(rng: random.Random) -> str:
    from campaigns.batch_cells import id_check_digit
    born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 54))
    region = rng.choice(REGIONS)
    if rng.random() < 0.02:     # a legacy 15-digit number
        return f"{region}{born:%y%m%d}{rng.randrange(1000):03d}"
    first17 = f"{region}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + id_check_digit(first17)


def mobile(rng: random.Random) -> str:
    number = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10 ** 8):08d}"
    form = rng.random()
    if form < 0.8:
        return number
    if form < 0.9:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    if form < 0.95:
        return f"+86 {number}"
    return f"86{number}"


def landline(rng: random.Random) -> str:
    area, digits = rng.choice(LANDLINES)
    subscriber = str(rng.randint(2, 7)) + f"{rng.randrange(10 ** (digits - 1)):0{digits - 1}d}"
    return f"{area}-{subscriber}" if rng.random() < 0.7 else f"{area} {subscriber[:4]} {subscriber[4:]}"


def amount(rng: random.Random) -> str:
    cents = rng.randrange(10_000, 50_000_000)
    yuan = f"{cents / 100:,.2f}"
    form = rng.random()
    if form < 0.6:
        return yuan
    if form < 0.8:
        return f"{cents / 100:.2f}"
    if form < 0.9:
        return f"￥{yuan}"
    return f"{cents // 100}元"


def due_date(rng: random.Random) -> str:
    day = dt.date(2022, 1, 1) + dt.timedelta(days=rng.randrange(800))
    form = rng.random()
    if form < 0.7:
        return day.isoformat()
    if form < 0.9:
        return f"{day.year}/{day.month}/{day.day}"
    return f"{day:%Y%m%d}"


def name(rng: random.Random) -> str:
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    if rng.random() < 1 / 500:
        given = GB18030_ONLY
    return rng.choice(SURNAMES) + given


def rows(count: int, seed: int = 1, first: int = 0) -> list[list[str]]:
    """`count` valid rows under HEADERS, their case references numbered from `first`."""
    rng = random.Random(seed)
    switchboards = [landline(rng) for _ in range(2000)]
    out = []
    for n in range(first, first + count):
        home = landline(rng) if rng.random() < 0.3 else ""
        work = ""
        if not home and rng.random() < 0.3:
            work = rng.choice(switchboards)
            if rng.random() < 0.2:
                work += rng.choice((" 转 ", "-")) + str(rng.randrange(100, 9000))
        contact = rng.random() < 0.9
        out.append([f"ZS{n // 10_000 + 2024:04d}{n:08d}", name(rng), id_number(rng), amount(rng),
                    str(rng.randint(1, 720)), due_date(rng), mobile(rng), home, work,
                    name(rng) if contact else "", rng.choice(RELATIONS) if contact else "",
                    mobile(rng) if contact else "", f"6222{rng.randrange(10 ** 12):012d}", rng.choice(REMARKS)])
    return out


def write_csv(path: Path, count: int, seed: int = 1, encoding: str = "gb18030", first: int = 0) -> Path:
    """A batch file of `count` rows, as a bank's export writes it (CRLF, GB18030), its case
    references numbered from `first`."""
    import csv
    import io
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(HEADERS)
    writer.writerows(rows(count, seed, first))
    path.write_bytes(out.getvalue().encode(encoding))
    return path


# --- one import, in a child process ------------------------------------------------------------

def baseline_module():
    """The previous campaigns/importing.py, from git, as module campaigns._importing_baseline."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{BASELINE_COMMIT}:campaigns/importing.py"],
                            capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("campaigns._importing_baseline", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "campaigns"
    sys.modules[spec.name] = module
    exec(compile(source, f"{BASELINE_COMMIT[:10]}:campaigns/importing.py", "exec"), module.__dict__)
    return module


def fresh_database(database: str, url: str | None, work: Path):
    """A migrated, empty database: SQLite in `work`, or PostgreSQL's schema SCHEMA made anew."""
    from sqlalchemy import create_engine, text

    from campaigns.db import make_engine, migrate
    if database == "sqlite":
        path = work / "bench.db"
        for stale in work.glob("bench.db*"):
            stale.unlink()
        engine = make_engine(f"sqlite:///{path}")
    else:
        admin = create_engine(url)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        admin.dispose()
        engine = create_engine(url, pool_pre_ping=True, connect_args={"options": f"-csearch_path={SCHEMA}"})
    migrate(engine)
    return engine


def resident_kb(field: str = "VmRSS", pid: int | str = "self") -> int:
    """A process's resident set now (VmRSS), or its peak since exec or the last reset (VmHWM):
    this process's by default."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))


def reset_peak() -> None:
    """VmHWM back to the resident set now (Linux: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def children_peak_kb(stop: threading.Event, peak: list[int]) -> None:
    """The largest peak resident set (VmHWM) of this process's children while they run,
    read every 20 ms into peak[0]: the process checking a large batch beside the import."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    while not stop.wait(0.02):
        for task in tasks.iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    if b"parallel_check" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue    # not the checker yet (forked, not yet exec'd: the importer's pages)
                    kb = resident_kb("VmHWM", pid)
                except (OSError, StopIteration):    # it has ended meanwhile
                    continue
                peak[0] = max(peak[0], kb)


def child(implementation: str, database: str, files: list[Path], work: Path) -> None:
    """Import each of `files` in turn into one fresh database, for one client; print what
    each took as JSON."""
    from sqlalchemy import func, select

    from campaigns.db import sessions
    from campaigns.models import Case, Phone
    module = baseline_module() if implementation == "baseline" else importlib.import_module("campaigns.importing")
    engine = fresh_database(database, os.environ.get(URL_VARIABLE), work)
    factory = sessions(engine)
    results = []
    for file in files:
        with factory() as session:
            had, had_phones = (session.scalar(select(func.count()).select_from(Case)),
                               session.scalar(select(func.count()).select_from(Phone)))
        before = resident_kb()
        reset_peak()
        stop, checker = threading.Event(), [0]
        watch = threading.Thread(target=children_peak_kb, args=(stop, checker), daemon=True)
        watch.start()
        started = time.perf_counter()
        report = module.import_batch(factory, file, "BENCH", now=NOW, progress=lambda done, total: None)
        seconds = time.perf_counter() - started
        peak = resident_kb("VmHWM")
        stop.set()
        watch.join()
        with factory() as session:
            written = (session.scalar(select(func.count()).select_from(Case)) - had,
                       session.scalar(select(func.count()).select_from(Phone)) - had_phones)
        results.append({"seconds": seconds, "rows": report.rows, "imported": report.imported, "ok": report.ok,
                        "problems": [str(p) for p in report.problems[:3]], "cases": written[0], "phones": written[1],
                        "client_had": had, "before_kb": before, "peak_kb": peak, "checker_kb": checker[0]})
    engine.dispose()
    print(json.dumps(results))


def measure(implementation: str, database: str, files: list[Path], url: str | None, work: Path) -> list[dict]:
    """Run the imports of `files`, one after the other into one database, in a child process:
    the figures of each, and its peak resident set while it imported (the child's VmHWM: its
    ru_maxrss would count the parent's pages it had when forked, before its exec)."""
    env = {**os.environ, URL_VARIABLE: url or ""}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-m", "bench.importing", "--child", implementation,
                                    "--database", database, *(f"--file={file}" for file in files),
                                    "--work", str(work)], cwd=REPO, env=env, stdout=out, stderr=err)
        process.wait()
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{implementation} on {database} failed:\n{err.read()}")
        results = json.loads(out.read().strip().splitlines()[-1])
    for result in results:
        if not result["ok"] or result["imported"] != result["rows"] or result["cases"] != result["rows"]:
            raise SystemExit(f"{implementation} on {database} did not import the file whole: {result}")
    return results


# --- the run -------------------------------------------------------------------------------------

IMPLEMENTATIONS = ("ours", "baseline")


def report(results: list[dict]) -> list[str]:
    lines = ["| rows | database | client had | import | seconds | rows/s | peak RSS MB | growth MB | checker MB "
             "| ours / baseline |",
             "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rate = r["rows"] / r["seconds"]
        base = next((b for b in results if b["implementation"] == "baseline" and b["rows"] == r["rows"]
                     and b["database"] == r["database"] and b["client_had"] == r["client_had"]), None)
        ratio = f"{rate / (base['rows'] / base['seconds']):.1f}x" if base and r["implementation"] == "ours" else ""
        checker = f"{r['checker_kb'] / 1024:.0f}" if r["checker_kb"] else "–"
        lines.append(f"| {r['rows']:,} | {r['database']} | {r['client_had']:,} | {r['implementation']} "
                     f"| {r['seconds']:.1f} | {rate:,.0f} | {r['peak_kb'] / 1024:.0f} "
                     f"| {(r['peak_kb'] - r['before_kb']) / 1024:.0f} | {checker} | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.importing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,100000", help="batch sizes, comma-separated (default: 10000,100000)")
    parser.add_argument("--postgres", metavar="URL", default=os.environ.get("DUNNING_TEST_POSTGRES_URL"),
                        help="PostgreSQL to import into too, in schema bench_importing (default: "
                             "$DUNNING_TEST_POSTGRES_URL; none: SQLite only)")
    parser.add_argument("--no-baseline", action="store_true", help="ours only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, action="append", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.database, args.file, args.work)
        return 0

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)
    databases = ["sqlite"] + (["postgresql"] if args.postgres else [])
    if not args.postgres:
        say("no PostgreSQL (--postgres URL or $DUNNING_TEST_POSTGRES_URL): SQLite only")
    implementations = IMPLEMENTATIONS[:1] if args.no_baseline else IMPLEMENTATIONS
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        for rows in [int(n) for n in args.rows.split(",")]:
            file = write_csv(Path(work) / f"batch-{rows}.csv", rows, args.seed)
            # The next month's batch for the same client: its references are looked up among the first's.
            second = write_csv(Path(work) / f"batch-{rows}-next.csv", rows, args.seed + 1, first=rows)
            say(f"{file.name}: {rows:,} rows, {file.stat().st_size / 2 ** 20:.1f} MB in GB18030; then {second.name}, "
                f"as many for the same client")
            for database in databases:
                for implementation in implementations:
                    files = [file, second] if implementation == "ours" else [file]
                    for result in measure(implementation, database, files, args.postgres, Path(work)):
                        result.update(implementation=implementation, database=database)
                        results.append(result)
                        say(f"  {database:10} {implementation:8} {result['seconds']:6.1f} s  "
                            f"{result['rows'] / result['seconds']:8,.0f} rows/s  peak {result['peak_kb'] / 1024:.0f} "
                            f"MB, checker {result['checker_kb'] / 1024:.0f} MB  ({result['cases']:,} cases, "
                            f"{result['phones']:,} phones; the client had {result['client_had']:,})")
        if args.postgres:
            from sqlalchemy import create_engine, text
            admin = create_engine(args.postgres)
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            admin.dispose()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} at the end; {time.monotonic() - started:.0f} s in all. "
          f"Baseline: campaigns/importing.py at {BASELINE_COMMIT[:10]}, from git.\n")
    print("\n".join(report(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
