"""Shared fixtures: the real Asterisk sandbox, its credentials, real speech; each test's own
home; and the guard that fails the run when the user's state directory changed."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import stat
from pathlib import Path

import pytest

from asterisk_conf import credentials, sandbox
from asterisk_conf.site import Site

REPO = Path(__file__).resolve().parent.parent
#: The speech clips the tests use, with their sources and licences (tests/audio/README.md).
AUDIO = Path(__file__).resolve().parent / "audio"

#: The home the README's commands use: where `scripts/test` brought the sandbox up (its
#: credentials.json holds the AMI secret and SIP passwords the running sandbox was configured
#: with) and where scripts/postgres keeps the test role's password. Read before any test runs.
USER_HOME = Site.from_env().home
#: The user's real state (database, the vault's recordings kept for years, agents' files):
#: no test writes there. The default home, and $DUNNING_HOME if the run was given another one.
GUARDED_HOMES = tuple(dict.fromkeys((Site.home, USER_HOME)))
#: What may change in a guarded home while the tests run, because the shared sandbox's own
#: set-up rewrites it, not a test:
#: - credentials.json (and the `.credentials.json.*` temporary file of its atomic write): the
#:   sandbox's AMI secret and agents' SIP passwords. `dunning asterisk sandbox up` adds any that
#:   are missing, both in `scripts/test` and in any other run sharing the sandbox meanwhile; the
#:   tests only read it (each home below gets a copy).
#: - postgres-test.url: the PostgreSQL test role's password, written by scripts/postgres when it
#:   is missing (scripts/test runs it before pytest, tests/test_scripts.py runs it again there).
#: The sandbox's pid file and logs are in its chroot under the cache (/var/cache/dunning), not
#: in a home, so nothing else is excluded.
SANDBOX_OWNED = re.compile(r"credentials\.json|\.credentials\.json\..+|postgres-test\.url")

_STATE_BEFORE = pytest.StashKey[dict]()
_STATE_CHANGES = pytest.StashKey[list]()


def state_fingerprint(home: Path) -> dict[str, tuple]:
    """Every path under `home` but the sandbox's own files: (size, mtime) for a file or link,
    ("dir",) for a directory."""
    found: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(home):
        for name in dirs + files:
            path = Path(folder, name)
            relative = path.relative_to(home).as_posix()
            if SANDBOX_OWNED.fullmatch(relative):
                continue
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            found[relative] = ("dir",) if stat.S_ISDIR(info.st_mode) else (info.st_size, info.st_mtime_ns)
    return found


def state_changes(before: dict[Path, dict[str, tuple]]) -> list[str]:
    changes = []
    for home, old in before.items():
        new = state_fingerprint(home)
        for relative in sorted(old.keys() | new.keys()):
            if old.get(relative) != new.get(relative):
                what = "created" if relative not in old else "removed" if relative not in new else "modified"
                changes.append(f"{home / relative} ({what})")
    return changes


def pytest_configure(config):
    config.stash[_STATE_BEFORE] = {home: state_fingerprint(home) for home in GUARDED_HOMES}


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(_STATE_BEFORE, None)
    if before is None:
        return
    changes = state_changes(before)
    if changes:
        session.config.stash[_STATE_CHANGES] = changes
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    changes = config.stash.get(_STATE_CHANGES, [])
    if not changes:
        return
    terminalreporter.section("the user's state directory changed during the tests", sep="!", red=True)
    terminalreporter.line(
        f"{', '.join(map(str, GUARDED_HOMES))} must not change while the tests run (each test has its "
        f"own home); the run fails. Changed ({len(changes)}):", red=True)
    for line in changes[:50]:
        terminalreporter.line(f"  {line}", red=True)
    if len(changes) > 50:
        terminalreporter.line(f"  ... and {len(changes) - 50} more", red=True)
    terminalreporter.line("A test wrote there, or another program used that home meanwhile "
                          "(e.g. scripts/demo or a dunning command run by hand).")


def _copy_credentials(source: Path, home: Path) -> None:
    if source.exists():
        credentials.write_private(home / "credentials.json", source.read_text())


@pytest.fixture(scope="session")
def _session_home(tmp_path_factory) -> Path:
    """The session's home: the sandbox's credentials (copied from USER_HOME, never written
    there), nothing else."""
    home = tmp_path_factory.mktemp("home")
    _copy_credentials(USER_HOME / "credentials.json", home)
    credentials.load_or_create(home)
    return home


@pytest.fixture(autouse=True)
def own_home(_session_home, tmp_path_factory, request, monkeypatch) -> Path:
    """Each test's own home, a temporary folder with a copy of the sandbox's credentials:
    $DUNNING_HOME for the `dunning` commands and scripts a test runs, so their database
    (SQLite in the home), recordings, agents' files and demo files land there. A database or
    recordings folder set in the environment is dropped, so it cannot be the user's."""
    home = tmp_path_factory.mktemp("home-" + re.sub(r"\W", "_", request.node.name)[:40])
    _copy_credentials(_session_home / "credentials.json", home)
    monkeypatch.setenv("DUNNING_HOME", str(home))
    for name in ("DUNNING_DATABASE_URL", "DUNNING_RECORDINGS"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def user_home() -> Path:
    """USER_HOME, for the few set-up scripts that must run as scripts/test runs them."""
    return USER_HOME


@pytest.fixture(scope="session")
def site(_session_home) -> Site:
    """The sandbox as the environment describes it, with the session's own home (and so its
    own database and recordings, whatever the environment says)."""
    return dataclasses.replace(Site.from_env(), home=_session_home, database_url=None, recordings=None)


@pytest.fixture(scope="session")
def creds(site):
    return credentials.load_or_create(site.home)


@pytest.fixture(scope="session")
def sandbox_up(site, creds):
    """The real Asterisk 22 sandbox, up for the whole session (never torn down here:
    the next run reuses it, as the README's commands do)."""
    if os.geteuid() != 0:
        pytest.fail("the tests run against the real Asterisk sandbox and need root")
    sandbox.up(site, creds, say=lambda _: None)
    return site


@pytest.fixture(scope="session")
def agent_speech() -> Path:
    """Real speech for a softphone agent to say: a LibriVox clip (8 kHz) from tests/audio."""
    return AUDIO / "en-librivox-8k-001.wav"


@pytest.fixture
async def sandbox_ami(sandbox_up):
    """A logged-in AMI connection to the sandbox, as the engine's own user."""
    from ami_bridge import AmiConnection
    from dialer.sandbox_session import ami_settings
    conn = AmiConnection(ami_settings(sandbox_up, heartbeat_interval=1.0, heartbeat_timeout=1.0,
                                      backoff_initial=0.2, backoff_max=1.0))
    await conn.start(wait=False)
    await conn.wait_fully_booted(30)
    yield conn
    await conn.close()


@pytest.fixture
async def sandbox_calls(sandbox_ami):
    from ami_bridge import Calls
    calls = Calls(sandbox_ami)
    yield calls
    calls.close()


@pytest.fixture
async def peer():
    """The fault-injecting AMI peer (tests/ami_peer.py) on a free loopback port."""
    from ami_peer import AmiPeer
    p = await AmiPeer().start()
    yield p
    await p.stop()


def _fresh_postgres(url: str):
    from sqlalchemy import text

    from campaigns.db import make_engine
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    return engine


def postgres_url() -> str:
    """The PostgreSQL server's URL (DUNNING_TEST_POSTGRES_URL, set by `scripts/test`). Unset: the
    test is skipped, saying why, unless DUNNING_REQUIRE_POSTGRES=1 (as `scripts/test` and CI
    run) makes it fail: there the server is part of what is tested."""
    url = os.environ.get("DUNNING_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("DUNNING_REQUIRE_POSTGRES") == "1":
            pytest.fail("DUNNING_TEST_POSTGRES_URL is not set, and DUNNING_REQUIRE_POSTGRES=1 requires "
                        "PostgreSQL: run the tests with scripts/test, which starts it (scripts/postgres)")
        pytest.skip("no PostgreSQL server configured (DUNNING_TEST_POSTGRES_URL is unset; scripts/test "
                    "starts one and sets it)")
    if not re.fullmatch(r"postgresql\+psycopg://[^\s]+", url):
        # Never echo the value: it holds the test role's password.
        pytest.fail("DUNNING_TEST_POSTGRES_URL is not a single postgresql+psycopg:// URL "
                    f"({len(url.splitlines())} line(s)); see scripts/postgres")
    return url


def pytest_collection_modifyitems(config, items):
    """A case run on PostgreSQL is marked `postgresql`, however it asked for it: the
    `database` fixture's parameter, or that parameter chosen by the test (indirect)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database") == "postgresql":
            item.add_marker(pytest.mark.postgresql)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("postgresql") is not None:
        postgres_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A migrated, empty database: SQLite in a temporary file, and the real PostgreSQL
    server that `scripts/test` starts (DUNNING_TEST_POSTGRES_URL; see `postgres_url`)."""
    from campaigns.db import make_engine, migrate
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'dunning.db'}")
    else:
        engine = _fresh_postgres(postgres_url())
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_db(tmp_path):
    from campaigns.db import make_engine, migrate
    engine = make_engine(f"sqlite:///{tmp_path / 'dunning.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sandbox_site(sandbox_up, tmp_path):
    """The running sandbox with this test's own recordings folder and SQLite database
    (migrated): (site, session factory)."""
    from campaigns.db import make_engine, migrate, sessions
    site = dataclasses.replace(sandbox_up, recordings=tmp_path / "recordings",
                               database_url=f"sqlite:///{tmp_path / 'dunning.db'}")
    engine = make_engine(site.database)
    migrate(engine)
    yield site, sessions(engine)
    engine.dispose()


# ---------------------------------------------------------------- worlds several test modules share
# (their helpers are in tests/helpers.py)

@pytest.fixture
async def console_with(database, tmp_path, unused_tcp_port_factory):
    """Start the seeded console with FAST settings changed by keyword (once per test);
    `before_start(app)` may add to the app before it runs."""
    from agent_console.app import make_app, start
    from agent_console.settings import Settings
    from campaigns.db import sessions
    from helpers import FAST, NOW, Browser, Clock, seed
    runners, browsers = [], []

    async def make(before_start=None, **changes) -> dict:
        root = tmp_path / "vault"
        factory = sessions(database)
        ids = seed(factory, root)
        clock = Clock(NOW)
        settings = Settings(**{**FAST.__dict__, "recordings_root": root, **changes})
        app = make_app(factory, settings, now=clock)
        if before_start is not None:
            before_start(app)
        port = unused_tcp_port_factory()
        runners.append(await start(app, "127.0.0.1", port))

        def browser(address: str | None = None) -> Browser:
            b = Browser(f"http://127.0.0.1:{port}", address)
            browsers.append(b)
            return b
        return {"factory": factory, "ids": ids, "clock": clock, "browser": browser, "app": app, "root": root,
                "base": f"http://127.0.0.1:{port}"}
    yield make
    for b in browsers:
        await b.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def console(console_with):
    return await console_with()


@pytest.fixture
def unused_tcp_port_factory():
    import socket

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return pick


@pytest.fixture
async def calls(peer):
    """The call registry over the AMI peer (a test module may have its own, with a clock)."""
    from ami_peer import settings_kwargs

    from ami_bridge import AmiConnection, AmiSettings, Calls
    conn = AmiConnection(AmiSettings(**settings_kwargs(peer)))
    registry = Calls(conn)
    await conn.start(timeout=3)
    yield registry
    registry.close()
    await conn.close()


@pytest.fixture
def crashed_call(tmp_path):
    """Campaign `e` (paused: the restarted engine dials nothing), agent 6001, and an attempt
    the crashed engine left DIALING. Returns (database url, factory, attempt id)."""
    from sqlalchemy import select

    from campaigns import queue
    from campaigns.db import make_engine, migrate, sessions, transaction
    from campaigns.models import Attempt, Phone
    from helpers import CALL, DIALED, RESTART, one_debtor_campaign
    url = f"sqlite:///{tmp_path / 'dunning.db'}"
    engine = make_engine(url)
    migrate(engine)
    factory = sessions(engine)
    agent, campaign = one_debtor_campaign(factory, tmp_path, DIALED - dt.timedelta(hours=2))
    with transaction(factory) as s:
        queue.change_campaign(s, "e", "pause", RESTART - dt.timedelta(minutes=1))
        phone = s.scalars(select(Phone)).one()
        attempt = Attempt(call_id=CALL, campaign_id=campaign.id, case_id=phone.case_id, phone_id=phone.id,
                          agent_id=agent.id, number=phone.dial, state="dialing", planned_at=DIALED,
                          dialed_at=DIALED)
        s.add(attempt)
        s.flush()
        attempt_id = attempt.id
    yield url, factory, attempt_id
    engine.dispose()


@pytest.fixture
def report_campaign(database, tmp_path):
    """Campaign q of client R (one case) started at 09:30 in Shanghai, agents 6001 to 6004
    (6004 inactive): its session factory. `helpers.attempts` adds its calls."""
    from sqlalchemy import select

    from campaigns import admin, queue
    from campaigns.db import sessions, transaction
    from campaigns.importing import import_batch
    from campaigns.models import Agent
    from helpers import SHANGHAI_0930
    path = tmp_path / "b.csv"
    path.write_text("案件编号,姓名,欠款金额,逾期天数,手机\nA,甲,900,10,13800138000\n", encoding="utf-8")
    factory = sessions(database)
    assert import_batch(factory, path, "R", now=SHANGHAI_0930).ok
    with transaction(factory) as s:
        admin.create_campaign(s, "q", "R", SHANGHAI_0930)
        queue.change_campaign(s, "q", "start", SHANGHAI_0930)
        for ext in ("6001", "6002", "6003", "6004"):
            admin.add_agent(s, ext, f"agent {ext}", SHANGHAI_0930)
        s.scalar(select(Agent).where(Agent.extension == "6004")).active = False
    return factory
