"""A hook's Reply with trailers or a replayed WebSocket session (server replay).

Playbook tests: the session frames a reply with trailers as chunks and a
trailer section for an HTTP/1.1 client (RFC 9112 §7.1.2), hands a ``101``
with a WebSocket script to the WebSocket layer with no server connection,
and the layer, with a ``ReplayedServer`` in the server's place, plays the
recorded server messages in order after the client's, records both ways,
answers pings and ends with the client's Close.
"""

from __future__ import annotations

import itertools
import struct

from proxy.flow.hooks import HookKind, HookSettings, Proceed, Reply, ScriptedMessage
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Hook,
    OpenServer,
    PauseReading,
    ResumeReading,
    SendData,
    StartTunnel,
    server_conn,
)
from proxy.layers.events import DataReceived, HookResumed, ServerOpened
from proxy.layers.root import ClientLayers
from proxy.layers.websocket.layer import WebSocketLayer
from proxy.layers.websocket.replayed import ReplayedServer
from proxy.layers.websocket.settings import WsSettings
from proxy.layers.websocket.wssetup import WsSetup
from proxy.session.config import SessionConfig
from proxy.session.http import HttpSession
from proxy.session.replies import REPLAYED_SERVER
from tests.playbook import Match, Playbook
from tests.unit.test_layer_websocket import frame, message, unframe

GET = b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"
UPGRADE = (
    b"GET http://a.test/ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
SCRIPT = (
    ScriptedMessage(False, b"welcome", True),
    ScriptedMessage(True, b"hi", True),
    ScriptedMessage(False, b"\x00\x01", False),
    ScriptedMessage(False, b"two", True),
    ScriptedMessage(True, b"bye", True),
    ScriptedMessage(False, b"ok", True),
)


def session() -> HttpSession:
    ids = (str(i) for i in itertools.count())
    clock = itertools.count(1000.0, 0.001)
    hooks = HookSettings(hold=frozenset({HookKind.REQUEST}))
    config = SessionConfig(new_id=lambda: next(ids), clock=lambda: next(clock), hooks=hooks)
    return HttpSession(config, ("127.0.0.1", 5000))


def done(check: object) -> Match:
    return Match(Hook, kind=HookKind.DONE, flow=lambda f: bool(check(f.to_record())))  # type: ignore[operator]


def test_reply_with_trailers_goes_chunked_to_an_http11_client() -> None:
    reply = Reply(200, ((b"Content-Type", b"application/grpc"),), b"\x00\x00\x00\x00\x00",
                  trailers=((b"grpc-status", b"0"), (b"grpc-message", b"")))  # fmt: skip
    s = session()

    def recorded(r: object) -> bool:
        m = r.response.message  # type: ignore[attr-defined]
        return (
            m.trailers == reply.trailers and m.body_size == 5 and r.response.source.value == "proxy"
        )  # type: ignore[attr-defined]

    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << Match(Hook, kind=HookKind.REQUEST, hold=True)
        >> HookResumed(HookKind.REQUEST, reply)
        << SendData(
            CLIENT,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
        )
        << SendData(CLIENT, b"5\r\n\x00\x00\x00\x00\x00\r\n")
        << SendData(CLIENT, b"0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n")
        << done(recorded)
    )


def test_a_101_with_a_script_hands_over_to_the_replayed_websocket() -> None:
    reply = Reply(101, ((b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                        (b"Sec-WebSocket-Accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")),
                  websocket=SCRIPT)  # fmt: skip
    s = session()
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, UPGRADE + frame(0x1, b"early"))
        << Match(Hook, kind=HookKind.REQUEST, hold=True)
        >> HookResumed(HookKind.REQUEST, reply)
        << SendData(
            CLIENT,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        << Match(StartTunnel, server=REPLAYED_SERVER, replay=SCRIPT)
    )
    assert s.tunnel is not None and s.tunnel.upgrade


def test_the_replayed_server_answers_by_order_pings_and_close() -> None:
    server = ReplayedServer(SCRIPT, 1 << 20)
    assert [unframe(server.opening())] == [(0x1, False, b"welcome")]
    got = server.feed(frame(0x1, b"anything") + frame(0x9, b"p"))
    a, b = frame_split(got)[:2], frame_split(got)[2:]
    assert a == [(0x2, False, b"\x00\x01"), (0x1, False, b"two")]
    assert b == [(0xA, False, b"p")]
    piece = frame(0x1, b"bye")
    assert server.feed(piece[:3]) == b""  # any pieces
    assert frame_split(server.feed(piece[3:])) == [(0x1, False, b"ok")]
    assert server.feed(frame(0x1, b"more")) == b""  # beyond the recording: no answer
    close = server.feed(frame(0x8, struct.pack("!H", 1000)))
    assert frame_split(close) == [(0x8, False, struct.pack("!H", 1000))] and server.closed


def frame_split(data: bytes) -> list[tuple[int, bool, bytes]]:
    out = []
    while data:
        n, at = data[1] & 0x7F, 2
        if n == 126:
            n, at = struct.unpack("!H", data[2:4])[0], 4
        out.append(unframe(data[: at + n]))
        data = data[at + n :]
    return out


def test_the_layer_with_a_replayed_server_records_and_relays_both_ways() -> None:
    setup = WsSetup("f1", "regular", "", None, WsSettings(), 1 << 20, 256, keep=1 << 20)
    ws = WebSocketLayer(
        REPLAYED_SERVER, setup, lambda: 100.0, None, ReplayedServer(SCRIPT, 1 << 20)
    )
    hi, close = frame(0x1, b"hi"), frame(0x8, struct.pack("!H", 1000))
    first = ws.start()  # what the server sent before the client's first message
    assert first[0] == SendData(CLIENT, frame(0x1, b"welcome", mask=False))
    assert message(direction="downstream", index=0, data=b"welcome").matches(first[1])
    assert len(first) == 2
    assert (
        Playbook(ws)
        >> DataReceived(CLIENT, hi)
        << SendData(CLIENT, frame(0x2, b"\x00\x01", mask=False))
        << message(direction="downstream", index=1, data=b"\x00\x01")
        << SendData(CLIENT, frame(0x1, b"two", mask=False))
        << message(direction="downstream", index=2)
        << message(direction="upstream", index=0, data=b"hi", opcode="text")
        >> DataReceived(CLIENT, close)
        << SendData(CLIENT, frame(0x8, struct.pack("!H", 1000), mask=False))
        << CloseConnection(REPLAYED_SERVER)
        << CloseConnection(CLIENT)
    )
    assert ws.done is not None and ws.done.websocket is not None
    info = ws.done.websocket
    assert (info.upstream, info.downstream, info.closed_by) == (1, 3, "client")


def test_a_101_held_at_its_head_lets_the_websocket_read_the_server() -> None:
    """An addon holds every response head: a 101's server connection, paused
    while held, reads again before the WebSocket layer takes over."""
    ids = (str(i) for i in itertools.count())
    hooks = HookSettings(hold=frozenset({HookKind.RESPONSE_HEAD}))
    layers = ClientLayers(SessionConfig(new_id=lambda: next(ids), hooks=hooks), ("127.0.0.1", 1))
    s1 = server_conn(1)
    switching = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    assert (
        Playbook(layers)
        >> DataReceived(CLIENT, UPGRADE)
        << Match(OpenServer)
        >> ServerOpened(s1, ("127.0.0.1", 80), reused=False)
        << Match(SendData, conn=s1)
        >> DataReceived(s1, switching)
        << PauseReading(s1)
        << Match(Hook, kind=HookKind.RESPONSE_HEAD, hold=True)
        >> HookResumed(HookKind.RESPONSE_HEAD, Proceed())
        << ResumeReading(s1)
        << SendData(CLIENT, switching)
        << ResumeReading(CLIENT)
    )
    assert isinstance(layers.current, WebSocketLayer)
