"""Flow-log records of every kind validate against docs/flow-log.schema.json.

One proxy (a regular listener with MitM for ``localhost`` only, a TCP
listener, rules, body capture and --pcap) is driven through every kind of
flow: plain HTTP, a captured body, an upstream error, intercepted HTTPS, a
CONNECT tunnel, a WebSocket, a TCP relay, rules that matched and a rules
reload error. Each record, the flow log's ``dropped`` record, and
``tapproxy analyze`` of the proxy's own capture must validate; the flow ids
must be what docs/flow-log.md says (issue 14, "What it must show" and item 8).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from proxy.sinks.jsonl import JsonlSink
from tests.support.certs import CertAuthority
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import RawConnection, Upstreams, make_app, start_https

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "flow-log.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)

RULES = """\
version: 1
rules:
  - name: tagged
    match: {path: {prefix: /echo/ruled}}
    request: [{set_header: {x-ruled: "1"}}]
    log: {tags: [schema-test], detail: headers}
  - name: mock
    match: {path: /mocked}
    respond: {status: 201, body: "mocked"}
"""


def valid(rec: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(rec), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors) + f"\n{rec}"


def curl(p: ProxyProcess, *args: str) -> None:
    subprocess.run(["curl", "-sS", "-o", "/dev/null", "-x", p.url, *args], check=True, timeout=30)


async def websocket(proxy_url: str, url: str) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(url, proxy=proxy_url) as ws:
        await ws.send_str("hi")
        assert (await asyncio.wait_for(ws.receive(), 5)).data == "echo:hi"


def tunnel(port: int, target: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /echo/t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass


def tcp_relay(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"ping")
        assert s.recv(16) == b"PING"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def break_rules(p: ProxyProcess, rules: Path) -> None:
    tmp = rules.with_name(".r.tmp")
    tmp.write_text(RULES.replace("path: /mocked", "method: get"))  # lower case: refused
    os.replace(tmp, rules)
    deadline = time.monotonic() + 10
    while not any(r["kind"] == "rules_error" for r in p.records(0, timeout=0)):
        assert time.monotonic() < deadline, "no rules_error record"
        time.sleep(0.1)


@pytest.fixture
def records_and_capture(tmp_path: Path, upstreams: Upstreams) -> tuple[list[Any], Path]:
    async def upper(conn: RawConnection) -> None:
        conn.send((await conn.reader.read(16)).upper())

    echo = upstreams.raw(upper)
    ca = CertAuthority.create(tmp_path / "ca")
    runner, https_port = upstreams.call(
        start_https(make_app(), str(ca.server_cert(["localhost"], "s.pem")))
    )
    rules, cap, certs = tmp_path / "r.yaml", tmp_path / "live.pcapng", tmp_path / "certs"
    rules.write_text(RULES)
    p = start_proxy(
        "--mode", "regular@0", "--mode", f"tcp:127.0.0.1:{echo.port}@0",
        "--mitm-hosts", "^localhost:", "--certs", str(certs),
        "--upstream-ca", str(ca.cert_path), "--rules", str(rules),
        "--capture-bodies", str(tmp_path / "bodies"), "--body-preview", "16",
        "--pcap", str(cap),
        flow_log=tmp_path / "flows.jsonl", modes=2,
    )  # fmt: skip
    try:
        curl(p, f"{upstreams.url}/echo/plain")
        curl(p, "-d", "x" * 1000, f"{upstreams.url}/echo/captured")
        curl(p, f"http://127.0.0.1:{free_port()}/refused")
        curl(p, f"{upstreams.url}/echo/ruled")
        curl(p, "http://rules.test/mocked")
        curl(
            p, "--cacert", str(certs / "tapproxy-ca.pem"), f"https://localhost:{https_port}/echo/s"
        )
        tunnel(p.port, upstreams.port)
        asyncio.run(websocket(p.url, upstreams.url.replace("http", "ws") + "/ws"))
        tcp_relay(p.addresses[1][1])
        assert len(p.records(9)) >= 9  # 6 http (one inside MitM), tunnel, websocket, tcp
        break_rules(p, rules)
        records = p.records(10)
    finally:
        assert p.stop() == 0
        upstreams.call(runner.cleanup())
    return records, cap


def test_every_kind_of_record_validates(records_and_capture: tuple[list[Any], Path]) -> None:
    records, _ = records_and_capture
    for rec in records:
        valid(rec)
    kinds = {r["kind"] for r in records}
    kinds_expected = {"http", "tunnel", "websocket", "websocket_message", "tcp", "rules_error"}
    assert kinds == kinds_expected, kinds
    ws = next(r for r in records if r["kind"] == "websocket")
    assert ws["websocket"]["messages"] == {"upstream": 1, "downstream": 1}
    http = [r for r in records if r["kind"] == "http"]
    assert any(r["error"] and r["server"] is None for r in http)  # upstream refused
    assert any(r.get("tls", {}).get("server", {}).get("certificate") for r in http)  # MitM
    assert any(r.get("rules", {}).get("tags") == ["schema-test"] for r in http)
    assert any("body_file" in r["request"] for r in http)
    assert any(r["request"].get("body_preview", {}).get("truncated") for r in http)


def test_flow_ids_are_a_process_prefix_and_a_counter(
    records_and_capture: tuple[list[Any], Path],
) -> None:
    flows = [
        r for r in records_and_capture[0] if r["kind"] not in ("rules_error", "websocket_message")
    ]
    ids = [r["id"] for r in flows]
    assert len({i[:8] for i in ids}) == 1, ids  # one process: one random prefix
    counters = sorted(int(i[8:], 16) for i in ids)
    assert len(set(counters)) == len(counters) and counters[0] >= 1, ids


def test_dropped_record_validates(tmp_path: Path) -> None:
    log = tmp_path / "f.jsonl"
    sink = JsonlSink(str(log))
    sink.write_dropped(7)
    sink.close()
    [line] = log.read_text().splitlines()
    valid(json.loads(line))


def test_analyze_output_validates(records_and_capture: tuple[list[Any], Path]) -> None:
    _, cap = records_and_capture
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "analyze", str(cap), "--body-preview", "64"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    analyzed = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["kind"] for r in analyzed} >= {"http", "tcp"}, analyzed
    for rec in analyzed:
        valid(rec)
