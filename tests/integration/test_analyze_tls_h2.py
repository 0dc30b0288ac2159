"""h2 over TLS in a real capture, decrypted with the key log and decoded, against tshark.

nginx (Debian's, built with http_v2) serves h2 on 127.0.0.1 with a test
CA's certificate: a short text, a 168 kB file (many DATA frames, flow
control) and a POST answered with 201. ``tcpdump -i lo`` records while curl
fetches all three over one connection with ``--http2`` (TLS 1.2, then 1.3)
and ``SSLKEYLOGFILE``. ``analyze --keylog`` must list the same HTTP/2
requests and responses, bodies included, as tshark with the same key log
(``tests.support.h2compare``), per TCP connection. Every wait is bounded
(nginx's port, tcpdump's "listening" line, each subprocess, the poll for the
connection's end).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from proxy.cli.analyze_cmd import main
from tests.integration.test_analyze_tls import _ended
from tests.integration.test_analyze_tshark import _capture_command, _wait_listening
from tests.support.certs import CertAuthority
from tests.support.h2compare import our_h2, tshark_h2
from tests.support.nginx import nginx_conf

NGINX, CURL, TSHARK = (shutil.which(t) or shutil.which(t, path="/usr/sbin") for t in
                       ("nginx", "curl", "tshark"))  # fmt: skip
pytestmark = pytest.mark.skipif(
    None in (NGINX, CURL, TSHARK), reason="nginx, curl and tshark are needed"
)

SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {cert};
        ssl_certificate_key {cert};
        root {tmp}/www;
        location = /h2 {{ return 200 "h2 body\\n"; }}
        location = /post {{ client_body_buffer_size 64k; return 201 "posted\\n"; }}
    }}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        assert proc.poll() is None, "nginx exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("nginx never listened")


@pytest.fixture(scope="module")
def h2_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, int]]:
    tmp = tmp_path_factory.mktemp("h2")
    ca = CertAuthority.create(tmp / "ca")
    cert = ca.server_cert(["localhost"], "server.pem")
    port = _free_port()
    (tmp / "www").mkdir()
    (tmp / "www" / "big.txt").write_text(
        "".join(f"line {i:06d} of the big file\n" for i in range(6000))
    )
    (tmp / "nginx.conf").write_text(nginx_conf(tmp, SERVER.format(tmp=tmp, port=port, cert=cert)))
    nginx = subprocess.Popen(
        [str(NGINX), "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    cap, keys = tmp / "h2.pcap", tmp / "keys.txt"
    try:
        _wait_port(port, nginx, time.monotonic() + 15)
        dump = subprocess.Popen(
            _capture_command(cap, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_listening(dump, time.monotonic() + 15)
            for version in (["--tls-max", "1.2", "--tlsv1.2"], ["--tlsv1.3"]):
                subprocess.run(
                    [str(CURL), "-sS", "--fail", "--http2", "--max-time", "10", *version,
                     "--cacert", str(ca.cert_path), "--resolve", f"localhost:{port}:127.0.0.1",
                     "-o", "/dev/null", f"https://localhost:{port}/h2",
                     "-o", "/dev/null", f"https://localhost:{port}/big.txt",
                     "--next", "-o", "/dev/null", "--data-binary", "field=value&more",
                     *version, "--cacert", str(ca.cert_path), "--http2",
                     "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/post?x=1"],
                    check=True, timeout=15, env=dict(os.environ, SSLKEYLOGFILE=str(keys)),
                )  # fmt: skip
            deadline = time.monotonic() + 15
            while _ended(cap, [port]) < 2:
                assert time.monotonic() < deadline, "the connection never ended in the capture"
                time.sleep(0.05)
        finally:
            dump.send_signal(signal.SIGTERM)
            dump.wait(timeout=15)
    finally:
        nginx.send_signal(signal.SIGQUIT)  # graceful: the master stops its worker
        try:
            nginx.wait(timeout=15)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(timeout=15)
    yield cap, keys, port


def test_h2_matches_tshark(h2_capture: tuple[Path, Path, int], tmp_path: Path) -> None:
    cap, keys, port = h2_capture
    out = tmp_path / "h2.jsonl"
    args = [str(cap), "--keylog", str(keys), "-o", str(out), "--no-progress"]
    assert main([*args, "--body-preview", "300000"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    tunnels = [r for r in records if r["kind"] == "tunnel"]
    assert [r["tls"]["client"]["version"] for r in tunnels] == ["TLSv1.2", "TLSv1.3"]
    for record in tunnels:
        tls = record["tls"]
        assert record["error"] is None
        assert tls["keylog"] is True and tls["client"]["alpn"] == "h2"
        assert tls["client"]["sni"] == "localhost"
    http = [r for r in records if r["kind"] == "http"]
    assert all(r["error"] is None for r in http), [r["error"] for r in http]
    assert {r["request"]["http_version"] for r in http} == {"HTTP/2.0"}
    assert {r["response"]["http_version"] for r in http} == {"HTTP/2.0"}
    assert {r["request"]["url"] for r in http} == {
        f"https://localhost:{port}{p}" for p in ("/h2", "/big.txt", "/post?x=1")
    }
    theirs = tshark_h2(
        str(TSHARK),
        str(cap),
        {port},
        "-d",
        f"tcp.port=={port},tls",
        "-o",
        f"tls.keylog_file:{keys}",
    )
    ours = our_h2(records)
    assert ours == theirs
    big = "".join(f"line {i:06d} of the big file\n" for i in range(6000)).encode()
    expected = sorted(
        [("GET", "/big.txt", b"", 200, big), ("GET", "/h2", b"", 200, b"h2 body\n"),
         ("POST", "/post?x=1", b"field=value&more", 201, b"posted\n")], key=repr,
    )  # fmt: skip
    assert list(ours.values()) == [expected, expected]  # both connections, all three requests
    # the records are schema-valid flow-log lines: the same check the flow log gets
    _validate(records)


def _validate(records: list[dict[str, object]]) -> None:
    schema = json.loads((Path(__file__).parents[2] / "docs" / "flow-log.schema.json").read_text())
    for record in records:
        jsonschema.Draft202012Validator(schema).validate(record)
