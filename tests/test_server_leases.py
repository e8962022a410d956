"""Which engine drives which Asterisk server (campaigns/server_leases.py, dialer/server_lease.py):
never two holders at once, on SQLite and on the PostgreSQL server a site shares; a standby
takes over once the holder is gone; a holder that cannot renew stops before anyone else can
hold the lease."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns import queue, server_leases
from campaigns.models import Attempt
from campaigns.db import sessions, transaction
from campaigns.server_leases import Holding
from dialer import server_lease
from dialer.server_lease import LeaseTerms, ServerBusy
from helpers import NOW, seed

REPO = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.timezone.utc)
TTL = dt.timedelta(seconds=15)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_a_lease_is_one_holders_until_it_runs_out(database):
    factory = sessions(database)
    with transaction(factory) as s:
        a = server_leases.acquire(s, "A", "engine-1", at(0), TTL)
    assert (a.term, a.expires_at) == (1, at(15))
    with transaction(factory) as s:
        assert server_leases.acquire(s, "A", "engine-2", at(14.999), TTL) is None
        assert server_leases.acquire(s, "B", "engine-2", at(1), TTL).term == 1  # another server
        a = server_leases.renew(s, a, at(10), TTL)
    assert a.expires_at == at(25) and a.term == 1
    with transaction(factory) as s:
        assert server_leases.acquire(s, "A", "engine-2", at(24.999), TTL) is None
        again = server_leases.acquire(s, "A", "engine-1", at(20), TTL)  # the holder asking again
    assert again.term == 1
    with transaction(factory) as s:
        b = server_leases.acquire(s, "A", "engine-2", at(35), TTL)  # run out at 35: free
    assert b.term == 2 and b.holder == "engine-2"
    with transaction(factory) as s:
        assert server_leases.renew(s, again, at(35.5), TTL) is None, "the old holder has lost it"
        assert server_leases.release(s, again, at(36)) is False
        held = server_leases.holding(s, "A")
    assert (held.holder, held.term, held.acquired_at) == ("engine-2", 2, at(35))


def test_a_renewal_after_the_lease_ran_out_fails_even_if_nobody_took_it(database):
    factory = sessions(database)
    with transaction(factory) as s:
        a = server_leases.acquire(s, "A", "engine-1", at(0), TTL)
        assert server_leases.renew(s, a, at(15), TTL) is None
        assert server_leases.acquire(s, "A", "engine-1", at(16), TTL).term == 1


def test_release_frees_the_server_at_once_and_a_dead_holder_can_be_taken_from(database):
    factory = sessions(database)
    with transaction(factory) as s:
        a = server_leases.acquire(s, "A", "engine-1", at(0), TTL)
        assert server_leases.release(s, a, at(5))
        b = server_leases.acquire(s, "A", "engine-2", at(5), TTL)
    assert b.term == 2
    with transaction(factory) as s:
        dead = server_leases.holding(s, "A")
        c = server_leases.take_from(s, dead, "engine-3", at(6), TTL)
        assert c.term == 3
        # Taken from a holder it no longer is: nothing happens.
        assert server_leases.take_from(s, dead, "engine-4", at(7), TTL) is None
        assert server_leases.holding(s, "A").holder == "engine-3"


@settings(max_examples=int(os.environ.get("DUNNING_LEASE_EXAMPLES", "40")), deadline=None,
          derandomize=bool(os.environ.get("CI")),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["acquire", "renew", "release"]), st.integers(0, 2),
                          st.floats(0, 12, allow_nan=False)), min_size=1, max_size=30))
def test_no_two_holders_hold_the_same_moment(database, steps):
    """Three engines asking, renewing and releasing at random moments: the spans each holder
    was told it holds the server never overlap for two different terms, and each term is one
    holder's."""
    factory = sessions(database)
    with transaction(factory) as s:
        s.execute(server_leases.ServerLease.__table__.delete())
    leases: dict[int, server_leases.Lease | None] = {0: None, 1: None, 2: None}
    spans: list[tuple[int, str, dt.datetime, dt.datetime]] = []
    now = T0
    for op, who, gap in steps:
        now += dt.timedelta(seconds=gap)
        holder = f"engine-{who}"
        with transaction(factory) as s:
            if op == "acquire":
                got = server_leases.acquire(s, "A", holder, now, TTL)
            elif op == "renew" and leases[who] is not None:
                got = server_leases.renew(s, leases[who], now, TTL)
            elif op == "release" and leases[who] is not None:
                server_leases.release(s, leases[who], now)
                spans = [(t, h, start, min(end, now) if h == holder and t == leases[who].term else end)
                         for t, h, start, end in spans]
                got = None
            else:
                continue
        leases[who] = got
        if got is not None:
            spans.append((got.term, holder, now, got.expires_at))
    by_term: dict[int, set[str]] = {}
    for term, holder, _, _ in spans:
        by_term.setdefault(term, set()).add(holder)
    assert all(len(holders) == 1 for holders in by_term.values()), by_term
    for i, (t1, _, s1, e1) in enumerate(spans):
        for t2, _, s2, e2 in spans[i + 1:]:
            if t1 != t2:
                assert e1 <= s2 or e2 <= s1, f"terms {t1} and {t2} overlap: {s1}-{e1} and {s2}-{e2}"


def test_engines_asking_at_the_same_moment_get_one_lease(database):
    """Eight engines ask for a free (then run-out) lease in the same instant, each in its own
    connection: exactly one gets it, every round."""
    factory = sessions(database)
    for round_ in range(6):
        now = at(100 * round_)
        barrier = threading.Barrier(8)
        won: list[str] = []

        def ask(n: int) -> None:
            barrier.wait()
            for _ in range(20):  # SQLite: a writer that finds the database locked asks again
                try:
                    with transaction(factory) as s:
                        if server_leases.acquire(s, "A", f"engine-{round_}-{n}", now, TTL) is not None:
                            won.append(f"engine-{round_}-{n}")
                    return
                except Exception as exc:  # noqa: BLE001  only "database is locked" is expected
                    assert "locked" in str(exc) or "could not serialize" in str(exc), exc
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, won
        with transaction(factory) as s:
            held = server_leases.holding(s, "A")
        assert held.holder == won[0] and held.term == round_ + 1


def test_lease_terms_must_renew_before_they_can_lose():
    with pytest.raises(ValueError, match="renewed more often"):
        LeaseTerms(ttl=dt.timedelta(seconds=6), renew_every=2.0, margin=5.0)


def test_a_holder_that_cannot_renew_stops_before_the_lease_runs_out(database, monkeypatch):
    """The database stops answering renewals: the holder counts itself fenced once ttl - margin
    has passed since its last good ask, on its own clock, before any standby may take over."""
    factory = sessions(database)
    terms = LeaseTerms(ttl=dt.timedelta(seconds=3), renew_every=0.2, margin=1.0)
    with transaction(factory) as s:
        lease = server_leases.acquire(s, "A", "engine-1", server_leases.database_now(s), terms.ttl)
    ticks = iter(range(1000))
    times = {"t": 0.0}

    def clock() -> float:
        times["t"] = next(ticks) * 0.25  # a quarter of a second per look at the clock
        return times["t"]

    def unreachable(*_args):
        from sqlalchemy.exc import OperationalError
        raise OperationalError("renew", {}, Exception("connection refused"))
    monkeypatch.setattr(server_lease, "_renew_once", unreachable)
    fenced, done, said = asyncio.Event(), asyncio.Event(), []

    async def run() -> None:
        await asyncio.wait_for(server_lease.keep(factory, lease, terms, fenced, done, said.append, clock), 30)
    asyncio.run(run())
    assert fenced.is_set()
    assert times["t"] >= terms.fence_after and times["t"] < terms.ttl.total_seconds()
    assert "lease not renewed for 2 s (OperationalError): dialling stops" in said[-1]


def test_a_lost_lease_fences_its_holder(database):
    factory = sessions(database)
    terms = LeaseTerms(ttl=dt.timedelta(seconds=3), renew_every=0.2, margin=1.0)
    with transaction(factory) as s:
        lease = server_leases.acquire(s, "A", "engine-1", server_leases.database_now(s), terms.ttl)
        server_leases.release(s, lease, server_leases.database_now(s))
        server_leases.acquire(s, "A", "engine-2", server_leases.database_now(s), terms.ttl)
    fenced, done, said = asyncio.Event(), asyncio.Event(), []
    asyncio.run(asyncio.wait_for(server_lease.keep(factory, lease, terms, fenced, done, said.append), 30))
    assert fenced.is_set() and "the lease was lost" in said[-1]


def test_a_second_engine_is_refused_and_a_standby_waits(database):
    factory = sessions(database)
    terms = LeaseTerms(ttl=dt.timedelta(seconds=3), renew_every=0.2, margin=1.0)

    async def run() -> tuple[int, list[str]]:
        stop, said = asyncio.Event(), []
        first = await server_lease.take(factory, "A", "other-host:1:aa", terms, standby=False, stop=stop)
        with pytest.raises(ServerBusy, match=r"server A is driven by another engine \(other-host:1:aa, term 1"):
            await server_lease.take(factory, "A", "this-host:2:bb", terms, standby=False, stop=stop)
        # The first holder of another machine stops renewing (it died): the standby waits
        # for its lease to run out, then holds the server with the next term.
        second = await asyncio.wait_for(
            server_lease.take(factory, "A", "this-host:2:bb", terms, standby=True, stop=stop, say=said.append), 30)
        with transaction(factory) as s:
            assert server_leases.database_now(s) >= first.expires_at
        return second.term, said
    term, said = asyncio.run(run())
    assert term == 2
    assert said[0].startswith("standby: server A is driven by another engine (other-host:1:aa")
    assert said[-1] == "server A: this engine holds it (term 2)"


def test_gone_here_knows_only_this_machines_processes():
    assert server_lease.gone_here("box:123:ab", host="box", alive=lambda pid: False)
    assert not server_lease.gone_here("box:123:ab", host="box", alive=lambda pid: True)
    assert not server_lease.gone_here("other:123:ab", host="box", alive=lambda pid: False)
    assert not server_lease.gone_here("garbage", host="box", alive=lambda pid: False)


HOLDER = """
import asyncio, datetime as dt, sys
from campaigns.db import make_engine, sessions
from dialer import server_lease
factory = sessions(make_engine(sys.argv[1]))
terms = server_lease.LeaseTerms(ttl=dt.timedelta(seconds=60), renew_every=1.0, margin=5.0)
async def main():
    stop, fenced, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    lease = await server_lease.take(factory, "A", server_lease.this_holder(), terms, standby=False, stop=stop,
                                    say=lambda _: None)
    print("held", lease.term, flush=True)
    await server_lease.keep(factory, lease, terms, fenced, done)
asyncio.run(main())
"""


def test_an_engine_killed_on_this_machine_is_taken_over_at_once(database):
    """`kill -9` of the holding engine: a standby on the same machine sees its process gone and
    takes the server without waiting out the (here 60 s) lease."""
    url = database.url.render_as_string(hide_password=False)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().split() == ["held", "1"]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        factory = sessions(database)
        terms = LeaseTerms(ttl=dt.timedelta(seconds=60), renew_every=1.0, margin=5.0)
        lease = asyncio.run(asyncio.wait_for(server_lease.take(
            factory, "A", server_lease.this_holder(), terms, standby=True, stop=asyncio.Event(),
            say=lambda _: None), 10))
        assert lease.term == 2
        with transaction(factory) as s:
            held: Holding = server_leases.holding(s, "A")
        assert held.holder == lease.holder and held.expires_at > server_leases.database_now(s)
    finally:
        if holder.poll() is None:
            holder.kill()


def test_dunning_run_refuses_a_server_another_engine_drives(database, tmp_path):
    """As a user runs it: a second `dunning run --server A` is refused in one line naming the
    holder and the way out; `--standby` needs `--server`."""
    url = database.url.render_as_string(hide_password=False)
    with transaction(sessions(database)) as s:
        server_leases.acquire(s, "A", "otherbox:1:ff", server_leases.database_now(s), dt.timedelta(minutes=5))
    env = {**os.environ, "DUNNING_DATABASE_URL": url, "DUNNING_HOME": str(tmp_path)}
    dunning = str(REPO / ".venv/bin/dunning")
    busy = subprocess.run([dunning, "run", "any", "--agents", "6001", "--server", "A"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert busy.returncode == 1
    assert busy.stderr.startswith("Error: server A is driven by another engine (otherbox:1:ff, term 1, ")
    assert busy.stderr.rstrip().endswith("start with --standby to take it over when that engine stops")
    assert len(busy.stderr.strip().splitlines()) == 1 and "Traceback" not in busy.stderr
    lonely = subprocess.run([dunning, "run", "any", "--agents", "6001", "--standby"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert lonely.returncode == 2 and "--standby needs --server" in lonely.stderr


def test_each_servers_engine_takes_up_only_its_own_calls_after_a_crash(database):
    """An attempt remembers the server it was dialled on; after a crash, the engine of that
    server finds it in flight, the engine of another server does not."""
    factory = sessions(database)
    ids = seed(factory)
    with transaction(factory) as s:
        east = queue.campaign_named(s, "east")
        planned = queue.plan_next(s, east, None, "on-b-1", NOW + dt.timedelta(hours=1), server="B")
    assert planned is not None
    with transaction(factory) as s:
        east = queue.campaign_named(s, "east")
        assert [a.call_id for a in queue.in_flight(s, east, "B")] == ["on-b-1"]
        assert queue.in_flight(s, east, "A") == [] and queue.in_flight(s, east) == []
        assert s.get(Attempt, planned.attempt_id).server == "B"
    assert ids["east"] == east.id
