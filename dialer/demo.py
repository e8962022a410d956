"""The main job, for now: softphone agents take calls the engine places to simulated debtors.

Progressive dialing in its simplest honest form: one line per free agent. Each agent's
worker takes the next number, originates it with that agent reserved, waits for the call
to end, and frees the agent. Every state change of every call is printed as it happens;
at the end, a table of outcomes and the recording of each answered call, leg by leg.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ami_bridge import AmiConnection, Call, CallOutcome, Calls, Event
from asterisk_conf.credentials import Credentials
from asterisk_conf.generate import simulated_behaviour
from asterisk_conf.site import Site
from asterisk_conf.softphone import Softphone
from asterisk_conf.speech import speak

from .outbound import dial_request
from recordings.legs import LegLevels, leg_levels
from .sandbox_session import ami_settings

Echo = Callable[[str], None]

AGENT_GREETING = ("Good afternoon, this is Anna calling from Dunning Collections on behalf of "
                  "your bank. This call is recorded. Am I speaking with Mister Li Wei?")


@dataclass(frozen=True)
class DemoResult:
    number: str
    agent: str
    call_id: str
    outcome: CallOutcome
    seconds: float
    bridged: bool
    levels: LegLevels | None


class _Printer:
    """Prints each new state of the calls it watches, as events arrive."""

    def __init__(self, echo: Echo, started: float) -> None:
        self.echo = echo
        self.started = started
        self.watched: dict[str, tuple[Call, str, int]] = {}

    def watch(self, call: Call, label: str) -> None:
        self.watched[call.call_id] = (call, label, 0)
        self(None)

    def __call__(self, _event: Event | None) -> None:
        for call_id, (call, label, shown) in list(self.watched.items()):
            for state, _at in call.history[shown:]:
                self.echo(f"[{time.monotonic() - self.started:6.1f}s] {label:<28} {state.value}")
            self.watched[call_id] = (call, label, len(call.history))


async def run_demo(site: Site, creds: Credentials, numbers: Sequence[str], agents: int,
                   says: Path | None, echo: Echo = print, ring_timeout_s: float = 20.0) -> bool:
    """Dial `numbers` with `agents` softphone agents; True when every call ended with a
    classified outcome and every answered, bridged call left audio on both legs."""
    speech = says or speak(AGENT_GREETING, site.home / "sounds" / "agent-greeting.wav")
    phones = [Softphone(ext, pw, speech, site.home / "softphones" / ext,
                        sip_server=f"127.0.0.1:{site.sip_port}")
              for ext, pw in sorted(creds.agent_passwords.items())[:agents]]
    for phone in phones:
        phone.start()
        echo(f"agent {phone.extension}: softphone registered (baresip, says {speech.name})")
    conn = AmiConnection(ami_settings(site))
    started = time.monotonic()
    printer = _Printer(echo, started)
    results: list[DemoResult] = []
    try:
        await conn.start(wait=False)
        await conn.wait_fully_booted(30)
        calls = Calls(conn)
        conn.subscribe(printer)  # after Calls: it sees each event already applied
        queue: asyncio.Queue[str] = asyncio.Queue()
        for number in numbers:
            queue.put_nowait(number)
        batch = time.strftime("%Y%m%d%H%M%S")
        serial = itertools.count(1)

        async def agent_worker(phone: Softphone) -> None:
            while not queue.empty():
                number = queue.get_nowait()
                call_id = f"demo-{batch}-{next(serial)}"
                request = dial_request(call_id, number, phone.extension, ring_timeout_s)
                call = await calls.originate(request)
                printer.watch(call, f"{number} (agent {phone.extension})")
                outcome = await call.ended(ring_timeout_s + 180)
                seconds = (call.ended_at or conn.now()) - call.sent_at
                levels = None
                if call.answered_at is not None:
                    levels = await leg_levels(site.recordings_spool, call_id)
                results.append(DemoResult(number, phone.extension, call_id, outcome, seconds,
                                          call.bridged_at is not None, levels))
                await asyncio.sleep(1.0)  # wrap-up

        await asyncio.gather(*(agent_worker(phone) for phone in phones))
        snapshot = conn.counters
        echo("")
        echo(_table(results))
        echo(f"\nAMI: {snapshot.originates_sent} originates, {snapshot.events_received} events, "
             f"{snapshot.reconnects} reconnects; recordings in {site.recordings_spool}")
    finally:
        await conn.close()
        for phone in phones:
            phone.stop()
    return all(_healthy(r) for r in results) and len(results) == len(numbers)


def _healthy(result: DemoResult) -> bool:
    if result.outcome in (CallOutcome.LOST, CallOutcome.FAILED):
        return False
    # A call bridged to an agent must have left speech on both legs of its recording.
    return not result.bridged or (result.levels is not None and result.levels.complete)


def _table(results: Sequence[DemoResult]) -> str:
    rows = [("number", "agent", "outcome", "secs", "recording (agent / debtor leg, dBFS)",
             "the simulated debtor")]
    for r in sorted(results, key=lambda r: int(r.call_id.rsplit("-", 1)[1])):
        rec = "-" if r.levels is None else r.levels.describe()
        rows.append((r.number, r.agent if r.bridged else "-", r.outcome.value, f"{r.seconds:.1f}", rec,
                     simulated_behaviour(r.number)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
