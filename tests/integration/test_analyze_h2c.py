"""h2c in real captures (prior knowledge and ``Upgrade: h2c``), decoded like tshark.

Two cleartext HTTP/2 servers on 127.0.0.1, recorded with ``tcpdump -i lo``:

* nghttpd (Debian's nghttp2-server) with ``--no-tls``, padding every frame
  (``-b``) and pushing /style.css with /index.html (``-p``). Clients with
  prior knowledge (RFC 9113 §3.3): curl ``--http2-prior-knowledge`` (a GET;
  a POST), and nghttp with several requests on one connection (a 168 kB
  file, the pushed page, a POST);
* a small server built on the ``h2`` library in this file, because nghttpd
  does not implement the HTTP/1.1 Upgrade: it answers ``Upgrade: h2c`` with
  101, serves the upgraded request as stream 1 (RFC 7540 §3.2) and the
  following ones as HTTP/2, one of them with trailers. Clients: curl
  ``--http2`` on an http URL and ``nghttp -u``.

``analyze`` must list the same requests and responses, bodies included, as
tshark (``-d tcp.port==P,http2`` for prior knowledge; its HTTP dissector
follows the 101 by itself), per TCP connection (``tests.support.h2compare``).
Every wait is bounded (ports, tcpdump's "listening" line, each subprocess,
the poll for every connection's end, socket timeouts in the server).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from proxy.cli.analyze_cmd import main
from tests.integration.test_analyze_tls import _ended
from tests.integration.test_analyze_tls_h2 import _free_port, _validate, _wait_port
from tests.integration.test_analyze_tshark import _capture_command, _wait_listening
from tests.support.h2compare import our_h2, tshark_h2

NGHTTPD, NGHTTP, CURL, TSHARK = (shutil.which(t) or shutil.which(t, path="/usr/sbin") for t in
                                 ("nghttpd", "nghttp", "curl", "tshark"))  # fmt: skip
pytestmark = pytest.mark.skipif(
    None in (NGHTTPD, NGHTTP, CURL, TSHARK), reason="nghttpd, nghttp, curl and tshark are needed"
)
BIG = "".join(f"line {i:06d} of the big file\n" for i in range(6000)).encode()
FILES = {
    "/a.txt": b"small file\n",
    "/big.txt": BIG,
    "/mid.txt": BIG[:50_000],  # under the initial flow-control window: the h2 server needs no wait
    "/index.html": b"<html><link rel=stylesheet href=/style.css>hi</html>\n",
    "/style.css": b"body{color:red}\n",
}


class UpgradeServer:
    """h2c by Upgrade with the ``h2`` library, one thread per connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def close(self) -> None:
        self.stop.set()
        self.accepter.join(timeout=10)
        for t in self.threads:
            t.join(timeout=10)
        self.sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            with sock:
                sock.settimeout(10)
                self._session(sock)
        except BaseException as e:  # reported by the test, not lost in a thread
            self.errors.append(e)

    def _session(self, sock: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "client closed before its request head"
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        fields = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        assert fields.get("upgrade") == "h2c", fields
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        )
        conn.initiate_upgrade_connection(fields["http2-settings"].encode())
        paths = {1: path}
        # Stream 1's answer waits for the client's preface: curl keeps what
        # follows the 101 in a 32 KiB buffer until it has switched to HTTP/2,
        # and a 50 kB answer sent at once overflows it (curl error 16).
        upgraded_pending = True
        data = rest
        while True:
            for ev in conn.receive_data(data) if data else ():
                if upgraded_pending and isinstance(ev, h2.events.RemoteSettingsChanged):
                    upgraded_pending = False
                    self._respond(conn, 1, path)
                if isinstance(ev, h2.events.RequestReceived):
                    paths[ev.stream_id] = dict(ev.headers)[b":path"].decode()
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id != 1:
                    self._respond(conn, ev.stream_id, paths[ev.stream_id])
            try:
                sock.sendall(conn.data_to_send())
                data = sock.recv(65536)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client had what it wanted and left (our ACKs had nowhere to go)
            if not data:
                return

    @staticmethod
    def _respond(conn: h2.connection.H2Connection, sid: int, path: str) -> None:
        trailers = path == "/trailers"
        body = FILES.get(path, b"trailing body\n" if trailers else b"not here\n")
        status = "200" if path in FILES or trailers else "404"
        conn.send_headers(sid, [(":status", status), ("content-type", "text/plain")])
        for i in range(0, len(body), 16384):
            conn.send_data(
                sid, body[i : i + 16384], end_stream=not trailers and i + 16384 >= len(body)
            )
        if trailers:
            conn.send_headers(sid, [("x-checksum", "abc")], end_stream=True)


@dataclass
class Capture:
    cap: Path
    prior: int  # nghttpd's port
    upgrade: int  # the Upgrade server's port
    connections: int


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, timeout=30, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def h2c_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    tmp = tmp_path_factory.mktemp("h2c")
    www = tmp / "www"
    www.mkdir()
    for name, body in FILES.items():
        (www / name.lstrip("/")).write_bytes(body)
    (tmp / "post.txt").write_bytes(b"posted by nghttp\n")
    prior = _free_port()
    nghttpd = subprocess.Popen(
        [str(NGHTTPD), "--no-tls", "-a", "127.0.0.1", "-d", str(www), "-b", "16",
         "-p/index.html=/style.css", str(prior)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    upgrade = UpgradeServer()
    cap = tmp / "h2c.pcap"
    try:
        _wait_port(prior, nghttpd, time.monotonic() + 15)
        command = _capture_command(cap, prior)
        command[-1] = f"tcp port {prior} or tcp port {upgrade.port}"
        dump = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_listening(dump, time.monotonic() + 15)
            p, u = f"http://127.0.0.1:{prior}", f"http://127.0.0.1:{upgrade.port}"
            curl = [str(CURL), "-sS", "--fail", "--max-time", "10", "-o", "/dev/null"]
            _run(*curl, "--http2-prior-knowledge", f"{p}/a.txt")
            _run(*curl, "--http2-prior-knowledge", "--data-binary", "k=v&x=y", f"{p}/a.txt")
            _run(str(NGHTTP), "-n", f"{p}/big.txt", f"{p}/index.html", f"{p}/missing")
            _run(str(NGHTTP), "-n", "-d", str(tmp / "post.txt"), f"{p}/a.txt")
            _run(*curl, "--http2", f"{u}/mid.txt")
            _run(str(NGHTTP), "-n", "-u", f"{u}/a.txt", f"{u}/mid.txt", f"{u}/trailers")
            connections = 6
            deadline = time.monotonic() + 15
            while _ended(cap, [prior, upgrade.port]) < connections:
                assert time.monotonic() < deadline, "capture never showed every connection end"
                time.sleep(0.05)
        finally:
            dump.send_signal(signal.SIGTERM)
            dump.wait(timeout=15)
    finally:
        upgrade.close()
        nghttpd.send_signal(signal.SIGTERM)
        nghttpd.wait(timeout=15)
    assert not upgrade.errors, upgrade.errors
    yield Capture(cap, prior, upgrade.port, connections)


def _analyze(capture: Capture, out: Path) -> list[dict[str, Any]]:
    assert (
        main([str(capture.cap), "-o", str(out), "--no-progress", "--body-preview", "300000"]) == 0
    )
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_h2c_matches_tshark(h2c_capture: Capture, tmp_path: Path) -> None:
    records = _analyze(h2c_capture, tmp_path / "h2c.jsonl")
    assert all(r["kind"] == "http" for r in records), [r["kind"] for r in records]
    assert all(r["error"] is None for r in records), [r["error"] for r in records]
    decode = [
        "-d",
        f"tcp.port=={h2c_capture.prior},http2",
        "-d",
        f"tcp.port=={h2c_capture.upgrade},http",
    ]
    theirs = tshark_h2(
        str(TSHARK), str(h2c_capture.cap), {h2c_capture.prior, h2c_capture.upgrade}, *decode
    )
    ours = our_h2(records)
    assert ours == theirs
    assert len(ours) == h2c_capture.connections
    assert sum(map(len, ours.values())) == 1 + 1 + 4 + 1 + 1 + 3  # the push is a stream of its own
    _validate(records)


def test_the_upgraded_request_is_http1_and_its_response_http2(
    h2c_capture: Capture, tmp_path: Path
) -> None:
    records = _analyze(h2c_capture, tmp_path / "h2c.jsonl")
    upgraded = [r for r in records if r["server"]["port"] == h2c_capture.upgrade]
    versions = sorted(
        (r["request"]["http_version"], r["response"]["http_version"]) for r in upgraded
    )
    assert versions == [("HTTP/1.1", "HTTP/2.0")] * 2 + [("HTTP/2.0", "HTTP/2.0")] * 2
    first = next(r for r in upgraded if r["request"]["http_version"] == "HTTP/1.1")
    assert ["Upgrade", "h2c"] in first["request"]["headers"] or ["upgrade", "h2c"] in first[
        "request"
    ]["headers"]
    pushed = [r for r in records if r["request"]["url"].endswith("/style.css")]
    assert len(pushed) == 1 and pushed[0]["response"]["status"] == 200
    prior = [r for r in records if r["server"]["port"] == h2c_capture.prior]
    assert {r["request"]["http_version"] for r in prior} == {"HTTP/2.0"}
