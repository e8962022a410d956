"""bench/ami_load.py's own parts, without the sandbox (the benchmark itself is run by hand:
docs/benchmarks.md): its calls are the engine's, its debtors answer, and it reads each
Asterisk's log of dials as the dialplan writes it."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from asterisk_conf.generate import simulated_behaviour
from asterisk_conf.site import Site
from dialer.outbound import dial_request


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))  # bench/ is run from the repository
    return importlib.import_module("bench.ami_load")


def test_the_load_is_the_engines_call_to_debtors_who_answer(bench):
    numbers = {bench.load_number(serial, n) for serial in (0, 7, 99) for n in (0, 1, 999_999)}
    assert len(numbers) == 9, "each driver's debtors its own"
    assert {simulated_behaviour(number) for number in numbers} == {"answers after 3 s"}
    with pytest.raises(ValueError, match="driver 100"):
        bench.load_number(100, 0)
    request, engine = bench.load_request("load-A-3-7", "13030000070"), dial_request("load-A-3-7", "13030000070", None, 30)
    assert (request.channel, dict(request.variables), request.timeout_s) == (
        engine.channel, dict(engine.variables), engine.timeout_s)
    assert (request.application, request.context) == ("Wait", None)


def test_dials_are_read_from_where_the_run_began(bench, tmp_path):
    site = Site(home=tmp_path, cache=tmp_path)
    log = site.sandbox_root / "var/log/asterisk/messages.log"
    log.parent.mkdir(parents=True)
    log.write_text("[Dec  7 12:00:00] NOTICE[1] pbx.c: dunning-dial old-2 13000000000\n")
    since = log.stat().st_size
    with log.open("a") as out:
        out.write("[Dec  7 12:00:01] NOTICE[2] Ext. 13010000010: dunning-dial load-A-1-1-2 13010000010\n"
                  "[Dec  7 12:00:01] VERBOSE[2] something else\n")
    assert bench.dials_in_log(site, since) == [("load-A-1-1", "13010000010")]


def test_percentiles_are_values_measured(bench):
    assert bench.percentile([], 99) is None
    values = [float(v) for v in range(1, 101)]
    assert (bench.percentile(values, 50), bench.percentile(values, 99), bench.percentile(values, 100)) == (50.0, 99.0, 100.0)
