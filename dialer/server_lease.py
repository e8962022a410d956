"""The engine's side of a server lease (campaigns/server_leases.py): take the lease on the
Asterisk server it is to drive (or wait for it, as a standby), keep it renewed, and stop
dialling before anyone else can hold it.

The bound: a holder renews every `renew_every`; it counts itself fenced once `ttl - margin`
has passed on its own monotonic clock since it last *asked* for a renewal that succeeded.
The database set that renewal's end at its own clock plus `ttl`, after the ask was sent, so a
fenced holder has stopped dialling at least `margin` before a standby can take the lease,
however slow the database or the network was (a renewal that does not answer in time counts
as failed).

A holder on this same machine whose process no longer exists (killed with `kill -9`, the
machine's OOM killer) is not waited for: its lease is taken over at once, since nothing of it
can still dial.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import secrets
import socket
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from campaigns import server_leases
from campaigns.db import transaction
from campaigns.server_leases import Holding, Lease


class ServerBusy(Exception):
    """Another live engine holds the server, and this one was not started as a standby."""


@dataclasses.dataclass(frozen=True)
class LeaseTerms:
    ttl: dt.timedelta = dt.timedelta(seconds=15)
    renew_every: float = 3.0
    margin: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_every < self.ttl.total_seconds() - self.margin:
            raise ValueError("a lease must be renewed more often than it can be lost "
                             f"(renew every {self.renew_every} s, ttl {self.ttl.total_seconds()} s, "
                             f"margin {self.margin} s)")

    @property
    def fence_after(self) -> float:
        return self.ttl.total_seconds() - self.margin


def this_holder() -> str:
    """This engine process, as a lease names it: host, pid and a tag unique to the process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def gone_here(holder: str, host: str | None = None, alive: Callable[[int], bool] | None = None) -> bool:
    """Whether `holder` was a process of this machine that no longer exists."""
    name, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if name != (host or socket.gethostname()) or not pid_text.isdigit():
        return False
    return not (alive or _alive)(int(pid_text))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take_once(factory: sessionmaker[Session], server: str, holder: str,
               ttl: dt.timedelta) -> tuple[Lease | None, Holding | None]:
    with transaction(factory) as session:
        now = server_leases.database_now(session)
        lease = server_leases.acquire(session, server, holder, now, ttl)
        if lease is not None:
            return lease, None
        current = server_leases.holding(session, server)
        if current is not None and gone_here(current.holder):
            lease = server_leases.take_from(session, current, holder, now, ttl)
            if lease is not None:
                return lease, None
        return None, current


async def take(factory: sessionmaker[Session], server: str, holder: str, terms: LeaseTerms, *,
               standby: bool, stop: asyncio.Event, say: Callable[[str], None] = print) -> Lease | None:
    """The lease on `server`. Held by another live engine: `ServerBusy`, or, as a standby,
    wait (asking every `renew_every`) until it is free; None if `stop` is set meanwhile."""
    waiting = False
    while not stop.is_set():
        lease, current = await asyncio.to_thread(_take_once, factory, server, holder, terms.ttl)
        if lease is not None:
            say(f"server {server}: this engine holds it (term {lease.term})")
            return lease
        if not standby:
            raise ServerBusy(_busy(server, current))
        if not waiting:
            say(f"standby: {_busy(server, current)}; taking it over when that engine stops")
            waiting = True
        try:
            await asyncio.wait_for(stop.wait(), terms.renew_every)
        except asyncio.TimeoutError:
            pass
    return None


def _busy(server: str, current: Holding | None) -> str:
    if current is None:
        return f"server {server} is being taken by another engine"
    return (f"server {server} is driven by another engine ({current.holder}, term {current.term}, "
            f"lease renewed until {current.expires_at:%Y-%m-%d %H:%M:%S} UTC)")


def _renew_once(factory: sessionmaker[Session], lease: Lease, ttl: dt.timedelta) -> Lease | None:
    with transaction(factory) as session:
        return server_leases.renew(session, lease, server_leases.database_now(session), ttl)


async def keep(factory: sessionmaker[Session], lease: Lease, terms: LeaseTerms, fenced: asyncio.Event,
               done: asyncio.Event, say: Callable[[str], None] = print,
               clock: Callable[[], float] = time.monotonic) -> Lease:
    """Renew `lease` every `renew_every` until `done` is set; set `fenced` (and return) once it
    is lost or has gone unrenewed for `ttl - margin`. Returns the lease as last renewed."""
    asked_ok = clock()
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), terms.renew_every)
            break
        except asyncio.TimeoutError:
            pass
        asked = clock()
        left = terms.fence_after - (asked - asked_ok)
        try:
            renewed = await asyncio.wait_for(asyncio.to_thread(_renew_once, factory, lease, terms.ttl),
                                             max(0.1, left))
        except (asyncio.TimeoutError, SQLAlchemyError) as exc:
            if clock() - asked_ok >= terms.fence_after:
                say(f"server {lease.server}: lease not renewed for {terms.fence_after:.0f} s "
                    f"({type(exc).__name__}): dialling stops")
                fenced.set()
                return lease
            continue
        if renewed is None:
            say(f"server {lease.server}: the lease was lost (another engine holds it): dialling stops")
            fenced.set()
            return lease
        lease, asked_ok = renewed, asked
    return lease


async def give_up(factory: sessionmaker[Session], lease: Lease) -> None:
    """Release the lease on a clean stop, so that a standby takes over at once."""
    def release() -> None:
        with transaction(factory) as session:
            server_leases.release(session, lease, server_leases.database_now(session))
    try:
        await asyncio.to_thread(release)
    except SQLAlchemyError:
        pass  # it runs out by itself within its ttl


async def holding(factory: sessionmaker[Session], server: str, terms: LeaseTerms, work, *, standby: bool,
                  say: Callable[[str], None] = print):
    """Run `work(stop)` while this engine holds `server`: take the lease first (or wait for it,
    as a standby; SIGTERM or Ctrl-C ends the wait), keep it renewed meanwhile, and set `stop`
    the moment it is lost. Returns (what `work` returned, whether the lease was lost), or
    None if the engine was stopped before it held the server."""
    import signal
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    lease = await take(factory, server, this_holder(), terms, standby=standby, stop=stop, say=say)
    if lease is None:
        return None
    fenced, done = asyncio.Event(), asyncio.Event()
    keeper = asyncio.create_task(keep(factory, lease, terms, fenced, done, say))

    async def relay() -> None:
        await fenced.wait()
        stop.set()
    relaying = asyncio.create_task(relay())
    try:
        result = await work(stop)
    finally:
        done.set()
        lease = await keeper
        relaying.cancel()
        if not fenced.is_set():
            await give_up(factory, lease)
    return result, fenced.is_set()
