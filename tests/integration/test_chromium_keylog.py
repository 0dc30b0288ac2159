"""Headless Chromium's own key log decrypts its captured HTTPS, as tshark does.

nginx (Debian's) serves a page with a stylesheet, a script and an image on
two TLS 1.3-only ports of 127.0.0.1, one offering h2 and one HTTP/1.1 only,
with a test CA's certificate that a fresh NSS database (certutil) trusts.
For each port, ``tcpdump -i lo`` records while headless Chromium (flags as
in ``test_chromium.py``) loads the page with ``SSLKEYLOGFILE`` set in its
environment. Chromium honours that variable in ``--headless=new`` mode
(Chromium 156 here; checked: the key log holds the TLS 1.3 secrets of every
connection that carried HTTP), so its ``--ssl-key-log-file`` switch is not
needed.

``analyze --keylog`` must list the same requests and responses, bodies
included, as tshark with the same key log: per TCP connection, HTTP/2
streams through ``tests.support.h2compare`` and HTTP/1.1 exchanges through
``test_analyze_tls``'s comparison. Every wait is bounded (nginx's ports,
tcpdump's "listening" line, Chromium's run, the poll for every
connection's end).

Chromium also opens spare connections that it resets before its handshake
completes: they have no secrets in the key log and carry no HTTP, and are
recorded as TLS without decryption, which is checked. On a loaded machine
tcpdump can lose segments (seen here once: a ServerHello missing, so neither
tool could decrypt that connection); a capture in which tshark's TCP
analysis finds a lost segment is made again, at most ``ATTEMPTS`` times.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.cli.analyze_cmd import main
from proxy.pcap.decode import Decoder
from proxy.pcap.reader import CaptureError, read_packets
from tests.integration import test_analyze_tls as tls_test
from tests.integration.test_analyze_tls_h2 import _free_port, _validate, _wait_port
from tests.integration.test_analyze_tshark import _capture_command, _wait_listening
from tests.integration.test_chromium import FLAGS
from tests.support.certs import CertAuthority
from tests.support.h2compare import our_h2, tshark_h2
from tests.support.nginx import nginx_conf

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NGINX, TSHARK = (shutil.which(t) or shutil.which(t, path="/usr/sbin") for t in ("nginx", "tshark"))
pytestmark = pytest.mark.skipif(
    None in (CHROMIUM, NGINX, TSHARK) or not shutil.which("certutil"),
    reason="chromium, nginx, tshark and certutil are needed",
)
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
ATTEMPTS = 3  # captures made when tcpdump loses segments (a loaded machine), before failing
PAGE = (
    b"<html><head><link rel=stylesheet href=/style.css><script src=/app.js></script></head>"
    b"<body><h1 id=t>decrypted hello</h1><img src=/dot.svg></body></html>\n"
)
FILES = {
    "index.html": PAGE,
    "style.css": b"h1 { color: #336; }\n" * 40,
    "app.js": b"document.title = 'keylog';\n" + b"// padding line\n" * 2000,  # many frames
    "dot.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>\n',
    "favicon.ico": b"icon\n",
}
SITES = """\
    ssl_protocols TLSv1.3;
    ssl_certificate {cert};
    ssl_certificate_key {cert};
    root {tmp}/www;
    server {{ listen 127.0.0.1:{h2} ssl http2; }}
    server {{ listen 127.0.0.1:{h1} ssl; }}
"""


def _connections(cap: Path, port: int) -> tuple[int, int]:
    """(connections the server accepted, those of them that ended) in the capture so far."""
    dec, accepted, ended = Decoder(), set(), set()
    try:
        with cap.open("rb") as f:
            for pkt in read_packets(f):
                d = dec.decode(pkt)
                if d is None:
                    continue
                key = d.sport if d.dport == port else d.dport
                if d.flags & SYN and d.flags & ACK and d.sport == port:
                    accepted.add(key)
                if d.flags & (FIN | RST):
                    ended.add(key)
    except (CaptureError, OSError):
        pass
    return len(accepted), len(accepted & ended)


def _lost_segments(cap: Path) -> int:
    """Segments the capture missed, by tshark's TCP analysis (tcpdump drops under load)."""
    lost = subprocess.run(
        [str(TSHARK), "-r", str(cap), "-Y", "tcp.analysis.lost_segment", "-T", "fields",
         "-e", "frame.number"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    return len(lost)


def _chromium(tmp: Path, env: dict[str, str], url: str, keys: Path) -> str:
    assert CHROMIUM is not None
    out = subprocess.run(
        [CHROMIUM, *[f for f in FLAGS if f != "--headless"], "--headless=new",
         f"--user-data-dir={tmp / 'profile'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=90, env=dict(env, SSLKEYLOGFILE=str(keys)),
    )  # fmt: skip
    assert '<h1 id="t">decrypted hello</h1>' in out.stdout, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def captures(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Path, Path, int]]]:
    """``{"h2": (capture, key log, port), "http/1.1": ...}``, one Chromium run each."""
    tmp = tmp_path_factory.mktemp("chromium-keylog")
    ca = CertAuthority.create(tmp / "ca")
    cert = ca.server_cert(["localhost"], "server.pem")
    (tmp / "www").mkdir()
    for name, body in FILES.items():
        (tmp / "www" / name).write_bytes(body)
    home = tmp / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    env = dict(os.environ, HOME=str(home))
    db = f"sql:{nssdb}"
    subprocess.run(
        ["certutil", "-d", db, "-N", "--empty-password"], check=True, env=env, timeout=30
    )
    subprocess.run(
        ["certutil", "-d", db, "-A", "-t", "C,,", "-n", "test-ca", "-i", str(ca.cert_path)],
        check=True, env=env, timeout=30,
    )  # fmt: skip
    ports = {"h2": _free_port(), "http/1.1": _free_port()}
    sites = SITES.format(tmp=tmp, cert=cert, h2=ports["h2"], h1=ports["http/1.1"])
    (tmp / "nginx.conf").write_text(nginx_conf(tmp, sites, mime=True))
    nginx = subprocess.Popen(
        [str(NGINX), "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out: dict[str, tuple[Path, Path, int]] = {}
    try:
        for kind, port in ports.items():
            _wait_port(port, nginx, time.monotonic() + 15)
            for attempt in range(ATTEMPTS):
                name = f"{kind.replace('/', '')}-{attempt}"
                cap, keys = tmp / f"{name}.pcap", tmp / f"{name}-keys.txt"
                _record(cap, keys, port, lambda keys=keys, port=port: _chromium(
                    tmp, env, f"https://localhost:{port}/index.html", keys))  # fmt: skip
                if _lost_segments(cap) == 0:
                    break
            else:
                pytest.fail(f"tcpdump lost segments in {ATTEMPTS} captures in a row")
            out[kind] = (cap, keys, port)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=15)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(timeout=15)
    yield out


def _record(cap: Path, keys: Path, port: int, run: Callable[[], object]) -> None:
    """Capture ``port`` on lo while ``run`` runs, until every connection has ended."""
    dump = subprocess.Popen(
        _capture_command(cap, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(dump, time.monotonic() + 15)
        run()
        deadline = time.monotonic() + 15
        while (seen := _connections(cap, port))[0] == 0 or seen[0] != seen[1]:
            assert time.monotonic() < deadline, f"connections never all ended: {seen}"
            time.sleep(0.05)
    finally:
        dump.send_signal(signal.SIGTERM)
        dump.wait(timeout=15)


def _analyze(cap: Path, keys: Path, out: Path) -> list[dict[str, Any]]:
    args = [str(cap), "--keylog", str(keys), "-o", str(out), "--no-progress"]
    assert main([*args, "--body-preview", "300000"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    _validate(records)
    tunnels = [r for r in records if r["kind"] == "tunnel"]
    decrypted = [r for r in tunnels if r["tls"]["keylog"]]
    assert decrypted and {r["tls"]["client"]["version"] for r in decrypted} == {"TLSv1.3"}
    for r in tunnels:  # Chromium's spare connections: reset before it derived any secret
        if not r["tls"]["keylog"]:
            assert r["tunnel"]["client_close"] == "rst", r
            assert r["error"] == "no CLIENT_HANDSHAKE_TRAFFIC_SECRET in the key log", r
    assert all(r["error"] is None for r in records if r not in tunnels), records
    http_connections = {r["id"].split("-")[0] for r in records if r["kind"] == "http"}
    assert http_connections <= {r["id"].split("-")[0] for r in decrypted}
    return records


def _paths(records: list[dict[str, Any]]) -> set[str]:
    return {r["request"]["url"].split("/", 3)[3] for r in records if r["kind"] == "http"}


def test_chromium_h2_matches_tshark(
    captures: dict[str, tuple[Path, Path, int]], tmp_path: Path
) -> None:
    cap, keys, port = captures["h2"]
    records = _analyze(cap, keys, tmp_path / "h2.jsonl")
    assert {r["tls"]["client"]["alpn"] for r in records if r["kind"] == "tunnel"} == {"h2"}
    assert _paths(records) >= {"index.html", "style.css", "app.js", "dot.svg"}
    assert {r["request"]["http_version"] for r in records if r["kind"] == "http"} == {"HTTP/2.0"}
    theirs = tshark_h2(
        str(TSHARK),
        str(cap),
        {port},
        "-d",
        f"tcp.port=={port},tls",
        "-o",
        f"tls.keylog_file:{keys}",
    )
    assert our_h2(records) == theirs


def test_chromium_http1_matches_tshark(
    captures: dict[str, tuple[Path, Path, int]], tmp_path: Path
) -> None:
    cap, keys, port = captures["http/1.1"]
    records = _analyze(cap, keys, tmp_path / "h1.jsonl")
    assert {r["tls"]["client"]["alpn"] for r in records if r["kind"] == "tunnel"} == {"http/1.1"}
    assert _paths(records) >= {"index.html", "style.css", "app.js", "dot.svg"}
    capture = tls_test.Capture(cap, keys, [port], 0)
    assert tls_test.our_exchanges(records) == tls_test.tshark_exchanges(capture)


def test_the_key_log_is_chromiums(
    captures: dict[str, tuple[Path, Path, int]], tmp_path: Path
) -> None:
    """SSLKEYLOGFILE was honoured: TLS 1.3 secrets for every connection that carried HTTP."""
    for cap, keys, port in captures.values():
        labels = [line.split()[0] for line in keys.read_text().splitlines() if line.strip()]
        assert set(labels) == {
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET",
        } - ({"EXPORTER_SECRET"} - set(labels))  # fmt: skip
        records = _analyze(cap, keys, tmp_path / f"{port}.jsonl")
        used = {r["id"].split("-")[0] for r in records if r["kind"] == "http"}
        assert 0 < len(used) <= labels.count("CLIENT_TRAFFIC_SECRET_0")
