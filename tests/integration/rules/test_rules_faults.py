"""faults.yaml through a live proxy: delay, bandwidth, abort, reset, hang, close_after.

Timing assertions are lower bounds only (the machine may be slow, never
fast). See test_rules_live.py for the approach (the example verbatim, a route
rule to a local recording origin for what the example forwards).
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rules_support import (
    Origin,
    curl,
    matched,
    read_all,
    record_for,
    rules_proxy,
    send,
    split_response,
)
from tests.support.proxyproc import ProxyProcess
from tests.support.rawhttp import recv_response
from tests.support.upstreams import PATTERN, pattern_sha256


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    tmp = tmp_path_factory.mktemp("rules")
    with rules_proxy(tmp, "examples/faults.yaml", origin=origin) as p:
        yield p


def get(host: str, path: str, extra: bytes = b"") -> bytes:
    return b"GET http://%s%s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
        host.encode(), path.encode(), host.encode(), extra,
    )  # fmt: skip


def test_request_delay(faults: ProxyProcess, origin: Origin) -> None:
    """slow-search: 300 ms +- 100 ms before the request goes upstream (bar d)."""
    for i in range(3):
        t0 = time.monotonic()
        s = send(faults.port, get("search.svc", f"/q?i={i}"))
        status, _, _ = split_response(recv_response(s))
        elapsed = time.monotonic() - t0
        s.close()
        assert status == 200
        assert elapsed >= 0.2
    assert [x.target for x in origin.requests()] == ["/q?i=0", "/q?i=1", "/q?i=2"]
    rules = matched(record_for(faults, "search.svc/q?i=2"))
    assert "slow-search" in rules and rules["slow-search"][0].startswith("fault delay")


def test_request_delay_keeps_body(faults: ProxyProcess, origin: Origin) -> None:
    r = curl(faults, "http://search.svc/index", "--data-binary", b"x" * 5000, "-H", "expect:")
    assert r.status == 200 and r.seconds >= 0.2
    assert origin.only().body == b"x" * 5000


def test_response_bandwidth(faults: ProxyProcess, origin: Origin) -> None:
    """slow-downloads: 64 KiB/s. Pacing sends a piece (rate/20 bytes) at a time, the
    first one at once, so N bytes take at least (N - piece) / rate (bar d)."""
    size, rate = 131072, 65536
    r = curl(faults, f"http://files.svc/download/{size}")
    assert r.status == 200 and r.returncode == 0
    assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(size)
    assert r.seconds >= (size - rate // 20) / rate
    assert "slow-downloads" in matched(record_for(faults, f"files.svc/download/{size}"))
    fast = curl(faults, f"http://files.svc/other/{size}")  # not under /download/
    assert "slow-downloads" not in matched(record_for(faults, f"files.svc/other/{size}"))
    del fast


def test_abort_percent(faults: ProxyProcess, origin: Origin) -> None:
    """flaky-payments: about one request in ten is answered 503 by the proxy (bar d)."""
    s = send(faults.port, b"")
    statuses = []
    for i in range(300):  # P(no 503 in 300) = 0.9**300 ~ 2e-14
        s.sendall(get("payments.svc", f"/pay/{i:03d}"))  # fixed width: unique substrings
        statuses.append(split_response(recv_response(s))[0])
        if 503 in statuses and 200 in statuses and len(statuses) >= 20:
            break
    s.close()
    assert set(statuses) == {200, 503}
    ok = [f"/pay/{i:03d}" for i, st in enumerate(statuses) if st == 200]
    assert [x.target for x in origin.requests()] == ok  # aborted ones never went upstream
    first = statuses.index(503)
    rec = record_for(faults, f"payments.svc/pay/{first:03d}")
    assert matched(rec) == {"flaky-payments": ["fault abort 503"]}


def test_reset(faults: ProxyProcess, origin: Origin) -> None:
    """reset-ws: the client's connection ends, nothing answered (bar d; the RST itself
    is test_reset_is_an_rst)."""
    s = send(faults.port, get("ws.svc", "/socket"))
    data, how = read_all(s)
    s.close()
    assert data == b"" and how in ("reset", "fin")
    rec = record_for(faults, "ws.svc/socket")
    assert matched(rec) == {"reset-ws": ["fault reset"]}
    assert "reset" in rec["error"]
    assert origin.requests() == []


RST_REASON = (
    "fault reset closes the client with a FIN, not an RST: proxy/server/client.py "
    "_close_client() calls transport.abort(), which on a socket with nothing unread "
    "is a plain close; an RST needs SO_LINGER {on, 0} set before it"
)


def test_reset_is_an_rst(faults: ProxyProcess, origin: Origin) -> None:
    s = send(faults.port, get("ws.svc", "/rst"))
    data, how = read_all(s)
    s.close()
    assert (data, how) == (b"", "reset")


def give_up(s: socket.socket) -> None:
    """Close with an RST, as a client that times out and aborts does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_hang(faults: ProxyProcess, origin: Origin) -> None:
    """hang-legacy: nothing comes back while the client waits; recorded when it gives up."""
    s = send(faults.port, get("legacy.svc", "/slow"), timeout=1.5)
    data, how = read_all(s)
    assert (data, how) == (b"", "timeout")
    give_up(s)
    rec = record_for(faults, "legacy.svc/slow")
    assert matched(rec) == {"hang-legacy": ["fault hang"]}
    assert origin.requests() == []
    # Another path on the same host is not hung.
    assert curl(faults, "http://legacy.svc/fast").status == 200


def test_hang_says_nothing_even_after_the_response_timeout(tmp_path: Path, origin: Origin) -> None:
    with rules_proxy(
        tmp_path, "examples/faults.yaml", origin=origin, args=("--response-head-timeout", "1")
    ) as p:
        s = send(p.port, get("legacy.svc", "/slow"), timeout=4)
        data, _ = read_all(s)
        s.close()
    assert data == b""


@pytest.mark.parametrize("kind", ["bytes", "chunked"])
def test_close_after(faults: ProxyProcess, origin: Origin, kind: str) -> None:
    """truncate-reports: exactly 1,024 body bytes, then the connection closes (bar d)."""
    s = send(faults.port, get("reports.svc", f"/{kind}/5000"))
    data, how = read_all(s)
    s.close()
    assert how == "fin"
    status, fields, body = split_response(data)
    assert status == 200
    if kind == "chunked":
        assert fields["transfer-encoding"] == "chunked"
        body = decode_chunks(body)
    else:
        assert fields["content-length"] == "5000"
    assert body == PATTERN[:1024]
    rec = record_for(faults, f"reports.svc/{kind}/5000")
    assert "truncate-reports" in matched(rec)
    assert "1024" in rec["error"]


def test_close_after_not_for_other_status(faults: ProxyProcess, origin: Origin) -> None:
    r = curl(faults, "http://reports.svc/status/404")
    assert (r.status, r.body) == (404, b"status 404\n")


def decode_chunks(data: bytes) -> bytes:
    """The payload of a (possibly truncated) chunked body; fails on bad framing."""
    out = b""
    while data:
        size_line, sep, data = data.partition(b"\r\n")
        assert sep, f"truncated chunk size line {size_line!r}"
        size = int(size_line, 16)  # raises on raw body bytes sent as if framed
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


# -- response-phase faults (rules_data/response-faults.yaml) ------------------------------


@pytest.fixture(scope="module")
def rfaults(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    tmp = tmp_path_factory.mktemp("rules")
    with rules_proxy(tmp, "data/response-faults.yaml", origin=origin) as p:
        yield p


def test_response_abort(rfaults: ProxyProcess, origin: Origin) -> None:
    r = curl(rfaults, "http://api.svc/abort/1")
    assert r.status == 502
    assert origin.only().target == "/abort/1"  # decided on the upstream's response
    assert matched(record_for(rfaults, "api.svc/abort/1"))["resp-abort"] == ["fault abort 502"]


def test_response_reset(rfaults: ProxyProcess, origin: Origin) -> None:
    s = send(rfaults.port, get("api.svc", "/reset/bytes/100000"))
    data, how = read_all(s)
    s.close()
    assert data == b"" and how in ("reset", "fin")
    assert origin.only().target == "/reset/bytes/100000"
    assert "resp-reset" in matched(record_for(rfaults, "api.svc/reset/bytes/100000"))


def test_response_reset_is_an_rst(rfaults: ProxyProcess, origin: Origin) -> None:
    s = send(rfaults.port, get("api.svc", "/reset/2"))
    data, how = read_all(s)
    s.close()
    assert (data, how) == (b"", "reset")


def test_response_delay(rfaults: ProxyProcess, origin: Origin) -> None:
    r = curl(rfaults, "http://api.svc/delay/1")
    assert r.status == 200 and r.seconds >= 0.4


@pytest.mark.parametrize("path", ["/hang/bytes/100000", "/hang/1"])
def test_response_hang(tmp_path: Path, origin: Origin, path: str) -> None:
    """A response-phase hang: the client hears nothing, the upstream's body (if any)
    is read and dropped, the proxy keeps working. (Regression: a hang decided on a
    response head with a body failed an assertion on the next body bytes, in the
    upstream connection's data_received: a traceback, the upstream cut.)"""
    with rules_proxy(tmp_path, "data/response-faults.yaml", origin=origin) as p:
        s = send(p.port, get("api.svc", path), timeout=1.5)
        data, how = read_all(s)
        give_up(s)
        assert (data, how) == (b"", "timeout")
        assert curl(p, "http://api.svc/after-hang").status == 200
        rec = record_for(p, f"api.svc{path}")
    assert "resp-hang" in matched(rec) and rec["error"] == "rule resp-hang: hang"
    assert "Traceback" not in p.stderr_text, p.stderr_text
