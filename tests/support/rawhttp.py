"""Small raw-socket helpers for tests that need exact bytes on the wire."""

from __future__ import annotations

import socket

from tests.support.upstreams import RawConnection


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_until_close(s: socket.socket, limit: int = 1 << 24) -> bytes:
    """Everything until the peer closes (bounded by the socket timeout)."""
    out = bytearray()
    while len(out) < limit:
        try:
            data = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        out += data
    return bytes(out)


_leftover: dict[int, bytes] = {}


def recv_response(s: socket.socket) -> bytes:
    """One response with a Content-Length body (test servers always send one).

    Bytes past its end (the next pipelined response, read in the same
    recv) are kept for the next call on the same socket.
    """
    buf = _leftover.pop(s.fileno(), b"")
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            return buf
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        data = s.recv(65536)
        if not data:
            break
        body += data
    if len(body) > length:
        _leftover[s.fileno()] = body[length:]
        body = body[:length]
    return head + b"\r\n\r\n" + body


async def serve_keepalive(conn: RawConnection, body: bytes = b"ok") -> None:
    """Answer every (bodiless) request on the connection with 200 and ``body``."""
    answered = 0
    while True:
        count = bytes(conn.received).count(b"\r\n\r\n")
        while answered < count:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            answered += 1
        await conn.writer.drain()
        data = await conn.reader.read(65536)
        if not data:
            return
        conn.received += data
