"""WebSocket hazards with raw frames (issue 17 item 5).

A raw client does the handshake through the proxy to aiohttp's echo server
(or a raw server speaks for the server side), then breaks RFC 6455 or
RFC 7692 one way each. The proxy fails the connection: the client gets a
Close with the code that names the fault, the connection's record says why,
and the proxy's memory does not grow with what was claimed or inflated.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proxyproc import ProxyProcess, running_proxy
from tests.support.upstreams import RawConnection, Upstreams
from tests.support.wsservers import start_app, ws_app


@pytest.fixture(scope="module")
def echo_port(upstreams: Upstreams) -> Iterator[int]:
    runner, port = upstreams.call(start_app(ws_app()))
    yield port
    upstreams.call(runner.cleanup())


@pytest.fixture(scope="module")
def hz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    d = tmp_path_factory.mktemp("wshz")
    with running_proxy("--ws-max-message", "1M", flow_log=d / "flows.jsonl") as p:
        yield p


def frame(
    opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv1: bool = False
) -> bytes:
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n <= 125:
        head += bytes([bit | n])
    elif n <= 0xFFFF:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Conn(socket.socket):
    """The client socket, with what came after the 101's head (read with it)."""

    rest = b""


def handshake(proxy: ProxyProcess, port: int, path: str, deflate: bool = False) -> Conn:
    plain = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s = Conn(fileno=plain.detach())
    s.settimeout(10)
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    s.sendall(
        f"GET ws://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{ext}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    head, _, s.rest = head.partition(b"\r\n\r\n")
    if deflate:
        assert b"permessage-deflate" in head.lower()
    return s


def close_code(s: Conn) -> int | None:
    """Read frames until a Close (the code in it) or the end of the stream (None)."""
    buf = s.rest
    while True:
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            at = 2
            if n == 126:
                n, at = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                n, at = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < at + n:
                break
            opcode, payload, buf = buf[0] & 0x0F, buf[at : at + n], buf[at + n :]
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if payload else None
        data = s.recv(65536)
        if not data:
            return None
        buf += data


def record_for(p: ProxyProcess, path: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for r in p.records(0, timeout=0):
            if r["kind"] == "websocket" and str(r["request"]["url"]).endswith(path):
                return r
        time.sleep(0.05)
    raise AssertionError(f"no record for {path}")


def vm_hwm_kb(p: ProxyProcess) -> int:
    for line in Path(f"/proc/{p.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


CLIENT_HAZARDS = [
    ("unmasked", frame(0x1, b"hi", mask=False), 1002, "unmasked"),
    ("fragmented-ping", frame(0x9, b"p", fin=False), 1002, "fragment"),
    ("long-ping", frame(0x9, b"p" * 126), 1002, "125"),
    ("bad-utf8", frame(0x1, b"ok \xff\xfe"), 1007, "UTF-8"),
    ("cut-utf8", frame(0x1, "é".encode()[:1], fin=False) + frame(0x0, b"x"), 1007, "UTF-8"),
    ("rsv1-no-extension", frame(0x1, b"hi", rsv1=True), 1002, "Reserved bit"),
    ("continuation-first", frame(0x0, b"hi"), 1002, "continuation"),
    ("bad-close-code", frame(0x8, struct.pack("!H", 1005)), 1002, "close code"),
    # a header that claims 100 MiB: refused before any of it is read
    ("oversize-frame", b"\x82\xff" + struct.pack("!Q", 100 << 20) + os.urandom(4), 1009, "limit"),
]


@pytest.mark.parametrize(
    ("name", "data", "code", "why"), CLIENT_HAZARDS, ids=[c[0] for c in CLIENT_HAZARDS]
)
def test_client_hazard_closes_with_code_and_record(
    hz: ProxyProcess, echo_port: int, name: str, data: bytes, code: int, why: str
) -> None:
    path = f"/echo?hazard={name}"
    with handshake(hz, echo_port, path) as s:
        s.sendall(frame(0x1, b"fine"))  # a good message first: relayed
        s.sendall(data)
        assert close_code(s) == code
    rec = record_for(hz, path)
    ws = rec["websocket"]
    assert isinstance(ws, dict)
    assert ws["closed_by"] == "proxy"
    assert str(ws["error"]).startswith("client: ") and why in str(ws["error"]), ws["error"]


def test_message_over_the_limit_in_many_frames(hz: ProxyProcess, echo_port: int) -> None:
    path = "/echo?hazard=long-message"
    with handshake(hz, echo_port, path) as s:
        piece = frame(0x2, b"x" * 65536, fin=False)
        s.sendall(piece + b"".join(frame(0x0, b"x" * 65536, fin=False) for _ in range(20)))
        assert close_code(s) == 1009
    assert "longer than" in str(record_for(hz, path)["websocket"]["error"])  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("--ws-max-message", "64M"), "ratio over 100:1"),
        (("--ws-inflate-ratio", "100000"), "inflates past 1048576"),
    ],
    ids=["ratio", "size"],
)
def test_deflate_bomb(echo_port: int, tmp_path: Path, args: tuple[str, ...], why: str) -> None:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = z.compress(bytes(256 << 20)) + z.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]  # RFC 7692 §7.2.1: the empty block's tail is not sent
    assert len(bomb) < 300_000
    with running_proxy("--ws-max-message", "1M", *args, flow_log=tmp_path / "f.jsonl") as p:
        before = vm_hwm_kb(p)
        with handshake(p, echo_port, "/echo?bomb", deflate=True) as s:
            s.sendall(frame(0x2, bomb, rsv1=True))
            assert close_code(s) == 1009
        rec = record_for(p, "/echo?bomb")
        assert why in str(rec["websocket"]["error"])  # type: ignore[index]
        assert vm_hwm_kb(p) - before < 20_000  # 256 MiB claimed; a few MB at most


def test_server_hazard_masked_frame(upstreams: Upstreams, hz: ProxyProcess) -> None:
    async def server(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        conn.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
        )
        conn.send(frame(0x1, b"masked by a server", mask=True))
        await conn.read_some(5)

    raw = upstreams.raw(server)
    with handshake(hz, raw.port, "/bad-server") as s:
        assert close_code(s) == 1002
    ws = record_for(hz, "/bad-server")["websocket"]
    assert isinstance(ws, dict)
    assert str(ws["error"]).startswith("server: ") and "masked" in str(ws["error"])
