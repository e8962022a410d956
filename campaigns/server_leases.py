"""Which engine drives which Asterisk server: a lease in the shared database, so that a
standby engine takes a server over when its engine dies, and never while it lives.

One row per server (``server_leases``): the holder (host, pid and a random tag of the engine
process), when it took the lease, and until when it holds it. A holder renews well before
``expires_at``; another engine may take the lease only once ``expires_at`` has passed. Each
new holder gets the next ``term``, a fencing number: a holder whose term is no longer the
row's has lost the lease, whatever it believes.

Every change is one conditional UPDATE (or an INSERT that does nothing on a conflict), which
both databases apply atomically to the one row: of two engines asking at the same moment,
exactly one finds its UPDATE counted. The times are arguments (`now`); the engine passes the
database's own clock (`database_now`), so that engines on several machines agree on when a
lease ends whatever their own clocks say.

The holder's side of the bargain (dialer/server_lease.py): it stops dialling once it has not
renewed for ``ttl - margin`` on its own monotonic clock, counted from before it asked, so it
has stopped before any other engine can hold the lease.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Integer, String, case, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from .schema import Base, UTCDateTime


class ServerLease(Base):
    __tablename__ = "server_leases"
    server: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    term: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    renewed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class Lease:
    """A lease as its holder knows it."""
    server: str
    holder: str
    term: int
    expires_at: dt.datetime


@dataclass(frozen=True)
class Holding:
    """Who holds a server now, as the database says (for a refusal and for status)."""
    server: str
    holder: str
    term: int
    acquired_at: dt.datetime
    renewed_at: dt.datetime
    expires_at: dt.datetime

    def valid_at(self, now: dt.datetime) -> bool:
        return now < self.expires_at


def acquire(session: Session, server: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> Lease | None:
    """The lease on `server` for `holder` until `now + ttl`, if it is free (never taken, or
    expired) or already `holder`'s; None while another holder's lease runs. A new holder gets
    the next term; the same holder asking again keeps its term (a renewal)."""
    until = now + ttl
    try:
        with session.begin_nested():
            session.execute(insert(ServerLease).values(server=server, holder=holder, term=1, acquired_at=now,
                                                       renewed_at=now, expires_at=until))
        return Lease(server, holder, 1, until)
    except IntegrityError:
        pass  # the row exists: take it over below, if its lease has run out
    table = ServerLease.__table__
    same = table.c.holder == holder
    taken = session.execute(
        update(table)
        .where(table.c.server == server, same | (table.c.expires_at <= now))
        .values(term=case((same, table.c.term), else_=table.c.term + 1),
                acquired_at=case((same, table.c.acquired_at), else_=literal(now, UTCDateTime())),
                holder=holder, renewed_at=now, expires_at=until)
    ).rowcount
    if taken != 1:
        return None
    term = session.execute(select(ServerLease.term).where(ServerLease.server == server)).scalar_one()
    return Lease(server, holder, term, until)


def take_from(session: Session, dead: Holding, holder: str, now: dt.datetime, ttl: dt.timedelta) -> Lease | None:
    """Take the lease from a holder known to be dead before it runs out (the caller has seen
    its process gone), if it is still that holder's, with the next term."""
    table = ServerLease.__table__
    until = now + ttl
    taken = session.execute(
        update(table)
        .where(table.c.server == dead.server, table.c.holder == dead.holder, table.c.term == dead.term)
        .values(holder=holder, term=dead.term + 1, acquired_at=now, renewed_at=now, expires_at=until)
    ).rowcount
    return Lease(dead.server, holder, dead.term + 1, until) if taken == 1 else None


def renew(session: Session, lease: Lease, now: dt.datetime, ttl: dt.timedelta) -> Lease | None:
    """The same lease, until `now + ttl`, if it is still this holder's and has not run out;
    None if it was lost (run out, or taken by another holder: the caller must stop)."""
    table = ServerLease.__table__
    until = now + ttl
    renewed = session.execute(
        update(table)
        .where(table.c.server == lease.server, table.c.holder == lease.holder, table.c.term == lease.term,
               table.c.expires_at > now)
        .values(renewed_at=now, expires_at=until)
    ).rowcount
    return Lease(lease.server, lease.holder, lease.term, until) if renewed == 1 else None


def release(session: Session, lease: Lease, now: dt.datetime) -> bool:
    """Give the lease up at once (a clean stop), so that a standby need not wait for it to
    run out. False if it was no longer this holder's."""
    table = ServerLease.__table__
    return session.execute(
        update(table)
        .where(table.c.server == lease.server, table.c.holder == lease.holder, table.c.term == lease.term)
        .values(expires_at=now)
    ).rowcount == 1


def holding(session: Session, server: str) -> Holding | None:
    row = session.get(ServerLease, server, populate_existing=True)
    if row is None:
        return None
    return Holding(row.server, row.holder, row.term, row.acquired_at, row.renewed_at, row.expires_at)


def holdings(session: Session) -> list[Holding]:
    rows = session.execute(select(ServerLease).order_by(ServerLease.server)).scalars()
    return [Holding(r.server, r.holder, r.term, r.acquired_at, r.renewed_at, r.expires_at) for r in rows]


def database_now(session: Session) -> dt.datetime:
    """The database server's clock, as an aware UTC datetime: the one clock every engine of a
    site shares. SQLite's is this machine's."""
    if session.get_bind().dialect.name == "postgresql":
        value = session.execute(select(func.statement_timestamp())).scalar_one()
        return value.astimezone(dt.timezone.utc)
    from .clock import utc_now
    return utc_now()
