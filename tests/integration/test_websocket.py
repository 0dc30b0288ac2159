"""WebSocket through the proxy with real clients and servers (issue 17).

aiohttp's client and server and the ``websockets`` package, plain and
through ``--mitm``, with and without permessage-deflate: payloads come back
byte-identical, every message has its record (direction, size, frames) and
the close is recorded. Rules are seen by the real client.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.support.certs import CertAuthority
from tests.support.proxyproc import ProxyProcess, our_ca, running_proxy, start_proxy
from tests.support.upstreams import Upstreams
from tests.support.wsservers import start_app, start_websockets, ws_app

BIG = 16 * 1024 * 1024


@dataclass
class WsUpstreams:
    plain: int  # aiohttp
    tls: int  # aiohttp over TLS (certificate from ``ca``)
    wsp: int  # websockets, plain
    wss: int  # websockets over TLS
    ca: CertAuthority


@pytest.fixture(scope="module")
def ws(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsUpstreams]:
    ca = CertAuthority.create(tmp_path_factory.mktemp("wsca"))
    cert = ca.server_cert(["localhost", "127.0.0.1"], "ws.pem")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(str(cert))
    r1, plain = upstreams.call(start_app(ws_app()))
    r2, secure = upstreams.call(start_app(ws_app(), tls))
    s3, wsp = upstreams.call(start_websockets())
    s4, wss = upstreams.call(start_websockets(tls))
    yield WsUpstreams(plain, secure, wsp, wss, ca)
    upstreams.call(r1.cleanup())
    upstreams.call(r2.cleanup())
    s3.close()
    s4.close()


@pytest.fixture(scope="module")
def mitm(ws: WsUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    d = tmp_path_factory.mktemp("wsmitm")
    p = start_proxy(
        "--mitm", "--certs", str(d / "certs"), "--upstream-ca", str(ws.ca.cert_path),
        flow_log=d / "flows.jsonl",
    )  # fmt: skip
    yield p
    p.stop()


def ws_records(p: ProxyProcess, flow: str | None = None, expect: int = 0) -> list[Any]:
    recs = [r for r in p.records(expect, timeout=10) if r["kind"] == "websocket_message"]
    return [
        r["websocket_message"]
        for r in recs
        if flow is None or r["websocket_message"]["flow"] == flow
    ]


def connection(p: ProxyProcess, path: str, timeout: float = 10.0) -> Any:
    """The ``websocket`` record of the connection to ``path`` (waits for it, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        for r in p.records(0, timeout=0):
            if r["kind"] == "websocket" and r["request"]["url"].endswith(path):
                return r
        if time.monotonic() > deadline:
            raise AssertionError(f"no websocket record for {path}")
        time.sleep(0.05)


async def aiohttp_echo(url: str, proxy: str, compress: int, ctx: ssl.SSLContext | None) -> None:
    payloads: list[str | bytes] = ["hello", "héllo ✓", b"\x00\xffbinary", os.urandom(BIG)]
    conn = aiohttp.TCPConnector(ssl=ctx) if ctx is not None else None
    async with (
        aiohttp.ClientSession(connector=conn) as s,
        s.ws_connect(url, proxy=proxy, compress=compress, max_msg_size=0) as w,
    ):
        for payload in payloads:
            if isinstance(payload, str):
                await w.send_str(payload)
            else:
                await w.send_bytes(payload)
            got = await asyncio.wait_for(w.receive(), 30)
            assert got.data == payload, (type(payload), len(payload))
        await w.close(code=4001, message=b"bye")


def check_echo_records(p: ProxyProcess, path: str, deflate: bool) -> None:
    rec = connection(p, path)
    info = rec["websocket"]
    assert info["permessage_deflate"] is deflate
    assert info["messages"] == {"upstream": 4, "downstream": 4}
    assert info["client_close"] == {"code": 4001, "reason": "bye"}
    assert info["closed_by"] == "client" and info["error"] is None
    msgs = ws_records(p, rec["id"])
    for direction in ("upstream", "downstream"):
        mine = sorted((m for m in msgs if m["direction"] == direction), key=lambda m: m["index"])
        assert [m["index"] for m in mine] == [0, 1, 2, 3]
        assert [m["opcode"] for m in mine] == ["text", "text", "binary", "binary"]
        assert [m["size"] for m in mine] == [5, len("héllo ✓".encode()), 8, BIG]
        assert mine[0]["preview"]["data"] == "hello"
        assert mine[3]["truncated"] is True  # over --max-body: streamed, not held
        assert all(m["compressed"] is deflate for m in mine)


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
def test_aiohttp_messages_byte_identical_and_recorded(
    proxy: ProxyProcess, ws: WsUpstreams, compress: int
) -> None:
    path = f"/echo?c={compress}"
    asyncio.run(aiohttp_echo(f"ws://127.0.0.1:{ws.plain}{path}", proxy.url, compress, None))
    check_echo_records(proxy, path, bool(compress))


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
def test_aiohttp_through_mitm(mitm: ProxyProcess, ws: WsUpstreams, compress: int) -> None:
    ctx = ssl.create_default_context(cafile=our_ca(mitm))
    path = f"/echo?mitm={compress}"
    asyncio.run(aiohttp_echo(f"wss://localhost:{ws.tls}{path}", mitm.url, compress, ctx))
    check_echo_records(mitm, path, bool(compress))
    assert connection(mitm, path)["tls"]["intercepted"] is True


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
def test_websockets_fragmented_messages(
    mitm: ProxyProcess, ws: WsUpstreams, compression: str | None, scheme: str
) -> None:
    """websockets goes through an HTTP proxy with CONNECT: the MitM proxy reads
    the plain HTTP inside the tunnel (ws), or terminates its TLS (wss), so the
    upgrade is seen and decoded."""
    proxy = mitm
    path = f"/frag-{compression}-{scheme}"
    pieces = ["frag", "mented ", "text ✓" * 1000]
    big = os.urandom(BIG)

    async def run() -> None:
        port = ws.wsp if scheme == "ws" else ws.wss
        url = f"{scheme}://localhost:{port}{path}"
        tls = ssl.create_default_context(cafile=our_ca(proxy)) if scheme == "wss" else None
        async with connect(
            url, proxy=proxy.url, compression=compression, max_size=None, ssl=tls
        ) as c:
            await c.send(iter(pieces))  # one message, three frames
            assert await asyncio.wait_for(c.recv(), 10) == "".join(pieces)
            await c.send(iter([b"\x01" * 70000, b"\x02" * 10]))
            assert await asyncio.wait_for(c.recv(), 10) == b"\x01" * 70000 + b"\x02" * 10
            await c.send(big)
            assert await asyncio.wait_for(c.recv(), 30) == big

    asyncio.run(run())
    rec = connection(proxy, path)
    assert rec["websocket"]["closed_by"] == "client"
    assert rec["websocket"]["client_close"]["code"] == 1000
    up = sorted(
        (m for m in ws_records(proxy, rec["id"]) if m["direction"] == "upstream"),
        key=lambda m: m["index"],
    )
    # websockets ends a fragmented message with an empty final frame: 3 pieces, 4 frames
    assert [(m["opcode"], m["frames"], m["size"]) for m in up] == [
        ("text", 4, len("".join(pieces).encode())),
        ("binary", 3, 70010),
        ("binary", 1, BIG),
    ]
    assert all(m["compressed"] is (compression is not None) for m in up)
    if scheme == "wss":
        assert rec["tls"]["intercepted"] is True


RULES = r"""
version: 1
websocket:
  - name: hide-secret
    match: {path: /echo, direction: downstream, opcode: text, text: {contains: secret}}
    replace: {regex: 'secret-\d+', with: 'secret-XXX'}
  - name: patch-json
    match: {direction: downstream, json: {/kind: price}}
    json_patch: [{op: replace, path: /value, value: 0}]
  - name: drop-noise
    match: {direction: upstream, text: {regex: '^noise'}}
    drop: true
  - name: greet
    match: {direction: upstream, text: {contains: hello}}
    inject: {to: client, text: "injected after hello"}
  - name: welcome
    inject: {to: client, text: "welcome", when: open}
  - name: kick
    match: {direction: upstream, text: {contains: kick-me}}
    close: {code: 4003, reason: "kicked by rule"}
"""


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
def test_rules_seen_by_the_real_client(ws: WsUpstreams, tmp_path: Path, compress: int) -> None:
    """With permessage-deflate (context takeover both ways), a rewrite or a drop
    leaves the receiver's window behind the sender's: the later messages are
    re-encoded by the proxy, and both real peers still read every one."""
    rules = tmp_path / "ws.yaml"
    rules.write_text(RULES)
    received: list[Any] = []

    async def run(proxy_url: str) -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(
                f"ws://127.0.0.1:{ws.plain}/echo", proxy=proxy_url, compress=compress
            ) as w,
        ):

            async def recv() -> Any:
                msg = await asyncio.wait_for(w.receive(), 10)
                received.append(msg.data)
                return msg.data

            assert await recv() == "welcome"  # when: open
            await w.send_str("my secret-1234 here")
            assert await recv() == "my secret-XXX here"  # replaced on the way back
            await w.send_str('{"kind":"price","value":99}')
            assert await recv() == '{"kind":"price","value":0}'
            await w.send_str("noise 1")  # dropped on the way up: no echo
            await w.send_str("hello")  # matched on its way up: the injection comes first
            assert await recv() == "injected after hello"
            assert await recv() == "hello"
            for i in range(3):  # after the rewrites: both sides still inflate what follows
                await w.send_str(f"later message {i} " * 20)
                assert await recv() == f"later message {i} " * 20
            await w.send_str("kick-me")
            closing = await asyncio.wait_for(w.receive(), 10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert w.close_code == 4003

    with running_proxy("--rules", str(rules), flow_log=tmp_path / "f.jsonl") as p:
        asyncio.run(run(p.url))
        rec = connection(p, "/echo")
        info = rec["websocket"]
        assert info["closed_by"] == "proxy" and info["injected"] == 2
        assert set(info["rules"]) >= {"hide-secret", "patch-json", "drop-noise", "greet", "kick"}
        actions = {(m["direction"], m["action"]) for m in ws_records(p, rec["id"])}
        assert {("downstream", "replaced"), ("upstream", "dropped")} <= actions
        assert ("downstream", "injected") in actions
        assert info["permessage_deflate"] is bool(compress)


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


@pytest.mark.slow
def test_one_gib_of_messages_keeps_the_proxy_flat(ws: WsUpstreams, tmp_path: Path) -> None:
    """16,384 binary messages of 64 KiB from the server, each recorded: the
    proxy's peak resident size stays under 80 MB."""
    count, size = 16384, 65536
    with running_proxy(flow_log=tmp_path / "f.jsonl") as p:
        pid = p.proc.pid
        samples: list[int] = []

        async def run() -> int:
            url = f"ws://127.0.0.1:{ws.plain}/stream?count={count}&size={size}"
            got = 0
            async with (
                aiohttp.ClientSession() as s,
                s.ws_connect(url, proxy=p.url, max_msg_size=0) as w,
            ):
                async for msg in w:
                    assert msg.type is aiohttp.WSMsgType.BINARY
                    assert len(msg.data) == size
                    got += 1
                    if got % 512 == 0:
                        samples.append(vm_kb(pid, "VmRSS"))
            return got

        start = time.monotonic()
        assert asyncio.run(asyncio.wait_for(run(), 600)) == count
        took = time.monotonic() - start
        peak = vm_kb(pid, "VmHWM")
        print(f"1 GiB of WebSocket messages in {took:.1f} s; VmHWM {peak} kB; RSS {samples[::8]}")
        assert peak < 80_000, (peak, samples)
        rec = connection(p, "/stream?count=16384&size=65536", timeout=30)
        assert rec["websocket"]["messages"]["downstream"] == count
        assert rec["tunnel"]["bytes_server_to_client"] > count * size
        assert len(ws_records(p, rec["id"], expect=count)) == count


def test_har_websocket_messages_and_console_lines(ws: WsUpstreams, tmp_path: Path) -> None:
    """--har: the entry of the upgrade has _webSocketMessages as Chrome DevTools
    writes them; -v: a console line per message; `tapproxy convert` of the flow
    log gives the same messages."""
    har = tmp_path / "s.har"
    log = tmp_path / "f.jsonl"
    p = start_proxy("-v", "--har", str(har), flow_log=log, quiet=False)
    try:

        async def run() -> None:
            async with (
                aiohttp.ClientSession() as s,
                s.ws_connect(f"ws://127.0.0.1:{ws.plain}/echo", proxy=p.url) as w,
            ):
                await w.send_str("hi there")
                assert (await asyncio.wait_for(w.receive(), 10)).data == "hi there"
                await w.send_bytes(b"\x00\x01\x02")
                assert (await asyncio.wait_for(w.receive(), 10)).data == b"\x00\x01\x02"

        asyncio.run(run())
        connection(p, "/echo")
    finally:
        p.stop()
    entries = json.loads(har.read_text())["log"]["entries"]
    [entry] = [e for e in entries if e.get("_resourceType") == "websocket"]
    msgs = entry["_webSocketMessages"]
    assert [(m["type"], m["opcode"], m["data"]) for m in msgs] == [
        ("send", 1, "hi there"),
        ("receive", 1, "hi there"),
        ("send", 2, "AAEC"),
        ("receive", 2, "AAEC"),
    ]
    assert all(isinstance(m["time"], float) and m["time"] > 1.7e9 for m in msgs)
    out = p.stdout_text()
    flow = entry["_tapproxy"]["id"]
    assert f"ws {flow} > #0 text 8b 'hi there'" in out, out
    assert f"ws {flow} < #1 binary 3b 000102" in out, out
    converted = tmp_path / "c.har"
    subprocess.run(
        [sys.executable, "-m", "proxy", "convert", str(log), "--to", "har", "-o", str(converted)],
        check=True,
        timeout=60,
    )
    [again] = [
        e for e in json.loads(converted.read_text())["log"]["entries"] if "_webSocketMessages" in e
    ]
    assert again["_webSocketMessages"] == msgs


def test_reverse_listener(ws: WsUpstreams, tmp_path: Path) -> None:
    mode = f"reverse:http://127.0.0.1:{ws.plain}"
    with running_proxy("--mode", mode, flow_log=tmp_path / "f.jsonl") as p:

        async def run() -> None:
            async with (
                aiohttp.ClientSession() as s,
                s.ws_connect(f"http://127.0.0.1:{p.port}/echo?rev", compress=15) as w,
            ):
                await w.send_str("through the reverse proxy")
                assert (await asyncio.wait_for(w.receive(), 10)).data == (
                    "through the reverse proxy"
                )
                await w.send_str("close:4002")  # the server closes with 4002
                msg = await asyncio.wait_for(w.receive(), 10)
                assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4002

        asyncio.run(run())
        info = connection(p, "/echo?rev")["websocket"]
        assert info["closed_by"] == "server" and info["server_close"]["code"] == 4002
        assert info["permessage_deflate"] is True


def test_recording_keeps_the_connection_not_its_messages(ws: WsUpstreams, tmp_path: Path) -> None:
    tap = tmp_path / "ws.tap"
    with running_proxy("--save", str(tap), flow_log=tmp_path / "f.jsonl") as p:

        async def run() -> None:
            async with (
                aiohttp.ClientSession() as s,
                s.ws_connect(f"ws://127.0.0.1:{ws.plain}/echo?save", proxy=p.url) as w,
            ):
                await w.send_str("x")
                assert (await asyncio.wait_for(w.receive(), 10)).data == "x"

        asyncio.run(run())
        connection(p, "/echo?save")
    shown = subprocess.run(
        [sys.executable, "-m", "proxy", "-r", str(tap)], capture_output=True, text=True, timeout=60
    )
    assert "1 flow" in shown.stderr and "[websocket]" in shown.stdout, shown
