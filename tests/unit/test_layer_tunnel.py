"""Playbook tests of the tunnel layer: half-close, losses, timeouts and TCP rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.flow.record import TunnelInfo
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    SendData,
    SetTimer,
    Shutdown,
    server_conn,
)
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Stopping,
    TimedOut,
    TimeoutKind,
    TimerFired,
)
from proxy.layers.tunnel import RULE_CLOSE, RULE_RESET, WAKE_DOWN, TunnelLayer
from proxy.rules import SourceText, TcpPlan, load_sources
from tests.playbook import Playbook

S = server_conn(1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plan(toxic: str, direction: str = "downstream") -> TcpPlan:
    text = f"version: 1\ntcp:\n  - name: t\n    match: {{port: 9, direction: {direction}}}\n"
    text += f"    {toxic}\n"
    rules = load_sources([SourceText(Path("/t/r.yaml"), text)], rng=lambda: 0.0)
    found = rules.tcp_for("db", 9, "regular", "127.0.0.1")
    assert found is not None and found.matched == ("t",)
    return found


def test_bytes_both_ways_then_half_closes() -> None:
    t = TunnelLayer(S, Clock())
    assert Playbook(t) >> DataReceived(CLIENT, b"ping") << SendData(S, b"ping")
    assert (
        Playbook(t)
        >> DataReceived(S, b"pong!")
        << SendData(CLIENT, b"pong!")
        >> EofReceived(CLIENT)
        << Shutdown(S)  # the server may still answer (RFC 9293 §3.6)
        >> DataReceived(S, b"late")
        << SendData(CLIENT, b"late")
        >> EofReceived(S)
        << Shutdown(CLIENT)
        << CloseConnection(S)
        << CloseConnection(CLIENT)
    )
    assert t.done is None  # until a connection is actually gone
    assert Playbook(t) >> ConnectionClosed(CLIENT) << CloseConnection(S, discard=True)
    assert t.done == TunnelInfo(4, 9, "fin", "fin")


def test_start_sends_what_was_read_past_the_last_message() -> None:
    t = TunnelLayer(S, Clock())
    assert t.start(b"\x16\x03", b"\x81\x00") == [
        SendData(S, b"\x16\x03"),
        SendData(CLIENT, b"\x81\x00"),
    ]


def test_a_reset_server_resets_the_client() -> None:
    t = TunnelLayer(S, Clock())
    assert (
        Playbook(t)
        >> ConnectionClosed(S, reset=True)
        << CloseConnection(CLIENT, abort=True, discard=True)
    )
    assert t.done == TunnelInfo(0, 0, "proxy", "reset")
    assert Playbook(t) >> DataReceived(CLIENT, b"after the end")  # ignored


def test_a_client_that_is_gone_ends_the_server() -> None:
    t = TunnelLayer(S, Clock())
    assert Playbook(t) >> ConnectionClosed(CLIENT) << CloseConnection(S, discard=True)
    assert t.done == TunnelInfo(0, 0, "fin", "proxy")


def test_tls_client_cannot_half_close() -> None:
    t = TunnelLayer(S, Clock(), half_close=False)
    assert Playbook(t) >> EofReceived(CLIENT) << CloseConnection(S) << CloseConnection(CLIENT)


def test_timeout_and_shutdown_end_it_from_our_side() -> None:
    for event, reason in ((TimedOut(TimeoutKind.TUNNEL_IDLE), "timeout"), (Stopping(), "proxy")):
        t = TunnelLayer(S, Clock())
        assert (
            Playbook(t)
            >> event
            << CloseConnection(S, discard=True)
            << CloseConnection(CLIENT, discard=True)
        )
        assert t.done == TunnelInfo(0, 0, reason, reason)


def test_latency_toxic_times_the_sends_and_the_fin() -> None:
    clock = Clock()
    t = TunnelLayer(S, clock, plan("latency: {ms: 200}"))
    assert t.start() == []
    assert (
        Playbook(t)
        >> DataReceived(S, b"slow")
        << SendData(CLIENT, b"slow", 100.2)
        >> DataReceived(CLIENT, b"fast")  # the toxic is on the downstream only
        << SendData(S, b"fast", 100.0)
        >> EofReceived(S)
        << Shutdown(CLIENT, 100.2)
    )
    assert t.matched_rules == ("t",)


def test_bandwidth_toxic_paces_in_pieces() -> None:
    clock = Clock()
    t = TunnelLayer(S, clock, plan("bandwidth: {bytes_per_second: 1000}"))
    out = t.handle(DataReceived(S, b"x" * 300))
    sends = [c for c in out if isinstance(c, SendData)]
    assert b"".join(c.data for c in sends) == b"x" * 300
    times = [c.at for c in sends]
    assert times == sorted(times) and times[-1] is not None and times[-1] > 100.0
    wakes = [c for c in out if isinstance(c, SetTimer)]
    assert all(w.token == WAKE_DOWN for w in wakes)


def test_reset_peer_toxic_resets_both_when_its_timer_fires() -> None:
    clock = Clock()
    t = TunnelLayer(S, clock, plan("reset_peer: {timeout_ms: 50}"))
    (timer,) = t.start()
    assert isinstance(timer, SetTimer) and timer.token == RULE_RESET
    assert timer.seconds == pytest.approx(0.05)
    clock.now += 0.05
    assert (
        Playbook(t)
        >> TimerFired(RULE_RESET)
        << CloseConnection(S, abort=True)
        << CloseConnection(CLIENT, abort=True)
    )
    assert t.done == TunnelInfo(0, 0, "reset", "reset")


def test_timeout_toxic_closes_the_tunnel_by_rule() -> None:
    clock = Clock()
    t = TunnelLayer(S, clock, plan("timeout: {ms: 100}"))
    out = t.start()
    assert any(isinstance(c, SetTimer) and c.token == RULE_CLOSE for c in out)
    assert (
        Playbook(t)
        >> TimerFired(RULE_CLOSE)
        << CloseConnection(S, discard=True)
        << CloseConnection(CLIENT, discard=True)
    )
    assert t.done is not None and (t.done.client_close, t.done.server_close) == ("rule", "rule")
