"""Answering-machine detection on the sandbox: how well AMD() tells the simulated network's
machines from its people, and what it adds to a person's connection.

Run from the repository root, as root, with the sandbox up (it uses the sandbox and its
softphones: take the sandbox lock if others share the machine):
``python -m bench.amd [--answers 120] [--agents 3]``.

The simulated set (asterisk_conf.generate, dunning-sim-machine / dunning-sim-human): half
answering machines (``26VS``: five recorded greetings of 3 to 9 s, English and Mandarin, a
pick-up 0.3-0.9 s before the greeting, then a beep), half people who say only "hello?",
"喂？", "喂，你好？", "yes?" or "喂，哪位？" 0.2-0.8 s after picking up and then wait; each
rings 1 to 3 s first. Every call is placed as the engine places it in progressive mode
(``dialer.outbound.dial_request``, the agent reserved, on the agent's persistent line; the
agents are baresip softphones), in two arms in the same run:

* ``amd``: ``--answers`` calls, machines and people in turn, with ``DUNNING_AMD=hangup``;
* ``no AMD`` (the baseline): the people of the set again, without AMD.

Measured: the share of machines AMD took for machines (target >= 90 %), the share of people
it took for machines (target <= 5 %), whether any MACHINE result reached an agent, and for each
person bridged, Asterisk's answer to the person entering the bridge with the agent (the
engine's ``answered_at`` and ``bridged_at``), with AMD and without.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ami_bridge import AmiConnection, Calls
from ami_bridge.lines import Lines
from asterisk_conf.generate import SIM_VARIANTS
from asterisk_conf.site import Site
from asterisk_conf.softphone import Softphone
from dialer.outbound import dial_request
from dialer.sandbox_session import ami_settings

from .agent_line import sandbox_agents
from .search import percentile

MACHINES_DETECTED_AT_LEAST = 0.90
PEOPLE_TAKEN_AT_MOST = 0.05


@dataclasses.dataclass
class Answer:
    number: str
    machine: bool           # what the simulated set says it is
    status: str = ""        # what AMD said ("" without AMD)
    cause: str = ""
    connect_ms: float | None = None   # answered -> bridged with the agent
    problem: str = ""

    @property
    def taken_for_machine(self) -> bool:
        return self.status == "MACHINE"


def simulated_set(answers: int) -> list[Answer]:
    """Machines and people in turn, each greeting and each ring time in turn: 26VS / 27VS."""
    out = []
    for i in range(answers):
        variant, ring = (i // 2) % SIM_VARIANTS, 1 + (i // (2 * SIM_VARIANTS)) % 3
        machine = i % 2 == 0
        out.append(Answer(f"{26 if machine else 27}{variant}{ring}", machine))
    return out


async def _place(calls: Calls, lines: Lines, extension: str, todo: list[Answer], amd: bool, serial) -> None:
    while todo:
        answer = todo.pop()
        line = lines.up(extension)
        if line is None:
            answer.problem = f"agent {extension}'s line is down"
            continue
        extra = {"DUNNING_LINE": line.line_id, **({"DUNNING_AMD": "hangup"} if amd else {})}
        call = await calls.originate(dial_request(f"benchamd{int(time.time())}-{extension}-{next(serial)}",
                                                  answer.number, extension, 15, extra=extra))
        deadline = time.monotonic() + 30
        while call.bridged_at is None and call.ended_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        answer.status, answer.cause = call.amd_status or "", call.amd_cause
        if call.bridged_at is not None and call.answered_at is not None:
            answer.connect_ms = (call.bridged_at - call.answered_at) * 1000
        elif not answer.taken_for_machine:
            answer.problem = f"{call.call_id}: neither bridged nor taken for a machine ({call.state.value})"
        if call.ended_at is None:
            await calls.hangup(call)
        try:
            await call.ended(15)
        except asyncio.TimeoutError:
            answer.problem = f"{call.call_id}: did not end"
        await asyncio.sleep(0.3)  # the line settles before its next call


async def measure(site: Site, extensions: list[str], answers: list[Answer], amd: bool) -> None:
    conn = AmiConnection(ami_settings(site))
    await conn.start(wait=False)
    await conn.wait_fully_booted(30)
    calls, lines = Calls(conn), Lines(conn)
    try:
        for extension in extensions:
            await lines.call(extension, 20)
        deadline = time.monotonic() + 20
        while any(lines.up(e) is None for e in extensions) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        todo = list(reversed(answers))
        serial = itertools.count(1)
        await asyncio.gather(*(_place(calls, lines, e, todo, amd, serial) for e in extensions))
        lines.close()
        for extension in extensions:
            await lines.hang_up(extension)
    finally:
        calls.close()
        await conn.close()


def _ms(values: list[float]) -> str:
    return " | ".join(f"{percentile(values, q):.0f}" for q in (0.5, 0.95, 0.99)) if values else "- | - | -"


def report(with_amd: list[Answer], without: list[Answer]) -> tuple[str, bool]:
    machines = [a for a in with_amd if a.machine]
    people = [a for a in with_amd if not a.machine]
    detected = sum(a.taken_for_machine for a in machines) / max(len(machines), 1)
    taken = sum(a.taken_for_machine for a in people) / max(len(people), 1)
    reached = [a for a in with_amd if a.connect_ms is not None and a.taken_for_machine]
    amd_ms = [a.connect_ms for a in people if a.connect_ms is not None]
    base_ms = [a.connect_ms for a in without if a.connect_ms is not None]
    causes: dict[str, int] = {}
    for a in with_amd:
        key = f"{'machine' if a.machine else 'person'} -> {a.status} {a.cause.split('-')[0]}"
        causes[key] = causes.get(key, 0) + 1
    added = percentile(amd_ms, 0.5) - percentile(base_ms, 0.5) if amd_ms and base_ms else float("nan")
    ratio = percentile(amd_ms, 0.5) / max(percentile(base_ms, 0.5), 0.001) if amd_ms and base_ms else float("nan")
    lines = [
        f"AMD on the simulated set: {len(with_amd)} answers ({len(machines)} machines, {len(people)} people), "
        f"and the same people again without AMD, in the same run\n",
        "| | share | target |", "| --- | --- | --- |",
        f"| machines detected | {detected:.1%} ({sum(a.taken_for_machine for a in machines)} of {len(machines)}) "
        f"| >= {MACHINES_DETECTED_AT_LEAST:.0%} |",
        f"| people taken for machines | {taken:.1%} ({sum(a.taken_for_machine for a in people)} of {len(people)}) "
        f"| <= {PEOPLE_TAKEN_AT_MOST:.0%} |",
        f"| MACHINE results that reached an agent | {len(reached)} | 0 |",
        "",
        "A person answered -> bridged with the agent, ms:\n",
        "| arm | people bridged | p50 | p95 | p99 | p50 added | p50 ÷ baseline's |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| AMD | {len(amd_ms)} | {_ms(amd_ms)} | +{added:.0f} ms | {ratio:.0f}x |",
        f"| no AMD (baseline) | {len(base_ms)} | {_ms(base_ms)} | | 1x |",
        "",
        "AMD's verdicts (kind -> AMDSTATUS AMDCAUSE): " + ", ".join(f"{k} {v}" for k, v in sorted(causes.items())),
    ]
    problems = [a.problem for a in with_amd + without if a.problem]
    lines += [f"- {p}" for p in problems]
    ok = (detected >= MACHINES_DETECTED_AT_LEAST and taken <= PEOPLE_TAKEN_AT_MOST and not reached
          and len(with_amd) >= 100 and not problems)
    lines.append(f"\ntargets (>= 100 answers, machines >= 90 %, people <= 5 %, no MACHINE result at an agent): "
                 f"{'met' if ok else 'NOT met'}")
    return "\n".join(lines), ok


async def run(answers_n: int, agents: int) -> int:
    found = sandbox_agents(agents)
    if found is None:
        return 2
    site, creds, extensions = found
    with_amd = simulated_set(answers_n)
    without = [Answer(a.number, a.machine) for a in with_amd if not a.machine]
    with tempfile.TemporaryDirectory(prefix="bench-amd-") as tmp:
        voice = Path(tmp) / "agent.wav"
        subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(voice), "synth", "900", "sine", "300",
                        "vol", "0.1"], check=True)
        phones = [Softphone(ext, creds.agent_passwords[ext], voice, Path(tmp) / ext,
                            sip_server=f"127.0.0.1:{site.sip_port}") for ext in extensions]
        for phone in phones:
            phone.start()
        try:
            for arm, answers, amd in (("amd", with_amd, True), ("no AMD", without, False)):
                started = time.monotonic()
                await measure(site, extensions, answers, amd)
                print(f"{arm}: {len(answers)} calls in {time.monotonic() - started:.0f} s", file=sys.stderr)
        finally:
            for phone in phones:
                phone.stop()
    text, ok = report(with_amd, without)
    print(text)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=120, help="answers under AMD, half machines (default 120)")
    parser.add_argument("--agents", type=int, default=3, help="softphone agents (default 3, the sandbox's)")
    args = parser.parse_args(argv)
    if args.answers < 2 or args.agents < 1:
        parser.error("--answers must be at least 2 and --agents positive")
    return asyncio.run(run(args.answers, args.agents))


if __name__ == "__main__":
    sys.exit(main())
