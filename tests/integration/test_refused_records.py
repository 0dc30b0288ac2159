"""Every connection that sent bytes leaves a record, refused ones included (issue 14, item 1).

Each refusal is answered (or closed) as before, and now also recorded: what
was refused, why (the hazard or limit by name), the client's address, and a
bounded, escaped preview of the offending bytes. The records validate
against the shipped JSON Schema, and the console prints a line for each.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.support.proxyproc import ProxyProcess, running_proxy
from tests.unit.test_tls_clienthello import real_hello

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "flow-log.schema.json").read_text())
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00"


def exchange(p: ProxyProcess, data: bytes) -> bytes:
    """Send ``data``, read until the proxy closes."""
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got


def only_record(p: ProxyProcess) -> dict[str, Any]:
    (rec,) = p.records(1, timeout=10)
    jsonschema.validate(rec, SCHEMA)
    return rec


CASES = [
    pytest.param(
        b"GET http://a.test/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400, "Content-Length", id="cl-and-te",
    ),
    pytest.param(b"GET  http://a.test/ HTTP/1.1\r\n\r\n", 400, "request line", id="bad-line"),
    pytest.param(
        b"GET http://a.test/" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "too long", id="414"
    ),
    pytest.param(
        b"GET http://a.test/ HTTP/1.1\r\n" + b"X-Big: " + b"b" * 70000 + b"\r\n\r\n",
        431, "too large", id="431",
    ),
    pytest.param(b"\x01\x02 no line ending" * 5000, 414, "too long", id="garbage-no-crlf"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "status", "why"), CASES)
def test_refused_request_is_answered_and_recorded(
    tmp_path: Path, data: bytes, status: int, why: str
) -> None:
    with running_proxy(flow_log=tmp_path / "f.jsonl") as p:
        got = exchange(p, data)
        assert got.startswith(b"HTTP/1.1 %d " % status), got[:80]
        rec = only_record(p)
    assert rec["kind"] == "http" and rec["client"]["ip"] == "127.0.0.1"
    assert rec["response"]["status"] == status and rec["response"]["source"] == "proxy"
    assert rec["error"].startswith("client: ") and why.lower() in rec["error"].lower()
    refused = rec["refused"]
    assert len(refused["data"]) > 0 and refused["size"] >= min(len(data), 1)
    assert refused["truncated"] == (refused["size"] > 256)


def test_tls_hello_on_a_plain_listener_is_named(tmp_path: Path) -> None:
    with running_proxy(flow_log=tmp_path / "f.jsonl") as p:
        got = exchange(p, real_hello("a.test"))
        assert got.startswith(b"HTTP/1.1 400 ")
        assert b"TLS ClientHello on a plain HTTP listener" in got
        rec = only_record(p)
    assert "TLS ClientHello" in rec["error"]
    assert rec["refused"]["data"].startswith("\\x16\\x03")  # escaped, never mangled


def test_http2_preface_on_an_http1_listener_is_named(tmp_path: Path) -> None:
    """With --no-http2 the listener speaks HTTP/1.1 only (else the preface is HTTP/2)."""
    with running_proxy("--no-http2", flow_log=tmp_path / "f.jsonl") as p:
        got = exchange(p, H2_PREFACE)
        assert got.startswith(b"HTTP/1.1 ")
        rec = only_record(p)
    assert "HTTP/2 connection preface" in rec["error"]
    assert rec["refused"]["data"].startswith("PRI * HTTP/2.0\\r\\n")


def test_client_gone_inside_a_head_is_recorded(tmp_path: Path) -> None:
    with running_proxy(flow_log=tmp_path / "f.jsonl") as p:
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            s.sendall(b"GET http://a.test/ HTTP/1.1\r\nHost: a.te")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        rec = only_record(p)
    assert rec["request"]["method"] == "GET" and "inside a request head" in rec["error"]
    assert rec["refused"]["data"].endswith("Host: a.te")


def test_a_clean_close_between_requests_leaves_no_extra_record(tmp_path: Path) -> None:
    with running_proxy(flow_log=tmp_path / "f.jsonl") as p:
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            s.sendall(b"\r\n")  # an empty line before a request line is ignored (RFC 9112 §2.2)
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b""
        # A refused request after it: once its record is there, it is the only one.
        exchange(p, b"BAD\r\n\r\n")
        (rec,) = p.records(1, timeout=10)
        assert rec["refused"]["data"] == "BAD\\r\\n\\r\\n"
        assert len(p.records(0, timeout=0)) == 1


def test_over_max_connections_is_answered_503_and_recorded(tmp_path: Path) -> None:
    with (
        running_proxy("--max-connections", "1", flow_log=tmp_path / "f.jsonl") as p,
        socket.create_connection(("127.0.0.1", p.port), timeout=10) as held,
    ):
        held.sendall(b"GET http://a.test/ HTTP/1.1\r\nHost: a.te")  # keeps its slot
        got = exchange(p, b"")
        assert got.startswith(b"HTTP/1.1 503 ") and b"too many client connections" in got
        rec = only_record(p)
    assert rec["error"] == "refused: too many client connections"
    assert rec["response"]["status"] == 503 and rec["response"]["source"] == "proxy"
