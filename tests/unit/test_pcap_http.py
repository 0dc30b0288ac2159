"""proxy.pcap.http and streams: exchanges, TLS, opaque TCP, damage, via whole captures."""

from __future__ import annotations

import contextlib
import io
import ssl
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.pcap.analyze import AnalyzeOptions, analyze
from proxy.pcap.decode import Decoder
from proxy.pcap.reader import CaptureError, Packet, read_packets
from proxy.pcap.records import CapturedExchange, Endpoint
from proxy.pcap.streams import verdict
from proxy.pcap.writer import Conversation, PcapngWriter
from tests.unit.test_pcap_builders import pcap_file

C, S = ("10.0.0.1", 40000), ("10.0.0.2", 80)
GET = b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-B: 1\r\n\r\nhello"


def capture(
    script: Callable[[Conversation], None], client: tuple[str, int] = C, server: tuple[str, int] = S
) -> bytes:
    f = io.BytesIO()
    conv = PcapngWriter(f).open_conversation(client, server, 10.0, "t")
    script(conv)
    return f.getvalue()


def records(data: bytes, preview: int = 0) -> list[CapturedExchange]:
    out: list[CapturedExchange] = []
    analyze(io.BytesIO(data), out.append, AnalyzeOptions(preview=preview))
    return out


def exchange(*steps: tuple[bool, bytes], close: str = "fin") -> Callable[[Conversation], None]:
    def script(conv: Conversation) -> None:
        for i, (from_client, data) in enumerate(steps):
            conv.data(11.0 + i, from_client, data)
        if close == "fin":
            conv.close(20.0)
        elif close == "server":
            conv.close(20.0, from_client=False)
        elif close == "rst":
            conv.close(20.0, rst=True)

    return script


def client_hello(sni: str = "example.org", alpn: tuple[str, ...] = ("h2", "http/1.1")) -> bytes:
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def rewrite(data: bytes, edit: Callable[[list[Packet]], list[Packet]]) -> bytes:
    pkts = edit(list(read_packets(io.BytesIO(data))))
    return pcap_file([(p.ts, p.data) for p in pkts], linktype=1)


def payload_of(p: Packet) -> bytes:
    d = Decoder().decode(p)
    return d.payload if d is not None else b""


def test_keep_alive_exchanges() -> None:
    post = b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 7\r\n\r\nk=v&x=y"
    (a, b) = records(capture(exchange((True, GET), (False, OK), (True, post), (False, OK))))
    assert (a.kind, a.method, a.target, a.url, a.version) == (
        "http",
        "GET",
        "/a?x=1",
        "http://example.com/a?x=1",
        "1.1",
    )
    assert a.request_fields == (("Host", "example.com"), ("User-Agent", "t"))
    assert (a.status, a.reason, a.response_version, a.response_body_size) == (200, "OK", "1.1", 5)
    assert a.response_fields == (("Content-Length", "5"), ("X-B", "1"))
    assert (a.start, a.response_start, a.response_end, a.end) == (11.0, 12.0, 12.0, 12.0)
    assert (a.client, a.server) == (Endpoint(*C), Endpoint(*S))
    assert (b.method, b.request_body_size, b.start) == ("POST", 7, 13.0)
    assert (a.id, b.id, a.errors, b.errors) == ("1-1", "1-2", (), ())


def test_pipelined_requests() -> None:
    second = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    recs = records(capture(exchange((True, GET + GET.replace(b"/a", b"/b")), (False, OK + second))))
    assert [(r.target, r.status) for r in recs] == [("/a?x=1", 200), ("/b?x=1", 404)]


def test_chunked_and_close_delimited_responses() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    close = b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * 5000
    recs = records(
        capture(
            exchange((True, GET), (False, chunked), (True, GET), (False, close), close="server")
        )
    )
    assert [(r.response_body_size, r.errors) for r in recs] == [(5, ()), (5000, ())]
    assert recs[1].response_end == 20.0  # ended by the server's FIN


def test_head_response_has_no_body_and_next_exchange_follows() -> None:
    head = GET.replace(b"GET", b"HEAD")
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    recs = records(capture(exchange((True, head), (False, resp), (True, GET), (False, OK))))
    assert [(r.method, r.response_body_size) for r in recs] == [("HEAD", 0), ("GET", 5)]


def test_informational_response_is_skipped() -> None:
    req = b"POST /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    recs = records(
        capture(
            exchange(
                (True, req), (False, b"HTTP/1.1 100 Continue\r\n\r\n"), (True, b"abc"), (False, OK)
            )
        )
    )
    (r,) = recs
    assert (r.status, r.request_body_size, r.response_start, r.response_end) == (200, 3, 12.0, 14.0)


def test_connect_then_tls_tunnel() -> None:
    connect = b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"
    hello = client_hello()
    steps = (
        (True, connect),
        (False, b"HTTP/1.1 200 Connection established\r\n\r\n"),
        (True, hello),
        (False, b"\x16\x03\x03" + b"\0" * 50),
    )
    http, tls = records(capture(exchange(*steps)))
    assert (http.method, http.url, http.status, http.errors) == (
        "CONNECT",
        "example.org:443",
        200,
        (),
    )
    assert (tls.kind, tls.sni, tls.alpn) == ("tls", "example.org", ("h2", "http/1.1"))
    assert (tls.bytes_client_to_server, tls.bytes_server_to_client, tls.close) == (
        len(hello),
        53,
        "fin",
    )
    assert tls.start == 12.0 and tls.id == "1-2"


def test_websocket_upgrade_becomes_opaque() -> None:
    up = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    switch = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    http, ws = records(
        capture(
            exchange(
                (True, up), (False, switch), (True, b"\x81\x85abcdhello"), (False, b"\x81\x02hi")
            )
        )
    )
    assert (http.status, ws.kind, ws.bytes_client_to_server, ws.bytes_server_to_client) == (
        101,
        "tcp",
        11,
        4,
    )


def test_refused_upgrade_keeps_parsing_requests() -> None:
    up = b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    recs = records(capture(exchange((True, up), (True, GET), (False, OK + OK))))
    assert [(r.target, r.status, r.errors) for r in recs] == [("/x", 200, ()), ("/a?x=1", 200, ())]


def test_direct_tls() -> None:
    hello = client_hello("api.example.net", ("http/1.1",))
    (r,) = records(
        capture(exchange((True, hello), (False, b"\x16\x03\x03\0\x02xx")), server=("10.0.0.2", 443))
    )
    assert (r.kind, r.sni, r.alpn, r.bytes_client_to_server, r.errors) == (
        "tls",
        "api.example.net",
        ("http/1.1",),
        len(hello),
        (),
    )


def test_unreadable_client_hello() -> None:
    (r,) = records(capture(exchange((True, b"\x16\x03\x01\x00\x05\x02\0\0\0\0"))))
    assert r.kind == "tls" and r.sni is None and "unreadable ClientHello" in r.errors[0]


def test_opaque_tcp_counts_bytes() -> None:
    steps = ((False, b"SSH-2.0-server\r\n"), (True, b"SSH-2.0-client\r\n"), (True, b"\0" * 100))
    (r,) = records(capture(exchange(*steps), server=("10.0.0.2", 22)))
    assert (r.kind, r.bytes_client_to_server, r.bytes_server_to_client, r.close) == (
        "tcp",
        116,
        16,
        "fin",
    )


def test_connection_without_data_is_a_tcp_record() -> None:
    (r,) = records(capture(exchange(close="rst")))
    assert (r.kind, r.bytes_client_to_server, r.close) == ("tcp", 0, "rst")


def test_request_parse_error() -> None:
    bad = b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"
    recs = records(
        capture(
            exchange((True, bad), (False, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
        )
    )
    assert recs[0].method is None and "request: malformed field line" in recs[0].errors[0]
    assert "for requests that could not be read" in recs[1].errors[0]


def test_response_parse_error() -> None:
    (r,) = records(
        capture(exchange((True, GET), (False, b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")))
    )
    assert r.status is None and "response: invalid Content-Length" in r.errors[0]


def test_gap_in_request_body_stops_that_direction() -> None:
    body = b"q" * 4000
    post = b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 4000\r\n\r\n" + body
    data = capture(exchange((True, post), (False, OK), (True, GET), (False, OK)))
    # drop the second client segment (bytes 1460..2920 of the request)
    drop = [
        i for i, p in enumerate(read_packets(io.BytesIO(data))) if payload_of(p) == post[1460:2920]
    ]
    assert len(drop) == 1
    recs = records(rewrite(data, lambda ps: [p for i, p in enumerate(ps) if i != drop[0]]))
    r, orphan = recs  # the later GET is not decoded: the client stream stopped at the gap
    assert orphan.errors == ("51 bytes from the server for requests that could not be read",)
    assert (r.method, r.status) == ("POST", 200)
    assert r.errors == ("1460 bytes missing from the client stream (capture gap)",)


def test_gap_in_response() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"r" * 5000
    data = capture(exchange((True, GET), (False, big)))
    recs = records(rewrite(data, lambda ps: [p for p in ps if payload_of(p) != big[1460:2920]]))
    assert recs[0].status == 200 and "missing from the server stream" in recs[0].errors[0]


def test_capture_started_mid_connection() -> None:
    data = capture(exchange((True, GET), (False, OK)))
    (r,) = records(rewrite(data, lambda ps: ps[3:]))  # no handshake
    assert (r.method, r.status, r.client, r.errors) == ("GET", 200, Endpoint(*C), ())


def test_roles_are_swapped_when_the_guessed_server_sends_a_request() -> None:
    client, server = ("10.0.0.1", 1000), ("10.0.0.2", 8080)  # the port guess is wrong here
    data = capture(exchange((True, GET), (False, OK)), client, server)
    (r,) = records(rewrite(data, lambda ps: ps[3:]))
    assert (r.client, r.server, r.status) == (Endpoint(*client), Endpoint(*server), 200)


def test_capture_ends_mid_response() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"r" * 5000
    data = capture(exchange((True, GET), (False, big)))
    (r,) = records(rewrite(data, lambda ps: ps[:6]))
    assert r.status == 200 and r.errors == ("response incomplete: capture ended",)


def test_reset_before_response() -> None:
    (r,) = records(capture(exchange((True, GET), close="rst")))
    assert r.errors == ("no response: connection reset",)


def test_incomplete_request_head_at_close() -> None:
    (r,) = records(capture(exchange((True, b"GET / HTTP/1.1\r\nHost: h\r\n"))))
    assert r.method is None and "connection closed inside a head" in r.errors[0]


def test_body_previews_are_bounded() -> None:
    post = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"
    (r,) = records(capture(exchange((True, post), (False, OK))), preview=4)
    assert (r.request_body_preview, r.response_body_preview) == (b"0123", b"hell")


@pytest.mark.parametrize(
    ("head", "ended", "expected"),
    [
        (b"GET / HTTP/1.1\r\n", False, "http"),
        (b"\r\nPOST /", False, "http"),
        (b"GE", False, None),
        (b"GE", True, "tcp"),
        (b"\x16\x03\x01\x02\x00", False, "tls"),
        (b"\x16\x03", False, None),
        (b"\x16\x05\x01", False, "tcp"),
        (b"SSH-2.0-x\r\n", False, "tcp"),
        (b"\x00\x01", False, "tcp"),
        (b"", True, "tcp"),
        (b"", False, None),
    ],
)
def test_verdict(head: bytes, ended: bool, expected: str | None) -> None:
    assert verdict(head, ended) == expected


_SAMPLE = capture(exchange((True, GET + GET), (False, OK + OK), (True, client_hello())))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_SAMPLE) - 1), st.integers(0, 255)), min_size=1, max_size=8
    )
)
def test_corrupted_captures_raise_only_capture_error(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_SAMPLE)
    for pos, value in edits:
        data[pos] = value
    with contextlib.suppress(CaptureError):  # anything else fails the test
        records(bytes(data), preview=8)
