"""Sign-in throttling: growing delays per source address and per typed user name.

A `Throttle` counts failures per key within a window and says how long the next attempt on
a key must wait: nothing for the first `free` failures, then `base`, twice, four times ...
`base` after the last failure, at most `longest`. An attempt that comes too early is not
checked at all (its password is not even compared), so guessing faster gains nothing; and
attempts on one key are checked one at a time (`hold`), so parallel requests gain nothing
either.

Two throttles run side by side (`Gate`): one keyed by the source address (an IPv6 address by
its /64, which one machine usually holds whole), one by the user name as typed. The name key
is a keyed hash (HMAC with a secret of this process) of the name, so that a password typed
into the name field is never kept in clear, and it is the same for names with and without an
account: the delay says nothing about which names exist.

The state is in memory: the console is one process, a restart forgets the delays (not the
lockout, which is in the database), and the number of keys is bounded (the oldest go first).
The clock is the caller's (`now`), as everywhere in the console.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
from collections import deque

from .settings import Settings


def address_key(address: str | None) -> str:
    """The throttle key of a source address: IPv4 as it is, IPv6 by its /64."""
    if not address:
        return "address:-"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"address:{address[:64]}"
    if parsed.version == 6:
        if parsed.ipv4_mapped is not None:
            return f"address:{parsed.ipv4_mapped}"
        return f"address:{ipaddress.ip_network(f'{parsed}/64', strict=False)}"
    return f"address:{parsed}"


class NameKeys:
    """Keyed hashes of typed user names (the secret lives and dies with the process)."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def __call__(self, typed: str) -> str:
        name = typed.strip().lower()[:64]
        return "name:" + hmac.new(self._secret, name.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:32]


class Throttle:
    def __init__(self, free: int, base: dt.timedelta, longest: dt.timedelta, window: dt.timedelta,
                 max_keys: int = 50_000) -> None:
        self.free, self.base, self.longest, self.window = free, base, longest, window
        self.max_keys = max_keys
        self._failures: dict[str, deque[dt.datetime]] = {}
        self._locks: dict[str, list] = {}

    def _recent(self, key: str, now: dt.datetime) -> deque[dt.datetime]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def failures(self, key: str, now: dt.datetime) -> int:
        return len(self._recent(key, now))

    def step(self, failures: int) -> dt.timedelta:
        """The wait after the last of `failures` failures."""
        if failures < self.free:
            return dt.timedelta(0)
        return min(self.longest, self.base * 2 ** min(failures - self.free, 30))

    def wait(self, key: str, now: dt.datetime) -> float:
        """Seconds before an attempt on `key` may be checked (0: now)."""
        times = self._recent(key, now)
        if not times:
            return 0.0
        return max(0.0, (times[-1] + self.step(len(times)) - now).total_seconds())

    @contextlib.asynccontextmanager
    async def hold(self, key: str):
        """One attempt on `key` at a time: the next waits until this one is counted."""
        entry = self._locks.setdefault(key, [asyncio.Lock(), 0])  # the lock, and how many use it
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]

    def failed(self, key: str, now: dt.datetime) -> int:
        """Count a failure; returns the number within the window (== free: delays begin now)."""
        times = self._recent(key, now)
        if not times:
            if len(self._failures) >= self.max_keys:
                self._forget(now)
            self._failures[key] = times
        times.append(now)
        return len(times)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def _forget(self, now: dt.datetime) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        if len(self._failures) >= self.max_keys:  # still full: the longest-quiet quarter goes
            oldest = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in oldest[: max(1, len(oldest) // 4)]:
                del self._failures[key]


class Gate:
    """The sign-in throttles: one per source address, one per typed user name."""

    def __init__(self, settings: Settings) -> None:
        self.by_address = Throttle(settings.throttle_free_address, settings.throttle_base,
                                   settings.throttle_max, settings.failure_window)
        self.by_name = Throttle(settings.throttle_free_name, settings.throttle_base,
                                settings.throttle_max, settings.failure_window)
        self.name_key = NameKeys()

    @contextlib.asynccontextmanager
    async def one_at_a_time(self, *keys: str):
        """Attempts on the same address or name are checked one after the other, so that
        parallel requests cannot all slip in before the first failure is counted."""
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self.by_address.hold(key) if key.startswith("address:")
                                                else self.by_name.hold(key))
            yield
