"""What the HTTP/2 layer sends per turn: one send per connection, the fewest frames.

Streams answered in the same turn leave in one ``SendData`` to the client,
requests started in the same turn in one to the shared server connection,
and a response whose body and end come together ends on its DATA frame
(END_STREAM on the last DATA, RFC 9113 §6.1) instead of an empty DATA
behind it. A rule's pacing still holds only what it paces: frames due now
go now, the delayed ones at their time. The peers are real ``h2``
connections reading every frame the layer sends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection

from proxy.layers.commands import CLIENT, SendData
from proxy.layers.events import DataReceived, ServerOpened
from proxy.layers.http2.server import Http2Server
from proxy.rules import SourceText, load_sources
from proxy.session.config import SessionConfig, Upstream

PEER = ("127.0.0.1", 40000)
UP = ("10.0.0.9", 9000)


def get(path: bytes) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"svc"), (b":path", path)]


def config(rules: str | None = None, now: float = 1000.0) -> SessionConfig:
    ruleset = None
    if rules is not None:
        ruleset = load_sources([SourceText(Path("/t/rules.yaml"), rules)], rng=lambda: 0.0)
    return SessionConfig(
        mode="reverse:h2c://up:9000", upstream=Upstream("http", "up", 9000, h2c=True),
        rules=(lambda: ruleset) if ruleset is not None else None,
        clock=lambda: now, new_id=lambda: "f1",
    )  # fmt: skip


class Pair:
    """An h2 client and an h2 server on the two sides of the layer."""

    def __init__(self, cfg: SessionConfig) -> None:
        self.layer = Http2Server(cfg, PEER)
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.client.initiate_connection()
        self.server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.server.initiate_connection()
        self.client_events: list[Any] = []
        self.server_events: list[Any] = []
        self.upstream: Any = None
        self.layer.start(self.client.data_to_send())  # preface and SETTINGS both ways

    def sends(self, out: list[Any]) -> tuple[list[SendData], list[SendData]]:
        """The client's and the server's sends in ``out``, each read by its peer."""
        to_client = [c for c in out if isinstance(c, SendData) and c.conn == CLIENT]
        to_server = [c for c in out if isinstance(c, SendData) and c.conn != CLIENT]
        for c in to_client:
            self.client_events += self.client.receive_data(c.data)
        for c in to_server:
            self.server_events += self.server.receive_data(c.data)
        return to_client, to_server

    def requests(self, *paths: bytes) -> list[Any]:
        for i, path in enumerate(paths):
            self.client.send_headers(2 * i + 1, get(path), end_stream=True)
        out = self.layer.handle(DataReceived(CLIENT, self.client.data_to_send()))
        (opened,) = [c for c in out if type(c).__name__ == "OpenServer"]
        self.upstream = opened.conn
        self.sends(out)
        out = self.layer.handle(ServerOpened(self.upstream, UP, reused=False))
        self.sends(out)
        self.sends(self.layer.handle(DataReceived(self.upstream, self.server.data_to_send())))
        return out

    def answer(self, paths: list[bytes], body: bytes) -> list[Any]:
        """The server answers the requests for ``paths`` in that order, in one
        write; the layer's commands."""
        streams = {
            dict(e.headers)[b":path"]: e.stream_id
            for e in self.server_events
            if isinstance(e, ev.RequestReceived)
        }
        for path in paths:
            stream = streams[path]
            size = b"%d" % len(body)
            self.server.send_headers(stream, [(b":status", b"200"), (b"content-length", size)])
            self.server.send_data(stream, body, end_stream=True)
        return self.layer.handle(DataReceived(self.upstream, self.server.data_to_send()))


def test_streams_answered_in_one_turn_leave_in_one_send_each_way() -> None:
    pair = Pair(config())
    out = pair.requests(b"/a", b"/b", b"/c")
    started = [e for e in pair.server_events if isinstance(e, ev.RequestReceived)]
    assert [e.stream_id for e in started] == [1, 3, 5]
    # The connection's preface and SETTINGS, then the three requests in one send.
    assert len([c for c in out if isinstance(c, SendData) and c.conn != CLIENT]) == 2
    to_client, _ = pair.sends(pair.answer([b"/a", b"/b", b"/c"], b"0123456789"))
    assert len(to_client) == 1  # three responses, one write
    data = [e for e in pair.client_events if isinstance(e, ev.DataReceived)]
    # One DATA per stream, carrying END_STREAM: no empty DATA frame behind it.
    assert [(e.stream_id, e.data, e.stream_ended is not None) for e in data] == [
        (1, b"0123456789", True), (3, b"0123456789", True), (5, b"0123456789", True),
    ]  # fmt: skip
    assert not pair.layer.sessions


def test_a_paced_stream_holds_only_its_own_frames() -> None:
    """The fast stream's frames, waiting in the link when the slow stream's
    paced ones are written, go now; the slow stream's at their time."""
    rules = (
        "version: 1\nrules:\n  - name: slow\n    match: {path: /slow}\n"
        "    fault: {phase: response, delay: {ms: 500}}\n"
    )
    pair = Pair(config(rules, now=1000.0))
    pair.requests(b"/fast", b"/slow")
    out = pair.answer([b"/fast", b"/slow"], b"xyz")  # in that order: the fast one runs first
    sends = [c for c in out if isinstance(c, SendData) and c.conn == CLIENT]
    assert sends[0].at is None and {c.at for c in sends[1:]} == {1000.5}
    pair.sends(sends[:1])
    now = {e.stream_id for e in pair.client_events if isinstance(e, ev.StreamEnded)}
    assert now == {1}  # the fast stream, whole; nothing of the slow one
    pair.sends(sends[1:])
    ended = [e.stream_id for e in pair.client_events if isinstance(e, ev.StreamEnded)]
    assert ended == [1, 3]
    data = [(e.stream_id, e.data) for e in pair.client_events if isinstance(e, ev.DataReceived)]
    assert [d for stream, d in data if stream == 3 and d] == [b"xyz"]
