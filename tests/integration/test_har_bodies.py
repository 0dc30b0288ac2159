"""HAR bodies (issue 14 item 3), through a live proxy.

With ``--capture-bodies`` every body is in the HAR whole and byte-identical,
text as text and binary as base64 (``encoding: "base64"``, HAR 1.2), and
``tapproxy convert`` of the flow log gives the same document; a body cut at
``--capture-max-body`` is marked. Without capture, bodies up to the HAR
preview (64K by default with ``--har``) are whole and longer ones say how to
get them.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from haralyzer import HarParser

from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import RawConnection, Upstreams

TEXT = ("héllo wörld, " * 8000).encode()  # ~100 KB of UTF-8 text
BINARY = bytes(range(256)) * 400  # ~100 KB, not UTF-8
SMALL = b'{"ok": true}'
GZIPPED = gzip.compress(TEXT)

BODIES = {
    b"/text": (b"text/plain; charset=utf-8", TEXT, b""),
    b"/binary": (b"application/octet-stream", BINARY, b""),
    b"/small": (b"application/json", SMALL, b""),
    b"/gzip": (b"text/plain; charset=utf-8", GZIPPED, b"Content-Encoding: gzip\r\n"),
}


async def serve(conn: RawConnection) -> None:
    """Answer each request with the body its path names (keep-alive)."""
    seen = 0
    while True:
        data = await conn.read_until(b"\r\n\r\n", 10)
        head_end = data.find(b"\r\n\r\n", seen)
        if head_end < 0:
            return
        head = data[seen:head_end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await conn.read_exactly_total(head_end + 4 + length, 10)
        seen = head_end + 4 + length
        path = head.split(" ")[1].encode()
        mime, body, extra = BODIES.get(path.split(b"?")[0], (b"text/plain", b"", b""))
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: " + mime + b"\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body
        )  # fmt: skip
        conn.received.clear()
        seen = 0


def exchange(p: ProxyProcess, port: int, requests: list[tuple[bytes, bytes]]) -> None:
    """Send ``(path, request body)`` pairs on one connection; read every answer."""
    with socket.create_connection(("127.0.0.1", p.port), timeout=15) as s:
        for i, (path, body) in enumerate(requests):
            last = i == len(requests) - 1
            s.sendall(
                b"POST http://127.0.0.1:%d%s HTTP/1.1\r\n" % (port, path)
                + b"Host: 127.0.0.1:%d\r\n" % port
                + b"Content-Type: application/octet-stream\r\n"
                + (b"Connection: close\r\n" if last else b"")
                + b"Content-Length: %d\r\n\r\n" % len(body) + body
            )  # fmt: skip
        got = b""
        while chunk := s.recv(1 << 20):
            got += chunk
    assert got.count(b"HTTP/1.1 200 OK") == len(requests)


def entries(path: Path) -> list[Any]:
    har = HarParser(json.loads(path.read_bytes()))
    return list(har.pages[0].entries)


def response_bytes(entry: Any) -> bytes:
    if entry.response.textEncoding == "base64":
        return base64.b64decode(entry.response.text)
    return str(entry.response.text).encode()


def request_bytes(entry: Any) -> bytes:
    post = entry.raw_entry["request"]["postData"]
    if "_textBase64" in post:
        return base64.b64decode(post["_textBase64"])
    return str(entry.request.text).encode()


REQUESTS = [(b"/text", BINARY), (b"/binary", TEXT), (b"/small", SMALL), (b"/gzip", b"x")]
EXPECTED = {"/text": TEXT, "/binary": BINARY, "/small": SMALL, "/gzip": TEXT}  # gzip undone
SENT = dict((k.decode(), v) for k, v in REQUESTS)


def test_capture_bodies_har_has_every_body_whole(tmp_path: Path, upstreams: Upstreams) -> None:
    raw = upstreams.raw(serve)
    har, log = tmp_path / "s.har", tmp_path / "flows.jsonl"
    bodies = tmp_path / "bodies"
    p = start_proxy("--har", str(har), "--capture-bodies", str(bodies), flow_log=log)
    try:
        exchange(p, raw.port, REQUESTS)
        assert len(p.records(4)) == 4
    finally:
        assert p.stop() == 0
    found = entries(har)
    assert len(found) == 4
    for entry in found:
        path = entry.url.split(str(raw.port), 1)[1]
        assert response_bytes(entry) == EXPECTED[path], path
        assert request_bytes(entry) == SENT[path], path
        assert "_truncated" not in entry.raw_entry["response"]["content"]
    binary = next(e for e in found if e.url.endswith("/binary"))
    assert binary.response.textEncoding == "base64"
    # convert reads the body files the flow log names: the same document.
    converted = subprocess.run(
        [sys.executable, "-m", "proxy", "convert", str(log), "--to", "har", "-o", "-"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    assert converted.stdout == har.read_bytes()


def test_body_cut_at_capture_max_is_marked(tmp_path: Path, upstreams: Upstreams) -> None:
    raw = upstreams.raw(serve)
    har = tmp_path / "s.har"
    p = start_proxy(
        "--har", str(har), "--capture-bodies", str(tmp_path / "b"), "--capture-max-body", "1000"
    )
    try:
        exchange(p, raw.port, [(b"/text", b"")])
    finally:
        assert p.stop() == 0
    [entry] = entries(har)
    content = entry.raw_entry["response"]["content"]
    assert content["_truncated"] is True
    assert (
        content["comment"]
        == f"body truncated: the first 1000 of {len(TEXT)} bytes (--capture-max-body)"
    )
    assert content["size"] == len(TEXT)
    assert response_bytes(entry) == TEXT[:1000]


def test_without_capture_the_har_preview_and_how_to_get_more(
    tmp_path: Path, upstreams: Upstreams
) -> None:
    raw = upstreams.raw(serve)
    har = tmp_path / "s.har"
    p = start_proxy("--har", str(har))
    try:
        exchange(p, raw.port, [(b"/small", b""), (b"/text", b"")])
    finally:
        assert p.stop() == 0
    by_path = {e.url.rsplit("/", 1)[1]: e for e in entries(har)}
    assert response_bytes(by_path["small"]) == SMALL  # within the 64K HAR preview
    content = by_path["text"].raw_entry["response"]["content"]
    assert "text" not in content
    assert content["comment"] == (
        f"body not included: 65536 of {len(TEXT)} bytes kept; run with --capture-bodies DIR "
        "for whole bodies (up to --capture-max-body), or raise --body-preview"
    )
