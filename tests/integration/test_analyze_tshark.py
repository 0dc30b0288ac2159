"""``tapproxy analyze`` against tshark on real and synthetic captures.

1. A live capture: an aiohttp server on 127.0.0.1, ``tcpdump -i lo`` (or
   dumpcap) recording it while curl fetches a few URLs. Our requests and
   statuses must equal tshark's ``-Y http.request`` / ``http.response``.
2. The same capture rewritten with data segments reordered and duplicated:
   same exchanges, no errors.
3. A pcapng from ``proxy.pcap.writer``: tshark reads it with no malformed
   packets, bad checksums or expert warnings, and its HTTP listing matches.

Every wait is bounded: the server start, tcpdump's "listening" line, each
subprocess, and the poll for the expected packets in the capture file.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from proxy.cli.analyze_cmd import main
from proxy.pcap.decode import Decoder
from proxy.pcap.reader import CaptureError, Packet, read_packets
from proxy.pcap.writer import PcapngWriter
from tests.unit.test_pcap_builders import pcap_file

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
FIN = 0x01


def target_of(record: dict[str, Any]) -> str:
    """The request-target (origin form) of a record's absolute URL."""
    parts = urlsplit(record["request"]["url"])
    return parts.path + ("?" + parts.query if parts.query else "")


def tshark(*args: str) -> list[str]:
    assert TSHARK is not None
    out = subprocess.run(
        [TSHARK, *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def tshark_http(cap: Path, port: int) -> tuple[list[tuple[str, str]], list[int]]:
    decode_as = ["-d", f"tcp.port=={port},http"]
    fields = ["-T", "fields", "-e", "http.request.method", "-e", "http.request.uri"]
    requests = [
        tuple(x.split("\t"))
        for x in tshark("-r", str(cap), *decode_as, "-Y", "http.request", *fields)
    ]
    codes = tshark(
        "-r",
        str(cap),
        *decode_as,
        "-Y",
        "http.response",
        "-T",
        "fields",
        "-e",
        "http.response.code",
    )
    return [(m, u) for m, u in requests], [int(c) for c in codes]


def analyze(cap: Path, tmp: Path) -> list[dict[str, Any]]:
    out = tmp / (cap.name + ".jsonl")
    assert main([str(cap), "-o", str(out), "--no-progress"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def ours(records: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[int]]:
    """(method, target) in request order and statuses in response order, like tshark's."""
    http = sorted((r for r in records if r["kind"] == "http"), key=lambda r: r["start"])
    requests = [(r["request"]["method"], target_of(r)) for r in http]
    by_end = sorted(http, key=lambda r: r["end"])
    return requests, [r["response"]["status"] for r in by_end]


# -- the live capture -------------------------------------------------------------------
async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello world")


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"b" * 200_000)


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(5):
        await resp.write(b"chunk %d\n" % i)
    await resp.write_eof()
    return resp


class ServerThread:
    """An aiohttp app on its own loop in a thread, bound to 127.0.0.1:0."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/hello", _hello)
        app.router.add_get("/big", _big)
        app.router.add_post("/echo", _echo)
        app.router.add_get("/chunked", _chunked)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def __enter__(self) -> ServerThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _capture_command(cap: Path, port: int) -> list[str]:
    tcpdump = shutil.which("tcpdump")
    if tcpdump:
        # --immediate-mode: no kernel block timeout, each packet is written as it comes
        return [
            tcpdump,
            "-i",
            "lo",
            "-n",
            "-U",
            "--immediate-mode",
            "-B",  # a 32 MiB kernel buffer: no packet dropped when the machine is busy
            "32768",
            "-Z",
            "root",
            "-w",
            str(cap),
            f"tcp port {port}",
        ]
    dumpcap = shutil.which("dumpcap")
    if dumpcap:
        return [dumpcap, "-i", "lo", "-q", "-P", "-w", str(cap), "-f", f"tcp port {port}"]
    pytest.skip("neither tcpdump nor dumpcap is installed")


def _wait_listening(proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Read the capturer's stderr until it says it is capturing."""
    assert proc.stderr is not None
    seen = b""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if b"listening on" in line or b"Capturing on" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.skip(f"could not capture on lo: {seen.decode(errors='replace')[:300]}")


def _fins(cap: Path, port: int) -> int:
    """FIN segments in the capture so far (it may end mid-record while written)."""
    dec, count = Decoder(), 0
    try:
        with cap.open("rb") as f:
            for pkt in read_packets(f):
                d = dec.decode(pkt)
                if d is not None and d.flags & FIN and port in (d.sport, d.dport):
                    count += 1
    except (CaptureError, OSError):
        pass
    return count


@pytest.fixture(scope="module")
def live_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    tmp = tmp_path_factory.mktemp("live")
    cap = tmp / "live.pcap"
    with ServerThread() as server:
        port = server.port
        proc = subprocess.Popen(
            _capture_command(cap, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_listening(proc, time.monotonic() + 15)
            base = f"http://127.0.0.1:{port}"
            curls = [
                [
                    "-o",
                    "/dev/null",
                    "-o",
                    "/dev/null",
                    "-o",
                    "/dev/null",
                    f"{base}/hello",
                    f"{base}/big",
                    f"{base}/missing",
                ],
                ["-o", "/dev/null", "-d", "a=1&b=2", f"{base}/echo"],
                ["-o", "/dev/null", f"{base}/chunked"],
                ["-o", "/dev/null", "-I", f"{base}/hello"],
            ]
            for args in curls:
                subprocess.run(["curl", "-s", "--max-time", "10", *args], check=True, timeout=15)
            deadline = time.monotonic() + 15
            while _fins(cap, port) < 2 * len(curls):
                assert time.monotonic() < deadline, "capture never showed every connection closing"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    yield cap, port


def test_live_capture_matches_tshark(live_capture: tuple[Path, int], tmp_path: Path) -> None:
    cap, port = live_capture
    records = analyze(cap, tmp_path)
    requests, statuses = ours(records)
    t_requests, t_statuses = tshark_http(cap, port)
    assert requests == t_requests
    assert statuses == t_statuses
    assert sorted(statuses) == [200, 200, 200, 200, 200, 404]
    assert all(r["error"] is None for r in records), records
    http = {target_of(r): r for r in records}
    assert http["/big"]["response"]["body_size"] == 200_000
    assert http["/echo"]["request"]["body_size"] == 7
    assert http["/chunked"]["response"]["body_size"] == 40


def _shuffle(pkts: list[Packet]) -> list[Packet]:
    """Swap neighbouring data segments of the same direction; duplicate every third."""
    dec = Decoder()
    out: list[Packet] = []
    i, n = 0, 0
    while i < len(pkts):
        a = dec.decode(pkts[i])
        b = dec.decode(pkts[i + 1]) if i + 1 < len(pkts) else None
        if (
            a is not None
            and b is not None
            and a.payload
            and b.payload
            and (a.sport, a.dport) == (b.sport, b.dport)
        ):
            out += [pkts[i + 1], pkts[i]]
            i += 2
        else:
            out.append(pkts[i])
            i += 1
        if a is not None and a.payload:
            n += 1
            if n % 3 == 0:
                out.append(pkts[i - 1])  # a retransmission after the fact
    return out


def test_reordered_and_duplicated_capture(live_capture: tuple[Path, int], tmp_path: Path) -> None:
    cap, port = live_capture
    with cap.open("rb") as f:
        pkts = list(read_packets(f))
    shuffled = _shuffle(pkts)
    assert len(shuffled) > len(pkts) and [p.offset for p in shuffled] != sorted(
        p.offset for p in shuffled
    )
    cap2 = tmp_path / "shuffled.pcap"
    cap2.write_bytes(pcap_file([(p.ts, p.data) for p in shuffled], linktype=pkts[0].linktype))
    records = analyze(cap2, tmp_path)
    assert ours(records) == tshark_http(cap, port)
    assert all(r["error"] is None for r in records), records


# -- a capture from our writer ---------------------------------------------------------
def _write_synthetic(path: Path) -> list[tuple[str, str]]:
    expected = []
    with path.open("wb") as f:
        w = PcapngWriter(f)
        ts = 1_700_000_000.0
        for n in range(6):
            client = (
                (f"192.0.2.{n + 10}", 41000 + n) if n % 2 else (f"2001:db8::{n + 10:x}", 41000 + n)
            )
            server = ("192.0.2.1", 80) if n % 2 else ("2001:db8::1", 80)
            conv = w.open_conversation(client, server, ts, f"flow-{n}")
            for k in range(3):
                ts += 0.01
                if k == 1:
                    conv.data(
                        ts,
                        True,
                        b"POST /submit HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\n"
                        + b"p" * 3000,
                    )
                    expected.append(("POST", "/submit"))
                else:
                    conv.data(ts, True, f"GET /r/{n}/{k} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                    expected.append(("GET", f"/r/{n}/{k}"))
                ts += 0.01
                body = b"x" * (n * 7000 + 10)
                if k == 2:
                    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
                    conv.data(
                        ts, False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
                    )
                else:
                    conv.data(
                        ts,
                        False,
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
                    )
            conv.close(ts + 0.01, from_client=bool(n % 2))
    return expected


def test_writer_capture_is_clean_for_tshark(tmp_path: Path) -> None:
    cap = tmp_path / "synthetic.pcapng"
    expected = _write_synthetic(cap)
    expert = "\n".join(tshark("-r", str(cap), "-q", "-z", "expert"))
    assert "Errors" not in expert and "Warns" not in expert, expert
    checks = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    bad = 'tcp.checksum.status == "Bad" || ip.checksum.status == "Bad"'
    bad += " || _ws.malformed || tcp.analysis.flags"
    assert tshark("-r", str(cap), *checks, "-Y", bad) == []
    fields = ["-T", "fields", "-e", "http.request.method", "-e", "http.request.uri"]
    listing = [tuple(x.split("\t")) for x in tshark("-r", str(cap), "-Y", "http.request", *fields)]
    assert listing == expected
    records = analyze(cap, tmp_path)
    assert ours(records)[0] == expected
    assert all(r["error"] is None for r in records)
    comments = tshark("-r", str(cap), "-Y", "frame.comment", "-T", "fields", "-e", "frame.comment")
    assert comments == [f"flow-{n}" for n in range(6)]
