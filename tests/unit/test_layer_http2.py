"""Playbook tests for the HTTP/2 layers: streams in from a client, frames out.

The client (and, for shared upstreams, the server) is an ``h2`` connection
object driven by the test: its frames go to the layer as ``DataReceived``
and what the layer sends it is fed back, so each test reads both the exact
commands the layer gives the shell (server connections, HTTP/1.1 bytes,
hooks) and what an HTTP/2 peer makes of the frames.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from proxy.flow.hooks import HookKind
from proxy.flow.record import FlowRecord
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Hook,
    OpenServer,
    PauseReading,
    ReleaseServer,
    ResumeReading,
    SendData,
    SetTimer,
    server_conn,
)
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    ServerFailed,
    ServerOpened,
    TimerFired,
)
from proxy.layers.http2.backpressure import STREAM_BACKLOG
from proxy.layers.http2.floods import LIMITS, Flood
from proxy.layers.http2.link import STREAM_WINDOW
from proxy.layers.http2.server import FIRST_SERVER_ID, Http2Server
from proxy.layers.http2.upstream import KEEPALIVE, KEEPALIVE_TOKEN
from proxy.layers.root import ClientLayers
from proxy.rules import SourceText, load_sources
from proxy.session.config import SessionConfig, Upstream

PEER = ("127.0.0.1", 40000)
UP = ("10.0.0.9", 9000)
S1 = server_conn(FIRST_SERVER_ID)
S2 = server_conn(FIRST_SERVER_ID + 1)
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"svc"), (b":path", b"/a")]


def reverse(**kw: Any) -> SessionConfig:
    return SessionConfig(
        mode="reverse:http://up:9000", upstream=Upstream("http", "up", 9000, **kw),
        clock=lambda: 1000.0, new_id=lambda: "f1",
    )  # fmt: skip


class Client:
    """An HTTP/2 client speaking to the layer through the playbook's events."""

    def __init__(self, layer: Http2Server, validate: bool = True) -> None:
        self.layer = layer
        self.h2 = H2Connection(
            H2Configuration(
                client_side=True, header_encoding=None, validate_outbound_headers=validate,
                normalize_outbound_headers=False,
            )
        )  # fmt: skip
        self.h2.initiate_connection()
        self.events: list[Any] = []
        self.commands: list[Any] = []

    def send(self) -> list[Any]:
        """The client's pending frames to the layer; the layer's answers, frames read."""
        data = self.h2.data_to_send()
        out = (
            self.layer.start(data)
            if not self.commands
            else self.layer.handle(DataReceived(CLIENT, data))
        )
        return self.read(out)

    def read(self, out: list[Any]) -> list[Any]:
        """Feed the layer's frames to the client; return the other commands."""
        rest = []
        for cmd in out:
            if isinstance(cmd, SendData) and cmd.conn == CLIENT:
                self.events += self.h2.receive_data(cmd.data)
            else:
                rest.append(cmd)
        self.commands += out
        data = self.h2.data_to_send()
        if data:
            rest += self.read(self.layer.handle(DataReceived(CLIENT, data)))
        return rest

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def kinds(commands: list[Any]) -> list[Any]:
    """Commands, with hooks shown as (Hook, kind): their flows are checked apart."""
    return [(Hook, c.kind) if isinstance(c, Hook) else c for c in commands]


def test_get_becomes_an_http1_request_and_the_answer_a_stream() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.h2.send_headers(1, [*GET, (b"accept", b"*/*")], end_stream=True)
    rest = client.send()
    assert rest == [OpenServer(S1, "up", 9000)]
    out = layer.handle(ServerOpened(S1, UP, reused=False))
    # Host is the reverse upstream's, as for HTTP/1.1 clients (--keep-host-header keeps it).
    assert out == [SendData(S1, b"GET /a HTTP/1.1\r\nhost: up:9000\r\naccept: */*\r\n\r\n")]
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello"
    rest = client.read(layer.handle(DataReceived(S1, answer)))
    assert kinds(rest) == [(Hook, HookKind.DONE), ReleaseServer(S1, reusable=True)]
    (response,) = client.of(ev.ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"x-up", b"1"), (b"content-length", b"5")]
    assert b"".join(e.data for e in client.of(ev.DataReceived)) == b"hello"
    assert client.of(ev.StreamEnded)
    record = rest[0].flow.to_record()
    assert record.request.message.version == b"2.0" and record.response.status == 200
    assert record.response.message.version == b"2.0"
    assert not layer.sessions  # the stream is done


def test_streams_are_exchanges_side_by_side() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.h2.send_headers(1, GET, end_stream=True)
    client.h2.send_headers(3, GET, end_stream=True)
    assert client.send() == [OpenServer(S1, "up", 9000), OpenServer(S2, "up", 9000)]
    layer.handle(ServerOpened(S2, UP, reused=False))
    rest = client.read(layer.handle(DataReceived(S2, b"HTTP/1.1 204 No Content\r\n\r\n")))
    assert kinds(rest) == [(Hook, HookKind.DONE), ReleaseServer(S2, reusable=True)]
    (response,) = client.of(ev.ResponseReceived)
    assert response.stream_id == 3  # the second stream answered first
    assert list(layer.sessions) == [1]


def test_a_malformed_block_gets_400_and_a_record_and_nothing_goes_upstream() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer, validate=False)
    client.h2.send_headers(1, [*GET[:3], (b":path", b"/a b")], end_stream=True)
    rest = client.send()
    assert kinds(rest) == [(Hook, HookKind.DONE)]
    record = rest[0].flow
    assert "malformed HTTP/2 request" in record.error and ":path" in record.error
    (response,) = client.of(ev.ResponseReceived)
    assert response.headers[0] == (b":status", b"400")


def test_request_body_is_acknowledged_only_as_it_is_forwarded() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.send()  # settings exchanged: the stream window is ours
    assert client.h2.remote_settings.initial_window_size == STREAM_WINDOW
    post = [(b":method", b"POST"), *GET[1:], (b"content-length", b"70000")]
    client.h2.send_headers(1, post)
    client.h2.send_data(1, b"x" * 16384)
    client.h2.send_data(1, b"y" * 16384)
    assert client.send() == [OpenServer(S1, "up", 9000)]
    assert not [e for e in client.of(ev.WindowUpdated) if e.stream_id == 1]  # nothing taken yet
    out = client.read(layer.handle(ServerOpened(S1, UP, reused=False)))
    assert out == [
        # our framing field, as for any request we forward (RFC 9112 §6)
        SendData(S1, b"POST /a HTTP/1.1\r\nhost: up:9000\r\nContent-Length: 70000\r\n\r\n"),
        SendData(S1, b"x" * 16384),
        SendData(S1, b"y" * 16384),
    ]
    updates = [e for e in client.of(ev.WindowUpdated) if e.stream_id == 1]
    assert sum(e.delta for e in updates) <= 32768  # no more than was taken


def test_client_reset_ends_the_exchange_and_the_server_connection() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.h2.send_headers(1, GET, end_stream=True)
    client.send()
    layer.handle(ServerOpened(S1, UP, reused=False))
    client.h2.reset_stream(1, ErrorCodes.CANCEL)
    rest = client.send()
    assert kinds(rest) == [(Hook, HookKind.DONE), ReleaseServer(S1, reusable=False, abort=True)]
    assert rest[0].flow.to_record().error == "client reset the stream (CANCEL)"


def test_a_slow_client_pauses_its_stream_server_only() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.h2.send_headers(1, GET, end_stream=True)
    client.send()
    layer.handle(ServerOpened(S1, UP, reused=False))
    size = 4 * STREAM_BACKLOG
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
    out = layer.handle(DataReceived(S1, head + b"z" * (2 * STREAM_BACKLOG)))
    assert PauseReading(S1) in out  # the client's 64 KiB window is full, and then some
    client.read(out)
    data = sum(len(e.data) for e in client.of(ev.DataReceived))
    assert data == 65535  # the client's initial stream window
    client.h2.acknowledge_received_data(data, 1)
    client.h2.increment_flow_control_window(10 * STREAM_BACKLOG, 1)
    client.h2.increment_flow_control_window(10 * STREAM_BACKLOG)
    assert ResumeReading(S1) in client.send()


def test_h2c_upstream_is_shared_by_the_streams() -> None:
    layer = Http2Server(reverse(h2c=True), PEER)
    client = Client(layer)
    client.h2.send_headers(1, GET, end_stream=True)
    client.h2.send_headers(3, GET, end_stream=True)
    assert client.send() == [OpenServer(S1, "up", 9000, reuse=False)]  # one, for both
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    out = layer.handle(ServerOpened(S1, UP, reused=False))
    assert out[-1] == SetTimer(KEEPALIVE, KEEPALIVE_TOKEN)  # PINGs keep it alive
    assert all(isinstance(c, SendData) and c.conn == S1 for c in out[:-1])
    got = []
    for cmd in out[:-1]:
        got += server.receive_data(cmd.data)
    requests = [e for e in got if isinstance(e, ev.RequestReceived)]
    assert [r.stream_id for r in requests] == [1, 3]
    assert requests[0].headers[:4] == [
        (b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"up:9000"), (b":path", b"/a"),
    ]  # fmt: skip
    server.send_headers(3, [(b":status", b"200"), (b"content-length", b"2")])
    server.send_data(3, b"ok", end_stream=True)
    server.send_headers(1, [(b":status", b"404")], end_stream=True)
    rest = client.read(layer.handle(DataReceived(S1, server.data_to_send())))
    assert [type(c) for c in rest if not isinstance(c, SendData)] == [Hook, Hook]
    statuses = {e.stream_id: e.headers[0][1] for e in client.of(ev.ResponseReceived)}
    assert statuses == {1: b"404", 3: b"200"}
    assert not layer.sessions and layer.mux.owns(S1)  # the connection stays for more
    # Keepalive: a quiet tick sends a PING; a second one without an answer ends it.
    out = layer.handle(TimerFired(KEEPALIVE_TOKEN))  # the server spoke: nothing to do
    assert out == [SetTimer(KEEPALIVE, KEEPALIVE_TOKEN)]
    out = layer.handle(TimerFired(KEEPALIVE_TOKEN))
    assert [type(e) for e in server.receive_data(out[0].data)] == [ev.PingReceived]
    assert out[1:] == [SetTimer(KEEPALIVE, KEEPALIVE_TOKEN)]
    out = layer.handle(TimerFired(KEEPALIVE_TOKEN))
    assert out == [CloseConnection(S1, abort=True)] and not layer.mux.owns(S1)


def test_rapid_reset_is_stopped_with_goaway_and_a_record() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.send()
    rest: list[Any] = []
    for i in range(LIMITS[Flood.RESET] + 1):
        stream = 2 * i + 1
        client.h2.send_headers(stream, GET, end_stream=True)
        client.h2.reset_stream(stream, ErrorCodes.CANCEL)
        rest = client.send()
        if layer.closed:
            break
    assert layer.closed
    (goaway,) = client.of(ev.ConnectionTerminated)
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert CloseConnection(CLIENT) in rest
    (done,) = [c for c in rest if isinstance(c, Hook) and isinstance(c.flow, FlowRecord)]
    assert (
        done.flow.error == "client: HTTP/2 protocol error: RST_STREAM flood (more than 200 in 10 s)"
    )


def test_ping_flood_is_stopped() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.send()
    for i in range(LIMITS[Flood.PING] + 1):
        client.h2.ping(b"%08d" % i)
    client.send()
    assert layer.closed
    assert client.of(ev.ConnectionTerminated)[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_a_protocol_error_closes_the_connection_with_a_record() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.send()
    rest = client.read(layer.handle(DataReceived(CLIENT, b"\x00\x00\x01\x07\x00\x00\x00\x00\x01!")))
    assert layer.closed and CloseConnection(CLIENT) in rest
    (done,) = [c for c in rest if isinstance(c, Hook)]
    assert done.flow.error.startswith("client: HTTP/2 protocol error")


def test_upgrade_h2c_answers_101_and_the_request_is_stream_1() -> None:
    layers = ClientLayers(reverse(), PEER)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    settings = client.initiate_upgrade_connection()
    request = (
        b"GET /a HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: %s\r\n\r\n" % settings
    )
    out = layers.handle(DataReceived(CLIENT, request))
    assert out[0] == SendData(CLIENT, b"HTTP/1.1 101 Switching Protocols\r\n"
                              b"Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n")  # fmt: skip
    assert out[-1] == OpenServer(S1, "up", 9000)
    out = layers.handle(ServerOpened(S1, UP, reused=False))
    # The fields that asked for the upgrade are not forwarded.
    assert out == [SendData(S1, b"GET /a HTTP/1.1\r\nHost: up:9000\r\n\r\n")]
    out = layers.handle(DataReceived(S1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    events = []
    for cmd in out:
        if isinstance(cmd, SendData) and cmd.conn == CLIENT:
            events += client.receive_data(cmd.data)
    (response,) = [e for e in events if isinstance(e, ev.ResponseReceived)]
    assert response.stream_id == 1 and response.headers[0] == (b":status", b"200")
    done = [c for c in out if isinstance(c, Hook)]
    assert done[0].flow.to_record().response.message.version == b"2.0"


def test_a_reset_rule_names_the_http2_error_code() -> None:
    text = (
        "version: 1\nrules:\n- name: refuse\n  match: {path: /a}\n"
        "  fault: {phase: request, reset: {h2_error: REFUSED_STREAM}}\n"
    )
    rules = load_sources([SourceText(Path("/t/rules.yaml"), text)], rng=lambda: 0.0)
    layer = Http2Server(replace(reverse(), rules=lambda: rules), PEER)
    client = Client(layer)
    client.h2.send_headers(1, GET, end_stream=True)
    rest = client.send()
    assert kinds(rest) == [(Hook, HookKind.DONE)]  # nothing went upstream
    (reset,) = client.of(ev.StreamReset)
    assert reset.error_code == ErrorCodes.REFUSED_STREAM
    assert rest[0].flow.to_record().error == "rule refuse: reset"


def test_a_body_nobody_read_is_acknowledged_when_its_stream_ends() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.send()
    post = [(b":method", b"POST"), *GET[1:], (b"content-length", b"32768")]
    # 8 MiB of bodies that wait for a server that never comes, twice the
    # connection's window: were they not acknowledged when their streams
    # end, the client could not send the last ones at all.
    for i in range(256):
        stream = 2 * i + 1
        assert client.h2.outbound_flow_control_window >= 32768, i
        client.h2.send_headers(stream, post)
        client.h2.send_data(stream, b"x" * 16384)
        client.h2.send_data(stream, b"y" * 16384, end_stream=True)
        (opened,) = client.send()
        client.read(layer.handle(ServerFailed(opened.conn, "connection refused")))
    statuses = [e.headers[0] for e in client.of(ev.ResponseReceived)]
    assert statuses == [(b":status", b"502")] * 256


def test_data_for_a_stream_we_gave_up_is_acknowledged_on_the_shared_connection() -> None:
    layer = Http2Server(reverse(h2c=True), PEER)
    client = Client(layer)
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()

    def to_server(commands: list[Any]) -> None:
        for cmd in commands:
            if isinstance(cmd, SendData) and cmd.conn == S1:
                server.receive_data(cmd.data)

    client.h2.send_headers(1, GET, end_stream=True)
    client.send()
    to_server(layer.handle(ServerOpened(S1, UP, reused=False)))
    layer.handle(DataReceived(S1, server.data_to_send()))
    # 8 MiB in answers to streams the client resets at once: twice the
    # shared connection's window, so each must be given back.
    for i in range(128):
        stream = 2 * i + 1
        if i:
            client.h2.send_headers(stream, GET, end_stream=True)
            to_server(client.send())
        to_server(layer.handle(DataReceived(S1, server.data_to_send())))
        assert server.outbound_flow_control_window >= 65536, i
        server.send_headers(stream, [(b":status", b"200")])
        for _ in range(4):
            server.send_data(stream, b"z" * 16384)
        in_flight = server.data_to_send()  # sent before the server hears of the reset
        client.h2.reset_stream(stream, ErrorCodes.CANCEL)
        resets = client.send()
        to_server(layer.handle(DataReceived(S1, in_flight)))
        to_server(resets)


def test_a_slow_client_holds_its_stream_on_a_shared_server_connection() -> None:
    layer = Http2Server(reverse(h2c=True), PEER)
    client = Client(layer)
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()

    def to_server(commands: list[Any]) -> list[Any]:
        for cmd in commands:
            if isinstance(cmd, SendData) and cmd.conn == S1:
                server.receive_data(cmd.data)
        return commands

    client.h2.send_headers(1, GET, end_stream=True)
    client.send()
    to_server(layer.handle(ServerOpened(S1, UP, reused=False)))
    to_server(client.read(layer.handle(DataReceived(S1, server.data_to_send()))))
    server.send_headers(1, [(b":status", b"200")])
    sent = 0
    while server.local_flow_control_window(1) > 0 and sent < 4 * STREAM_WINDOW:
        n = min(16384, server.local_flow_control_window(1))
        server.send_data(1, b"d" * n)
        sent += n
        to_server(client.read(layer.handle(DataReceived(S1, server.data_to_send()))))
    # The client took 64 KiB (its window) and no more: the proxy queued some,
    # then stopped taking from the server, whose window closed behind it.
    assert sent < STREAM_WINDOW + 2 * STREAM_BACKLOG + 65535
    assert server.local_flow_control_window(1) == 0
    assert layer.link.pending(1) <= STREAM_BACKLOG + 65535
    # The client reads: the stream is taken from again, the server may send.
    client.h2.increment_flow_control_window(8 * STREAM_WINDOW, 1)
    client.h2.increment_flow_control_window(8 * STREAM_WINDOW)
    to_server(client.send())
    assert server.local_flow_control_window(1) > 0


def test_after_the_client_says_goaway_the_last_stream_ends_then_the_connection() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.h2.send_headers(1, GET, end_stream=True)
    client.send()
    layer.handle(ServerOpened(S1, UP, reused=False))
    client.h2.close_connection()
    assert CloseConnection(CLIENT) not in client.send()  # stream 1 is still under way
    # h2 sends nothing after a GOAWAY it received (its connection state is
    # closed), so the answer cannot go out; the exchange ends and is recorded.
    rest = layer.handle(DataReceived(S1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert kinds(rest) == [
        (Hook, HookKind.DONE), ReleaseServer(S1, reusable=True), CloseConnection(CLIENT)
    ]  # fmt: skip


def test_an_ended_connection_is_freed_without_waiting_for_the_collector() -> None:
    """h2's connection object holds a cycle (its dispatch table of bound
    methods); breaking it when the client goes frees it, and its streams, at once."""
    import gc
    import weakref

    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.h2.send_headers(1, GET, end_stream=True)
    client.send()
    ref = weakref.ref(layer.link.conn)
    gc.disable()
    try:
        layer.handle(ConnectionClosed(CLIENT))
        del layer, client
        assert ref() is None
    finally:
        gc.enable()
