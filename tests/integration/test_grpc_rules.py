"""gRPC rules change what a real grpcio client sees (issue 16 item 4).

Each action of docs/grpc.md's rules, through ``reverse:h2c://`` to the
grpcio service of ``tests.support.grpcsvc``: a status answer, a share of
calls failed, metadata set and removed, fields replaced (with the schema
and by field number), a message dropped, a message delayed (measured), a
stream reset.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import grpcsvc
from tests.support.h2raw import RawH2
from tests.support.proxyproc import ProxyProcess, start_proxy


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> grpcsvc.Generated:
    return grpcsvc.build(tmp_path_factory.mktemp("grpcgen"))


@pytest.fixture(scope="module")
def server(gen: grpcsvc.Generated) -> Iterator[grpcsvc.Server]:
    s = grpcsvc.serve(gen)
    yield s
    s.stop()


def proxy_with(tmp_path: Path, server: grpcsvc.Server, rules: str, *extra: str) -> ProxyProcess:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nrules:\n" + rules)
    return start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", "--rules", str(path), *extra,
        flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip


@pytest.fixture
def stub_for(gen: grpcsvc.Generated) -> Iterator[Any]:
    channels: list[grpc.Channel] = []

    def make(p: ProxyProcess) -> Any:
        channels.append(grpc.insecure_channel(f"127.0.0.1:{p.port}"))
        return gen.grpc.EchoStub(channels[-1])

    yield make
    for c in channels:
        c.close()


def calls(p: ProxyProcess, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        recs = [r for r in p.records(0) if "grpc" in r]
        if len(recs) >= n or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


DOWN = """\
  - name: down
    match: {grpc: {service: demo.Echo, method: Unary}}
    grpc: {status: {code: UNAVAILABLE, message: "try later: 100% down"}}
"""


def test_status_answer_is_a_trailers_only_response(server: grpcsvc.Server, tmp_path: Path) -> None:
    p = proxy_with(tmp_path, server, DOWN)
    try:
        with RawH2(p.port) as h2:
            sid = h2.request(
                [
                    (b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"),
                    (b":path", b"/demo.Echo/Unary"), (b"content-type", b"application/grpc"),
                    (b"te", b"trailers"),
                ],
                b"\x00\x00\x00\x00\x00",
            )  # fmt: skip
            got = h2.wait(sid)
        [rec] = calls(p, 1)
    finally:
        p.stop()
    assert got.status == 200 and got.body == b"" and got.ended and got.reset is None
    headers = dict(got.headers)
    assert headers[b"content-type"] == b"application/grpc"
    assert headers[b"grpc-status"] == b"14"
    assert headers[b"grpc-message"] == b"try later: 100%25 down"  # percent-encoded
    assert got.trailers == []
    status = rec["grpc"]["status"]
    assert status == {
        "code": 14, "name": "UNAVAILABLE", "message": "try later: 100% down", "from": "proxy",
    }  # fmt: skip
    assert rec["rules"]["matched"][0]["actions"] == ["grpc status 14"]


def test_status_answer_seen_by_grpcio(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    p = proxy_with(tmp_path, server, DOWN)
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub_for(p).Unary(gen.pb2.Req(text="x"), timeout=10)
    finally:
        p.stop()
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == "try later: 100% down"


def test_a_share_of_calls_fails(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    rules = DOWN.replace("method: Unary}}", "method: Unary}, percent: 50}")
    p = proxy_with(tmp_path, server, rules)
    failed = 0
    try:
        stub = stub_for(p)
        for i in range(40):
            try:
                assert stub.Unary(gen.pb2.Req(text=f"n{i}"), timeout=10).text == f"n{i}"
            except grpc.RpcError:
                failed += 1
        recs = calls(p, 40)
    finally:
        p.stop()
    answered = [r for r in recs if r["grpc"]["status"]["from"] == "proxy"]
    assert 5 <= failed <= 35 and len(answered) == failed
    assert all(r["grpc"]["status"]["name"] == "UNAVAILABLE" for r in answered)


def test_metadata_set_and_removed(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    rules = """\
  - name: metadata
    match: {grpc: {method: Unary}, headers: {x-drop: {present: true}}}
    request: [{set_header: {x-added: "by-rule"}}, {remove_header: x-drop}]
"""
    p = proxy_with(tmp_path, server, rules)
    try:
        stub = stub_for(p)
        req = gen.pb2.Req(text="metadata")
        reply = stub.Unary(req, metadata=(("x-drop", "1"), ("x-keep", "2")), timeout=10)
        plain = stub.Unary(req, metadata=(("x-keep", "2"),), timeout=10)
    finally:
        p.stop()
    assert reply.text == "x-added=by-rule,x-keep=2"
    assert plain.text == "x-keep=2"  # the rule did not match


def test_fields_replaced_with_the_schema(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    rules = """\
  - name: rewrite
    match: {grpc: {service: demo.Echo, method: Bidi}}
    grpc:
      request: [{set: {/text: bye, /inner/label: set}, where: {/text: hello}}]
      response: [{set: {/count: 99}, index: 1}]
"""
    p = proxy_with(tmp_path, server, rules, "--proto-path", str(gen.proto))
    try:
        reqs = [gen.pb2.Req(text="hello", count=1), gen.pb2.Req(text="other", count=2)]
        replies = list(stub_for(p).Bidi(iter(reqs), timeout=10))
        [rec] = calls(p, 1)
    finally:
        p.stop()
    assert [(r.text, r.count) for r in replies] == [("BYE", 1), ("OTHER", 99)]
    assert rec["grpc"]["rules"] == ["request #0 set /text, /inner/label", "response #1 set /count"]
    messages = [r["grpc_message"] for r in p.records(0) if r["kind"] == "grpc_message"]
    first = next(m for m in messages if m["direction"] == "request" and m["index"] == 0)
    assert first["decoded"]["text"] == "hello"  # the record shows what the client sent


def test_fields_replaced_by_number_without_schema(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    rules = """\
  - name: rewrite
    match: {grpc: {method: Unary}}
    grpc:
      request: [{set: {/1: bye, /2: 5}, where: {/1: hello}}]
"""
    p = proxy_with(tmp_path, server, rules)
    try:
        stub = stub_for(p)
        changed = stub.Unary(gen.pb2.Req(text="hello", count=1), timeout=10)
        kept = stub.Unary(gen.pb2.Req(text="other", count=1), timeout=10)
    finally:
        p.stop()
    assert (changed.text, changed.count) == ("bye", 10)
    assert (kept.text, kept.count) == ("other", 2)


def test_a_message_dropped(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    rules = """\
  - name: drop
    match: {grpc: {method: ServerStream}}
    grpc: {response: [{drop: true, where: {/1: s, /4: 1}}]}
"""
    p = proxy_with(tmp_path, server, rules)
    try:
        replies = list(stub_for(p).ServerStream(gen.pb2.Req(text="s", count=3), timeout=10))
        [rec] = calls(p, 1)
    finally:
        p.stop()
    assert [r.index for r in replies] == [0, 2]
    assert rec["grpc"]["messages"]["response"] == 3  # as the server sent them
    assert rec["grpc"]["rules"] == ["response #1 dropped"]


def test_a_message_delayed(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    rules = """\
  - name: slow
    match: {grpc: {method: ServerStream}}
    grpc: {response: [{delay: {ms: 400}, index: 1}]}
"""
    p = proxy_with(tmp_path, server, rules)
    try:
        stream = stub_for(p).ServerStream(gen.pb2.Req(text="s", count=3), timeout=10)
        times = []
        start = time.monotonic()
        for reply in stream:
            times.append((reply.index, time.monotonic() - start))
    finally:
        p.stop()
    assert [i for i, _ in times] == [0, 1, 2]
    assert times[0][1] < 0.3  # the first message is not held
    assert times[1][1] - times[0][1] >= 0.38  # the second waits 400 ms
    assert times[2][1] >= times[1][1]  # and what follows it waits too (order kept)


def test_stream_reset(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    rules = """\
  - name: reset
    match: {grpc: {method: Unary}}
    fault: {phase: request, reset: {h2_error: CANCEL}}
"""
    p = proxy_with(tmp_path, server, rules)
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub_for(p).Unary(gen.pb2.Req(text="x"), timeout=10)
    finally:
        p.stop()
    assert info.value.code() is grpc.StatusCode.CANCELLED


def test_rules_check_names_the_place_of_a_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nrules:\n  - match: {grpc: {servce: x}}\n    grpc: {status: {code: NOPE}}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "rules", "check", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert f"{bad}:3:20: rules[0].match.grpc: unknown key 'servce'" in out.stderr
    assert f"{bad}:4:27: rules[0].grpc.status.code: unknown gRPC status 'NOPE'" in out.stderr


def test_a_body_rule_on_a_call_keeps_its_trailers(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    """A response body buffered for an HTTP rule goes out with the call's trailers
    (grpc-status), or the client would see the call fail."""
    rules = """\
  - name: body
    match: {grpc: {method: ServerStream}}
    response: [{replace_body: {literal: "xxxxxxxxxx", with: "yyyyyyyyyy"}}]
"""
    p = proxy_with(tmp_path, server, rules)
    try:
        replies = list(
            stub_for(p).ServerStream(gen.pb2.Req(text="s", count=2, size=10), timeout=10)
        )
        [rec] = calls(p, 1)
    finally:
        p.stop()
    assert [r.payload for r in replies] == [b"y" * 10, b"y" * 10]
    assert rec["grpc"]["status"]["name"] == "OK"
    assert ["grpc-status", "0"] in rec["response"]["trailers"]


def test_match_on_a_request_message_field(
    server: grpcsvc.Server, tmp_path: Path, stub_for: Any, gen: grpcsvc.Generated
) -> None:
    """Only the calls whose request says so are reset; the schema names the field."""
    rules = """\
  - name: cancel-some
    match: {grpc: {method: Unary, message: {/inner/label: cancel-me}}}
    fault: {phase: request, reset: {h2_error: CANCEL}}
"""
    p = proxy_with(tmp_path, server, rules, "--proto-path", str(gen.proto))
    try:
        stub = stub_for(p)
        pb2 = gen.pb2
        assert stub.Unary(pb2.Req(text="a", inner=pb2.Inner(label="keep")), timeout=10).text == "a"
        with pytest.raises(grpc.RpcError) as info:
            stub.Unary(pb2.Req(text="b", inner=pb2.Inner(label="cancel-me")), timeout=10)
        assert stub.Unary(pb2.Req(text="c"), timeout=10).text == "c"
        recs = calls(p, 3)
    finally:
        p.stop()
    assert info.value.code() is grpc.StatusCode.CANCELLED
    hit = [r for r in recs if r.get("rules")]
    assert len(hit) == 1 and hit[0]["rules"]["matched"][0]["rule"] == "cancel-some"
