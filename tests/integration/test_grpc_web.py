"""gRPC-Web through the proxy, decoded in records (issue 16 item 5).

A gRPC-Web server (aiohttp, tests.support.grpcweb) behind the proxy; the
clients are ``requests`` (HTTP/1.1, forward mode) and curl with HTTP/2
prior knowledge (reverse mode). Binary and text (base64) bodies, with the
status from gRPC-Web's trailer frame.
"""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import grpcsvc, grpcweb
from tests.support.proxyproc import ProxyProcess, start_proxy


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> grpcsvc.Generated:
    return grpcsvc.build(tmp_path_factory.mktemp("grpcgen"))


def records(p: ProxyProcess, calls: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        recs = p.records(0)
        if sum("grpc" in r for r in recs) >= calls or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


def check(recs: list[dict[str, Any]], protocol: str, method: str, responses: int) -> None:
    [call] = [r for r in recs if "grpc" in r and r["grpc"]["method"] == method]
    g = call["grpc"]
    assert g["protocol"] == protocol and g["service"] == "demo.Echo"
    assert g["status"] == {"code": 0, "name": "OK", "message": "ok", "from": "trailers"}
    assert g["messages"] == {"request": 1, "response": responses} and g["errors"] == []
    msgs = [
        r["grpc_message"] for r in recs
        if r["kind"] == "grpc_message" and r["grpc_message"]["flow"] == call["id"]
    ]  # fmt: skip
    request = next(m for m in msgs if m["direction"] == "request")
    assert request["decoded"] == {"text": "web", "count": 3}
    texts = sorted(m["decoded"].get("index", 0) for m in msgs if m["direction"] == "response")
    assert len(texts) == responses


@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
def test_grpc_web_over_http1(gen: grpcsvc.Generated, tmp_path: Path, text: bool) -> None:
    kind = "application/grpc-web-text" if text else "application/grpc-web+proto"
    with grpcweb.serve(gen) as port:
        p = start_proxy("--proto-path", str(gen.proto), flow_log=tmp_path / "flows.jsonl")
        try:
            body = grpcweb.web_frame(gen.pb2.Req(text="web", count=3).SerializeToString())
            if text:
                body = base64.b64encode(body)
            r = requests.post(
                f"http://127.0.0.1:{port}/demo.Echo/ServerStream",
                data=body,
                headers={"content-type": kind, "x-grpc-web": "1"},
                proxies={"http": p.url},
                timeout=10,
            )
            recs = records(p, 1)
        finally:
            p.stop()
    assert r.status_code == 200
    got = grpcweb.unbase64(r.content) if text else r.content
    flags = [f for f, _ in grpcweb.frames(got)]
    assert flags == [0, 0, 0, 0x80]  # three replies and the trailer frame
    check(recs, "grpc-web-text" if text else "grpc-web", "ServerStream", 3)


def test_grpc_web_over_http2(gen: grpcsvc.Generated, tmp_path: Path) -> None:
    with grpcweb.serve(gen) as port:
        p = start_proxy(
            "--mode", f"reverse:http://127.0.0.1:{port}", "--proto-path", str(gen.proto),
            flow_log=tmp_path / "flows.jsonl",
        )  # fmt: skip
        body = tmp_path / "body.bin"
        body.write_bytes(grpcweb.web_frame(gen.pb2.Req(text="web", count=3).SerializeToString()))
        try:
            out = subprocess.run(
                [
                    "curl", "-sS", "--http2-prior-knowledge", "--data-binary", f"@{body}",
                    "-H", "content-type: application/grpc-web+proto",
                    f"http://127.0.0.1:{p.port}/demo.Echo/Unary",
                ],
                capture_output=True, timeout=30, check=True,
            )  # fmt: skip
            recs = records(p, 1)
        finally:
            p.stop()
    assert [f for f, _ in grpcweb.frames(out.stdout)] == [0, 0x80]
    check(recs, "grpc-web", "Unary", 1)
    [call] = [r for r in recs if "grpc" in r]
    assert call["request"]["http_version"] == "HTTP/2.0"
