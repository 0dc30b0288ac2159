"""An HTTP/1.1 upstream that records every byte, for downgrade (HTTP/2 to 1.1) tests.

Each connection's bytes are kept apart; every complete request is answered
``200 ok`` (keep-alive), except requests whose path starts with ``/hold``,
which are left unanswered so that a test controls when the client's stream
may end, and anything that is not an HTTP/1.1 request line (the HTTP/2
preface, say), answered ``400`` and closed as an HTTP/1.1-only server does.
A request counts as complete by the framing the proxy must have put on it:
``Content-Length`` or chunked, nothing else.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.upstreams import RawConnection, Upstreams

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_LENGTH = re.compile(rb"\r\ncontent-length: *([0-9]+)\r\n", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding: *chunked\r\n", re.IGNORECASE)


@dataclass
class Upstream:
    """One connection the proxy made to the backend."""

    conn: RawConnection
    closed: bool = False  # the proxy closed it

    @property
    def received(self) -> bytes:
        return bytes(self.conn.received)


def complete_request(data: bytes) -> int:
    """The length of the first complete request in ``data``, 0 if none yet."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return 0
    head = data[: end + 2]
    start = end + 4
    m = _LENGTH.search(head)
    if m:
        total = start + int(m.group(1))
        return total if len(data) >= total else 0
    if _CHUNKED.search(head):
        pos = start
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                return 0
            size = int(data[pos:line_end].split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                trailers_end = data.find(b"\r\n\r\n", pos - 2)
                return trailers_end + 4 if trailers_end >= 0 else 0
            pos += size + 2
            if pos > len(data):
                return 0
    return start


class H1Backend:
    def __init__(self, upstreams: Upstreams) -> None:
        self.seen: list[Upstream] = []
        self.cond = threading.Condition()
        self.raw = upstreams.raw(self._serve)
        self.auth = b"127.0.0.1:%d" % self.raw.port

    async def _serve(self, conn: RawConnection) -> None:
        seen = Upstream(conn)
        with self.cond:
            self.seen.append(seen)
        done = 0  # bytes of requests already answered
        try:
            while data := await conn.reader.read(65536):
                with self.cond:
                    conn.received += data
                    self.cond.notify_all()
                while n := complete_request(bytes(conn.received[done:])):
                    line = bytes(conn.received[done : done + n]).split(b"\r\n", 1)[0]
                    done += n
                    parts = line.split(b" ")
                    if len(parts) != 3 or parts[2] != b"HTTP/1.1":  # the h2 preface, say
                        conn.send(BAD)
                        await conn.writer.drain()
                        conn.close()
                        break
                    if not parts[1].startswith(b"/hold"):
                        conn.send(OK)
        except ConnectionError:
            pass
        with self.cond:
            seen.closed = True
            self.cond.notify_all()

    def mark(self) -> list[int]:
        """Where each connection's bytes are now: ``since`` reads what came after."""
        with self.cond:
            return [len(s.conn.received) for s in self.seen]

    def since(self, mark: list[int]) -> list[tuple[Upstream, bytes]]:
        """Each connection that received bytes after ``mark``, with those bytes."""
        with self.cond:
            out = []
            for i, s in enumerate(self.seen):
                start = mark[i] if i < len(mark) else 0
                if len(s.conn.received) > start:
                    out.append((s, bytes(s.conn.received[start:])))
            return out

    def wait_for(self, check: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            return self.cond.wait_for(check, timeout=max(0.0, deadline - time.monotonic()))
