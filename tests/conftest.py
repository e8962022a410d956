"""Shared fixtures: the real Asterisk sandbox, its credentials, real speech."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from asterisk_conf import credentials, sandbox
from asterisk_conf.site import Site

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = REPO.parent / "shared" / "audio"


@pytest.fixture(scope="session")
def site() -> Site:
    return Site.from_env()


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
def agent_speech(tmp_path_factory) -> Path:
    """Real speech for a softphone agent to say: a LibriVox clip (8 kHz) from
    ../shared/audio, or espeak-ng speech when that folder is absent."""
    clip = SHARED_AUDIO / "en-librivox-8k-001.wav"
    if clip.exists():
        return clip
    out = tmp_path_factory.mktemp("speech") / "agent.wav"
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), "He was not an ill disposed young man."], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True)
    return out


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


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A migrated, empty database: SQLite in a temporary file, and the real PostgreSQL
    server that `scripts/test` starts (DUNNING_TEST_POSTGRES_URL)."""
    from campaigns.db import make_engine, migrate
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'dunning.db'}")
    else:
        url = os.environ.get("DUNNING_TEST_POSTGRES_URL")
        if not url:
            pytest.fail("DUNNING_TEST_POSTGRES_URL is not set: run the tests with scripts/test, "
                        "which starts PostgreSQL (scripts/postgres)")
        if not re.fullmatch(r"postgresql\+psycopg://[^\s]+", url):
            # Never echo the value: it holds the test role's password.
            pytest.fail("DUNNING_TEST_POSTGRES_URL is not a single postgresql+psycopg:// URL "
                        f"({len(url.splitlines())} line(s)); see scripts/postgres")
        engine = _fresh_postgres(url)
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
    import dataclasses

    from campaigns.db import make_engine, migrate, sessions
    site = dataclasses.replace(sandbox_up, recordings=tmp_path / "recordings",
                               database_url=f"sqlite:///{tmp_path / 'dunning.db'}")
    engine = make_engine(site.database)
    migrate(engine)
    yield site, sessions(engine)
    engine.dispose()
