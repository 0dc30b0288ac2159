"""CLI help, flow-log records, graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.rawhttp import connect, recv_until_close
from tests.support.upstreams import RawConnection, Upstreams


def test_help_documents_the_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "--help"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0
    for option in ("--listen-host", "--listen-port", "-p", "--mode", "reverse:", "tcp:", "-q", "-v",
                   "--flow-log", "--keep-host-header", "--shutdown-timeout"):  # fmt: skip
        assert option in out.stdout, option


def test_flow_log_record(fresh_proxy: ProxyProcess, upstreams: Upstreams) -> None:
    r = requests.post(
        f"{upstreams.url}/echo/rec?x=1",
        data=b"\xff\xfebinary",
        headers={"X-B": "2", "x-a": "1"},
        proxies={"http": fresh_proxy.url},
        timeout=10,
    )
    assert r.status_code == 200
    (rec,) = fresh_proxy.records(1)
    assert rec["schema"] == 3 and rec["kind"] == "http" and rec["mode"] == "regular"
    assert rec["request"]["method"] == "POST"
    assert rec["request"]["url"] == f"{upstreams.url}/echo/rec?x=1"
    names = [h[0] for h in rec["request"]["headers"]]
    assert names.index("X-B") < names.index("x-a")  # wire order and case kept
    assert rec["request"]["body_size"] == 8
    assert rec["request"]["body_preview"]["encoding"] == "base64"
    assert rec["response"]["status"] == 200
    assert rec["response"]["body_preview"]["encoding"] == "utf-8"
    assert rec["response"]["body_size"] == len(r.content)
    assert rec["client"]["ip"] == "127.0.0.1"
    assert rec["server"] == {"ip": "127.0.0.1", "port": upstreams.port}
    t = rec["timings_ms"]
    assert 0 <= t["connected"] <= t["response_head"] <= t["response_done"]
    assert rec["error"] is None


def test_graceful_shutdown_finishes_in_flight_exchange(
    tmp_path: Path, upstreams: Upstreams
) -> None:
    release = asyncio.Event()
    head_sent = asyncio.Event()

    async def slow(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
        await conn.writer.drain()
        head_sent.set()
        await asyncio.wait_for(release.wait(), 10)
        conn.send(b"-last")
        await conn.writer.drain()

    server = upstreams.raw(slow)
    p = start_proxy(flow_log=tmp_path / "f.jsonl")
    s = connect(p.port, timeout=10)
    s.sendall(b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % server.port)
    upstreams.call(asyncio.wait_for(head_sent.wait(), 10))
    p.proc.send_signal(signal.SIGTERM)
    # Stopped accepting: wait (bounded) until a new connection is refused.
    for _ in range(200):
        try:
            connect(p.port, timeout=1).close()
        except ConnectionRefusedError:
            break
        upstreams.call(asyncio.sleep(0.01))
    else:
        raise AssertionError("proxy kept accepting after SIGTERM")
    upstreams.loop.call_soon_threadsafe(release.set)
    data = recv_until_close(s)
    assert data.endswith(b"\r\n\r\nfirst-last")
    assert p.stop() == 0
    recs = p.records(1)
    assert len(recs) == 1 and recs[0]["response"]["body_size"] == 10
