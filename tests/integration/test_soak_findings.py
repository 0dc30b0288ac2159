"""Regressions for what the 30-minute soak found."""

from __future__ import annotations

import select
import time
from pathlib import Path

from tests.support.proxyproc import running_proxy
from tests.support.rawhttp import connect, recv_until_close


def test_rule_answer_honours_connection_close(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - name: mock\n    match: {host: mock.test}\n"
                     "    respond: {status: 200, body: hi}\n")  # fmt: skip
    with running_proxy("--rules", str(rules)) as p:
        s = connect(p.port, timeout=5)
        s.sendall(b"GET http://mock.test/ HTTP/1.1\r\nHost: mock.test\r\nConnection: close\r\n\r\n")
        t0 = time.monotonic()
        data = recv_until_close(s)  # returns when the proxy closes, or at the 5 s timeout
        assert time.monotonic() - t0 < 3, "the connection stayed open after the answer"
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"hi")


def test_trickled_head_is_cut_at_the_head_timeout() -> None:
    with running_proxy("--client-head-timeout", "1") as p:
        s = connect(p.port, timeout=10)
        t0 = time.monotonic()
        answer = b""
        for byte in b"GET http://a.test/ HTTP/1.1\r\nX-Slow: " + b"y" * 40:
            try:
                s.sendall(bytes([byte]))
            except OSError:  # closed before its answer was read
                break
            readable, _, _ = select.select([s], [], [], 0.3)
            if readable:  # the proxy answered (408) or closed: read the rest
                s.settimeout(5)
                answer = recv_until_close(s)
                break
        else:
            raise AssertionError("a head trickled byte by byte outlived --client-head-timeout")
        assert time.monotonic() - t0 < 6
        # RFC 9110 §15.5.9: the client is told why, when the answer got through.
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer


def test_proxy_answers_honour_connection_close() -> None:
    with running_proxy("--proxy-auth", "u:p") as p:
        for request in (
            b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",  # 407
            b"GET http://tapproxy.ca/ HTTP/1.1\r\nHost: tapproxy.ca\r\n"
            b"Proxy-Authorization: Basic dTpw\r\nConnection: close\r\n\r\n",
        ):
            s = connect(p.port, timeout=5)
            s.sendall(request)
            t0 = time.monotonic()
            assert recv_until_close(s).startswith(b"HTTP/1.1 ")
            assert time.monotonic() - t0 < 3, request  # closed, not the 5 s timeout
