"""Live findings, the service (`dunning live`): the agent's words on each call in progress,
streamed by Asterisk over AudioSocket, recognised by Vosk as they are spoken, checked by the
live rules (recordings/live_findings.py), and each breach raised as an alert on the
supervisor's wallboard.

How the audio gets here: while the service runs, the global variable DUNNING_LIVE in Asterisk
holds its address (`announce` sets it over AMI at every (re)connection and clears it on the
way out). When a debtor is put through to an agent, the dialplan (dunning-answered) then
originates an AudioSocket channel to that address that quietly spies on the agent's direction
of the call only (ChanSpy ``qouE``); its UUID is made from the call id
(`recordings.audiosocket.call_uuid`), so each stream is matched to its attempt. Without the
service (DUNNING_LIVE empty) the dialplan skips all this; the call and its recording are the
same either way.

Each stream gets its own Vosk recogniser (the model the after-call path uses, loaded once;
`KaldiRecognizer` at 8 kHz, partial results with words) run in a worker thread, a quarter of a
second of audio at a time. An alert is an ``alerts`` row (kind ``live_finding``, key
``live:<call id>:<rule id>``: once a call and rule) of the call's campaign and agent, which the
wallboard shows with the call's identity until it is acknowledged (`dunning alerts --ack`).
Nothing here is stored as a finding: the after-call transcript and its findings stay the record.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import utc_now
from campaigns.db import transaction
from campaigns.models import Agent, Alert, Attempt, AttemptState

from . import audiosocket
from .findings import RuleSet, ruleset_for, rulesets_in_use
from .live_findings import LIVE_SEVERITIES, Latency, LiveAlert, LiveCall, StreamClock, alert_message, live_rules

log = logging.getLogger(__name__)

ALERT_KIND = "live_finding"
#: The global variable the dialplan reads (asterisk_conf/generate.py, dunning-answered).
LIVE_VARIABLE = "DUNNING_LIVE"
DEFAULT_PORT = 9092
#: Audio handed to the recogniser at once: 0.25 s (the alert can come no sooner after the words).
CHUNK_BYTES = audiosocket.FRAME_BYTES * 25 // 2
#: How long a stream waits for its attempt to be found (the engine writes it before dialling).
FIND_ATTEMPT_S = 3.0
#: Calls older than this are not looked at when a stream is matched to its attempt.
RECENT = dt.timedelta(hours=6)


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    attempt_id: int
    campaign_id: int
    agent_id: int | None
    extension: str | None


@dataclass
class Stream:
    """One call's live stream, for whoever watches the service (tests, the benchmark)."""

    call: CallInfo
    live: LiveCall
    clock: StreamClock = field(default_factory=StreamClock)
    alerts: list[tuple[LiveAlert, Latency]] = field(default_factory=list)
    ended: bool = False


def find_call(session: Session, call_uuid: str, now: dt.datetime) -> CallInfo | None:
    """The call in progress whose stream UUID this is."""
    rows = session.execute(
        select(Attempt, Agent.extension).outerjoin(Agent, Agent.id == Attempt.agent_id).where(
            Attempt.state != AttemptState.ENDED.value, Attempt.planned_at >= now - RECENT))
    for attempt, extension in rows:
        if audiosocket.call_uuid(attempt.call_id) == call_uuid:
            return CallInfo(attempt.call_id, attempt.id, attempt.campaign_id, attempt.agent_id, extension)
    return None


def raise_alert(session: Session, call: CallInfo, alert: LiveAlert, now: dt.datetime) -> bool:
    """The alert as an ``alerts`` row (False when this call and rule already have one)."""
    if session.scalar(select(Alert.id).where(Alert.key == alert.key)) is not None:
        return False
    session.add(Alert(key=alert.key, kind=ALERT_KIND, campaign_id=call.campaign_id, agent_id=call.agent_id,
                      message=alert_message(alert, call.extension), raised_at=now))
    return True


class LiveService:
    """The AudioSocket server and its recognisers. `model`: a loaded ``vosk.Model`` (see
    `recordings.transcribe.load_model`); `language`: the model's (picks the rule set)."""

    def __init__(self, factory: sessionmaker[Session], model, language: str, *,
                 severities: tuple[str, ...] = LIVE_SEVERITIES,
                 rules: Callable[[], RuleSet] | None = None,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.factory, self.model, self.language, self.clock = factory, model, language, clock
        self.severities = severities
        # Read again for every call, so a changed DUNNING_QA_RULES file counts from the next call.
        self.rules = rules or (lambda: ruleset_for(language, rulesets_in_use()))
        self.streams: dict[str, Stream] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.stream(reader)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live stream failed")
        finally:
            writer.close()

    async def stream(self, reader: asyncio.StreamReader) -> Stream | None:
        """Serve one AudioSocket connection until the call hangs up."""
        frames = audiosocket.Reader()
        pending: list[audiosocket.Frame] = []
        while not pending:
            data = await reader.read(4096)
            if not data:
                return None
            pending = frames.feed(data)
        first = pending.pop(0)
        call = await self._find(first.call_uuid())
        if call is None:
            log.warning("live stream %s: no call in progress has this id; dropped", first.call_uuid())
            return None
        ruleset = await asyncio.to_thread(lambda: live_rules(self.rules(), self.severities))
        stream = self.streams[call.call_id] = Stream(call, LiveCall(call.call_id, ruleset))
        recogniser = await asyncio.to_thread(self._recogniser)
        audio = bytearray()
        received = 0
        hung_up = False
        while not hung_up:
            for f in pending:
                if f.kind == audiosocket.AUDIO:
                    audio += f.payload
                elif f.kind in (audiosocket.HANGUP, audiosocket.ERROR):
                    hung_up = True
            pending = []
            if len(audio) >= CHUNK_BYTES or (hung_up and audio):
                received += len(audio)
                stream.clock.add(received / 2 / audiosocket.SAMPLE_RATE, self.clock())
                chunk, audio = bytes(audio), bytearray()
                final, result = await asyncio.to_thread(self._accept_audio, recogniser, chunk)
                await self._check(stream, result, final)
            if hung_up:
                break
            data = await reader.read(4096)
            if not data:
                break
            pending = frames.feed(data)
        result = await asyncio.to_thread(lambda: json.loads(recogniser.FinalResult()))
        await self._check(stream, result, True)
        stream.ended = True
        return stream

    def _recogniser(self):
        import vosk
        recogniser = vosk.KaldiRecognizer(self.model, audiosocket.SAMPLE_RATE)
        recogniser.SetWords(True)
        recogniser.SetPartialWords(True)
        return recogniser

    @staticmethod
    def _accept_audio(recogniser, chunk: bytes) -> tuple[bool, dict]:
        if recogniser.AcceptWaveform(chunk):
            return True, json.loads(recogniser.Result())
        return False, json.loads(recogniser.PartialResult())

    async def _find(self, call_uuid: str) -> CallInfo | None:
        waited = 0.0
        while True:
            with self.factory() as session:
                call = await asyncio.to_thread(find_call, session, call_uuid, self.clock())
            if call is not None or waited >= FIND_ATTEMPT_S:
                return call
            await asyncio.sleep(0.2)
            waited += 0.2

    async def _check(self, stream: Stream, result: dict, final: bool) -> None:
        for alert in stream.live.heard(result, final):
            words_at = stream.clock.arrived(alert.words_end_s) or self.clock()
            raised = await asyncio.to_thread(self._raise, stream.call, alert)
            if raised is None:
                continue
            latency = Latency(words_at, raised)
            stream.alerts.append((alert, latency))
            log.warning("live finding on call %s: %s (%.2f s after the words)", stream.call.call_id,
                        alert.finding.rule_id, latency.seconds)

    def _raise(self, call: CallInfo, alert: LiveAlert) -> dt.datetime | None:
        with transaction(self.factory) as session:
            if not raise_alert(session, call, alert, self.clock()):
                return None
        return self.clock()  # committed: the wallboard's next poll shows it


async def announce(conn, address: str | None) -> None:
    """Tell Asterisk where the service listens (None: that it has stopped): the global
    DUNNING_LIVE the dialplan reads. `conn`: an ``ami_bridge.connection.AmiConnection``."""
    await conn.send({"Action": "Setvar", "Variable": LIVE_VARIABLE, "Value": address or ""})


async def run_live(service: LiveService, conn, host: str, port: int, stop: asyncio.Event,
                   echo: Callable[[str], None] = print) -> None:
    """Serve until `stop`: listen, announce the address to Asterisk at every (re)connection
    (an Asterisk restart forgets globals), and clear it on the way out."""
    bound_host, bound_port = await service.start(host, port)
    address = f"{bound_host}:{bound_port}"

    async def on_connected() -> None:
        await announce(conn, address)
        echo(f"live findings: Asterisk streams agents' words to {address}")
    unsubscribe = conn.on_connected(on_connected)
    try:
        await conn.start()
        await stop.wait()
    finally:
        unsubscribe()
        try:
            await asyncio.wait_for(announce(conn, None), 5)
        except Exception as exc:  # Asterisk gone: nothing to clear
            echo(f"live findings: could not clear {LIVE_VARIABLE} in Asterisk ({exc})")
        await service.close()
        await conn.close()


