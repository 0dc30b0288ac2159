"""``tapproxy analyze --keylog`` against tshark on real TLS captures made here.

An aiohttp server on 127.0.0.1 serves HTTPS with a test CA's certificate
(ECDSA; ALPN http/1.1) on two ports: one accepting any group, one accepting
only secp384r1 so that curl's x25519 key share draws a HelloRetryRequest.
``tcpdump -i lo`` records while, with ``SSLKEYLOGFILE`` set:

* curl fetches over TLS 1.2 with each ECDHE-ECDSA AEAD suite (AES-128-GCM,
  AES-256-GCM, ChaCha20-Poly1305) and TLS 1.3 with each of its three suites;
* curl fetches twice with "Connection: close", so the second connection
  resumes the first's session (TLS 1.2 ticket, TLS 1.3 PSK);
* ``openssl s_client`` sends a request, a KeyUpdate asking the server to
  update too ("K"), then a second request.

Our records must list the same requests and responses (method, URI, status,
body) as tshark with the same key log, per TCP connection. Every wait is
bounded: server start, tcpdump's "listening" line, each subprocess, the poll
for every connection's end in the capture, and s_client's output.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from proxy.cli.analyze_cmd import main
from proxy.pcap.decode import Decoder
from proxy.pcap.reader import CaptureError, read_packets
from proxy.pcap.tlshandshake import HRR_RANDOM
from tests.integration.test_analyze_tshark import _capture_command, _wait_listening, tshark
from tests.support.certs import CertAuthority

TSHARK, CURL, OPENSSL = (shutil.which(t) for t in ("tshark", "curl", "openssl"))
pytestmark = pytest.mark.skipif(
    None in (TSHARK, CURL, OPENSSL), reason="tshark, curl and openssl are needed"
)
FIN, RST = 0x01, 0x04
SUITES12 = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
)
SUITES13 = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
IANA12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello world")


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"0123456789abcdef" * 12_500)  # 200 kB: many records


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


def _context(cert: Path, groups: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert))
    ctx.set_alpn_protocols(["http/1.1"])
    if groups:
        ctx.set_ecdh_curve(groups)
    return ctx


class TlsServers:
    """One aiohttp app on two TLS ports (any group; secp384r1 only), in a thread."""

    def __init__(self, cert: Path) -> None:
        self.cert = cert
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.ports: list[int] = []

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/hello", _hello)
        app.router.add_get("/big", _big)
        app.router.add_post("/echo", _echo)
        app.router.add_get("/chunked", _chunked)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        for groups in (None, "secp384r1"):
            site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=_context(self.cert, groups))
            await site.start()
            self.ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def __enter__(self) -> TlsServers:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@dataclass
class Capture:
    cap: Path
    keys: Path
    ports: list[int]
    connections: int


def _ended(cap: Path, ports: list[int]) -> int:
    """Connections with a FIN or RST in the capture so far (it may end mid-record)."""
    dec, ended = Decoder(), set()
    try:
        with cap.open("rb") as f:
            for pkt in read_packets(f):
                d = dec.decode(pkt)
                if d is not None and d.flags & (FIN | RST):
                    ended.add((d.sport, d.dport) if d.dport in ports else (d.dport, d.sport))
    except (CaptureError, OSError):
        pass
    return len(ended)


def _curl(env: dict[str, str], ca: Path, port: int, *args: str) -> None:
    resolve = f"localhost:{port}:127.0.0.1"
    cmd = [str(CURL), "-sS", "--fail", "--max-time", "10", "--cacert", str(ca)]
    subprocess.run([*cmd, "--resolve", resolve, *args], check=True, timeout=15, env=env)


def _urls(port: int, *paths: str) -> list[str]:
    out: list[str] = []
    for p in paths:
        out += ["-o", "/dev/null", f"https://localhost:{port}{p}"]
    return out


def _key_update(env: dict[str, str], ca: Path, port: int, keys: Path) -> None:
    """openssl s_client: request, "K" (KeyUpdate, update requested), request, EOF."""
    cmd = [
        str(OPENSSL), "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
        "-tls1_3", "-alpn", "http/1.1", "-CAfile", str(ca), "-keylogfile", str(keys),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    request = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
    deadline = time.monotonic() + 20
    chunks: queue.Queue[bytes] = queue.Queue()
    stdout = proc.stdout

    def pump() -> None:
        while chunk := stdout.read1(4096):
            chunks.put(chunk)
        chunks.put(b"")

    threading.Thread(target=pump, daemon=True).start()
    seen = [b""]

    def wait_for(marker: bytes, count: int) -> None:
        while seen[0].count(marker) < count:
            chunk = chunks.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert chunk, seen[0][-500:]
            seen[0] += chunk

    try:
        wait_for(b"---\n", 1)  # the handshake summary is printed
        proc.stdin.write(request)
        proc.stdin.flush()
        wait_for(b"hello world", 1)
        proc.stdin.write(b"K\n")
        proc.stdin.flush()
        wait_for(b"KEYUPDATE", 1)
        proc.stdin.write(request)
        proc.stdin.flush()
        wait_for(b"hello world", 2)
        proc.stdin.close()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    tmp = tmp_path_factory.mktemp("tls")
    ca = CertAuthority.create(tmp / "ca")
    cert = ca.server_cert(["localhost"], "server.pem")
    cap, keys = tmp / "tls.pcap", tmp / "keys.txt"
    env = dict(os.environ, SSLKEYLOGFILE=str(keys))
    with TlsServers(cert) as servers:
        port, hrr_port = servers.ports
        command = _capture_command(cap, port)
        command[-1] = f"tcp port {port} or tcp port {hrr_port}"
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        connections = 0
        try:
            _wait_listening(proc, time.monotonic() + 15)
            for suite in SUITES12:
                tls = ["--tls-max", "1.2", "--tlsv1.2", "--ciphers", suite]
                _curl(env, ca.cert_path, port, *tls, *_urls(port, "/hello", "/big", "/chunked"))
                _curl(env, ca.cert_path, port, *tls, "-d", f"suite={suite}", *_urls(port, "/echo"))
                connections += 2
            for suite in SUITES13:
                tls = ["--tlsv1.3", "--tls13-ciphers", suite]
                _curl(env, ca.cert_path, port, *tls, *_urls(port, "/hello", "/big", "/chunked"))
                _curl(env, ca.cert_path, port, *tls, "-d", f"suite={suite}", *_urls(port, "/echo"))
                connections += 2
            close = ["-H", "Connection: close"]
            for version in (["--tls-max", "1.2", "--tlsv1.2"], ["--tlsv1.3"]):
                _curl(env, ca.cert_path, port, *version, *close, *_urls(port, "/hello", "/chunked"))
                connections += 2  # the second resumes the first's session
            _curl(env, ca.cert_path, hrr_port, "--tlsv1.3", *_urls(hrr_port, "/hello"))
            _key_update(env, ca.cert_path, port, keys)
            connections += 2
            deadline = time.monotonic() + 15
            while _ended(cap, servers.ports) < connections:
                assert time.monotonic() < deadline, "capture never showed every connection end"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    yield Capture(cap, keys, servers.ports, connections)


def analyze(capture: Capture, out: Path, *extra: str) -> list[dict[str, Any]]:
    args = [str(capture.cap), "-o", str(out), "--no-progress", "--body-preview", "300000"]
    assert main([*args, *extra]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def _tshark(capture: Capture, *args: str) -> list[str]:
    decode = [x for p in capture.ports for x in ("-d", f"tcp.port=={p},tls")]
    keylog = ["-o", f"tls.keylog_file:{capture.keys}"]
    return tshark("-r", str(capture.cap), *decode, *keylog, *args)


def tshark_exchanges(capture: Capture) -> dict[int, tuple[list[Any], list[Any]]]:
    """Per TCP stream: [(method, uri, body)], [(status, body)] in order, from tshark."""
    out: dict[int, tuple[list[Any], list[Any]]] = {}
    fields = ["-T", "fields", "-E", "occurrence=f"]
    for line in _tshark(
        capture, "-Y", "http.request", *fields,
        "-e", "tcp.stream", "-e", "http.request.method", "-e", "http.request.uri",
        "-e", "http.file_data",
    ):  # fmt: skip
        stream, method, uri, *body = line.split("\t")
        out.setdefault(int(stream), ([], []))[0].append((method, uri, _unescape(body)))
    for line in _tshark(
        capture, "-Y", "http.response", *fields,
        "-e", "tcp.stream", "-e", "http.response.code", "-e", "http.file_data",
    ):  # fmt: skip
        stream, code, *body = line.split("\t")
        out.setdefault(int(stream), ([], []))[1].append((int(code), _unescape(body)))
    return out


def _unescape(fields: list[str]) -> str:
    """tshark prints text fields with C escapes (\\n, \\t...); the bodies here are ASCII."""
    return "".join(fields).encode("ascii").decode("unicode_escape")


def _body(message: dict[str, Any]) -> str:
    preview = message.get("body_preview")
    assert message["body_size"] == len(preview["data"] if preview else "")
    return preview["data"] if preview else ""


def our_exchanges(records: list[dict[str, Any]]) -> dict[int, tuple[list[Any], list[Any]]]:
    out: dict[int, tuple[list[Any], list[Any]]] = {}
    for r in sorted((r for r in records if r["kind"] == "http"), key=lambda r: r["start"]):
        stream = int(r["id"].split("-")[0]) - 1  # connections are numbered like tcp.stream, from 1
        url = urlsplit(r["request"]["url"])
        target = url.path + ("?" + url.query if url.query else "")
        requests, responses = out.setdefault(stream, ([], []))
        requests.append((r["request"]["method"], target, _body(r["request"])))
        responses.append((r["response"]["status"], _body(r["response"])))
    return out


def test_decrypted_exchanges_match_tshark(tls_capture: Capture, tmp_path: Path) -> None:
    records = analyze(tls_capture, tmp_path / "out.jsonl", "--keylog", str(tls_capture.keys))
    ours, theirs = our_exchanges(records), tshark_exchanges(tls_capture)
    assert ours == theirs
    assert len(ours) == tls_capture.connections
    assert sum(len(reqs) for reqs, _ in ours.values()) == 6 * 2 + 6 * 2 + 4 + 1 + 2
    assert all(r["error"] is None for r in records), [r for r in records if r["error"]]
    tunnels = [r for r in records if r["kind"] == "tunnel"]
    assert len(tunnels) == tls_capture.connections
    assert all(r["tls"]["keylog"] and r["tls"]["client"]["alpn"] == "http/1.1" for r in tunnels)
    ciphers = {(r["tls"]["client"]["version"], r["tls"]["client"]["cipher"]) for r in tunnels}
    assert ciphers >= {("TLSv1.2", IANA12[s]) for s in SUITES12}
    assert ciphers >= {("TLSv1.3", s) for s in SUITES13}


def test_resumption_hrr_and_key_update_were_exercised(tls_capture: Capture) -> None:
    """The capture really holds what the other test claims to decrypt."""
    hrr = ":".join(f"{b:02x}" for b in HRR_RANDOM)
    assert len(_tshark(tls_capture, "-Y", f"tls.handshake.random == {hrr}")) == 1
    # KeyUpdate: one from the client, one from the server (update_requested)
    assert len(_tshark(tls_capture, "-Y", "tls.handshake.type == 24")) == 2
    # resumed: ServerHello without a Certificate, once per version
    streams_with_cert = _tshark(
        tls_capture, "-Y", "tls.handshake.type == 11", "-T", "fields", "-e", "tcp.stream"
    )
    assert len(set(streams_with_cert)) == tls_capture.connections - 2


def test_without_keys_connections_stay_tls(tls_capture: Capture, tmp_path: Path) -> None:
    records = analyze(tls_capture, tmp_path / "plain.jsonl")
    assert {r["kind"] for r in records} == {"tunnel"}
    assert len(records) == tls_capture.connections
    for r in records:
        client, server = r["tls"]["client"], r["tls"]["server"]
        assert r["tls"]["keylog"] is False and r["error"] is None
        assert client["sni"] in ("localhost", None)  # s_client with -servername: localhost too
        if client["version"] == "TLSv1.2":
            assert client["alpn"] == "http/1.1"  # in the clear in the ServerHello
        else:
            assert client["alpn"] is None and "certificate" not in server
    certs = [r["tls"]["server"].get("certificate") for r in records]
    assert {"subject": "CN=localhost", "issuer": "CN=tapproxy test CA"}.items() <= (
        next(c for c in certs if c).items()
    )


def test_a_wrong_key_is_an_error_not_a_crash(tls_capture: Capture, tmp_path: Path) -> None:
    lines = tls_capture.keys.read_text().splitlines()
    broken = tmp_path / "broken.txt"
    broken.write_text(
        "\n".join(
            f"{label} {rnd} {'00' * (len(secret) // 2)}"
            for label, rnd, secret in (line.split() for line in lines if line.strip())
        )
        + "\n"
    )
    records = analyze(tls_capture, tmp_path / "broken.jsonl", "--keylog", str(broken))
    tunnels = [r for r in records if r["kind"] == "tunnel"]
    assert len(tunnels) == tls_capture.connections
    assert all("could not be decrypted" in (r["error"] or "") for r in tunnels)
