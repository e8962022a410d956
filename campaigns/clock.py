"""The wall clock, read here. The policy, pacing and the scheduled jobs' work take `now` as an
argument, so that their rules can be tested to the second; only the edges read the clock: the
command line, the console, the scheduler's jobs as they start, the engine (its SystemClock).
"""
from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    """Now, as an aware UTC datetime (what the database stores)."""
    return dt.datetime.now(dt.timezone.utc)
