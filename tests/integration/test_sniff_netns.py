"""``tapproxy sniff`` on a veth between two namespaces made here, against tcpdump.

An HTTP server runs in one namespace and curl in the other; ``sniff`` and
tcpdump capture the server's veth at the same time with the same filter.
``analyze`` of tcpdump's file must give the records ``sniff`` wrote live, the
kernel must report a BPF program on sniff's socket (``ss -0 -b -p``), and
traffic the filter excludes (another port, a bounded UDP flood) must never
reach user space: the kernel's own count of packets queued to the socket
(``PACKET_STATISTICS``) equals the packets tcpdump saw match.

Needs root; skips otherwise. Waits are bounded; readiness is read from the
programs' own "listening"/"capturing" lines and from ``ss``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.cli.analyze_cmd import main as analyze_main
from proxy.pcap.reader import CaptureError, read_packets
from tests.support.certs import CertAuthority
from tests.support.netns import (
    REPO,
    NetPair,
    missing_privilege,
    wait_listening,
    wait_stderr_line,
)

PORT, OTHER_PORT, UDP_PORT = 8080, 9090, 9999
UDP_FLOOD = 20_000  # datagrams, sent as fast as one process can
TIMING = ("start", "end", "duration_ms", "timings_ms")


@dataclass
class Net:
    pair: NetPair
    www: Path
    servers: list[subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    reason = missing_privilege()
    if reason:
        pytest.skip(reason)
    www = tmp_path_factory.mktemp("www")
    (www / "small.txt").write_bytes(b"hello sniff\n")
    (www / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB: many segments
    pair = NetPair.create()
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for port in (PORT, OTHER_PORT):
            cmd = pair.exec(pair.server_ns, sys.executable, "-m", "http.server", str(port),
                            "--bind", pair.server_ip, "--directory", str(www))  # fmt: skip
            servers.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            wait_listening(pair, pair.server_ns, port)
        yield Net(pair, www, servers)
    finally:
        for s in servers:
            s.terminate()
            s.wait(timeout=20)
        pair.close()


def _sniff(net: Net, out: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = net.pair.exec(net.pair.server_ns, sys.executable, "-m", "proxy.cli.sniff_cmd",
                        "-o", str(out), *args)  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_stderr_line(proc, "capturing on")
    return proc


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return err.decode(errors="replace")


def _curl(net: Net, *urls: str, data: str | None = None) -> None:
    extra = ["--data", data] if data is not None else []
    cmd = net.pair.exec(net.pair.client_ns, "curl", "-s", *extra, *urls)
    subprocess.run(cmd, check=False, timeout=30, stdout=subprocess.DEVNULL)


def _udp_flood(net: Net) -> None:
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for _ in range({UDP_FLOOD}):\n"
        f"    s.sendto(b'x' * 100, ('{net.pair.server_ip}', {UDP_PORT}))\n"
    )
    cmd = net.pair.exec(net.pair.client_ns, sys.executable, "-c", code)
    subprocess.run(cmd, check=True, timeout=60)


def _records(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(flow records without their timings, capture-stats records)."""
    flows, stats = [], []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "capture-stats":
            stats.append(rec)
        else:
            flows.append({k: v for k, v in rec.items() if k not in TIMING})
    return flows, stats


def _analyze(capture: Path, out: Path, expr: str) -> list[dict[str, Any]]:
    assert analyze_main([str(capture), "-o", str(out), "--filter", expr, "--no-progress"]) == 0
    return _records(out)[0]


def _ss_bpf(net: Net, pid: int) -> str:
    """The ``ss -0 -b -p`` entry of ``pid``'s packet socket, with its BPF program."""
    cmd = net.pair.exec(net.pair.server_ns, "ss", "-0", "-b", "-p")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    entries = out.replace("\n\t", "\t").splitlines()
    return next((e for e in entries if f"pid={pid}," in e), "")


def test_sniff_writes_what_analyze_writes_for_tcpdump(net: Net, tmp_path: Path) -> None:
    pair, expr = net.pair, f"tcp port {PORT}"
    cap, flows, pcap = tmp_path / "tcpdump.pcap", tmp_path / "sniff.jsonl", tmp_path / "s.pcapng"
    tcpdump = subprocess.Popen(
        pair.exec(pair.server_ns, "tcpdump", "-i", pair.server_if, "-U", "--immediate-mode",
                  "-B", "65536", "-s", "0", "-w", str(cap), expr),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_stderr_line(tcpdump, "listening on")
        sniff = _sniff(net, flows, "-i", pair.server_if, "--filter", expr, "--pcap", str(pcap))
        entry = _ss_bpf(net, sniff.pid)
        base = f"http://{pair.server_ip}:{PORT}"
        _curl(net, f"{base}/small.txt", f"{base}/big.bin", f"{base}/missing")
        _curl(net, f"{base}/small.txt", data="a=1")  # POST: http.server answers 501
        _curl(net, f"http://{pair.server_ip}:{OTHER_PORT}/big.bin")  # excluded by the filter
        _udp_flood(net)  # excluded too
        _curl(net, f"{base}/small.txt")  # the last packets seen are ours again
        err = _stop(sniff)
        live, stats = _records(flows)
        _wait_for_packets(cap, _matched(stats[0]) if stats else 0)
    finally:
        tcpdump_err = _stop(tcpdump)
    # tcpdump's default 2 MiB ring holds eight 256 KiB frames: it must not be the one dropping.
    assert re.search(r"^0 packets dropped by kernel", tcpdump_err, re.M), tcpdump_err
    assert sniff.returncode == 0, err
    assert "bpf filter" in entry, entry  # the kernel holds a program for this socket

    offline = _analyze(cap, tmp_path / "analyze.jsonl", expr)
    assert [r["request"]["method"] for r in live] == ["GET", "GET", "GET", "POST", "GET"]
    assert [r["response"]["status"] for r in live] == [200, 200, 404, 501, 200]
    assert live == offline
    assert _analyze(pcap, tmp_path / "again.jsonl", expr) == offline  # --pcap holds it all

    matching = _count_packets(cap)
    (summary,) = stats
    assert summary["kernel_drops"] == 0
    # Only what the filter matches was ever queued to the socket: not the
    # other port's megabyte, not the UDP flood. The kernel program passes up
    # IPv6 packets with extension headers (the veth's own MLD reports carry a
    # hop-by-hop header) for the user-space predicate to judge: a handful.
    assert summary["kernel_packets"] == summary["packets_read"]
    assert _matched(summary) == matching
    assert summary["filtered_in_user_space"] < 20
    assert matching < UDP_FLOOD


def _matched(summary: dict[str, Any]) -> int:
    return int(summary["packets_read"]) - int(summary["filtered_in_user_space"])


def test_sniff_any_reads_cooked_frames(net: Net, tmp_path: Path) -> None:
    pair = net.pair
    flows = tmp_path / "any.jsonl"
    expr = f"host {pair.server_ip} and tcp port {PORT}"
    sniff = _sniff(net, flows, "-i", "any", "--filter", expr)
    _curl(net, f"http://{pair.server_ip}:{PORT}/small.txt")
    err = _stop(sniff, signal.SIGTERM)  # SIGTERM flushes as Ctrl-C does
    assert sniff.returncode == 0, err
    live, (summary,) = _records(flows)
    assert [(r["request"]["url"], r["response"]["status"]) for r in live] == [
        (f"http://{pair.server_ip}:{PORT}/small.txt", 200)
    ]
    assert summary["kernel_packets"] == summary["packets_read"] > 0


def test_sniff_closes_idle_connections_on_the_wall_clock(net: Net, tmp_path: Path) -> None:
    """A connection left open (no FIN) is emitted after the idle timeout, while capturing."""
    pair = net.pair
    flows = tmp_path / "idle.jsonl"
    sniff = _sniff(net, flows, "-i", pair.server_if, "--filter", f"port {PORT}",
                   "--idle-timeout", "0.5")  # fmt: skip
    code = (
        "import socket, sys\n"
        f"s = socket.create_connection(('{pair.server_ip}', {PORT}), timeout=10)\n"
        "s.sendall(b'GET /small.txt HTTP/1.1\\r\\nHost: x\\r\\n')\n"  # head never ends
        "sys.stdin.read()\n"  # hold the connection open until told
    )
    holder = subprocess.Popen(
        pair.exec(pair.client_ns, sys.executable, "-c", code), stdin=subprocess.PIPE
    )
    try:
        record = _wait_for_record(flows, timeout=20)
    finally:
        holder.communicate(b"", timeout=20)
        _stop(sniff)
    assert record["kind"] == "http", record
    assert "idle past the timeout" in record["error"], record


def _count_packets(capture: Path) -> int:
    try:
        with capture.open("rb") as f:
            return sum(1 for _ in read_packets(f))
    except CaptureError:  # tcpdump is half-way through writing a packet
        return -1


def _wait_for_packets(capture: Path, count: int, timeout: float = 15.0) -> None:
    """Until tcpdump has written ``count`` packets (it reads its own ring, at its own pace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _count_packets(capture) < count:
        time.sleep(0.05)


def _wait_for_record(path: Path, timeout: float) -> dict[str, Any]:
    """The first record in ``path`` (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()).strip():
            return dict(json.loads(text.splitlines()[0]))
        time.sleep(0.05)
    raise TimeoutError("no record written while the connection was still open")


# -- privilege and usage (no namespace needed) ------------------------------------
def _sniff_cmd(*prefix: str) -> list[str]:
    return [*prefix, sys.executable, "-m", "proxy.cli.sniff_cmd", "-i", "lo", "--count", "1"]


@pytest.mark.parametrize(
    "prefix",
    [
        ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"),
        ("capsh", "--drop=cap_net_raw", "--"),
    ],
    ids=["nobody", "root-without-cap_net_raw"],
)
def test_without_privilege_sniff_exits_2_and_says_how_to_grant_it(prefix: tuple[str, ...]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to drop privilege")
    if shutil.which(prefix[0]) is None:
        pytest.skip(f"needs {prefix[0]}")
    probe = [*prefix, sys.executable, "-c", "import proxy.cli.sniff_cmd"]
    if prefix[0] == "capsh":
        probe = [*prefix, "-c", f"{sys.executable} -c 'import proxy.cli.sniff_cmd'"]
    if subprocess.run(probe, cwd=REPO, capture_output=True, timeout=60).returncode != 0:
        pytest.skip("the interpreter or the checkout cannot be read with the privilege dropped")
    cmd = _sniff_cmd(*prefix)
    if prefix[0] == "capsh":  # capsh runs a shell command line after "--"
        cmd = [*prefix, "-c", " ".join(_sniff_cmd())]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "CAP_NET_RAW" in proc.stderr and "setcap cap_net_raw" in proc.stderr
    assert "sudo" in proc.stderr


def test_sniff_decrypts_tls_with_a_key_log_written_while_it_runs(net: Net, tmp_path: Path) -> None:
    """``--keylog`` as for analyze; the file does not exist when sniff starts."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    pair, port = net.pair, 8443
    ca = CertAuthority.create(tmp_path / "ca")
    pem = str(ca.server_cert([pair.server_ip], "server.pem"))
    server = subprocess.Popen(
        pair.exec(pair.server_ns, "openssl", "s_server", "-cert", pem, "-key", pem,
                  "-accept", f"{pair.server_ip}:{port}", "-www"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    keys, flows = tmp_path / "keys.txt", tmp_path / "tls.jsonl"
    try:
        wait_listening(pair, pair.server_ns, port)
        sniff = _sniff(net, flows, "-i", pair.server_if, "--filter", f"tcp port {port}",
                       "--keylog", str(keys))  # fmt: skip
        url = f"https://{pair.server_ip}:{port}/"
        cmd = pair.exec(pair.client_ns, "env", f"SSLKEYLOGFILE={keys}", "curl", "-s",
                        "--cacert", str(ca.cert_path), url)  # fmt: skip
        subprocess.run(cmd, check=True, timeout=30, stdout=subprocess.DEVNULL)
        err = _stop(sniff)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert sniff.returncode == 0, err
    live, _ = _records(flows)
    http = [r for r in live if r["kind"] == "http"]
    assert [(r["request"]["method"], r["response"]["status"]) for r in http] == [("GET", 200)]
    assert http[0]["request"]["url"] == url
    assert all(r["tls"]["keylog"] for r in live), live


def test_sniff_decodes_h2c_as_analyze_does(net: Net, tmp_path: Path) -> None:
    """HTTP/2 with prior knowledge (nghttpd, curl and nghttp) live and from tcpdump's file."""
    if not (shutil.which("nghttpd", path="/usr/sbin:/usr/bin") and shutil.which("nghttp")):
        pytest.skip("needs nghttp2-server and nghttp2-client")
    pair, port = net.pair, 8082
    expr = f"tcp port {port}"
    server = subprocess.Popen(
        pair.exec(pair.server_ns, "nghttpd", "--no-tls", "-a", pair.server_ip, "-d", str(net.www),
                  str(port)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    cap, flows = tmp_path / "h2c.pcap", tmp_path / "h2c.jsonl"
    try:
        wait_listening(pair, pair.server_ns, port)
        tcpdump = subprocess.Popen(
            pair.exec(pair.server_ns, "tcpdump", "-i", pair.server_if, "-U", "--immediate-mode",
                      "-B", "65536", "-s", "0", "-w", str(cap), expr),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_stderr_line(tcpdump, "listening on")
            sniff = _sniff(net, flows, "-i", pair.server_if, "--filter", expr)
            base = f"http://{pair.server_ip}:{port}"
            for cmd in (["curl", "-s", "--http2-prior-knowledge", f"{base}/small.txt"],
                        ["nghttp", "-n", f"{base}/big.bin", f"{base}/missing"]):  # fmt: skip
                subprocess.run(pair.exec(pair.client_ns, *cmd), check=True, timeout=30,
                               stdout=subprocess.DEVNULL)  # fmt: skip
            err = _stop(sniff)
            live, (summary,) = _records(flows)
            _wait_for_packets(cap, _matched(summary))
        finally:
            _stop(tcpdump)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert sniff.returncode == 0, err
    got = sorted((r["request"]["url"], r["request"]["http_version"], r["response"]["status"],
                  r["response"]["body_size"]) for r in live)  # fmt: skip
    assert got == [
        (f"{base}/big.bin", "HTTP/2.0", 200, 1 << 20),
        (f"{base}/missing", "HTTP/2.0", 404, got[1][3]),
        (f"{base}/small.txt", "HTTP/2.0", 200, 12),
    ]
    assert all(r["error"] is None for r in live), live
    assert live == _analyze(cap, tmp_path / "analyze.jsonl", expr)
