"""Heads forwarded as received, through a running proxy (issue 22 item 2).

A plain socket client and a raw upstream that records every byte: on one
keep-alive connection, a canonical request's field block and a canonical
response go through byte for byte (their framing field first, where the
peers put it), while a head with a non-canonical line, and the last
exchange that announces the close, are rebuilt as before (framing field
last, ``Connection: close`` added). Every wait is bounded.
"""

from __future__ import annotations

import socket

from tests.support.proxyproc import ProxyProcess
from tests.support.upstreams import RawConnection, Upstreams

TIMEOUT = 5.0
# (what the client sends, what the upstream must receive, what it answers,
# what the client must receive); AUTH is the upstream's 127.0.0.1:port.
EXCHANGES = [
    (
        b"POST http://AUTH/a HTTP/1.1\r\nContent-Length: 3\r\nHost: AUTH\r\nX-Req: 1\r\n\r\nabc",
        b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nHost: AUTH\r\nX-Req: 1\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: raw\r\nX-Order: 1\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: raw\r\nX-Order: 1\r\n\r\nok",
    ),
    (
        b"GET http://AUTH/b HTTP/1.1\r\nHost: AUTH\r\nX-Req:2\r\n\r\n",
        b"GET /b HTTP/1.1\r\nHost: AUTH\r\nX-Req: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Order: 2\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Order: 2\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    ),
    (
        b"GET http://AUTH/c HTTP/1.1\r\nHost: AUTH\r\nConnection: close\r\n\r\n",
        b"GET /c HTTP/1.1\r\nHost: AUTH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length:2\r\nX-Order: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-Order: 3\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ),
]


def test_canonical_heads_go_through_byte_for_byte(
    proxy: ProxyProcess, upstreams: Upstreams
) -> None:
    auth = b""  # set once the upstream has its port

    async def script(conn: RawConnection) -> None:
        total = 0
        for _, upstream_gets, answer, _ in EXCHANGES:
            total += len(upstream_gets.replace(b"AUTH", auth))
            await conn.read_exactly_total(total, TIMEOUT)
            if len(conn.received) < total:
                return  # the proxy sent less than expected: the test sees it
            conn.send(answer)
        await conn.read_some(TIMEOUT)  # until the proxy closes (or the bound)

    server = upstreams.raw(script)
    auth = b"127.0.0.1:%d" % server.port
    got = bytearray()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as s:
        for send, _, _, client_gets in EXCHANGES:
            s.sendall(send.replace(b"AUTH", auth))
            want = len(got) + len(client_gets)
            while len(got) < want and (data := s.recv(65536)):
                got += data
        while data := s.recv(65536):  # the proxy closes after the last one
            got += data
    assert bytes(got) == b"".join(c for *_, c in EXCHANGES)
    sent = b"".join(u for _, u, _, _ in EXCHANGES).replace(b"AUTH", auth)
    assert server.received == sent
