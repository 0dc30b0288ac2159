"""Playbook tests for WebSockets over HTTP/2 (RFC 8441): extended CONNECT streams.

The client is an ``h2`` connection object driven by the test (``Client`` of
test_layer_http2); the server is HTTP/1.1, so its bytes are read exactly:
the handshake the extended CONNECT stands for, then the frames.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from wsproto.utilities import generate_accept_token

from proxy.flow.hooks import HookKind
from proxy.flow.wsinfo import WsMessage
from proxy.layers.commands import CloseConnection, Hook, OpenServer, PauseReading, SendData
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    EofReceived,
    ServerOpened,
    Stopping,
    TimedOut,
    TimeoutKind,
)
from proxy.layers.http2.backpressure import STREAM_BACKLOG
from proxy.layers.http2.server import Http2Server
from proxy.rules import SourceText, load_sources
from tests.unit.test_layer_http2 import GET, PEER, S1, UP, Client, reverse
from tests.unit.test_layer_websocket import frame, unframe

WS = [
    (b":method", b"CONNECT"),
    (b":protocol", b"websocket"),
    (b":scheme", b"http"),
    (b":authority", b"svc"),
    (b":path", b"/chat?x=1"),
    (b"sec-websocket-version", b"13"),
]


def switch(handshake: bytes) -> bytes:
    """The server's 101 for ``handshake``, its accept made from the proxy's key."""
    found = re.search(rb"sec-websocket-key: (\S+)\r\n", handshake)
    assert found is not None
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + generate_accept_token(found.group(1)) + b"\r\n"
    )


def opened(extra: list[tuple[bytes, bytes]] | None = None) -> tuple[Http2Server, Client, bytes]:
    """A client's extended CONNECT, up to the handshake the server gets."""
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.h2.send_headers(1, [*WS, *(extra or [])])
    assert client.send() == [OpenServer(S1, "up", 9000)]
    out = client.read(layer.handle(ServerOpened(S1, UP, reused=False)))
    assert len(out) == 1 and isinstance(out[0], SendData) and out[0].conn == S1
    return layer, client, out[0].data


def switched(extra: bytes = b"") -> tuple[Http2Server, Client]:
    layer, client, handshake = opened()
    rest = client.read(layer.handle(DataReceived(S1, switch(handshake) + extra + b"\r\n")))
    assert rest == []
    return layer, client


def messages(commands: list[Any]) -> list[WsMessage]:
    return [c.flow.message for c in commands if isinstance(c, Hook) and c.kind is HookKind.MESSAGE]


def received(client: Client) -> bytes:
    return b"".join(e.data for e in client.of(ev.DataReceived))


def test_we_advertise_extended_connect() -> None:
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.send()
    assert client.h2.remote_settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1


def test_extended_connect_becomes_an_http1_upgrade() -> None:
    _, _, handshake = opened([(b"sec-websocket-protocol", b"chat")])
    head = handshake.decode()
    assert head.startswith("GET /chat?x=1 HTTP/1.1\r\n")
    assert "host: up:9000\r\n" in head
    assert "connection: Upgrade\r\n" in head and "upgrade: websocket\r\n" in head
    assert "sec-websocket-version: 13\r\n" in head and "sec-websocket-protocol: chat\r\n" in head
    key = re.search(r"sec-websocket-key: ([A-Za-z0-9+/=]+)\r\n", head)
    assert key is not None and len(key.group(1)) == 24  # 16 random bytes, base64
    assert head.endswith("\r\n\r\n") and "content-length" not in head.lower()


def test_a_key_from_the_client_is_replaced_by_ours() -> None:
    _, _, handshake = opened([(b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")])
    assert handshake.count(b"sec-websocket-key: ") == 1
    assert b"dGhlIHNhbXBsZSBub25jZQ==" not in handshake


def test_unreadable_extension_offers_are_dropped() -> None:
    offer = b"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"
    _, _, handshake = opened([(b"sec-websocket-extensions", offer)])
    assert b"sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n" in handshake
    _, _, handshake = opened([(b"sec-websocket-extensions", b"x-unknown")])
    assert b"sec-websocket-extensions" not in handshake


def test_101_is_200_and_frames_flow_both_ways() -> None:
    layer, client = switched(b"Sec-WebSocket-Protocol: chat\r\n")
    (response,) = client.of(ev.ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"sec-websocket-protocol", b"chat")]
    assert not client.of(ev.StreamEnded)
    up = frame(1, b"hello")  # masked, as RFC 6455 wants from a client (RFC 8441 §5)
    client.h2.send_data(1, up)
    rest = client.send()
    assert rest[0] == SendData(S1, up)  # the very frame
    assert [(m.direction, m.opcode, m.size) for m in messages(rest)] == [("upstream", "text", 5)]
    down = frame(2, b"\x00\x01", mask=False)
    rest = client.read(layer.handle(DataReceived(S1, down)))
    assert received(client) == down
    assert [(m.direction, m.opcode) for m in messages(rest)] == [("downstream", "binary")]
    # the stream's DATA was acknowledged as the layer took it
    assert layer.sessions[1].client_side.requests.buffered == 0
    assert layer.link.conn._inbound_flow_control_window_manager.current_window_size > 0


def test_fragments_and_ping_pass_and_the_message_is_recorded_whole() -> None:
    _layer, client = switched()
    parts = frame(1, b"he", fin=False) + frame(9, b"p") + frame(0, b"llo")
    client.h2.send_data(1, parts)
    rest = client.send()
    assert b"".join(c.data for c in rest if isinstance(c, SendData)) == parts
    (msg,) = messages(rest)
    assert (msg.size, msg.frames, msg.preview) == (5, 2, b"hello")


def test_close_handshake_ends_the_stream_and_records_a_websocket_flow() -> None:
    layer, client = switched()
    client.h2.send_data(1, frame(8, b"\x03\xe8bye"))
    client.send()
    server_close = frame(8, b"\x03\xe8", mask=False)
    client.read(layer.handle(DataReceived(S1, server_close)))
    rest = client.read(layer.handle(EofReceived(S1)))
    assert client.of(ev.StreamEnded) or any(isinstance(c, CloseConnection) for c in rest)
    done = [c for c in rest if isinstance(c, Hook) and c.kind is HookKind.DONE]
    assert len(done) == 1
    record = done[0].flow.to_record()
    assert record.kind == "websocket"
    assert record.request.message.version == b"2.0" and record.response.status == 200
    assert record.response.upstream.status == 101
    info = record.tunnel.websocket
    assert info.client_close.code == 1000 and info.closed_by == "client"
    assert received(client).endswith(server_close)
    assert CloseConnection(S1) in rest
    assert not layer.sessions
    # our END_STREAM went after the Close frame; the client's is still due
    assert [e.stream_id for e in client.of(ev.StreamEnded)] == [1]
    assert client.h2.streams[1].state_machine.state.name == "HALF_CLOSED_REMOTE"


def test_client_end_stream_is_its_fin() -> None:
    _layer, client = switched()
    client.h2.end_stream(1)
    rest = client.send()
    assert CloseConnection(S1) in rest
    assert [c.kind for c in rest if isinstance(c, Hook)] == [HookKind.DONE]
    assert client.of(ev.StreamEnded)  # ours answered it
    assert rest[-1].flow.to_record().tunnel.client_close == "fin"


def test_rst_stream_is_an_abrupt_close_and_a_server_reset_is_cancel() -> None:
    layer, client = switched()
    client.h2.reset_stream(1, ErrorCodes.CANCEL)
    rest = client.send()
    assert CloseConnection(S1, abort=True) in rest
    (done,) = [c for c in rest if isinstance(c, Hook)]
    assert done.flow.to_record().tunnel.client_close == "reset"
    layer, client = switched()
    rest = client.read(layer.handle(ConnectionClosed(S1, reset=True)))
    (reset,) = client.of(ev.StreamReset)
    assert reset.error_code == ErrorCodes.CANCEL  # RFC 8441 §6


def test_unmasked_client_frame_fails_with_1002() -> None:
    _layer, client = switched()
    client.h2.send_data(1, frame(1, b"x", mask=False))
    rest = client.send()
    to_server = [c for c in rest if isinstance(c, SendData) and c.conn == S1]
    assert unframe(to_server[0].data)[2][:2] == b"\x03\xea"  # 1002 to the server
    assert unframe(received(client))[2][:2] == b"\x03\xea"  # and to the client
    record = [c for c in rest if isinstance(c, Hook)][-1].flow.to_record()
    assert record.tunnel.websocket.error.startswith("client: ")


def test_a_refusal_is_relayed_as_the_http2_response() -> None:
    layer, client, _ = opened()
    answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"
    rest = client.read(layer.handle(DataReceived(S1, answer)))
    (response,) = client.of(ev.ResponseReceived)
    assert response.headers[0] == (b":status", b"403")
    assert received(client) == b"no" and client.of(ev.StreamEnded)
    record = next(c for c in rest if isinstance(c, Hook)).flow.to_record()
    assert record.kind == "http" and record.response.status == 403


def test_a_101_that_does_not_answer_our_key_is_a_502() -> None:
    """RFC 6455 §4.1: the proxy, the server's client, checks Sec-WebSocket-Accept."""
    layer, client, handshake = opened()
    wrong = b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    bad = switch(handshake).split(b"Sec-WebSocket-Accept")[0] + wrong + b"\r\n"
    rest = client.read(layer.handle(DataReceived(S1, bad)))
    (response,) = client.of(ev.ResponseReceived)
    assert response.headers[0] == (b":status", b"502") and client.of(ev.StreamEnded)
    assert CloseConnection(S1, abort=True) in rest
    (done,) = [c for c in rest if isinstance(c, Hook)]
    assert "Sec-WebSocket-Accept" in done.flow.to_record().error
    assert not layer.sessions


def test_frames_before_the_200_wait_unacknowledged_then_go() -> None:
    layer, client, handshake = opened()
    early = frame(1, b"early")
    client.h2.send_data(1, early)
    assert client.send() == []  # held: the server has not switched yet
    assert not [e for e in client.of(ev.WindowUpdated) if e.stream_id == 1]
    rest = client.read(layer.handle(DataReceived(S1, switch(handshake) + b"\r\n")))
    assert SendData(S1, early) in rest


def test_deflate_is_read_from_the_switch() -> None:
    offer = [(b"sec-websocket-extensions", b"permessage-deflate")]
    layer, client, handshake = opened(offer)
    accept = b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    client.read(layer.handle(DataReceived(S1, switch(handshake) + accept)))
    (response,) = client.of(ev.ResponseReceived)
    assert (b"sec-websocket-extensions", b"permessage-deflate") in response.headers
    z = zlib.compressobj(wbits=-15)
    body = z.compress(b"squeeze me " * 20) + z.flush(zlib.Z_SYNC_FLUSH)
    client.h2.send_data(1, frame(1, body[:-4], rsv1=True))
    (msg,) = messages(client.send())
    assert msg.compressed and msg.size == 220 and msg.preview.startswith(b"squeeze me")


def test_a_slow_client_pauses_the_websocket_server() -> None:
    layer, client = switched()
    client.h2.send_data(1, b"")  # nothing: the client never reads its window open again
    big = frame(2, b"x" * 60000, mask=False)
    out: list[Any] = []
    for _ in range((STREAM_BACKLOG + 2 * (1 << 20)) // len(big) + 2):
        out += layer.handle(DataReceived(S1, big))
    assert PauseReading(S1) in out


def test_stopping_closes_with_1001() -> None:
    layer, client = switched()
    rest = client.read(layer.handle(Stopping()))
    close = unframe(received(client))
    assert close[0] == 8 and close[2][:2] == b"\x03\xe9"
    assert any(isinstance(c, SendData) and c.conn == S1 for c in rest)


def test_malformed_extended_connects_are_refused_on_their_stream() -> None:
    cases = [
        ([*(h for h in WS if h[0] != b":authority"), (b"host", b"svc")], 400, ":authority"),
        ([*WS[:1], (b":protocol", b"h3-datagram"), *WS[2:]], 501, "not supported"),
        ([*WS, (b"content-length", b"0")], 400, "content-length"),
    ]
    for headers, status, why in cases:
        layer = Http2Server(reverse(), PEER)
        client = Client(layer, validate=False)
        client.h2.send_headers(1, headers)
        rest = client.send()
        assert [c.kind for c in rest if isinstance(c, Hook)] == [HookKind.DONE], headers
        assert why in rest[0].flow.error
        (response,) = client.of(ev.ResponseReceived)
        assert response.headers[0] == (b":status", b"%d" % status)
    layer = Http2Server(reverse(), PEER)
    client = Client(layer)
    client.h2.send_headers(1, WS, end_stream=True)
    rest = client.send()
    assert "ends its stream" in rest[0].flow.error


def test_what_h2_refuses_is_a_connection_error() -> None:
    """h2 checks these itself, as connection errors (RFC 9113 §5.4.1 allows it)."""
    cases = [
        ([(b":method", b"GET"), *WS[1:]], "connect-request-only"),  # :protocol on a GET
        ([h for h in WS if h[0] != b":path"], ":path"),
        ([h for h in WS if h[0] != b":authority"], ":authority"),
    ]
    for headers, why in cases:
        layer = Http2Server(reverse(), PEER)
        client = Client(layer, validate=False)
        client.h2.send_headers(1, headers, end_stream=True)
        rest = client.send()
        (terminated,) = client.of(ev.ConnectionTerminated)
        assert terminated.error_code == ErrorCodes.PROTOCOL_ERROR
        assert why in rest[0].flow.error, rest[0].flow.error


def test_an_idle_websocket_has_the_tunnel_deadline_and_times_out_with_1001() -> None:
    layer, client = switched()
    assert layer.deadline() is TimeoutKind.TUNNEL_IDLE
    rest = client.read(layer.handle(TimedOut(TimeoutKind.TUNNEL_IDLE)))
    close = unframe(received(client))
    assert close[0] == 8 and close[2][:2] == b"\x03\xe9"  # 1001 to the client
    to_server = [c for c in rest if isinstance(c, SendData) and c.conn == S1]
    assert unframe(to_server[0].data)[2][:2] == b"\x03\xe9"  # and to the server
    assert CloseConnection(S1) in rest and client.of(ev.StreamEnded)
    (done,) = [c for c in rest if isinstance(c, Hook)]
    assert done.flow.to_record().tunnel.client_close == "timeout"


def h2_upstream(
    connect_protocol: bool,
) -> tuple[Http2Server, Client, H2Connection, list[Any]]:
    """A reverse h2c listener whose shared server connection is open (a GET
    went first) and whose server did or did not advertise extended CONNECT."""
    layer = Http2Server(reverse(h2c=True), PEER)
    client = Client(layer)
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    if connect_protocol:
        server.update_settings({SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    client.h2.send_headers(1, GET, end_stream=True)
    assert client.send() == [OpenServer(S1, "up", 9000, reuse=False)]
    out = layer.handle(ServerOpened(S1, UP, reused=False))
    for cmd in out:
        if isinstance(cmd, SendData):
            server.receive_data(cmd.data)
    server.send_headers(1, [(b":status", b"204")], end_stream=True)
    client.read(layer.handle(DataReceived(S1, server.data_to_send())))
    client.h2.send_headers(3, WS)
    rest = client.send()
    got: list[Any] = []
    for cmd in rest:
        if isinstance(cmd, SendData) and cmd.conn == S1:
            got += server.receive_data(cmd.data)
    return layer, client, server, [rest, got]


def test_extended_connect_to_an_http2_server_that_takes_it() -> None:
    layer, client, server, (rest, got) = h2_upstream(True)
    (request,) = [e for e in got if isinstance(e, ev.RequestReceived)]
    assert request.stream_id == 3 and request.stream_ended is None  # the stream stays open
    assert request.headers[:5] == [
        (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
        (b":authority", b"up:9000"), (b":path", b"/chat?x=1"),
    ]  # fmt: skip
    names = [k for k, _ in request.headers]
    assert b"sec-websocket-key" not in names and b"upgrade" not in names
    assert (b"sec-websocket-version", b"13") in request.headers
    server.send_headers(3, [(b":status", b"200")])
    down = frame(1, b"hi", mask=False)
    server.send_data(3, down)
    rest = client.read(layer.handle(DataReceived(S1, server.data_to_send())))
    assert [e.headers for e in client.of(ev.ResponseReceived)][-1] == [(b":status", b"200")]
    assert received(client) == down
    assert [m.direction for m in messages(rest)] == ["downstream"]
    up = frame(2, b"\x01\x02")
    client.h2.send_data(3, up)
    sent = [e for c in client.send() if isinstance(c, SendData) and c.conn == S1
            for e in server.receive_data(c.data)]  # fmt: skip
    assert b"".join(e.data for e in sent if isinstance(e, ev.DataReceived)) == up
    # the server's END_STREAM is its FIN: ours follows, and the record is written
    server.send_data(3, frame(8, b"\x03\xe8", mask=False), end_stream=True)
    rest = client.read(layer.handle(DataReceived(S1, server.data_to_send())))
    ended = [e for c in rest if isinstance(c, SendData) and c.conn == S1
             for e in server.receive_data(c.data)]  # fmt: skip
    assert any(isinstance(e, ev.StreamEnded) and e.stream_id == 3 for e in ended)
    (done,) = [c for c in rest if isinstance(c, Hook) and c.kind is HookKind.DONE]
    record = done.flow.to_record()
    assert record.kind == "websocket" and record.response.upstream.status == 101
    assert record.tunnel.websocket.server_close.code == 1000
    assert client.of(ev.StreamEnded) and layer.mux.owns(S1)  # the connection stays


def test_an_http2_server_without_the_setting_gets_http1() -> None:
    layer, client, _server, (rest, got) = h2_upstream(False)
    assert not [e for e in got if isinstance(e, ev.RequestReceived)]
    (opened,) = [c for c in rest if isinstance(c, OpenServer)]
    assert opened.conn != S1 and opened.tls is None  # a connection of its own, HTTP/1.1
    out = client.read(layer.handle(ServerOpened(opened.conn, UP, reused=False)))
    assert out[0].data.startswith(b"GET /chat?x=1 HTTP/1.1\r\n")


def test_a_server_reset_of_the_websocket_stream_is_an_abrupt_close() -> None:
    layer, client, server, _ = h2_upstream(True)
    server.send_headers(3, [(b":status", b"200")])
    client.read(layer.handle(DataReceived(S1, server.data_to_send())))
    server.reset_stream(3, ErrorCodes.CANCEL)
    rest = client.read(layer.handle(DataReceived(S1, server.data_to_send())))
    (reset,) = client.of(ev.StreamReset)
    assert reset.stream_id == 3 and reset.error_code == ErrorCodes.CANCEL
    (done,) = [c for c in rest if isinstance(c, Hook) and c.kind is HookKind.DONE]
    assert done.flow.to_record().tunnel.server_close == "reset"


def test_an_upgrade_a_rule_forged_on_a_plain_stream_is_ended_not_left_hanging() -> None:
    """RFC 9113 §8.2.2: no Upgrade from an HTTP/2 client. A rule that adds one
    (with Connection) makes a WebSocket-looking request; if the server then
    switches, the plain stream's session ends it instead of waiting for a
    tunnel nobody runs."""
    text = (
        "version: 1\nrules:\n- name: forge\n  match: {path: /a}\n  request:\n"
        "    - set_header: {connection: Upgrade, upgrade: websocket}\n"
    )
    rules = load_sources([SourceText(Path("/t/rules.yaml"), text)], rng=lambda: 0.0)
    layer = Http2Server(replace(reverse(), rules=lambda: rules), PEER)
    client = Client(layer)
    client.h2.send_headers(1, GET, end_stream=True)
    client.send()
    out = client.read(layer.handle(ServerOpened(S1, UP, reused=False)))
    assert b"upgrade: websocket" in out[0].data.lower()
    rest = client.read(layer.handle(DataReceived(S1, SWITCH_ANY + b"\r\n")))
    assert CloseConnection(S1, abort=True) in rest
    (done,) = [c for c in rest if isinstance(c, Hook) and c.kind is HookKind.DONE]
    assert "switched protocols on an HTTP/2 stream" in done.flow.to_record().error
    assert not layer.sessions
    (reset,) = client.of(ev.StreamReset)  # the client is not left waiting either
    assert reset.error_code == ErrorCodes.CANCEL


SWITCH_ANY = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
