"""proxy.pcap.h2frames / h2decode through whole captures: the peers are the ``h2`` library.

Each test drives a real HTTP/2 client and server (``h2.connection``, an
implementation independent of ours) against each other in memory, writes
what each sent into a capture with ``PcapngWriter`` and reads the capture
back with ``analyze``: prior knowledge, ``Upgrade: h2c``, padding, priority,
CONTINUATION, trailers, RST_STREAM, server push, damage, and any cut of the
byte streams.
"""

from __future__ import annotations

import io

import h2.config
import h2.connection
import h2.events
import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.pcap.analyze import AnalyzeOptions, analyze
from proxy.pcap.h2frames import PREFACE, DataChunk, Frame, FrameReader
from proxy.pcap.records import CapturedExchange
from proxy.pcap.writer import PcapngWriter

C, S = ("10.0.0.1", 40000), ("10.0.0.2", 8080)
Steps = list[tuple[bool, bytes]]


class Peers:
    """An h2 client and server; every byte either sends is kept, in order, for the capture."""

    def __init__(self, upgrade: bool = False) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, validate_inbound_headers=False)
        )
        self.steps: Steps = []
        self.requests: dict[int, h2.events.RequestReceived] = {}
        if not upgrade:
            self.client.initiate_connection()
            self.server.initiate_connection()
            self.pump()

    def pump(self) -> list[h2.events.Event]:
        """Deliver what each side has to send to the other until both are quiet."""
        events: list[h2.events.Event] = []
        while True:
            up, down = self.client.data_to_send(), self.server.data_to_send()
            if not up and not down:
                return events
            if up:
                self.steps.append((True, up))
                events += self.server.receive_data(up)
            if down:
                self.steps.append((False, down))
                events += self.client.receive_data(down)

    def request(self, headers: list[tuple[str, str]], body: bytes = b"", **kw: int) -> int:
        sid: int = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, headers, end_stream=not body, **kw)  # type: ignore[arg-type]
        if body:
            self.client.send_data(sid, body, end_stream=True, pad_length=kw.get("pad", 0) or None)
        self.pump()
        return sid

    def respond(self, sid: int, status: str, body: bytes, trailers: bool = False) -> None:
        self.server.send_headers(sid, [(":status", status), ("content-type", "text/plain")])
        self.server.send_data(sid, body, end_stream=not trailers, pad_length=7)
        if trailers:
            self.server.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        self.pump()


def get(path: str, **extra: str) -> list[tuple[str, str]]:
    base = [(":method", "GET"), (":scheme", "http"), (":authority", "example.com"), (":path", path)]
    return base + list(extra.items())


def records(steps: Steps, preview: int = 1000, close: bool = True) -> list[CapturedExchange]:
    f = io.BytesIO()
    conv = PcapngWriter(f).open_conversation(C, S, 10.0, "t")
    for i, (from_client, data) in enumerate(steps):
        conv.data(11.0 + i, from_client, data)
    if close:
        conv.close(11.0 + len(steps))
    out: list[CapturedExchange] = []
    analyze(io.BytesIO(f.getvalue()), out.append, AnalyzeOptions(preview=preview))
    return out


def summary(r: CapturedExchange) -> tuple[object, ...]:
    return (r.method, r.url, r.version, r.request_body_preview, r.status,
            r.response_version, r.response_body_preview, r.errors)  # fmt: skip


def test_prior_knowledge_requests_and_responses() -> None:
    p = Peers()
    a = p.request(get("/a"))
    b = p.request(
        [(":method", "POST"), (":scheme", "http"), (":authority", "example.com"),
         (":path", "/form?x=1"), ("content-type", "text/plain")],
        body=b"k=v&x=y", priority_weight=200, priority_depends_on=0,
    )  # fmt: skip
    p.respond(b, "201", b"created")
    p.respond(a, "200", b"hello a")
    got = records(p.steps)
    assert [summary(r) for r in got] == [
        ("POST", "http://example.com/form?x=1", "2.0", b"k=v&x=y", 201, "2.0", b"created", ()),
        ("GET", "http://example.com/a", "2.0", b"", 200, "2.0", b"hello a", ()),
    ]
    post = got[0]
    assert post.request_fields == (("content-type", "text/plain"),)  # pseudo-headers not kept
    assert post.response_fields == (("content-type", "text/plain"),)
    assert post.target == "/form?x=1" and post.request_body_size == 7
    assert post.id.startswith("1-")


def test_trailers_continuation_and_a_large_body() -> None:
    p = Peers()
    big = "v" * 40_000  # a header block over the 16 kB frame size: HEADERS + CONTINUATION
    sid = p.request(get("/big", **{"x-big": big}))
    p.server.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    p.client.increment_flow_control_window(1 << 20)
    p.pump()
    body = bytes(range(256)) * 200
    p.server.send_headers(sid, [(":status", "200")])
    p.server.send_data(sid, body[:16000])
    p.pump()
    for i in range(16000, len(body), 16000):
        p.server.send_data(sid, body[i : i + 16000], pad_length=3)
    p.server.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    p.pump()
    (r,) = records(p.steps, preview=100)
    assert r.request_fields == (("x-big", big),)
    assert r.response_body_size == len(body) and r.response_body_preview == body[:100]
    assert r.status == 200 and r.errors == ()
    assert ("grpc-status", "0") not in r.response_fields  # trailers are not recorded


def test_reset_stream_and_push() -> None:
    p = Peers()
    a = p.request(get("/slow"))
    p.client.reset_stream(a, error_code=8)  # CANCEL
    p.pump()
    b = p.request(get("/page"))
    pushed = p.server.get_next_available_stream_id()
    p.server.push_stream(b, pushed, get("/style.css"))
    p.respond(b, "200", b"<html>")
    p.respond(pushed, "200", b"body{}")
    got = records(p.steps)
    assert [summary(r) for r in got] == [
        ("GET", "http://example.com/slow", "2.0", b"", None, None, b"",
         ("stream reset by the client (CANCEL)",)),
        ("GET", "http://example.com/page", "2.0", b"", 200, "2.0", b"<html>", ()),
        ("GET", "http://example.com/style.css", "2.0", b"", 200, "2.0", b"body{}", ()),
    ]  # fmt: skip


def test_h2c_upgrade_stream_one_is_the_http1_request() -> None:
    p = Peers(upgrade=True)
    settings_header = p.client.initiate_upgrade_connection()
    upgrade = (
        b"GET /up HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings_header + b"\r\n\r\n"
    )
    p.steps.append((True, upgrade))
    p.steps.append((False, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                           b"Upgrade: h2c\r\n\r\n"))  # fmt: skip
    p.server.initiate_upgrade_connection(settings_header)
    p.pump()
    p.respond(1, "200", b"upgraded")
    sid = p.request(get("/next"))
    p.respond(sid, "404", b"")
    got = records(p.steps)
    assert [summary(r) for r in got] == [
        ("GET", "http://example.com/up", "1.1", b"", 200, "2.0", b"upgraded", ()),
        ("GET", "http://example.com/next", "2.0", b"", 404, "2.0", b"", ()),
    ]
    assert ("Upgrade", "h2c") in got[0].request_fields


def test_malformed_frame_stops_the_connection_with_a_note() -> None:
    p = Peers()
    sid = p.request(get("/a"))
    # a SETTINGS frame on stream 1: a connection error (RFC 9113 §6.5)
    bad = b"\x00\x00\x00\x04\x00\x00\x00\x00\x01"
    got = records([*p.steps, (True, bad)])
    assert [(r.method, r.status, r.errors) for r in got] == [
        ("GET", None, ("client: SETTINGS frame on stream 1",)),
    ]
    assert sid == 1
    # with no stream open, a record without a request carries the note
    (orphan,) = records([(True, PREFACE + b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"1" * 7)])
    assert orphan.method is None and orphan.errors == ("client: PING frame of 7 bytes, not 8",)


def test_a_response_without_status_ends_its_stream_only() -> None:
    p = Peers()
    p.server.config.validate_outbound_headers = False
    p.server.config.normalize_outbound_headers = False
    a = p.request(get("/a"))
    p.server.send_headers(a, [(":status", "abc")], end_stream=True)  # malformed (RFC 9113 §8.1.1)
    p.pump()
    b = p.request(get("/b"))
    p.respond(b, "200", b"fine")
    got = records(p.steps)
    assert [(r.url, r.status, r.errors) for r in got] == [
        ("http://example.com/a", None, ("response without a valid :status",)),
        ("http://example.com/b", 200, ()),
    ]


def test_a_request_without_method_is_recorded_as_unreadable() -> None:
    """Found by the pcap fuzzer: the record said a target but no method."""
    block = hpack.Encoder().encode([(":scheme", "http"), (":path", "/x")])
    frame = len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block
    (r,) = records([(True, PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + frame)])
    assert (r.method, r.target, r.url, r.version) == (None, None, None, None)
    assert r.errors == ("request without :method (malformed)", "no response: connection closed")


def test_garbage_after_the_preface_is_noted() -> None:
    (r,) = records([(True, PREFACE + b"\xff" * 20)])
    assert r.method is None and r.errors and r.errors[0].startswith("client: ")


def test_hpack_garbage_is_noted_not_raised() -> None:
    block = b"\xff\xff\xff\xff\xff\xff\xff"  # an index far beyond any table
    frame = len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block
    (r,) = records([(True, PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + frame)])
    assert r.method is None and r.errors[0].startswith("client: HPACK")


def test_unfinished_streams_say_what_is_missing() -> None:
    p = Peers()
    a = p.request(get("/a"))
    p.server.send_headers(a, [(":status", "200")])
    p.server.send_data(a, b"part")
    p.pump()
    p.request(get("/b"))
    got = records(p.steps)
    assert [(r.url, r.errors) for r in got] == [
        ("http://example.com/a", ("response incomplete: connection closed",)),
        ("http://example.com/b", ("no response: connection closed",)),
    ]


def _cut(steps: Steps, sizes: list[int]) -> Steps:
    out: Steps = []
    for from_client, data in steps:
        i = 0
        for size in sizes:
            if i >= len(data):
                break
            out.append((from_client, data[i : i + size]))
            i += size
        if i < len(data):
            out.append((from_client, data[i:]))
    return out


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_records_do_not_depend_on_how_the_bytes_were_cut(sizes: list[int]) -> None:
    p = Peers()
    a = p.request(get("/a"), body=b"x" * 50)
    p.respond(a, "200", b"y" * 70, trailers=True)
    whole = [summary(r) for r in records(p.steps)]
    assert whole == [("GET", "http://example.com/a", "2.0", b"x" * 50, 200, "2.0", b"y" * 70, ())]
    assert [summary(r) for r in records(_cut(p.steps, sizes))] == whole


def test_frame_reader_passes_data_without_buffering_it() -> None:
    reader = FrameReader(preface=False)
    header = (100_000).to_bytes(3, "big") + b"\x00\x09" + (3).to_bytes(4, "big")  # PADDED|END
    events = reader.feed(header + b"\x05" + b"a" * 10)
    assert events == [DataChunk(3, b"a" * 10, False)] and reader.buffered == 0
    events = reader.feed(b"a" * (100_000 - 1 - 5 - 10) + b"\x00" * 5)
    assert events[-1] == DataChunk(3, b"", True) and reader.buffered == 0
    assert sum(len(e.data) for e in events if isinstance(e, DataChunk)) == 100_000 - 16
    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"
    assert reader.feed(ping) == [Frame(6, 0, 0, b"12345678")]


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\x00\x00\x01\x00\x08\x00\x00\x00\x01\x05", "too much padding"),
        (b"\x00\x00\x00\x01\x08\x00\x00\x00\x01", "is empty"),
        (b"\x00\x00\x04\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00", "RST_STREAM frame on stream 0"),
        (b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5, "multiple of 6"),
        (b"\x20\x00\x00\x01\x00\x00\x00\x00\x01", "over"),
    ],
)
def test_frame_errors(frame: bytes, error: str) -> None:
    reader = FrameReader(preface=False)
    assert reader.feed(frame) == [] and reader.error is not None and error in reader.error
    assert reader.feed(b"\x00" * 20) == []  # nothing more is read
