"""WebSockets over HTTP/2 (RFC 8441) through the proxy, with real servers.

The client is ``tests.support.h2ws`` (the ``h2`` library sending the
extended CONNECT, wsproto's frames on the stream); the servers are aiohttp
and the ``websockets`` package, speaking HTTP/1.1 WebSocket. Each test
checks what the client gets (echoes byte for byte, fragments, ping/pong,
close codes, permessage-deflate) and the flow log (the connection's
``websocket`` record over HTTP/2, a ``websocket_message`` per message).
Malformed extended CONNECTs (docs/hazards.md h2-27 to h2-31) go from a raw
client to a reverse listener whose HTTP/1.1 backend records every byte:
refused, recorded, and nothing forwarded.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_http2_hazards import (
    backend,
    control,
    only_controls,
    refusal_record,
    rproxy,
)
from tests.integration.test_websocket import (
    RULES,
    WsUpstreams,
    connection,
    vm_kb,
    ws,
    ws_records,
)
from tests.support.h1backend import H1Backend
from tests.support.h2raw import RawH2
from tests.support.h2ws import H2WebSocket
from tests.support.h2wsserver import H2WsServer
from tests.support.proxyproc import ProxyProcess, our_ca, running_proxy, start_proxy
from tests.support.upstreams import Upstreams

__all__ = ["backend", "rproxy", "ws"]  # fixtures shared with those modules
DEFLATE = [(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")]
BIG = 1 << 20  # over the stream windows both ways


@pytest.fixture(scope="module")
def forward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    d = tmp_path_factory.mktemp("wsh2")
    p = start_proxy("--max-body", "64k", flow_log=d / "flows.jsonl")
    yield p
    p.stop()


def upstream_messages(p: ProxyProcess, rec: dict[str, Any], direction: str) -> list[Any]:
    mine = [m for m in ws_records(p, rec["id"]) if m["direction"] == direction]
    return sorted(mine, key=lambda m: m["index"])


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_echo_fragments_ping_and_close_code(
    forward: ProxyProcess, ws: WsUpstreams, deflate: bool
) -> None:
    path = f"/echo?h2={int(deflate)}"
    big = os.urandom(BIG)

    async def run() -> None:
        c = await H2WebSocket.connect(
            forward.port, f"127.0.0.1:{ws.plain}", path, extra=DEFLATE if deflate else None
        )
        assert c.status == 200 and c.deflate is deflate
        await c.send("héllo ✓")
        assert (await c.recv()).data == "héllo ✓"
        await c.send(big)
        assert (await c.recv(30)).data == big
        await c.send("frag", fin=False)
        await c.ping(b"p1")  # between the fragments (RFC 6455 §5.5)
        await c.send("mented")
        got = [await c.recv(), await c.recv()]
        assert sorted((m.kind, m.data) for m in got) == [("pong", b"p1"), ("text", "fragmented")]
        await c.send("close:4003")  # the server closes with 4003
        close = await c.recv()
        assert close.kind == "close" and close.data == (4003, "asked")
        await c.close(4003)
        await c.wait_end()
        assert c.ended and c.reset is None  # END_STREAM, not RST_STREAM (RFC 8441 §6)
        await c.aclose()

    asyncio.run(run())
    rec = connection(forward, path)
    assert rec["request"]["http_version"] == "HTTP/2.0"
    assert rec["response"]["status"] == 200
    info = rec["websocket"]
    assert info["permessage_deflate"] is deflate
    assert info["messages"] == {"upstream": 4, "downstream": 3}
    assert info["server_close"] == {"code": 4003, "reason": "asked"}
    assert info["closed_by"] == "server" and info["error"] is None
    up = upstream_messages(forward, rec, "upstream")
    assert [(m["opcode"], m["size"], m["frames"]) for m in up] == [
        ("text", len("héllo ✓".encode()), 1),
        ("binary", BIG, 1),
        ("text", 10, 2),
        ("text", 10, 1),
    ]
    assert up[0]["preview"]["data"] == "héllo ✓"
    assert up[1]["truncated"] is True  # over --max-body: streamed, not held
    assert all(m["compressed"] is deflate for m in up)
    down = upstream_messages(forward, rec, "downstream")
    assert [m["size"] for m in down] == [len("héllo ✓".encode()), BIG, 10]


def test_websockets_server_behind_a_reverse_h2c_listener(ws: WsUpstreams, tmp_path: Path) -> None:
    """A message in three frames reaches the ``websockets`` echo server whole."""
    pieces = ["frag", "mented ", "text ✓" * 1000]

    async def run(port: int) -> None:
        c = await H2WebSocket.connect(port, "svc", "/frag")
        assert c.status == 200
        for piece in pieces[:-1]:
            await c.send(piece, fin=False)
        await c.send(pieces[-1])
        echo = await c.recv()
        assert echo.data == "".join(pieces)
        await c.close(1000, "done")
        assert (await c.recv()).data == (1000, "done")
        await c.wait_end()
        await c.aclose()

    mode = f"reverse:http://127.0.0.1:{ws.wsp}"
    with running_proxy("--mode", mode, flow_log=tmp_path / "f.jsonl") as p:
        asyncio.run(run(p.port))
        rec = connection(p, "/frag")
        assert rec["websocket"]["closed_by"] == "client"
        assert rec["websocket"]["client_close"] == {"code": 1000, "reason": "done"}
        (up,) = upstream_messages(p, rec, "upstream")
        assert up["frames"] == 3


def test_wss_under_mitm_with_alpn_h2(ws: WsUpstreams, tmp_path: Path) -> None:
    """A client that reaches the proxy's TLS (ALPN h2) inside a CONNECT, as a
    browser does, and opens its WebSocket on a stream; the server is wss."""

    async def run(p: ProxyProcess) -> None:
        tls = ssl.create_default_context(cafile=our_ca(p))
        tls.set_alpn_protocols(["h2"])
        target = f"localhost:{ws.tls}"
        c = await H2WebSocket.connect(
            p.port, target, "/echo?mitm", scheme="https", tls=tls, via_connect=True
        )
        assert c.status == 200
        await c.send(b"\x00\xffbinary")
        assert (await c.recv()).data == b"\x00\xffbinary"
        c.end_stream()  # the client's FIN: the proxy ends both sides
        await c.wait_end()
        await c.aclose()

    args = ("--mitm", "--certs", str(tmp_path / "certs"), "--upstream-ca", str(ws.ca.cert_path))
    with running_proxy(*args, flow_log=tmp_path / "f.jsonl") as p:
        asyncio.run(run(p))
        rec = connection(p, "/echo?mitm")
        assert rec["tls"]["intercepted"] is True
        assert rec["request"]["http_version"] == "HTTP/2.0"
        assert rec["tunnel"]["client_close"] == "fin"
        assert rec["websocket"]["messages"] == {"upstream": 1, "downstream": 1}


def test_a_server_that_refuses_is_the_stream_response(
    forward: ProxyProcess, ws: WsUpstreams
) -> None:
    async def run() -> None:
        c = await H2WebSocket.connect(forward.port, f"127.0.0.1:{ws.plain}", "/nowhere")
        assert c.status == 404
        await c.wait_end()
        assert c.ended and b"Not Found" in c.body
        await c.aclose()

    asyncio.run(run())


WS_BLOCK = [
    (b":method", b"CONNECT"),
    (b":protocol", b"websocket"),
    (b":scheme", b"http"),
    (b":authority", b"example.test"),
    (b":path", b"/ws"),
    (b"sec-websocket-version", b"13"),
]
# (name, block, END_STREAM on the HEADERS, status (None: GOAWAY), the record's reason)
HAZARDS = [
    ("protocol-on-get", [(b":method", b"GET"), *WS_BLOCK[1:]], True, None, "connect-request-only"),
    ("no-path", [h for h in WS_BLOCK if h[0] != b":path"], False, None, ":path"),
    ("host-not-authority",
     [*(h for h in WS_BLOCK if h[0] != b":authority"), (b"host", b"example.test")], False, 400,
     ":authority"),
    ("ends-its-stream", WS_BLOCK, True, 400, "ends its stream"),
    ("content-length", [*WS_BLOCK, (b"content-length", b"0")], False, 400, "content-length"),
    ("other-protocol", [WS_BLOCK[0], (b":protocol", b"connect-udp"), *WS_BLOCK[2:]], False, 501,
     "not supported"),
]  # fmt: skip


@pytest.mark.parametrize("case", HAZARDS, ids=[c[0] for c in HAZARDS])
def test_malformed_extended_connect_is_refused_and_nothing_forwarded(
    case: tuple[str, list[tuple[bytes, bytes]], bool, int | None, str],
    rproxy: ProxyProcess,
    backend: H1Backend,
) -> None:
    _name, headers, end, status, reason = case
    mark = backend.mark()
    before = len(rproxy.records())
    with RawH2(rproxy.port) as c:
        r = c.wait(c.request(headers, end=end))
    if status is None:
        assert r.goaway == 1, r  # PROTOCOL_ERROR, from h2 (RFC 9113 §5.4.1)
    else:
        assert r.status == status and r.ended, r
    path = control(rproxy, backend)
    only_controls(backend.since(mark), path)
    refusal_record(rproxy, before, reason)


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_rules_act_on_messages_of_a_stream(ws: WsUpstreams, tmp_path: Path, deflate: bool) -> None:
    """The ``websocket:`` rules of test_websocket, seen by an HTTP/2 client."""
    rules = tmp_path / "ws.yaml"
    rules.write_text(RULES)

    async def run(port: int) -> None:
        c = await H2WebSocket.connect(
            port, f"127.0.0.1:{ws.plain}", "/echo", extra=DEFLATE if deflate else None
        )
        assert c.status == 200 and c.deflate is deflate
        assert (await c.recv()).data == "welcome"  # when: open
        await c.send("my secret-1234 here")
        assert (await c.recv()).data == "my secret-XXX here"  # replaced on the way back
        await c.send('{"kind":"price","value":99}')
        assert (await c.recv()).data == '{"kind":"price","value":0}'
        await c.send("noise 1")  # dropped on the way up: no echo
        await c.send("hello")  # the injection comes first
        assert (await c.recv()).data == "injected after hello"
        assert (await c.recv()).data == "hello"
        for i in range(3):  # after the rewrites both sides still inflate what follows
            await c.send(f"later message {i} " * 20)
            assert (await c.recv()).data == f"later message {i} " * 20
        await c.send("kick-me")
        close = await c.recv()
        assert close.kind == "close" and close.data == (4003, "kicked by rule")
        await c.wait_end()
        await c.aclose()

    with running_proxy("--rules", str(rules), flow_log=tmp_path / "f.jsonl") as p:
        asyncio.run(run(p.port))
        rec = connection(p, "/echo")
        info = rec["websocket"]
        assert info["closed_by"] == "proxy" and info["injected"] == 2
        assert set(info["rules"]) >= {"hide-secret", "patch-json", "drop-noise", "greet", "kick"}
        actions = {(m["direction"], m["action"]) for m in ws_records(p, rec["id"])}
        assert {("downstream", "replaced"), ("upstream", "dropped")} <= actions


@pytest.mark.slow
def test_a_slow_reader_of_256_mib_keeps_the_proxy_flat(ws: WsUpstreams, tmp_path: Path) -> None:
    """4,096 messages of 64 KiB from the server to a client that reads slowly:
    the client's windows hold the server back, so the proxy's peak resident
    size stays under 80 MB (nothing is buffered beyond a window per stream;
    measured: 57 MB, and 509 MB with the stream backlog limit lifted)."""
    count, size = 4096, 65536
    with running_proxy(flow_log=tmp_path / "f.jsonl") as p:
        path = f"/stream?count={count}&size={size}"

        async def run() -> int:
            c = await H2WebSocket.connect(p.port, f"127.0.0.1:{ws.plain}", path)
            got = 0
            while True:
                m = await c.recv(30)
                if m.kind == "close":
                    break
                assert m.kind == "binary" and len(m.data) == size
                got += 1
                if got % 256 == 0:
                    await asyncio.sleep(0.2)  # slow: the server must wait, not the proxy buffer
            await c.aclose()
            return got

        assert asyncio.run(asyncio.wait_for(run(), 600)) == count
        peak = vm_kb(p.proc.pid, "VmHWM")
        rec = connection(p, path, timeout=30)
        assert rec["websocket"]["messages"]["downstream"] == count
    assert peak < 80 * 1024, f"peak RSS {peak} kB"


def test_har_and_console_lines_of_a_stream(ws: WsUpstreams, tmp_path: Path) -> None:
    """--har: the extended CONNECT's entry has _webSocketMessages; -v: a console
    line per message, as for an HTTP/1.1 upgrade."""
    har = tmp_path / "s.har"
    p = start_proxy("-v", "--har", str(har), flow_log=tmp_path / "f.jsonl", quiet=False)
    try:

        async def run() -> None:
            c = await H2WebSocket.connect(p.port, f"127.0.0.1:{ws.plain}", "/echo")
            await c.send("hi there")
            assert (await c.recv()).data == "hi there"
            await c.send(b"\x00\x01\x02")
            assert (await c.recv()).data == b"\x00\x01\x02"
            c.end_stream()
            await c.wait_end()
            await c.aclose()

        asyncio.run(run())
        connection(p, "/echo")
    finally:
        p.stop()
    entries = json.loads(har.read_text())["log"]["entries"]
    [entry] = [e for e in entries if e.get("_resourceType") == "websocket"]
    assert entry["request"]["httpVersion"] == "HTTP/2.0"
    assert [(m["type"], m["opcode"], m["data"]) for m in entry["_webSocketMessages"]] == [
        ("send", 1, "hi there"),
        ("receive", 1, "hi there"),
        ("send", 2, "AAEC"),
        ("receive", 2, "AAEC"),
    ]
    out = p.stdout_text()
    flow = entry["_tapproxy"]["id"]
    assert f"ws {flow} > #0 text 8b 'hi there'" in out, out
    assert f"ws {flow} < #1 binary 3b 000102" in out, out


def test_extended_connect_to_an_http2_server_that_takes_it(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    """An h2c server advertising SETTINGS_ENABLE_CONNECT_PROTOCOL behind a reverse
    listener: the page's GET opens the shared connection, and the WebSocket goes
    on it as an extended CONNECT, both ways (RFC 8441)."""
    server = H2WsServer()
    port = upstreams.call(server.start())
    big = os.urandom(BIG)

    async def run(proxy_port: int) -> None:
        c = await H2WebSocket.connect(proxy_port, "svc", "/ws", prime="/page")
        assert c.primed == 200 and c.status == 200
        await c.send("hello h2")
        assert (await c.recv()).data == "hello h2"
        await c.send(big)  # beyond the windows of both connections
        assert (await c.recv(30)).data == big
        await c.send("frag", fin=False)
        await c.send("mented")
        assert (await c.recv()).data == "fragmented"
        await c.close(4002, "bye")
        assert (await c.recv()).data == (4002, "bye")
        await c.wait_end()
        assert c.ended and c.reset is None
        await c.aclose()

    try:
        with running_proxy(
            "--mode", f"reverse:h2c://127.0.0.1:{port}", flow_log=tmp_path / "f.jsonl"
        ) as p:
            asyncio.run(run(p.port))
            rec = connection(p, "/ws")
            assert rec["response"]["upstream"]["status"] == 101  # the server's 200, as it stands
            info = rec["websocket"]
            assert info["messages"] == {"upstream": 3, "downstream": 3}
            assert info["client_close"] == {"code": 4002, "reason": "bye"}
        methods = [dict(h)[b":method"] for h in server.requests]
        assert methods == [b"GET", b"CONNECT"]  # one connection: the page, then the WebSocket
        connect = dict(server.requests[1])
        assert connect[b":protocol"] == b"websocket" and b"sec-websocket-key" not in connect
    finally:
        upstreams.call(server.stop())
