"""Every row of the HTTP/1 hazard table (../shared/http1-hazards.md), through
a running proxy.

A plain socket client sends the raw bytes; a ``RawServer`` upstream records
every byte it receives. Each test checks both ends:

* the client: the status the proxy answered with, that nothing else was
  answered (a request pipelined after a bad one never is), and that the proxy
  then closed the connection;
* the upstream: nothing at all, or exactly the canonical bytes we expect the
  proxy to re-frame the message into, and that the proxy closed it.

Regular-mode rows use absolute-form targets to a per-test upstream; rows
marked "reverse" use origin-form through a reverse proxy in front of a
shared upstream. In the raw bytes, ``AUTH`` stands for the upstream's
``127.0.0.1:port``. Every wait is bounded (socket and asyncio timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from proxy.http1 import BodyData, EndOfMessage, Fields, ProtocolError, ResponseHead, ResponseParser
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import RawConnection, Upstreams

TIMEOUT = 5.0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def ok_for(request: bytes, last: bool) -> bytes:
    """The upstream's answer: 200 "ok", without the body for a HEAD."""
    response = OK_CLOSE if last else OK
    return response[:-2] if request.startswith(b"HEAD ") else response


# -- the upstream ------------------------------------------------------------------------


@dataclass
class Seen:
    """One connection the proxy made to the upstream."""

    conn: RawConnection
    closed: bool = False  # the proxy closed it (FIN or reset)
    done: bool = False

    @property
    def received(self) -> bytes:
        return bytes(self.conn.received)


Script = Callable[[RawConnection, Seen], Awaitable[None]]


class Backend:
    """A ``RawServer`` whose script each test sets; records every connection."""

    def __init__(self, upstreams: Upstreams) -> None:
        self.script: Script | None = None
        self.seen: list[Seen] = []
        self._cond = threading.Condition()
        self.raw = upstreams.raw(self._accept)
        self.auth = b"127.0.0.1:%d" % self.raw.port

    def run(self, script: Script | None) -> None:
        with self._cond:
            self.script = script
            self.seen = []

    async def _accept(self, conn: RawConnection) -> None:
        seen = Seen(conn)
        with self._cond:
            self.seen.append(seen)
            script = self.script
        try:
            if script is not None:
                await script(conn, seen)
        finally:
            with self._cond:
                seen.done = True
                self._cond.notify_all()

    def settle(self, connections: int) -> list[Seen]:
        """Wait (bounded) until ``connections`` connections were served."""
        with self._cond:
            finished = self._cond.wait_for(
                lambda: len(self.seen) >= connections and all(s.done for s in self.seen),
                timeout=3 * TIMEOUT,
            )
            assert finished, f"upstream: {len(self.seen)} connection(s), {connections} expected"
            return list(self.seen)

    @property
    def received(self) -> bytes:
        with self._cond:
            return b"".join(s.received for s in self.seen)


async def read_to_close(conn: RawConnection, seen: Seen) -> None:
    """Record everything until the proxy closes the connection (bounded)."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while data := await conn.reader.read(65536):
                conn.received += data
        seen.closed = True
    except ConnectionError:
        seen.closed = True
    except TimeoutError:
        pass


async def read_total(conn: RawConnection, total: int) -> bool:
    """Read until ``total`` bytes in all arrived; False on timeout or close."""
    try:
        await conn.read_exactly_total(total, TIMEOUT)
    except TimeoutError:
        return False
    return len(conn.received) >= total


def answering(*requests: bytes) -> Script:
    """Expect exactly ``requests`` in order, answering each (the last with
    ``Connection: close``), then record anything else until the proxy closes."""

    async def script(conn: RawConnection, seen: Seen) -> None:
        total = 0
        for i, request in enumerate(requests):
            total += len(request)
            if not await read_total(conn, total):
                break
            conn.send(ok_for(request, last=i == len(requests) - 1))
        await read_to_close(conn, seen)

    return script


def responding(*parts: bytes) -> Script:
    """Read a request head, send ``parts``, then record until the proxy closes."""

    async def script(conn: RawConnection, seen: Seen) -> None:
        try:
            await conn.read_until(b"\r\n\r\n", TIMEOUT)
        except TimeoutError:
            return
        for part in parts:
            conn.send(part)
        await read_to_close(conn, seen)

    return script


async def recording(conn: RawConnection, seen: Seen) -> None:
    """Answer nothing but the sentinel (see ``earlier``); record everything."""
    try:
        await conn.read_until(b"/sentinel ", TIMEOUT)
    except TimeoutError:
        return
    if b"/sentinel " in conn.received:
        conn.send(OK_CLOSE)
    await read_to_close(conn, seen)


# -- the client ----------------------------------------------------------------------------


def talk(port: int, data: bytes, *, wait_for: bytes | None = None, then: bytes = b"") -> bytes:
    """Send ``data`` (and ``then`` once ``wait_for`` was received); return all
    the proxy sent until it closed the connection, which it must do in time."""
    got = bytearray()

    def read_until(done: Callable[[], bool]) -> None:
        while not done():
            chunk = s.recv(65536)
            if not chunk:
                return
            got.extend(chunk)

    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        try:
            with contextlib.suppress(ConnectionError):  # closed early (431): read on
                s.sendall(data)
            if wait_for is not None:
                read_until(lambda: wait_for in got)
                assert wait_for in got, f"closed before {wait_for!r}; got {bytes(got)!r}"
                s.sendall(then)
            read_until(lambda: False)
        except TimeoutError:
            pytest.fail(f"the proxy did not close the connection; got {bytes(got)!r}")
        except ConnectionError:
            pass  # closed with a reset (unread bytes on the proxy's side): also closed
    return bytes(got)


@dataclass
class Response:
    status: int
    fields: Fields
    body: bytes = b""
    complete: bool = False

    def field(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.fields if k.lower() == name]


def responses(data: bytes, methods: list[bytes]) -> list[Response]:
    """The responses in ``data`` (1xx included), with nothing left over."""
    p = ResponseParser()
    for m in methods:
        p.expect(m)
    p.feed(data)
    p.feed_eof()
    out: list[Response] = []
    try:
        while (event := p.next_event()) is not None:
            if isinstance(event, ResponseHead):
                out.append(Response(event.status, event.fields, complete=event.informational))
            elif isinstance(event, BodyData):
                out[-1].body += event.data
            else:
                assert isinstance(event, EndOfMessage)
                out[-1].complete = True
    except ProtocolError as e:
        if out and not out[-1].complete:
            return out  # cut short: the caller checks ``complete``
        pytest.fail(f"client got an unparsable response ({e}): {data!r}")
    assert p.buffered == 0, f"client got more than {len(methods)} response(s): {data!r}"
    return out


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reverse_backend(upstreams: Upstreams) -> Backend:
    return Backend(upstreams)


@pytest.fixture(scope="module")
def reverse_proxy(reverse_backend: Backend) -> Iterator[ProxyProcess]:
    p = start_proxy("--mode", "reverse:http://" + reverse_backend.auth.decode())
    yield p
    p.stop()


@dataclass
class Setup:
    port: int
    backend: Backend

    def fill(self, raw: bytes) -> bytes:
        return raw.replace(b"AUTH", self.backend.auth)


@pytest.fixture
def regular(proxy: ProxyProcess, upstreams: Upstreams) -> Setup:
    return Setup(proxy.port, Backend(upstreams))


@pytest.fixture
def reverse(reverse_proxy: ProxyProcess, reverse_backend: Backend) -> Iterator[Setup]:
    reverse_backend.run(None)
    yield Setup(reverse_proxy.port, reverse_backend)
    reverse_backend.run(None)


def earlier(s: Setup, mode: str) -> list[Seen]:
    """The upstream connections the proxy made before now, fully recorded.

    A request through the proxy to the same upstream is answered first: the
    upstream accepts connections in order, so any connection the proxy made
    before is then known, and each is done once the proxy closed it.
    """
    target = b"http://AUTH/sentinel" if mode == "regular" else b"/sentinel"
    got = talk(
        s.port,
        s.fill(get_line(b"GET " + target + b" HTTP/1.1", b"Host: AUTH", b"Connection: close")),
    )
    assert [a.status for a in responses(got, [b"GET"])] == [200], got
    seen = s.backend.settle(len(s.backend.seen))
    [sentinel] = [x for x in seen if b"/sentinel " in x.received]
    assert sentinel.received == s.fill(b"GET /sentinel HTTP/1.1\r\nHost: AUTH\r\n\r\n")
    return [x for x in seen if x is not sentinel]


def setup_for(request: pytest.FixtureRequest, mode: str) -> Setup:
    value: Setup = request.getfixturevalue(mode)
    return value


# -- request rows the proxy must refuse outright -------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """``send`` must be answered with ``status``; nothing reaches the upstream."""

    id: str
    send: bytes
    status: int = 400
    mode: str = "regular"


def post(*lines: bytes, body: bytes = b"", version: bytes = b"1.1", target: bytes = b"/") -> bytes:
    """A POST to the upstream (absolute-form) with Host and ``lines``."""
    head = b"POST http://AUTH" + target + b" HTTP/" + version + b"\r\nHost: AUTH\r\n"
    return head + b"".join(x + b"\r\n" for x in lines) + b"\r\n" + body


def origin_post(*lines: bytes, body: bytes = b"") -> bytes:
    """A POST in origin-form, for the reverse proxy."""
    head = b"POST / HTTP/1.1\r\nHost: example.test\r\n"
    return head + b"".join(x + b"\r\n" for x in lines) + b"\r\n" + body


def get_line(line: bytes, *lines: bytes) -> bytes:
    """A request with a start line, field lines and no body."""
    return line + b"\r\n" + b"".join(x + b"\r\n" for x in lines) + b"\r\n"


END = b"0\r\n\r\n"
REFUSED = [
    # 1: of the table's two options, the proxy rejects (it never forwards
    # chunked-only-and-close).
    Refused(
        "row-01-cl-then-te",
        post(b"Content-Length: 6", b"Transfer-Encoding: chunked", body=END + b"G"),
    ),
    Refused(
        "row-01-te-then-cl",
        post(b"Transfer-Encoding: chunked", b"Content-Length: 6", body=END + b"G"),
    ),
    Refused(
        "row-01-reverse",
        origin_post(b"Content-Length: 6", b"Transfer-Encoding: chunked", body=END + b"G"),
        mode="reverse",
    ),
    # 2
    Refused("row-02-two-values", post(b"Content-Length: 0", b"Content-Length: 5", body=b"hello")),
    Refused("row-02-list", post(b"Content-Length: 1, 2", body=b"ab")),
    Refused("row-02-two-equal", post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello")),
    # 3
    *[
        Refused(f"row-03-{name}", post(b"Content-Length:" + value, body=b"abc"))
        for name, value in [
            ("plus", b" +3"),
            ("minus", b" -1"),
            ("hex", b" 0x10"),
            ("underscore", b" 1_0"),
            ("spaces-around", b"  3 "),
            ("two-leading-tabs", b"\t\t3"),
            ("two-trailing-tabs", b" 3\t\t"),
            ("two-numbers", b" 3 3"),
            ("decimal", b" 1.0"),
            ("empty", b""),
            ("form-feed", b" \x0c3"),
            ("huge", b" 99999999999999999999999"),
        ]
    ],
    Refused("row-03-reverse", origin_post(b"Content-Length: +3", body=b"abc"), mode="reverse"),
    # 5
    Refused("row-05-gzip", post(b"Transfer-Encoding: gzip", body=b"xyz")),
    Refused("row-05-chunked-then-gzip", post(b"Transfer-Encoding: chunked, gzip", body=END)),
    Refused(
        "row-05-gzip-then-chunked-is-501", post(b"Transfer-Encoding: gzip, chunked", body=END), 501
    ),
    # 6: the table allows 501 or 400; an unknown final coding is 400 (§6.3 (4)).
    Refused("row-06-xchunked", post(b"Transfer-Encoding: xchunked", body=END)),
    Refused("row-06-chunk", post(b"Transfer-Encoding: chunk", body=END)),
    Refused("row-06-identity", post(b"Transfer-Encoding: identity", body=END)),
    # 7
    *[
        Refused(f"row-07-{name}", post(b"Transfer-Encoding:" + value, body=END))
        for name, value in [
            ("extra-space", b"  chunked"),
            ("tab-then-space", b"\t chunked"),
            ("two-trailing-tabs", b" chunked\t\t"),
            ("leading-tab", b"\tchunked"),
            ("trailing-tab", b" chunked\t"),
            ("trailing-space", b" chunked "),
            ("vertical-tab", b" \x0bchunked"),
            ("quoted", b' "chunked"'),
            ("non-ascii", b" ch\xc3\xbcnked"),
            ("kelvin-sign", " chun\u212aed".encode()),
        ]
    ],
    # 8
    Refused("row-08-chunked-chunked", post(b"Transfer-Encoding: chunked, chunked", body=END)),
    Refused(
        "row-08-two-lines",
        post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=END),
    ),
    # 9
    Refused("row-09-http-1.0", post(b"Transfer-Encoding: chunked", body=END, version=b"1.0")),
    # 11
    Refused("row-11-space-before-colon", post(b"Transfer-Encoding : chunked", body=END)),
    Refused("row-11-reverse", origin_post(b"Content-Length : 3", body=b"abc"), mode="reverse"),
    # 12: rejected (not unfolded into a SP).
    Refused("row-12-obs-fold", post(b"X-A: 1", b" Transfer-Encoding: chunked", body=END)),
    Refused(
        "row-12-space-before-first-field",
        b"POST http://AUTH/ HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: AUTH\r\n\r\n" + END,
    ),
    # 13
    Refused("row-13-bare-cr-in-value", post(b"X-A: 1\rTransfer-Encoding: chunked", body=END)),
    Refused("row-13-bare-cr-in-line", b"GET /\r HTTP/1.1\r\nHost: x\r\n\r\n", mode="reverse"),
    # 14: rejected (not re-emitted with CRLF); in the head here, in chunk
    # lines in BODY_ROWS.
    Refused(
        "row-14-bare-lf-head",
        get_line(b"GET http://AUTH/ HTTP/1.1", b"Host: AUTH").replace(b"\r\n", b"\n"),
    ),
    Refused("row-14-hidden-field", post(b"X-A: 1\nTransfer-Encoding: chunked", body=END)),
    # 15
    Refused("row-15-nul", post(b"X-A: a\x00b")),
    Refused("row-15-lf-in-value", post(b"X-A: a\nb")),
    Refused("row-15-del", post(b"X-A: a\x7fb")),
    # 16
    Refused("row-16-nel-in-name", post(b"Transfer-Encoding\x85: chunked", body=END)),
    Refused("row-16-nbsp-in-name", post(b"X\xa0A: 1")),
    Refused("row-16-empty-name", post(b": 1")),
    Refused("row-16-missing-colon", post(b"Host AUTH")),
    # 22
    Refused("row-22-missing-host", get_line(b"GET http://AUTH/ HTTP/1.1")),
    Refused(
        "row-22-two-hosts", get_line(b"GET http://AUTH/ HTTP/1.1", b"Host: AUTH", b"Host: AUTH")
    ),
    Refused("row-22-host-list", get_line(b"GET http://AUTH/ HTTP/1.1", b"Host: AUTH, AUTH")),
    Refused(
        "row-22-connect-two-hosts", get_line(b"CONNECT AUTH HTTP/1.1", b"Host: AUTH", b"Host: AUTH")
    ),
    Refused("row-22-connect-missing-host", get_line(b"CONNECT AUTH HTTP/1.1")),
    Refused("row-22-missing-host-reverse", get_line(b"GET / HTTP/1.1"), mode="reverse"),
    Refused(
        "row-22-two-hosts-reverse",
        get_line(b"GET / HTTP/1.1", b"Host: a", b"Host: b"),
        mode="reverse",
    ),
    Refused("row-22-host-list-reverse", get_line(b"GET / HTTP/1.1", b"Host: a, b"), mode="reverse"),
    # 24
    Refused("row-24-userinfo", get_line(b"GET http://user@AUTH/ HTTP/1.1", b"Host: AUTH")),
    Refused("row-24-user-password", get_line(b"GET http://u:p@AUTH/ HTTP/1.1", b"Host: AUTH")),
    Refused(
        "row-24-userinfo-reverse", get_line(b"GET http://u@x/ HTTP/1.1", b"Host: x"), mode="reverse"
    ),
    # 25
    Refused("row-25-connect-no-port", get_line(b"CONNECT 127.0.0.1 HTTP/1.1", b"Host: 127.0.0.1")),
    Refused(
        "row-25-connect-absolute-form", get_line(b"CONNECT http://AUTH/ HTTP/1.1", b"Host: AUTH")
    ),
    Refused(
        "row-25-connect-with-body",
        get_line(b"CONNECT AUTH HTTP/1.1", b"Host: AUTH", b"Content-Length: 5") + b"hello",
    ),
    Refused(
        "row-25-connect-chunked-body",
        get_line(b"CONNECT AUTH HTTP/1.1", b"Host: AUTH", b"Transfer-Encoding: chunked") + END,
    ),
    # 27
    Refused("row-27-version-1.32", get_line(b"GET http://AUTH/ HTTP/1.32", b"Host: AUTH")),
    Refused("row-27-version-01.1", get_line(b"GET http://AUTH/ HTTP/01.1", b"Host: AUTH")),
    Refused("row-27-space-in-target", get_line(b"GET /a b HTTP/1.1", b"Host: x"), mode="reverse"),
    Refused("row-27-tab-separators", get_line(b"GET\t/\tHTTP/1.1", b"Host: x"), mode="reverse"),
    # HTTP/0.9 sends no version and no head: answered at once, not at the head timeout.
    Refused("row-27-http-0.9", b"GET /\r\n", mode="reverse"),
    Refused("row-27-http-2.0-is-505", get_line(b"GET http://AUTH/ HTTP/2.0", b"Host: AUTH"), 505),
    Refused(
        "row-27-http-0.9-version-is-505", get_line(b"GET / HTTP/0.9", b"Host: x"), 505, "reverse"
    ),
    # 31
    Refused("row-31-head-too-large", post(b"X-Big: " + b"a" * (64 * 1024)), 431),
    Refused("row-31-too-many-fields", post(*[b"X-F: %d" % i for i in range(200)]), 431),
    Refused(
        "row-31-request-line-too-long",
        get_line(b"GET http://AUTH/" + b"a" * 16384 + b" HTTP/1.1"),
        414,
    ),
    Refused("row-31-too-many-fields-reverse", origin_post(*[b"X-F: 1"] * 200), 431, "reverse"),
]


def smuggled(mode: str) -> bytes:
    target = b"http://AUTH/smuggled" if mode == "regular" else b"/smuggled"
    return b"GET " + target + b" HTTP/1.1\r\nHost: AUTH\r\n\r\n"


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_refused(case: Refused, request: pytest.FixtureRequest) -> None:
    s = setup_for(request, case.mode)
    s.backend.run(recording)
    got = talk(s.port, s.fill(case.send + smuggled(case.mode)))
    # One answer, the error, then the proxy closed: the pipelined request
    # behind the bad one was neither answered...
    [answer] = responses(got, [b"GET"])
    assert got.startswith(b"HTTP/1.1 %d " % case.status), got[:200]
    assert answer.field(b"connection") == [b"close"]
    # ... nor forwarded; nothing of the bad one was either.
    assert [x.received for x in earlier(s, case.mode)] == []


def test_row_27_http_0_9_is_answered_at_once(reverse: Setup) -> None:
    """ "GET /" then CRLF, and nothing more: HTTP/0.9 never sends a blank line,
    so waiting for the end of a head would hang until the head timeout (30 s);
    the request-line alone is refused."""
    reverse.backend.run(recording)
    got = talk(reverse.port, b"GET /\r\n")  # talk() fails unless closed within TIMEOUT
    assert [a.status for a in responses(got, [b"GET"])] == [400]
    assert earlier(reverse, "reverse") == []


# -- request rows the proxy forwards, re-framed from its own parse ------------------------


@dataclass(frozen=True)
class Forwarded:
    """``send`` is answered with 200s; the upstream gets exactly ``upstream``."""

    id: str
    send: bytes
    upstream: tuple[bytes, ...]
    mode: str = "regular"
    methods: tuple[bytes, ...] = (b"GET",)


FORWARDED = [
    # 4: leading zeros are decimal, and the proxy sends its own decimal.
    Forwarded(
        "row-04-content-length-010",
        post(b"Content-Length: 010", b"Connection: close", body=b"0123456789"),
        (b"POST / HTTP/1.1\r\nHost: AUTH\r\nContent-Length: 10\r\n\r\n0123456789",),
    ),
    Forwarded(
        "row-04-reverse",
        origin_post(b"Content-Length: 0003", b"Connection: close", body=b"abc"),
        (b"POST / HTTP/1.1\r\nHost: AUTH\r\nContent-Length: 3\r\n\r\nabc",),
        "reverse",
    ),
    # 3: one OWS octet, SP or HTAB, on each side of Content-Length's value is
    # the field value's own whitespace (RFC 9110 §5.5); the upstream gets the
    # canonical field. (Transfer-Encoding stays stricter: row 7 refuses tabs.)
    Forwarded(
        "row-03-ows-tabs-accepted",
        post(b"Content-Length:\t81\t", b"Connection: close", body=b"x" * 81),
        (b"POST / HTTP/1.1\r\nHost: AUTH\r\nContent-Length: 81\r\n\r\n" + b"x" * 81,),
    ),
    # 10: ",chunked" is chunked; the upstream gets the canonical field.
    Forwarded(
        "row-10-empty-list-element",
        post(b"Transfer-Encoding: ,chunked", b"Connection: close", body=b"5\r\nhello\r\n0\r\n\r\n"),
        (
            b"POST / HTTP/1.1\r\nHost: AUTH\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
    ),
    # 17: Transfer_Encoding is an ordinary field: forwarded as it came, and
    # the body is framed by Content-Length.
    Forwarded(
        "row-17-underscore-is-not-framing",
        post(
            b"Transfer_Encoding: chunked", b"Content-Length: 5", b"Connection: close", body=b"hello"
        ),
        (
            b"POST / HTTP/1.1\r\nHost: AUTH\r\nTransfer_Encoding: chunked\r\n"
            b"Content-Length: 5\r\n\r\nhello",
        ),
    ),
    # 19: valid chunk extensions are accepted and stripped when re-chunking.
    Forwarded(
        "row-19-extensions-stripped",
        post(
            b"Transfer-Encoding: chunked",
            b"Connection: close",
            body=b'5;name=value\r\nhello\r\n6 ; q="a b"; r\r\n world\r\n0;last=1\r\n\r\n',
        ),
        (
            b"POST / HTTP/1.1\r\nHost: AUTH\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ),
    ),
    # 21: framing, routing and credential trailers are dropped; others kept.
    Forwarded(
        "row-21-forbidden-trailers-dropped",
        post(
            b"Transfer-Encoding: chunked",
            b"Connection: close",
            body=b"1\r\nx\r\n0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n"
            b"Host: evil.test\r\nAuthorization: Basic eDp5\r\nX-Kept: 1\r\n\r\n",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: AUTH\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1\r\nx\r\n0\r\nX-Kept: 1\r\n\r\n",
        ),
    ),
    # 23: the absolute-form authority decides; Host is rewritten to match,
    # in place, and the target goes out in origin-form.
    Forwarded(
        "row-23-host-rewritten",
        get_line(
            b"GET http://AUTH/p?q=1 HTTP/1.1", b"X-A: 1", b"Host: evil.test", b"Connection: close"
        ),
        (b"GET /p?q=1 HTTP/1.1\r\nX-A: 1\r\nHost: AUTH\r\n\r\n",),
    ),
    Forwarded(
        "row-23-reverse",
        get_line(b"GET http://evil.test/p HTTP/1.1", b"Host: other.test", b"Connection: close"),
        (b"GET /p HTTP/1.1\r\nHost: AUTH\r\n\r\n",),
        "reverse",
    ),
    # 26: Connection naming Content-Length removes nothing we frame with: the
    # upstream gets the length and the body, and the next request after it.
    Forwarded(
        "row-26-connection-content-length",
        post(b"Connection: Content-Length", b"Content-Length: 5", body=b"hello")
        + get_line(b"GET http://AUTH/next HTTP/1.1", b"Host: AUTH", b"Connection: close"),
        (
            b"POST / HTTP/1.1\r\nHost: AUTH\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /next HTTP/1.1\r\nHost: AUTH\r\n\r\n",
        ),
        methods=(b"POST", b"GET"),
    ),
    Forwarded(
        "row-26-connection-transfer-encoding-and-host",
        post(
            b"Connection: Transfer-Encoding, Host, X-Gone, close",
            b"X-Gone: 1",
            b"Transfer-Encoding: chunked",
            body=b"2\r\nhi\r\n0\r\n\r\n",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: AUTH\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nhi\r\n0\r\n\r\n",
        ),
    ),
    # 27: the method's case is kept as sent.
    Forwarded(
        "row-27-method-case-kept",
        get_line(b"get / HTTP/1.1", b"Host: x", b"Connection: close"),
        (b"get / HTTP/1.1\r\nHost: AUTH\r\n\r\n",),
        "reverse",
    ),
    # 28: GET and HEAD bodies are read and forwarded exactly; the next request
    # starts after them.
    Forwarded(
        "row-28-get-with-body",
        get_line(b"GET http://AUTH/a HTTP/1.1", b"Host: AUTH", b"Content-Length: 5")
        + b"hello"
        + get_line(b"GET http://AUTH/b HTTP/1.1", b"Host: AUTH", b"Connection: close"),
        (
            b"GET /a HTTP/1.1\r\nHost: AUTH\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /b HTTP/1.1\r\nHost: AUTH\r\n\r\n",
        ),
        methods=(b"GET", b"GET"),
    ),
    Forwarded(
        "row-28-head-with-body-reverse",
        get_line(b"HEAD /a HTTP/1.1", b"Host: x", b"Content-Length: 3")
        + b"abc"
        + get_line(b"GET /b HTTP/1.1", b"Host: x", b"Connection: close"),
        (
            b"HEAD /a HTTP/1.1\r\nHost: AUTH\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /b HTTP/1.1\r\nHost: AUTH\r\n\r\n",
        ),
        "reverse",
        methods=(b"HEAD", b"GET"),
    ),
]


@pytest.mark.parametrize("case", FORWARDED, ids=[c.id for c in FORWARDED])
def test_forwarded(case: Forwarded, request: pytest.FixtureRequest) -> None:
    s = setup_for(request, case.mode)
    expected = tuple(s.fill(r) for r in case.upstream)
    s.backend.run(answering(*expected))
    got = talk(s.port, s.fill(case.send))
    answers = responses(got, list(case.methods))
    assert [a.status for a in answers] == [200] * len(expected), got
    [seen] = s.backend.settle(1)
    assert seen.received == b"".join(expected)
    assert seen.closed


def test_row_17_chunked_body_behind_underscore_is_not_a_body(regular: Setup) -> None:
    """The proxy frames ``Transfer_Encoding: chunked`` + chunks as a request
    without a body; the chunk bytes are then a malformed next request (400)
    and are never forwarded."""
    expected = regular.fill(b"POST / HTTP/1.1\r\nHost: AUTH\r\nTransfer_Encoding: chunked\r\n\r\n")
    regular.backend.run(answering(expected))
    got = talk(
        regular.port,
        regular.fill(post(b"Transfer_Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n")),
    )
    assert [a.status for a in responses(got, [b"POST", b"GET"])] == [200, 400]
    [seen] = regular.backend.settle(1)
    assert seen.received == expected


def test_row_28_expect_100_continue(regular: Setup) -> None:
    """The 100 comes from the upstream and is relayed; the body sent after it
    is forwarded exactly, and the next request follows it."""
    head = regular.fill(
        b"POST /e HTTP/1.1\r\nHost: AUTH\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    after = regular.fill(b"GET /after HTTP/1.1\r\nHost: AUTH\r\n\r\n")

    async def script(conn: RawConnection, seen: Seen) -> None:
        if not await read_total(conn, len(head)):
            return
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not await read_total(conn, len(head) + 5):
            return
        conn.send(OK)
        if await read_total(conn, len(head) + 5 + len(after)):
            conn.send(OK_CLOSE)
        await read_to_close(conn, seen)

    regular.backend.run(script)
    got = talk(
        regular.port,
        regular.fill(post(b"Expect: 100-continue", b"Content-Length: 5", target=b"/e")),
        wait_for=b"HTTP/1.1 100 Continue\r\n\r\n",
        then=b"hello"
        + regular.fill(
            get_line(b"GET http://AUTH/after HTTP/1.1", b"Host: AUTH", b"Connection: close")
        ),
    )
    assert [a.status for a in responses(got, [b"POST", b"GET"])] == [100, 200, 200]
    [seen] = regular.backend.settle(1)
    assert seen.received == head + b"hello" + after


# -- request rows found in the body, after the head went upstream ------------------------
#
# The proxy streams bodies, so by the time a bad chunk line or chunk is read,
# the head (and the chunks before) may be on their way upstream. What the
# proxy guarantees: the client gets 400 and is closed, and the upstream gets
# at most that head and the good chunks, re-framed, never a last-chunk and
# never what followed, and then its connection is closed, so the message
# can never complete there.

BODY_ROWS = [
    pytest.param(b"5\nhello\r\n0\r\n\r\n", b"", id="row-14-bare-lf-in-chunk-line"),
    pytest.param(b"5\r\nhello\n0\r\n\r\n", b"5\r\nhello\r\n", id="row-14-bare-lf-after-chunk"),
    pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", b"", id="row-18-hex-prefix"),
    pytest.param(b" 5\r\nhello\r\n0\r\n\r\n", b"", id="row-18-leading-space"),
    pytest.param(b"5 \r\nhello\r\n0\r\n\r\n", b"", id="row-18-trailing-space"),
    pytest.param(b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n", b"", id="row-18-underscore"),
    pytest.param(b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n", b"", id="row-18-overflow"),
    pytest.param(
        b"2\r\nhi\r\n5;\r\nhello\r\n0\r\n\r\n", b"2\r\nhi\r\n", id="row-19-bare-semicolon"
    ),
    pytest.param(b'5;a="b\r\nhello\r\n0\r\n\r\n', b"", id="row-19-unterminated-quote"),
    pytest.param(b"5;a\x00\r\nhello\r\n0\r\n\r\n", b"", id="row-19-nul"),
    pytest.param(b"5;a=" + b"b" * 5000 + b"\r\nhello\r\n0\r\n\r\n", b"", id="row-19-very-long"),
    pytest.param(b"5\r\nhelloXX\r\n0\r\n\r\n", b"5\r\nhello\r\n", id="row-20-data-longer"),
    pytest.param(b"5\r\nhel\r\n0\r\n\r\n", b"5\r\nhel\r\n\r\n", id="row-20-data-shorter"),
    pytest.param(b"5\r\nhello0\r\n\r\n", b"5\r\nhello\r\n", id="row-20-missing-crlf"),
    pytest.param(b"0\r\nX: 1\r\n folded\r\n\r\n", b"", id="row-21-folded-trailer"),
]


@pytest.mark.parametrize(("body", "good"), BODY_ROWS)
def test_refused_in_body(regular: Setup, body: bytes, good: bytes) -> None:
    regular.backend.run(recording)
    send = post(b"Transfer-Encoding: chunked", body=body) + smuggled("regular")
    got = talk(regular.port, regular.fill(send))
    [answer] = responses(got, [b"POST"])
    assert answer.status == 400, got
    head = regular.fill(b"POST / HTTP/1.1\r\nHost: AUTH\r\nTransfer-Encoding: chunked\r\n\r\n")
    for seen in earlier(regular, "regular"):
        assert (head + good).startswith(seen.received), seen.received
        assert seen.closed


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"5\nhello\r\n0\r\n\r\n", id="row-14-bare-lf-in-chunk-line"),
        pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", id="row-18-hex-prefix"),
        pytest.param(b'5;a="b\r\nhello\r\n0\r\n\r\n', id="row-19-unterminated-quote"),
        pytest.param(b"5\r\nhelloXX\r\n0\r\n\r\n", id="row-20-data-longer"),
    ],
)
def test_refused_in_body_forwards_nothing(regular: Setup, body: bytes) -> None:
    """When the whole bad message arrives at once, nothing of it should reach
    the upstream, as for the rows refused in the head."""
    regular.backend.run(recording)
    got = talk(regular.port, regular.fill(post(b"Transfer-Encoding: chunked", body=body)))
    assert [a.status for a in responses(got, [b"POST"])] == [400]
    assert [x.received for x in earlier(regular, "regular") if x.received] == []


# -- response rows (29, 30) --------------------------------------------------------------------


def get(
    target: bytes = b"/r", *lines: bytes, method: bytes = b"GET", version: bytes = b"1.1"
) -> bytes:
    line = method + b" http://AUTH" + target + b" HTTP/" + version
    return get_line(line, b"Host: AUTH", *lines)


BAD_RESPONSES = [
    pytest.param(
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n", id="row-29-te-and-cl"
    ),
    pytest.param(
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"hello", id="row-29-cl-and-te"
    ),
    pytest.param(
        b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n", id="row-29-chunked-chunked"
    ),
    pytest.param(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"", id="row-29-two-te"
    ),
    pytest.param(b"Transfer-Encoding:\tchunked\t\r\n", b"0\r\n\r\n", id="row-29-te-tabs"),
    pytest.param(b"Transfer-Encoding: chunked, gzip\r\n", b"", id="row-29-chunked-not-final"),
    pytest.param(b"Content-Length: +5\r\n", b"hello", id="row-29-cl-plus"),
    pytest.param(b"Content-Length: 1, 2\r\n", b"ab", id="row-29-cl-list"),
    pytest.param(b"Content-Length: 1\r\nContent-Length: 2\r\n", b"ab", id="row-29-two-cl"),
    pytest.param(b"Content-Length: 0x5\r\n", b"hello", id="row-29-cl-hex"),
    pytest.param(b"Content-Length : 5\r\n", b"hello", id="row-29-space-before-colon"),
    pytest.param(b"X: 1\r\n Content-Length: 5\r\n", b"hello", id="row-29-obs-fold"),
    pytest.param(b"Content-Length:\t\t5\r\n", b"hello", id="row-29-cl-two-tabs"),
    pytest.param(b"Transfer-Encoding:  chunked\r\n", b"0\r\n\r\n", id="row-29-te-two-spaces"),
]


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        pytest.param(b"Content-Length:\t81\t\r\n", b"y" * 81, id="cl-tabs"),
    ],
)
def test_response_ows_tabs_around_framing_value_is_relayed(
    regular: Setup, fields: bytes, body: bytes
) -> None:
    """One SP or HTAB on each side of a framing value is OWS (RFC 9110 §5.5):
    the response is relayed whole, not answered 502."""
    regular.backend.run(responding(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n" + body))
    got = talk(regular.port, regular.fill(get(b"/r", b"Connection: close")))
    [answer] = responses(got, [b"GET"])
    assert answer.status == 200, got
    assert answer.complete and answer.body == b"y" * 81


@pytest.mark.parametrize(("fields", "body"), BAD_RESPONSES)
def test_bad_response_is_502(regular: Setup, fields: bytes, body: bytes) -> None:
    regular.backend.run(responding(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n" + body))
    got = talk(regular.port, regular.fill(get()))
    [answer] = responses(got, [b"GET"])
    assert answer.status == 502, got
    [seen] = regular.backend.settle(1)
    assert seen.received == regular.fill(b"GET /r HTTP/1.1\r\nHost: AUTH\r\n\r\n")
    assert seen.closed  # the proxy closed the upstream connection


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="row-29-te-in-http-1.0",
        ),
        pytest.param(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", id="row-29-bad-status-line"),
        pytest.param(b"<html>hello</html>\r\n\r\n", id="row-29-http-0.9-response"),
    ],
)
def test_bad_response_line_is_502(regular: Setup, response: bytes) -> None:
    regular.backend.run(responding(response))
    got = talk(regular.port, regular.fill(get()))
    [answer] = responses(got, [b"GET"])
    assert answer.status == 502, got
    [seen] = regular.backend.settle(1)
    assert seen.closed


def test_row_29_bad_chunk_after_head_aborts_both(regular: Setup) -> None:
    """Found after the head was relayed: no 502 can be sent any more, so the
    client's response is cut short (never completed) and both sides close."""
    regular.backend.run(
        responding(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n"
        )
    )
    got = talk(regular.port, regular.fill(get()))
    [answer] = responses(got, [b"GET"])
    assert answer.status == 200 and not answer.complete, got
    [seen] = regular.backend.settle(1)
    assert seen.closed


BODILESS = [
    # (request method, upstream's response, what the client gets)
    pytest.param(
        b"HEAD",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n",
        id="row-30-head-with-length",
    ),
    pytest.param(
        b"HEAD",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        id="row-30-head-with-chunked",
    ),
    pytest.param(
        b"HEAD",
        b"HTTP/1.1 200 OK\r\nContent-Length: 010\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
        id="row-30-head-length-canonical",
    ),
    # RFC 9110 §8.6: no Content-Length in a 204; passing one on could make a
    # client take the next response for this one's body.
    pytest.param(
        b"DELETE",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        id="row-30-204-with-length",
    ),
    pytest.param(
        b"GET",
        b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nTransfer-Encoding: chunked\r\n'
        b"Connection: close\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nConnection: close\r\n\r\n',
        id="row-30-304-with-chunked",
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\nConnection: close\r\n\r\n",
        id="row-30-304-with-length",
    ),
    # 1xx are relayed as they come, and the final response follows.
    pytest.param(
        b"GET",
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        id="row-30-1xx-relayed",
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.1 103 Early Hints\r\nContent-Length: 3\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        id="row-30-1xx-without-length",
    ),
]


@pytest.mark.parametrize(("method", "response", "expected"), BODILESS)
def test_bodiless_response(regular: Setup, method: bytes, response: bytes, expected: bytes) -> None:
    regular.backend.run(responding(response))
    got = talk(regular.port, regular.fill(get(b"/r", b"Connection: close", method=method)))
    assert got == expected
    [seen] = regular.backend.settle(1)
    assert seen.received == regular.fill(method + b" /r HTTP/1.1\r\nHost: AUTH\r\n\r\n")
    assert seen.closed


def test_row_30_1xx_not_relayed_to_http_1_0_client(regular: Setup) -> None:
    regular.backend.run(
        responding(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        )
    )
    got = talk(regular.port, regular.fill(get(version=b"1.0")))
    assert got == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def test_row_30_body_after_head_response_never_reaches_the_client(regular: Setup) -> None:
    """The upstream sends a body (here shaped as a whole response) after a HEAD
    response. Those bytes are not the answer to the request the client
    pipelines next: the proxy refuses them (502) rather than relay them."""
    evil = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
    second = regular.fill(b"GET /second HTTP/1.1\r\nHost: AUTH\r\n\r\n")

    async def script(conn: RawConnection, seen: Seen) -> None:
        # A server that sends a stray body after its HEAD response; asked for
        # /second (on this or a new connection) it answers "good".
        try:
            await conn.read_until(b"\r\n\r\n", TIMEOUT)
        except TimeoutError:
            return
        if bytes(conn.received).startswith(b"HEAD"):
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(evil) + evil)
            try:
                await conn.read_until(second, TIMEOUT)
            except TimeoutError:
                return
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ngood")
        await read_to_close(conn, seen)

    regular.backend.run(script)
    send = get(b"/head", method=b"HEAD") + get(b"/second", b"Connection: close")
    got = talk(regular.port, regular.fill(send))
    head, answer = responses(got, [b"HEAD", b"GET"])
    assert head.status == 200 and head.body == b""
    assert b"evil" not in got
    # The connection holding the stray bytes is not reused: /second goes on a
    # fresh connection and gets the server's real answer.
    assert (answer.status, answer.body) == (200, b"good"), got
