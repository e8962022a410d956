"""How much one Asterisk sandbox carries, driven through the project's own AMI layer
(ami_bridge: the connection, the call registry, the engine's dial request), and what a
second server adds.

Run from the repository root, as root, with the sandbox up (and sandbox B for the second
part: ``dunning asterisk sandbox up --name B``)::

    .venv/bin/python -m bench.ami_load [--calls 200] [--rate 5] [--seconds 60] [--peak-rate 10]
                                       [--servers A,B]

Each server is driven by its own process (as each server has its own engine), which dials
simulated debtors who answer after 3 s, say their sentence and stay about 20 s (mobiles
ending in 0: asterisk_conf/generate.py). The call is the engine's (dialer/outbound.py),
except that once the debtor answers our half waits (``Wait``) rather than recording and
ringing an agent: there are no 200 softphones here. At the answer the driver names an agent
(AMI ``Setvar DUNNING_AGENT``), as a predictive engine does.

Two phases per server:
- steady: ``--rate`` originates a second for ``--seconds``;
- peak: ``--peak-rate`` originates a second until ``--calls`` answered calls are up at once
  (or the time the machine allows, ``--peak-seconds``), then 15 s more at that rate.

Measured per phase: originate latency (the Originate sent to Asterisk's answer to it) p50 /
p99; the answer (its event read) to the agent named (Setvar answered) p50 / p99; AMI events a
second; the most calls up at once; the driving process's CPU and Asterisk's, from /proc;
originates lost, timed out or refused, and calls not answered. First one server alone (the
baseline), then every server of ``--servers`` at once, each at the same load: the ratios are
against the baseline of the same run. Afterwards each Asterisk's own log (the dialplan's
``dunning-dial`` line) must hold each call once, and no number dialled by two servers.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from ami_bridge import AmiConnection, Call, Calls, CallState, OriginateRequest
from asterisk_conf import sandbox
from asterisk_conf.site import Site
from dialer.outbound import dial_request
from dialer.sandbox_session import ami_settings

TICKS = os.sysconf("SC_CLK_TCK")
#: How long our half waits once the debtor answered: longer than the debtor stays.
HOLD_S = 60


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile: a value measured, never one made up between two."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def load_request(call_id: str, number: str) -> OriginateRequest:
    """The engine's dial request for `number` with no agent reserved, its answered half
    waiting instead of recording and ringing an agent."""
    engine_request = dial_request(call_id, number, None, 30.0)
    return OriginateRequest(call_id=call_id, channel=engine_request.channel, application="Wait",
                            data=str(HOLD_S), timeout_s=engine_request.timeout_s,
                            caller_id=engine_request.caller_id, variables=engine_request.variables)


def load_number(serial: int, n: int) -> str:
    """The `n`th debtor of driver `serial` (0-99): a mobile of its own ending in 0, which the
    simulated network answers after 3 s (13 SS NNNNNN 0)."""
    if not (0 <= serial < 100 and 0 <= n < 1_000_000):
        raise ValueError(f"driver {serial}, call {n}: out of the simulated mobiles' range")
    return f"13{serial:02d}{n:06d}0"


class Driver:
    """One server's calls: originated at a rate, each answer followed by its agent named."""

    def __init__(self, calls: Calls, server: str, serial: int, asterisk_pid: int) -> None:
        self.calls, self.server, self.serial, self.asterisk_pid = calls, server, serial, asterisk_pid
        self.sent = 0
        self.originate_ms: list[float] = []
        self.named_ms: list[float] = []
        self.failed_originates = 0
        self.up: set[str] = set()
        self.peak_up = 0
        self.placed: list[Call] = []
        self._naming: set[asyncio.Task] = set()
        calls.add_listener(self._on_state)

    def _on_state(self, call: Call, state: CallState) -> None:
        if state is CallState.ANSWERED:
            self.up.add(call.call_id)
            self.peak_up = max(self.peak_up, len(self.up))
            task = asyncio.get_running_loop().create_task(self._name_agent(call))
            self._naming.add(task)
            task.add_done_callback(self._naming.discard)
        elif state is CallState.ENDED:
            self.up.discard(call.call_id)

    async def _name_agent(self, call: Call) -> None:
        answered = call.answered_at
        if await self.calls.set_variable(call, "DUNNING_AGENT", "6001") and answered is not None:
            self.named_ms.append((self.calls.connection.now() - answered) * 1000)

    async def _originate(self, n: int) -> None:
        call_id = f"load-{self.server}-{self.serial}-{n}"
        number = load_number(self.serial, n)
        started = time.monotonic()
        try:
            call = await self.calls.originate(load_request(call_id, number))
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            self.failed_originates += 1
            _say(f"{self.server}: originate {call_id}: {exc}")
            return
        self.originate_ms.append((time.monotonic() - started) * 1000)
        self.placed.append(call)
        if call.state is CallState.ENDED or call.state is CallState.UNKNOWN:
            self.failed_originates += 1

    async def phase(self, name: str, rate: float, seconds: float, until_up: int | None = None,
                    after_s: float = 15.0) -> dict:
        """Originate `rate` calls a second for `seconds` (with `until_up`: until that many
        calls are up at once, then `after_s` more, within `seconds`); the phase's figures."""
        self.originate_ms, self.named_ms, self.peak_up = [], [], len(self.up)
        failed_before, placed_before = self.failed_originates, len(self.placed)
        conn = self.calls.connection
        events_before = conn.counters.events_received
        cpu0, ast0, t0 = cpu_seconds(os.getpid()), cpu_seconds(self.asterisk_pid), time.monotonic()
        tasks, reached_at, shown = [], None, t0
        while True:
            now = time.monotonic()
            if now - t0 >= seconds or (reached_at is not None and now - reached_at >= after_s):
                break
            if until_up is not None and reached_at is None and len(self.up) >= until_up:
                reached_at = now
            due = int((now - t0) * rate) + 1
            while len(tasks) < due:
                tasks.append(asyncio.create_task(self._originate(self.sent)))
                self.sent += 1
            if now - shown >= 5:
                shown = now
                _say(f"  {self.server} {name}: {now - t0:4.0f} s, {len(tasks)} originated, {len(self.up)} up, "
                     f"{len(self.calls.active)} in progress")
            await asyncio.sleep(min(0.02, 1 / rate / 4))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(os.getpid()) - cpu0
        try:
            ast = cpu_seconds(self.asterisk_pid) - ast0
        except FileNotFoundError:
            raise SystemExit(f"server {self.server}: its Asterisk (pid {self.asterisk_pid}) stopped during the "
                             "benchmark (another user of the sandbox restarted it?)") from None
        placed = self.placed[placed_before:]
        timeouts = sum(1 for c in placed if c.state is CallState.UNKNOWN or c.lost)
        return {"server": self.server, "phase": name, "rate": rate, "seconds": round(elapsed, 1),
                "originated": len(tasks), "peak_up": self.peak_up, "reached": reached_at is not None,
                "originate_p50_ms": percentile(self.originate_ms, 50), "originate_p99_ms": percentile(self.originate_ms, 99),
                "named_p50_ms": percentile(self.named_ms, 50), "named_p99_ms": percentile(self.named_ms, 99),
                "named": len(self.named_ms),
                "events_per_s": (conn.counters.events_received - events_before) / elapsed,
                "engine_cpu_pct": 100 * cpu / elapsed, "asterisk_cpu_pct": 100 * ast / elapsed,
                "failed": self.failed_originates - failed_before, "timed_out": timeouts}

    async def drain(self, limit_s: float) -> dict:
        """Wait for every call to end (hanging up what is left after `limit_s`)."""
        deadline = time.monotonic() + limit_s
        while self.calls.active and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        for call in list(self.calls.active.values()):
            await self.calls.give_up(call, "the benchmark ended")
        await asyncio.gather(*self._naming, return_exceptions=True)
        outcomes = Counter(c.outcome.value if c.outcome else c.state.value for c in self.placed)
        return {"server": self.server, "outcomes": dict(outcomes),
                "call_ids": [c.call_id for c in self.placed]}


async def drive(server: str, serial: int, plan: dict) -> dict:
    site = Site.from_env().in_sandbox(server)
    pid = sandbox.running_pid(site)
    if pid is None:
        raise SystemExit(f"server {server}: its sandbox is not running (dunning asterisk sandbox up --name {server})")
    conn = AmiConnection(ami_settings(site))
    calls = Calls(conn)
    await conn.start(wait=False)
    await conn.wait_fully_booted(30)
    driver = Driver(calls, server, serial, pid)
    try:
        phases = [await driver.phase("steady", plan["rate"], plan["seconds"])]
        phases.append(await driver.phase("peak", plan["peak_rate"], plan["peak_seconds"], until_up=plan["calls"]))
        ended = await driver.drain(HOLD_S + 30)
    finally:
        calls.close()
        await conn.close()
    return {"phases": phases, **ended}


def dials_in_log(site: Site, since: int) -> list[tuple[str, str]]:
    """(call id, number) of each dial Asterisk logged past byte `since` of its messages.log."""
    with open(site.sandbox_root / "var/log/asterisk/messages.log", "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    found = []
    for line in text.splitlines():
        if "dunning-dial " in line:
            uniqueid, number = line.split("dunning-dial ", 1)[1].split()[:2]
            found.append((uniqueid.removesuffix("-2"), number))
    return found


def log_size(site: Site) -> int:
    return (site.sandbox_root / "var/log/asterisk/messages.log").stat().st_size


def scenario(servers: list[str], plan: dict, serial: int) -> list[dict]:
    """Every server in `servers` driven at once by its own process; their results, checked
    against each Asterisk's own log."""
    home = Site.from_env()
    sites = {s: home.in_sandbox(s) for s in servers}
    offsets = {s: log_size(site) for s, site in sites.items()}
    procs = {s: subprocess.Popen([sys.executable, "-m", "bench.ami_load", "--drive", s, "--serial", str(serial + i),
                                  "--plan", json.dumps(plan)], stdout=subprocess.PIPE, text=True)
             for i, s in enumerate(servers)}
    results = []
    for s, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"the driver of server {s} failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    numbers_by_server = {}
    for result in results:
        dials = dials_in_log(sites[result["server"]], offsets[result["server"]])
        ids = Counter(call_id for call_id, _ in dials)
        result["dialled_twice"] = sum(1 for n in ids.values() if n > 1)
        result["not_in_log"] = len(set(result["call_ids"]) - set(ids))
        numbers_by_server[result["server"]] = {number for _, number in dials}
        del result["call_ids"]
    shared = set.intersection(*numbers_by_server.values()) if len(numbers_by_server) > 1 else set()
    for result in results:
        result["dialled_by_two_servers"] = len(shared)
    return results


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def table(rows: list[tuple[str, dict]]) -> str:
    head = ("| run | server | phase | originates/s | originated | most calls up | originate p50 / p99 ms "
            "| answer → agent named p50 / p99 ms | AMI events/s | engine CPU % | Asterisk CPU % "
            "| engine ÷ Asterisk | failed / timed out |\n" + "|---" * 13 + "|")
    lines = [head]
    for run, p in rows:
        share = p["engine_cpu_pct"] / p["asterisk_cpu_pct"] if p["asterisk_cpu_pct"] else float("nan")
        lines.append(f"| {run} | {p['server']} | {p['phase']} | {p['rate']:g} | {p['originated']} | {p['peak_up']} "
                     f"| {_ms(p['originate_p50_ms'])} / {_ms(p['originate_p99_ms'])} "
                     f"| {_ms(p['named_p50_ms'])} / {_ms(p['named_p99_ms'])} | {p['events_per_s']:.0f} "
                     f"| {p['engine_cpu_pct']:.1f} | {p['asterisk_cpu_pct']:.1f} | {100 * share:.0f} % "
                     f"| {p['failed']} / {p['timed_out']} |")
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> str:
    return "–" if not a or not b else f"{a / b:.2f}×"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls up at once to reach per server (peak phase)")
    parser.add_argument("--rate", type=float, default=5.0, help="originates a second per server (steady phase)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the steady phase lasts")
    parser.add_argument("--peak-rate", type=float, default=10.0, help="originates a second per server (peak phase)")
    parser.add_argument("--peak-seconds", type=float, default=90.0, help="the peak phase's longest")
    parser.add_argument("--servers", default="A,B", help="the servers of the second run (the first: the first alone)")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    parser.add_argument("--serial", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        print(json.dumps(asyncio.run(drive(args.drive, args.serial, json.loads(args.plan)))))
        return
    if os.geteuid() != 0:
        raise SystemExit("bench.ami_load reads Asterisk's CPU in its chroot: run it as root")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    plan = {"calls": args.calls, "rate": args.rate, "seconds": args.seconds, "peak_rate": args.peak_rate,
            "peak_seconds": args.peak_seconds}
    load = os.getloadavg()
    _say(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    serial = int(time.time()) % 30 * 3  # each driver's numbers its own: 13 SS NNNNNN 0
    _say(f"one server ({servers[0]}), the baseline: {plan}")
    one = scenario(servers[:1], plan, serial)
    runs = [("one server", r) for r in one]
    if len(servers) > 1:
        _say(f"{len(servers)} servers at once ({', '.join(servers)}), each at the same load")
        runs += [(f"{len(servers)} servers", r) for r in scenario(servers, plan, serial + 1)]
    rows = [(run, p) for run, r in runs for p in r["phases"]]
    print(table(rows))
    for run, r in runs:
        print(f"{run}, {r['server']}: outcomes {r['outcomes']}; dialled twice {r['dialled_twice']}, "
              f"originated but not in Asterisk's log {r['not_in_log']}, numbers dialled by two servers "
              f"{r['dialled_by_two_servers']}")
    if len(servers) > 1:
        base = {p["phase"]: p for p in one[0]["phases"]}
        many = [p for run, r in runs[1:] for p in r["phases"]]
        for phase, b in base.items():
            mine = [p for p in many if p["phase"] == phase]
            up = sum(p["peak_up"] for p in mine)
            print(f"{phase}: calls up at once, {len(servers)} servers ÷ one: {ratio(up, b['peak_up'])}; per-call "
                  f"originate p99 {ratio(max(p['originate_p99_ms'] or 0 for p in mine), b['originate_p99_ms'])}, "
                  f"answer → named p99 {ratio(max(p['named_p99_ms'] or 0 for p in mine), b['named_p99_ms'])} "
                  f"(the worst server's against the baseline)")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
