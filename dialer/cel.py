"""Asterisk's own record of each call: its CEL log (cel_custom's CSV), read by the engine.

The engine sees a call's answer, bridge and hang-up live, as AMI events. When it could not
(the engine was killed mid-call, the AMI connection was lost, Asterisk froze or restarted),
the times and causes come from here: Asterisk writes one line per channel event whatever the
engine does (asterisk_conf/generate.py: CEL_FILE, CEL_FIELDS). Never from file times, never
from the moment the engine took a call over.

A call we originate is a Local pair: ``<call_id>`` (our half: the agent side) and
``<call_id>-2`` (the half that dials the debtor); everything they dial has linkedid = call_id.

* answered: the first ANSWER of either half (the debtor picked up);
* reached us: our half's ANSWER (the call went on into dunning-answered: recorded, put
  through); a call answered that never reached us was dropped as the debtor picked up
  (Asterisk gave the dial up in that instant: its ring time over, a freeze, a shutdown);
* bridged: our half's first BRIDGE_ENTER (the debtor put through to the agent);
* ended: our half's HANGUP (else the last HANGUP of the call, else LINKEDID_END);
* who hung up first, and the debtor side's first cause that says something, as the live
  registry takes them (ami_bridge/calls.py).

A call whose record has no LINKEDID_END while Asterisk no longer has its channels was cut by
Asterisk going away (killed): `CelCall.complete` is False.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ami_bridge.calls import CallFacts, CallOutcome, Side, classify

#: The contexts in which an agent's softphone channel starts (its endpoint's context).
AGENT_CONTEXTS = ("dunning-agents",)


@dataclass(frozen=True)
class CelRow:
    event: str
    at: float  # epoch seconds
    uniqueid: str
    linkedid: str
    channel: str
    context: str
    extra: str

    @property
    def cause(self) -> int | None:
        try:
            value = json.loads(self.extra).get("hangupcause") if self.extra else None
        except (ValueError, AttributeError):
            return None
        return int(value) if value is not None else None


def _wall(at: float | None) -> dt.datetime | None:
    return None if at is None else dt.datetime.fromtimestamp(at, dt.timezone.utc)


@dataclass(frozen=True)
class CelCall:
    """One call as Asterisk recorded it."""

    call_id: str
    rows: tuple[CelRow, ...]
    drop_window_s: float = 2.0

    @property
    def dialled(self) -> bool:
        """Asterisk started the half that dials the debtor."""
        return any(r.event == "CHAN_START" and r.uniqueid == f"{self.call_id}-2" for r in self.rows)

    @property
    def complete(self) -> bool:
        """Every channel of the call ended and Asterisk wrote so (LINKEDID_END)."""
        return any(r.event == "LINKEDID_END" for r in self.rows)

    def _first(self, event: str, uniqueids: tuple[str, ...]) -> float | None:
        return min((r.at for r in self.rows if r.event == event and r.uniqueid in uniqueids), default=None)

    @property
    def answered_at(self) -> float | None:
        return self._first("ANSWER", (self.call_id, f"{self.call_id}-2"))

    @property
    def reached_us_at(self) -> float | None:
        return self._first("ANSWER", (self.call_id,))

    @property
    def bridged_at(self) -> float | None:
        bridged = self._first("BRIDGE_ENTER", (self.call_id,))
        if bridged is None:
            return None
        # Our half enters a bridge only once the agent's phone answered the Dial.
        agents = self._agent_channels()
        return bridged if agents and any(r.event == "ANSWER" and r.uniqueid in agents for r in self.rows) else None

    def _agent_channels(self) -> set[str]:
        return {r.uniqueid for r in self.rows if r.event == "CHAN_START" and r.context in AGENT_CONTEXTS}

    def side(self, uniqueid: str) -> Side:
        return Side.OURS if uniqueid == self.call_id or uniqueid in self._agent_channels() else Side.DEBTOR

    @property
    def ended_at(self) -> float | None:
        ours = [r.at for r in self.rows if r.event == "HANGUP" and r.uniqueid == self.call_id]
        if ours:
            return min(ours)
        hangups = [r.at for r in self.rows if r.event in ("HANGUP", "LINKEDID_END")]
        return max(hangups, default=None)

    def facts(self) -> CallFacts:
        hangups = sorted((r for r in self.rows if r.event == "HANGUP"), key=lambda r: r.at)
        first = hangups[0] if hangups else None
        cause = next((r.cause for r in hangups if self.side(r.uniqueid) is Side.DEBTOR and r.cause), None)
        return CallFacts(reason=None, answered_at=self.answered_at, reached_us_at=self.reached_us_at,
                         bridged_at=self.bridged_at, first_hangup_side=self.side(first.uniqueid) if first else None,
                         first_hangup_at=first.at if first else None, debtor_cause=cause,
                         lost=not self.dialled)

    def outcome(self) -> CallOutcome:
        return classify(self.facts(), self.drop_window_s)

    @property
    def debtor_cause(self) -> int | None:
        return self.facts().debtor_cause

    # wall-clock (UTC) versions, as the attempt stores them
    @property
    def answered(self) -> dt.datetime | None:
        return _wall(self.answered_at)

    @property
    def bridged(self) -> dt.datetime | None:
        return _wall(self.bridged_at)

    @property
    def ended(self) -> dt.datetime | None:
        return _wall(self.ended_at)


@dataclass
class CelLog:
    """The CEL file, read incrementally (only what was appended since the last read) and
    indexed by linkedid; safe to share between threads (the engine settles calls on several).

    Rotation (asterisk_conf/generate.py: cel_logrotate): cel_custom opens the file for every
    line, so a rotation renames it and Asterisk starts a new one. The file is kept open, so
    the lines written to it before the rename are still read; then the new file from its
    start. The first read also reads the previous file (``<name>.1``), so that a call from
    before the last rotation is still found. The calls of the current and the previous file
    are kept in memory, no older ones. A file that shrank (truncated in place) is read again
    from its start."""

    path: Path
    drop_window_s: float = 2.0
    _file: io.BufferedReader | None = None
    _inode: int | None = None
    _rows: dict[str, list[CelRow]] = field(default_factory=dict)
    _older: dict[str, list[CelRow]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rest: bytes = b""
    _started: bool = False

    def refresh(self) -> None:
        # One reader at a time, and the rows indexed before anyone sees the file as read: a
        # second reader must not index only the end of a call while the first still parses
        # its start (a record with its hang-up and no dial).
        with self._lock:
            if not self._started:
                self._started = True
                self._index(_read_previous(self.path), self._older)
            if self._file is not None:
                self._read_open_file()  # to its end, even if it was renamed away meanwhile
            try:
                st = os.stat(self.path)
            except OSError:
                return
            if self._file is not None and st.st_ino == self._inode and st.st_size >= self._file.tell():
                return
            if self._file is not None:  # rotated (renamed away, or truncated in place)
                self._file.close()
                self._older, self._rows = self._rows, {}
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 - kept open to read across a rotation
            except OSError:
                self._file = None
                return
            self._inode, self._rest = os.fstat(self._file.fileno()).st_ino, b""
            self._read_open_file()

    def _read_open_file(self) -> None:
        data = self._rest + self._file.read()
        end = data.rfind(b"\n") + 1  # only whole lines; a line being written is read next time
        self._rest = data[end:]
        self._index(data[:end], self._rows)

    @staticmethod
    def _index(data: bytes, into: dict[str, list[CelRow]]) -> None:
        for fields in csv.reader(io.StringIO(data.decode("utf-8", "replace"))):
            if len(fields) < 8:
                continue
            try:
                at = float(fields[1])
            except ValueError:
                continue
            row = CelRow(fields[0], at, fields[2], fields[3], fields[4], fields[5], fields[7])
            into.setdefault(row.linkedid, []).append(row)

    def close(self) -> None:
        """Let the file go and forget what was read (a later read starts again)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file, self._inode, self._rest, self._started = None, None, b"", False
            self._rows, self._older = {}, {}

    def call(self, call_id: str) -> CelCall | None:
        """The call as Asterisk recorded it, or None when Asterisk has no line of it."""
        self.refresh()
        with self._lock:
            rows = self._older.get(call_id, []) + self._rows.get(call_id, [])
        if not rows:
            return None
        return CelCall(call_id, tuple(sorted(rows, key=lambda r: r.at)), self.drop_window_s)

    def dials(self, prefix: str = "") -> dict[str, int]:
        """How many times Asterisk started dialling the debtor for each call id."""
        self.refresh()
        with self._lock:
            calls = list(self._older.values()) + list(self._rows.values())
        out: dict[str, int] = {}
        for rows in calls:
            for r in rows:
                if r.event == "CHAN_START" and r.uniqueid.endswith("-2") and r.uniqueid.startswith(prefix):
                    out[r.uniqueid[:-2]] = out.get(r.uniqueid[:-2], 0) + 1
        return out


def _read_previous(path: Path) -> bytes:
    """The previous CEL file's lines (``<name>.1``, as a rename rotation leaves it), if any."""
    try:
        data = path.with_name(path.name + ".1").read_bytes()
    except OSError:
        return b""
    return data[:data.rfind(b"\n") + 1]
