"""AmiConnection against a faithful fake AMI peer over real loopback TCP."""

from __future__ import annotations

import asyncio
import logging

import pytest
from ami_peer import AmiPeer, core_show_channel, eventually, settings_kwargs

from ami_bridge import (
    AmiActionError,
    AmiActionTimeout,
    AmiAuthError,
    AmiConnection,
    AmiConnectionLost,
    AmiNotConnected,
    AmiSettings,
    ConnectionState,
    CoreShowChannel,
    Event,
    FullyBooted,
    Newchannel,
    actions,
    backoff_delay,
)
from ami_bridge.counters import ActionStats, CountersSnapshot, EventRate

NEWCHANNEL = (
    "Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/6001-00000001\r\nChannelState: 0\r\n"
    "ChannelStateDesc: Down\r\nCallerIDNum: 6001\r\nCallerIDName: Agent\r\nConnectedLineNum: <unknown>\r\n"
    "ConnectedLineName: <unknown>\r\nLanguage: en\r\nAccountCode: \r\nContext: agents\r\nExten: s\r\n"
    "Priority: 1\r\nUniqueid: 1718000000.1\r\nLinkedid: 1718000000.1\r\n\r\n"
)


@pytest.fixture
async def make(peer):
    made: list[AmiConnection] = []

    async def make(start: bool = True, conn_kwargs: dict | None = None, **settings) -> AmiConnection:
        conn = AmiConnection(AmiSettings(**settings_kwargs(peer, **settings)), **(conn_kwargs or {}))
        made.append(conn)
        if start:
            await conn.start(timeout=3)
        return conn

    yield make
    for conn in made:
        await conn.close()


async def test_login_reaches_connected_once(make, peer):
    conn = await make()
    assert conn.state is ConnectionState.CONNECTED
    assert [s for s, _ in conn.history] == [ConnectionState.DISCONNECTED, ConnectionState.CONNECTING,
                                            ConnectionState.CONNECTED]
    assert peer.received["Login"] == 1
    assert peer.actions[0]["events"] == "system,call,user"


async def test_bad_secret_raises_auth_error_and_is_not_retried(make, peer):
    conn = await make(start=False, secret="wrong", login_timeout=3.0)
    with pytest.raises(AmiAuthError, match="refused AMI login"):
        await conn.start(timeout=5)
    assert conn.state is ConnectionState.CLOSED
    await asyncio.sleep(0.2)  # several backoff periods: a retry would show up here
    assert peer.received["Login"] == 1
    assert peer.connections == 1


async def test_ping_result_is_typed_and_case_insensitive(make):
    conn = await make()
    result = await conn.send(actions.ping())
    assert result.response == "Success"
    assert result.headers["PING"] == "Pong"
    assert result.headers["ping"] == "Pong"
    assert result.latency_s >= 0


async def test_error_response_raises_with_asterisks_message(make):
    conn = await make()
    with pytest.raises(AmiActionError) as info:
        await conn.send({"Action": "NoSuchThing"})
    assert info.value.message.startswith("Invalid/unknown command: NoSuchThing")
    assert conn.state is ConnectionState.CONNECTED
    assert conn.counters.actions["NoSuchThing"].errors == 1


async def test_silent_peer_times_out_the_action(make, peer):
    conn = await make()
    peer.go_silent()
    with pytest.raises(AmiActionTimeout):
        await conn.send(actions.ping(), timeout=0.1)
    assert conn.counters.actions["Ping"].timeouts == 1


async def test_send_before_start_raises_not_connected(make, peer):
    conn = await make(start=False)
    with pytest.raises(AmiNotConnected):
        await conn.send(actions.ping())
    assert peer.received["Ping"] == 0


async def test_list_action_collects_events_until_complete(make, peer):
    peer.channels = {
        "c1": core_show_channel("Local/20005@dunning-sim-00000001;1", "c1", "c1"),
        "c1-2": core_show_channel("Local/20005@dunning-sim-00000001;2", "c1-2", "c1", state=5),
    }
    conn = await make()
    result = await conn.send(actions.core_show_channels())
    assert [type(e) for e in result.events] == [CoreShowChannel, CoreShowChannel]
    assert {e.uniqueid: e.channel_state for e in result.events} == {"c1": 6, "c1-2": 5}
    assert len(result.items) == 2  # the CoreShowChannelsComplete event is not an item


async def test_heartbeat_detects_silent_peer_and_reconnects_when_it_speaks_again(make, peer):
    conn = await make(heartbeat_interval=0.05, heartbeat_timeout=0.1, login_timeout=0.2)
    peer.go_silent()  # like kill -STOP: TCP still accepted, nothing answered
    await eventually(lambda: conn.counters.heartbeat_misses >= 1, what="a missed heartbeat")
    await eventually(lambda: conn.state is not ConnectionState.CONNECTED, what="the drop")
    await asyncio.sleep(0.3)  # reconnect attempts against the silent peer must not succeed
    assert conn.state is not ConnectionState.CONNECTED
    peer.resume()  # kill -CONT
    await conn.wait_connected(3)
    assert conn.counters.reconnects >= 1
    assert peer.connections >= 2
    assert (await conn.send(actions.ping())).headers["Ping"] == "Pong"


async def test_login_is_bounded_and_retried_when_peer_never_answers(make, peer):
    peer.go_silent()
    conn = await make(start=False, login_timeout=0.1)
    await conn.start(wait=False)
    await eventually(lambda: conn.counters.connect_failures >= 2, what="two failed logins")
    assert peer.connections >= 2  # each attempt opened a new TCP connection
    peer.resume()
    await conn.wait_connected(3)
    assert conn.state is ConnectionState.CONNECTED


async def test_start_with_timeout_keeps_retrying_in_background(make, peer):
    peer.go_silent()
    conn = await make(start=False, login_timeout=0.1)
    with pytest.raises(AmiNotConnected, match="still retrying"):
        await conn.start(timeout=0.2)
    peer.resume()
    await conn.wait_connected(3)


async def test_backoff_grows_caps_and_resets_after_login():
    probe = await AmiPeer().start()
    port = probe.port
    await probe.stop()  # nothing listens on `port` now: connection refused
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    settings = AmiSettings(**settings_kwargs(probe, port=port, backoff_initial=0.02, backoff_max=0.1))
    conn = AmiConnection(settings, sleep=fake_sleep, random_source=lambda: 1.0)
    await conn.start(wait=False)
    try:
        await eventually(lambda: len(delays) >= 6, what="six reconnect attempts")
        assert delays[:6] == pytest.approx([0.02, 0.04, 0.08, 0.1, 0.1, 0.1])
        peer = await AmiPeer().start(port=port)
        try:
            await conn.wait_connected(3)
            before = len(delays)
            peer.drop_all()
            await eventually(lambda: len(delays) > before, what="a reconnect after the drop")
            assert delays[before] == pytest.approx(0.02)  # reset by the successful login
        finally:
            await conn.close()
            await peer.stop()
    finally:
        await conn.close()


def test_backoff_delay_jitter_stays_within_bounds():
    assert backoff_delay(0, 0.5, 30, 0.2, 0.0) == pytest.approx(0.4)
    assert backoff_delay(0, 0.5, 30, 0.2, 0.999) == pytest.approx(0.5, abs=1e-3)
    assert backoff_delay(3, 0.5, 30, 0.2, 1.0) == pytest.approx(4.0)
    assert backoff_delay(100, 0.5, 30, 0.2, 1.0) == pytest.approx(30.0)


async def test_unanswered_action_fails_with_connection_lost_and_is_never_resent(make, peer):
    conn = await make()
    peer.drop_on["CoreSettings"] = 1
    with pytest.raises(AmiConnectionLost):
        await conn.send(actions.core_settings())
    await conn.wait_connected(3)
    await asyncio.sleep(0.2)  # panoramisk's Manager would re-send it on FullyBooted here
    assert peer.received["CoreSettings"] == 1
    assert peer.received["Login"] == 2


async def test_raising_subscribers_do_not_drop_the_connection(make, peer, caplog):
    conn = await make()
    got: list[Event] = []

    def bad(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    async def bad_async(event: Event) -> None:
        raise RuntimeError("async subscriber bug")

    conn.subscribe(bad)
    conn.subscribe(bad_async)
    conn.subscribe(got.append)
    with caplog.at_level(logging.ERROR, logger="ami_bridge.connection"):
        peer.emit(NEWCHANNEL)
        peer.emit(NEWCHANNEL)
        await eventually(lambda: len(got) == 2, what="both events delivered")
        await asyncio.sleep(0.05)
    assert isinstance(got[0], Newchannel) and got[0].uniqueid == "1718000000.1"
    assert "subscriber bug" in caplog.text and "async subscriber bug" in caplog.text
    assert conn.state is ConnectionState.CONNECTED
    assert peer.connections == 1
    assert (await conn.send(actions.ping())).response == "Success"


async def test_on_connected_runs_after_every_login(make, peer):
    conn = await make(start=False)
    logins: list[int] = []

    async def hook() -> None:
        logins.append(peer.received["Login"])

    conn.on_connected(hook)
    await conn.start(timeout=3)
    await eventually(lambda: len(logins) == 1, what="first hook")
    peer.drop_all()
    await eventually(lambda: len(logins) == 2, what="hook after reconnect")
    assert logins == [1, 2]


async def test_shutdown_event_drops_and_reconnects(make, peer):
    conn = await make()
    peer.emit("Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: True\r\n\r\n")
    await eventually(lambda: conn.counters.logins == 2, what="re-login after Shutdown")
    assert any("shutting down" in reason for _, reason in conn.history)


async def test_counters_move(make, peer):
    conn = await make()
    booted: list[Event] = []
    conn.subscribe(booted.append)
    for _ in range(3):
        peer.emit(NEWCHANNEL)
    await conn.send(actions.ping())
    await eventually(lambda: conn.counters.events_received >= 3, what="events counted")
    snap = conn.counters
    assert snap.events_per_second > 0
    assert snap.actions["Ping"].count == 1
    assert snap.actions["Login"].count == 1
    assert snap.actions["Ping"].max_latency_s >= snap.actions["Ping"].mean_latency_s > 0
    assert snap.logins == 1 and snap.reconnects == 0 and snap.originates_sent == 0
    assert not any(isinstance(e, FullyBooted) for e in booted)  # FullyBooted came before subscribe


def test_counters_read_as_one_line_for_an_operator():
    snap = CountersSnapshot(
        at=0.0, events_received=120, events_per_second=2.5, window_s=10.0, actions_sent=9,
        actions={"Originate": ActionStats(count=4, errors=1, timeouts=0, mean_latency_s=0.0421, max_latency_s=0.12)},
        originates_sent=4, logins=2, reconnects=1, connect_failures=3, heartbeat_misses=1)
    assert snap.line() == (
        "AMI: 120 events (2.5/s over the last 10 s), 9 actions, 4 originates (answered in 42 ms on average, "
        "120 ms at most; 0 timed out, 1 refused), 2 login(s), 1 reconnect(s), 3 failed connect(s), "
        "1 heartbeat miss(es)")


def test_event_rate_uses_a_sliding_window():
    rate = EventRate(window_s=10)
    for t in (100.0, 100.5, 101.2, 105.0):
        rate.add(t)
    assert rate.rate(105.0) == pytest.approx(0.4)
    assert rate.rate(111.0) == pytest.approx(0.1)  # only the event at 105 is still inside
    assert rate.rate(200.0) == 0


async def test_secret_is_never_logged_or_repred(make, peer, caplog):
    with caplog.at_level(logging.DEBUG):
        conn = await make()
        await conn.send(actions.ping())
    assert "Login" in caplog.text  # the login was logged ...
    assert peer.secret not in caplog.text  # ... without its secret
    assert peer.secret not in repr(conn.settings)
    assert peer.secret not in repr(conn)
    assert actions.redacted(actions.login("u", "pw"))["Secret"] == "********"


async def test_close_logs_off_and_cancels_every_task(make, peer):
    conn = await make(heartbeat_interval=0.05)
    await conn.close()
    assert conn.state is ConnectionState.CLOSED
    assert peer.received["Logoff"] == 1
    assert not conn._tasks
    pings = peer.received["Ping"]
    await asyncio.sleep(0.15)  # three heartbeat intervals: no ping, no reconnect after close
    assert peer.received["Ping"] == pings
    assert peer.received["Login"] == 1
    with pytest.raises(AmiNotConnected):
        await conn.send(actions.ping())
