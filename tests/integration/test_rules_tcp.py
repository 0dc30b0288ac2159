"""TCP rules (toxics) through a live proxy: tcp-mode listeners and CONNECT tunnels.

One proxy runs a ``--mode tcp:127.0.0.1:PORT`` listener per rule of
rules_data/tcp.yaml and tcp-replace.yaml (copies of the examples with the
test upstreams' ports), plus a regular listener for CONNECT. Timing
assertions are lower bounds only (bar c).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.rules_support import read_all, record_for, rules_dir
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import PATTERN, RawConnection, RawServer, Upstreams

SERVER_BYTES = 5000


async def cut_server(conn: RawConnection) -> None:
    conn.send(PATTERN[:SERVER_BYTES])
    await conn.writer.drain()
    await conn.read_some(5)


async def echo_server(conn: RawConnection) -> None:
    while True:
        data = await conn.reader.read(65536)
        if not data:
            return
        conn.received += data
        conn.send(data)
        await conn.writer.drain()


async def sink_server(conn: RawConnection) -> None:
    while await conn.read_some(10):
        pass


async def hello_server(conn: RawConnection) -> None:
    conn.send(b"server-hello")
    await conn.writer.drain()
    while await conn.read_some(10):
        pass


async def bye_server(conn: RawConnection) -> None:
    conn.send(b"bye")
    await conn.writer.drain()


async def redis_server(conn: RawConnection) -> None:
    await conn.read_until(b"\r\n")
    conn.send(b"+OK\r\n")
    await conn.writer.drain()
    await conn.read_some(5)


async def statsd_server(conn: RawConnection) -> None:
    conn.send(b"a token=0123456789abcdef b\n")
    await conn.writer.drain()


HANDLERS = {
    "CUT": cut_server,
    "DB": echo_server,
    "CACHE": sink_server,
    "QUEUE": sink_server,
    "BLACKHOLE": hello_server,
    "CLOSE": bye_server,
    "REDIS": redis_server,
    "STATSD": statsd_server,
}


@dataclass
class TcpSetup:
    proxy: ProxyProcess
    servers: dict[str, RawServer]
    listeners: dict[str, int]  # name -> the proxy's tcp-mode port for that upstream
    regular: int  # the proxy's regular (CONNECT) port

    def connect(self, name: str, timeout: float = 5.0) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.listeners[name]), timeout=timeout)
        s.settimeout(timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


@pytest.fixture(scope="module")
def tcp(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TcpSetup]:
    servers = {name: upstreams.raw(h) for name, h in HANDLERS.items()}
    values = {f"{name}_PORT": s.port for name, s in servers.items()}
    tmp = tmp_path_factory.mktemp("tcp")
    folder = rules_dir(tmp, "data/tcp.yaml", "data/tcp-replace.yaml", values=values)
    modes = [a for s in servers.values() for a in ("--mode", f"tcp:127.0.0.1:{s.port}@0")]
    p = start_proxy(
        "--rules", str(folder), *modes, "--mode", "regular@0",
        flow_log=tmp / "flows.jsonl", modes=len(servers) + 1,
    )  # fmt: skip
    listeners: dict[str, int] = {}
    regular = 0
    for line in p.stderr_lines:
        m = re.search(rb"(\S+) proxy listening at \S+:(\d+)", line)
        if m is None:
            continue
        label, port = m.group(1).decode(), int(m.group(2))
        for name, s in servers.items():
            if label == f"tcp:127.0.0.1:{s.port}":
                listeners[name] = port
        if label == "regular":
            regular = port
    assert len(listeners) == len(servers) and regular, p.stderr_text
    yield TcpSetup(p, servers, listeners, regular)
    p.stop()


def tcp_record(setup: TcpSetup, name: str) -> dict[str, object]:
    port = setup.servers[name].port
    return record_for(
        setup.proxy,
        lambda r: r["kind"] in ("tcp", "tunnel") and (r.get("server") or {}).get("port") == port,
    )


# -- tcp.yaml ----------------------------------------------------------------------------


def test_limit_data_cuts_after_exactly_n_bytes(tcp: TcpSetup) -> None:
    """cut: the upstream sends 5,000 bytes; the client gets exactly 1,024, then the end."""
    for _ in range(2):
        s = tcp.connect("CUT")
        data, how = read_all(s)
        s.close()
        assert how in ("fin", "reset")
        assert len(data) == 1024 and data == PATTERN[:1024]
    rec = tcp_record(tcp, "CUT")
    assert rec["tunnel"]["bytes_server_to_client"] >= 1024  # type: ignore[index]


def test_limit_data_in_connect_tunnel(tcp: TcpSetup) -> None:
    """The same rule applies to a CONNECT tunnel to that port (not intercepted)."""
    port = tcp.servers["CUT"].port
    s = socket.create_connection(("127.0.0.1", tcp.regular), timeout=5)
    s.settimeout(5)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
    data, _ = read_all(s)
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 Connection established"
    assert rest == PATTERN[:1024]


def test_latency_adds_at_least_the_delay(tcp: TcpSetup) -> None:
    """slow-db: 50 +- 10 ms each way, so an echo takes at least 2 x 40 ms (bar c)."""
    s = tcp.connect("DB")
    for i in range(3):
        msg = b"ping %d\n" % i
        t0 = time.monotonic()
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        elapsed = time.monotonic() - t0
        assert got == msg
        assert elapsed >= 0.08
    s.close()


def test_bandwidth_paces_the_bytes(tcp: TcpSetup) -> None:
    """slow-db: 100,000 bytes/s in pieces of 1/10 s: 50,000 bytes take >= 0.4 s each way."""
    size = 50000
    s = tcp.connect("DB", timeout=20)
    t0 = time.monotonic()
    s.sendall(PATTERN[:size])
    got = b""
    while len(got) < size:
        chunk = s.recv(65536)
        assert chunk
        got += chunk
    elapsed = time.monotonic() - t0
    s.close()
    assert got == PATTERN[:size]
    assert elapsed >= (size - 10000) / 100000


def test_slicer_keeps_the_bytes(tcp: TcpSetup) -> None:
    """choppy-cache (half the connections): sliced or not, the upstream gets every byte."""
    server = tcp.servers["CACHE"]
    for i in range(4):
        before = len(server.connections)
        s = tcp.connect("CACHE")
        s.sendall(PATTERN[i : i + 2000])
        s.shutdown(socket.SHUT_WR)
        read_all(s)
        s.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            conns = server.connections[before:]
            if conns and len(conns[0].received) >= 2000:
                break
            time.sleep(0.02)
        assert bytes(server.connections[before].received) == PATTERN[i : i + 2000]


def reset_peer(tcp: TcpSetup) -> tuple[bytes, str, float]:
    t0 = time.monotonic()
    s = tcp.connect("QUEUE", timeout=15)
    s.sendall(b"job\n")
    data, how = read_all(s)
    elapsed = time.monotonic() - t0
    s.close()
    return data, how, elapsed


def test_reset_peer_after_timeout(tcp: TcpSetup) -> None:
    """reset-queue: the connection ends 5 s after it opened (>= 5 s, bar c); the RST
    itself: test_reset_peer_is_an_rst."""
    data, how, elapsed = reset_peer(tcp)
    assert data == b"" and how in ("reset", "fin")
    assert elapsed >= 5.0
    assert bytes(tcp.servers["QUEUE"].connections[-1].received) == b"job\n"


def test_reset_peer_is_an_rst(tcp: TcpSetup) -> None:
    data, how, _ = reset_peer(tcp)
    assert (data, how) == (b"", "reset")


def test_timeout_zero_blackholes(tcp: TcpSetup) -> None:
    """blackhole: no data either way, and the connection stays open (the peer hangs)."""
    server = tcp.servers["BLACKHOLE"]
    before = len(server.connections)
    s = tcp.connect("BLACKHOLE", timeout=1.0)
    s.sendall(b"client-hello")
    data, how = read_all(s)  # waits the 1 s socket timeout
    s.close()
    assert (data, how) == (b"", "timeout")
    conns = server.connections[before:]
    assert all(bytes(c.received) == b"" for c in conns)


def test_slow_close_delays_the_close(tcp: TcpSetup) -> None:
    """lingering-close: the upstream says bye and closes; the client sees the close
    at least 2 s later."""
    t0 = time.monotonic()
    s = tcp.connect("CLOSE", timeout=10)
    data, how = read_all(s)
    elapsed = time.monotonic() - t0
    s.close()
    assert (data, how) == (b"bye", "fin")
    assert elapsed >= 2.0


# -- tcp-replace.yaml ----------------------------------------------------------------------


def test_replace_upstream_across_reads(tcp: TcpSetup) -> None:
    """redis-rename: FLUSHALL, split over two writes, reaches the upstream as PING."""
    server = tcp.servers["REDIS"]
    before = len(server.connections)
    s = tcp.connect("REDIS")
    s.sendall(b"FLUSH")
    # Two TCP segments (a match split across reads), 5 ms apart: less than the
    # rule's flush_ms (20 ms by default), after which held-back bytes go on and
    # a split match is missed, as documented.
    time.sleep(0.005)
    s.sendall(b"ALL\r\n")
    got = b""
    while not got.endswith(b"\r\n"):
        chunk = s.recv(65536)
        assert chunk
        got += chunk
    s.close()
    assert got == b"+OK\r\n"
    assert bytes(server.connections[before].received).startswith(b"PING\r\n")


def test_replace_downstream_regex(tcp: TcpSetup) -> None:
    """mask-tokens: the upstream's token is masked on its way to the client."""
    s = tcp.connect("STATSD")
    data, how = read_all(s)
    s.close()
    assert data == b"a token=REDACTED b\n"
    assert how == "fin"


def test_tcp_record_names_the_rule(tcp: TcpSetup) -> None:
    s = tcp.connect("STATSD")
    read_all(s)
    s.close()
    rec = tcp_record(tcp, "STATSD")
    assert "mask-tokens" in str(rec.get("rules")), rec


def test_route_example_sends_each_host_its_own_way(tmp_path: Path) -> None:
    """rules/examples/route.yaml, verbatim: a *.onion host goes through the SOCKS5
    proxy at 127.0.0.1:9050 (none runs here, so the 502 names it), a
    *.corp.example host goes direct (its name does not resolve: the 502 names
    the origin), and the records say which route each took."""
    folder = rules_dir(tmp_path, "examples/route.yaml")
    p = start_proxy("--rules", str(folder), flow_log=tmp_path / "flows.jsonl")
    try:
        onion = http_get(p, "http://hidden.onion/")
        corp = http_get(p, "http://wiki.corp.example/")
        records = p.records(2)
    finally:
        p.stop()
    assert onion.startswith(b"HTTP/1.1 502") and b"next proxy 127.0.0.1:9050" in onion, onion
    assert corp.startswith(b"HTTP/1.1 502") and b"next proxy" not in corp, corp
    routes = {r["request"]["url"]: r["route"]["via"] for r in records}
    assert routes == {
        "http://hidden.onion/": "socks5://127.0.0.1:9050",
        "http://wiki.corp.example/": "direct",
    }


def http_get(p: ProxyProcess, url: str) -> bytes:
    """One plain request through the proxy, the whole answer (bounded wait)."""
    host = url.split("/")[2]
    with socket.create_connection(("127.0.0.1", p.port), timeout=30) as s:
        head = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
        s.sendall(head % (url.encode(), host.encode()))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data
