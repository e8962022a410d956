"""Debtor answered -> both parties bridged: the persistent line against a call per debtor.

Run from the repository root, as root, with the sandbox up (it uses the sandbox and its
softphones: take the sandbox lock if others share the machine):
``python -m bench.agent_line [--calls 100] [--agents 3] [--click 0.5]``.

The agents are baresip softphones in **manual-answer** mode (they ring until someone
clicks), and an agent at the desk clicks "answer" ``--click`` seconds after a call comes in
(0.5 s is a fast human; a real one takes one to three seconds). Each mode makes ``--calls``
calls to simulated debtors who answer after one second (``2101``), as the engine does
(``dialer.outbound.dial_request`` with the agent reserved) and hangs each call up once both
parties are bridged. What is measured, per call: from Asterisk saying the debtor answered
to the debtor's half of the call entering the bridge with the agent (the same two events the
engine writes as ``answered_at`` and ``bridged_at``).

* ``persistent``: each phone is called once (and clicked once); every debtor is bridged to
  the waiting line with no ring;
* ``ringing``: the baseline, today's call per debtor, which rings until the click.

Both modes run in the same run, one after the other, on the same agents, and the table
prints each mode's p50/p95/p99/max and the ratio of the baseline's figure to the persistent
line's.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

from ami_bridge import AmiConnection, Calls
from ami_bridge.lines import Lines, LineState
from asterisk_conf import credentials
from asterisk_conf.site import Site
from asterisk_conf.softphone import Softphone
from dialer.outbound import dial_request
from dialer.sandbox_session import ami_settings

from .search import percentile

MODES = ("persistent", "ringing")
TARGET_P99_MS = 300.0
DEBTOR = "2101"  # answers after 1 s and stays on the line


async def _agent_calls(calls: Calls, lines: Lines | None, extension: str, count: int, serial,
                       out: list[float], failures: list[str]) -> None:
    for _ in range(count):
        call_id = f"bench{int(time.time())}-{extension}-{next(serial)}"
        extra = {}
        if lines is not None:
            line = lines.up(extension)
            if line is None:
                failures.append(f"{call_id}: agent {extension}'s line is down")
                return
            extra = {"DUNNING_LINE": line.line_id}
        call = await calls.originate(dial_request(call_id, DEBTOR, extension, 15, extra=extra))
        deadline = time.monotonic() + 20
        while call.bridged_at is None and call.ended_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if call.bridged_at is not None and call.answered_at is not None:
            out.append((call.bridged_at - call.answered_at) * 1000)
        else:
            failures.append(f"{call_id}: not bridged ({call.state.value})")
        await calls.hangup(call)
        try:
            await call.ended(10)
        except asyncio.TimeoutError:
            failures.append(f"{call_id}: did not end")
        await asyncio.sleep(0.3)  # the phone settles before its next call


async def measure(site: Site, mode: str, phones: list[Softphone], calls_n: int) -> tuple[list[float], list[str]]:
    conn = AmiConnection(ami_settings(site))
    await conn.start(wait=False)
    await conn.wait_fully_booted(30)
    calls = Calls(conn)
    lines = Lines(conn) if mode == "persistent" else None
    out: list[float] = []
    failures: list[str] = []
    try:
        if lines is not None:
            for phone in phones:
                await lines.call(phone.extension, 20)
            deadline = time.monotonic() + 20
            while any(lines.up(p.extension) is None for p in phones) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        share = [calls_n // len(phones) + (i < calls_n % len(phones)) for i in range(len(phones))]
        serial = itertools.count(1)
        await asyncio.gather(*(_agent_calls(calls, lines, p.extension, n, serial, out, failures)
                               for p, n in zip(phones, share)))
        if lines is not None:
            lost = [line.extension for line in lines.lines.values() if line.state is LineState.DOWN]
            failures += [f"agent {ext}'s line went down during the run" for ext in lost]
            lines.close()
            for phone in phones:
                await lines.hang_up(phone.extension)
    finally:
        calls.close()
        await conn.close()
    return out, failures


def row(name: str, values: list[float], baseline: list[float] | None) -> str:
    qs = (0.50, 0.95, 0.99)
    cells = [f"{percentile(values, q):.1f}" for q in qs] + [f"{max(values):.1f}"]
    if baseline:
        cells += [f"{percentile(baseline, q) / max(percentile(values, q), 0.001):.0f}x" for q in qs]
    else:
        cells += ["1x"] * 3
    return f"| {name} | {len(values)} | " + " | ".join(cells) + " |"


def sandbox_agents(agents: int) -> tuple[Site, credentials.Credentials, list[str]] | None:
    """The sandbox, its credentials and its first `agents` agents' extensions; None (said on
    stderr) when it has fewer."""
    site = Site.from_env()
    creds = credentials.load_or_create(site.home)
    extensions = sorted(creds.agent_passwords)[:agents]
    if len(extensions) < agents:
        print(f"error: the sandbox has {len(extensions)} agents' endpoints, --agents asks {agents}", file=sys.stderr)
        return None
    return site, creds, extensions


async def run(calls_n: int, agents: int, click_s: float) -> int:
    found = sandbox_agents(agents)
    if found is None:
        return 2
    site, creds, extensions = found
    results: dict[str, tuple[list[float], list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-line-") as tmp:
        voice = Path(tmp) / "agent.wav"
        import subprocess
        subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(voice), "synth", "900", "sine", "300",
                        "vol", "0.1"], check=True)
        for mode in MODES:
            phones = [Softphone(ext, creds.agent_passwords[ext], voice, Path(tmp) / f"{mode}-{ext}",
                                sip_server=f"127.0.0.1:{site.sip_port}", answer_mode="manual") for ext in extensions]
            for phone in phones:
                phone.start()
                phone.keep_answering(click_s)
            try:
                results[mode] = await measure(site, mode, phones, calls_n)
            finally:
                rings = {p.extension: p.rings for p in phones}
                for phone in phones:
                    phone.stop()
            print(f"{mode}: {len(results[mode][0])} calls bridged, the phones rang {sum(rings.values())} times",
                  file=sys.stderr)
    print(f"Debtor answered -> both parties bridged, ms ({agents} baresip agents in manual-answer mode, "
          f"clicked {click_s:.1f} s after each ring; {calls_n} calls per mode)\n")
    print("| mode | calls | p50 | p95 | p99 | max | ringing/persistent p50 | p95 | p99 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    persistent, ringing = results["persistent"][0], results["ringing"][0]
    if persistent:
        print(row("persistent line", persistent, ringing))
    if ringing:
        print(row("ringing (baseline)", ringing, None))
    failures = results["persistent"][1] + results["ringing"][1]
    for failure in failures:
        print(f"- {failure}")
    ok = bool(persistent) and percentile(persistent, 0.99) <= TARGET_P99_MS and len(persistent) >= min(calls_n, 100)
    print(f"\ntarget: persistent p99 <= {TARGET_P99_MS:.0f} ms over >= 100 calls: {'met' if ok else 'NOT met'}")
    return 0 if ok and not failures else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per mode (default 100)")
    parser.add_argument("--agents", type=int, default=3, help="softphone agents (default 3, the sandbox's)")
    parser.add_argument("--click", type=float, default=0.5, help="seconds before the agent clicks answer")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.agents < 1 or args.click < 0:
        parser.error("--calls and --agents must be positive, --click not negative")
    return asyncio.run(run(args.calls, args.agents, args.click))


if __name__ == "__main__":
    sys.exit(main())
