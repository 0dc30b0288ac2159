"""gRPC through the proxy with real grpcio servers and clients (issue 16).

The service (``tests.support.grpcsvc``) is generated in the test with
grpcio-tools; the client runs in its own process (``tests.support.grpcclient``)
so ``grpc_proxy`` and ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` configure it as
they would a user's. Every call must succeed through the proxy, and the
flow log must show each call (service, method, status, streaming kind,
message counts) and each message, decoded with the schema when one is
given and schemalessly when not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from jsonschema import Draft202012Validator

from tests.support import grpcsvc
from tests.support.certs import CertAuthority
from tests.support.proxyproc import ProxyProcess, complete_records, start_proxy

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = Draft202012Validator(json.loads((REPO / "docs" / "flow-log.schema.json").read_text()))

EXPECTED = {
    "unary": {"text": "hello", "count": 42, "index": 0, "payload": 0},
    "server": [{"text": "s", "count": 0, "index": i, "payload": 10} for i in range(3)],
    "client": {"text": "a,b", "count": 3, "index": 0, "payload": 0},
    "bidi": [
        {"text": "A", "count": 1, "index": 0, "payload": 0},
        {"text": "B", "count": 2, "index": 1, "payload": 0},
    ],
}
KINDS = {"Unary": "unary", "ServerStream": "server", "ClientStream": "client", "Bidi": "bidi"}
COUNTS = {"Unary": (1, 1), "ServerStream": (1, 3), "ClientStream": (2, 1), "Bidi": (2, 2)}


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> grpcsvc.Generated:
    return grpcsvc.build(tmp_path_factory.mktemp("grpcgen"))


@pytest.fixture(scope="module")
def server(gen: grpcsvc.Generated) -> Iterator[grpcsvc.Server]:
    s = grpcsvc.serve(gen)
    yield s
    s.stop()


def run_client(
    gen: grpcsvc.Generated, target: str, env: dict[str, str] | None = None, *flags: str
) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    out = subprocess.run(
        [sys.executable, "-m", "tests.support.grpcclient", str(gen.directory), target, *flags],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def grpc_records(p: ProxyProcess, calls: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The flow log once ``calls`` gRPC calls are recorded (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = p.records(0)
        if sum(1 for r in recs if "grpc" in r) >= calls or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


def calls_by_method(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["grpc"]["method"]: r for r in recs if "grpc" in r}


def messages_of(recs: list[dict[str, Any]], flow: str) -> list[dict[str, Any]]:
    return [
        r["grpc_message"]
        for r in recs
        if r["kind"] == "grpc_message" and r["grpc_message"]["flow"] == flow
    ]


def valid(recs: list[dict[str, Any]]) -> None:
    """Every record (calls and messages) as docs/flow-log.schema.json says."""
    for rec in recs:
        errors = [f"{list(e.path)}: {e.message}" for e in VALIDATOR.iter_errors(rec)]
        assert not errors, f"{errors}\n{rec}"


def check_calls(recs: list[dict[str, Any]], schema: bool) -> dict[str, dict[str, Any]]:
    valid(recs)
    calls = calls_by_method(recs)
    assert set(calls) == set(KINDS), [r.get("kind") for r in recs]
    for method, rec in calls.items():
        g = rec["grpc"]
        assert g["service"] == "demo.Echo" and g["protocol"] == "grpc"
        assert g["status"]["code"] == 0 and g["status"]["name"] == "OK"
        assert g["status"]["from"] == "trailers"
        assert g["streaming"] == KINDS[method]
        assert g["streaming_from"] == ("schema" if schema else "counts")
        assert (g["messages"]["request"], g["messages"]["response"]) == COUNTS[method]
        assert g["schema"] is schema and g["errors"] == []
        assert ["grpc-status", "0"] in rec["response"]["trailers"]
        msgs = messages_of(recs, rec["id"])
        assert len(msgs) == sum(COUNTS[method]), msgs
        for m in msgs:
            assert m["service"] == "demo.Echo" and m["method"] == method
            assert m["error"] is None and not m["truncated"]
            assert ("decoded" in m) is schema and ("fields" in m) is not schema
        # every message record comes before its call's record
        ids = [r["id"] for r in recs]
        assert all(
            ids.index(f"{rec['id']}:{m['direction']}:{m['index']}") < ids.index(rec["id"])
            for m in msgs
        )
    return calls


def unary_request(recs: list[dict[str, Any]], calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return next(m for m in messages_of(recs, calls["Unary"]["id"]) if m["direction"] == "request")


def test_reverse_h2c_decoded_with_the_proto(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path
) -> None:
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", "--proto-path", str(gen.proto),
        flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip
    try:
        assert run_client(gen, f"127.0.0.1:{p.port}") == EXPECTED
        recs = grpc_records(p, 4)
    finally:
        p.stop()
    calls = check_calls(recs, schema=True)
    m = unary_request(recs, calls)
    assert m["type"] == "demo.Req"
    assert m["decoded"] == {
        "text": "hello",
        "count": 21,
        "inner": {"label": "in", "values": [1, 2, 300]},
    }
    replies = [
        x for x in messages_of(recs, calls["ServerStream"]["id"]) if x["direction"] == "response"
    ]
    assert [x["decoded"].get("index", 0) for x in replies] == [0, 1, 2]
    assert replies[0]["decoded"]["payload"] == "eHh4eHh4eHh4eA=="  # b"x" * 10, protobuf JSON


def test_reverse_h2c_schemaless(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path
) -> None:
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", flow_log=tmp_path / "flows.jsonl"
    )
    try:
        assert run_client(gen, f"127.0.0.1:{p.port}") == EXPECTED
        recs = grpc_records(p, 4)
    finally:
        p.stop()
    calls = check_calls(recs, schema=False)
    fields = unary_request(recs, calls)["fields"]
    assert fields[0] == {"n": 1, "type": "string", "value": "hello"}
    assert fields[1] == {"n": 2, "type": "varint", "value": 21}
    inner = fields[2]
    assert inner["n"] == 4 and inner["type"] == "message"
    assert inner["value"][0] == {"n": 1, "type": "string", "value": "in"}
    assert inner["value"][1]["type"] == "bytes" and inner["value"][1]["packed"] == [1, 2, 300]


def test_descriptor_set_and_console_line(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path
) -> None:
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", "--proto-path", str(gen.desc),
        flow_log=tmp_path / "flows.jsonl", quiet=False,
    )  # fmt: skip
    try:
        assert run_client(gen, f"127.0.0.1:{p.port}") == EXPECTED
        recs = grpc_records(p, 4)
    finally:
        p.stop()
    check_calls(recs, schema=True)
    lines = [x for x in p.stdout_text().splitlines() if "/demo.Echo/" in x]
    assert len(lines) == 4, lines  # one per call, none per message
    bidi = next(x for x in lines if "/demo.Echo/Bidi" in x)
    assert "[grpc OK 2> 2<]" in bidi


@pytest.mark.parametrize("mitm", [False, True], ids=["plain", "mitm"])
def test_forward_grpc_proxy(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path, mitm: bool
) -> None:
    """grpc_proxy: CONNECT, then h2c inside the tunnel, decoded with or without
    --mitm (cleartext needs no certificate: the tunnel's first bytes tell)."""
    extra = ["--mitm", "--certs", str(tmp_path / "certs")] if mitm else []
    p = start_proxy(
        *extra, "--proto-path", str(gen.proto), flow_log=tmp_path / "flows.jsonl"
    )  # fmt: skip
    try:
        env = {"grpc_proxy": p.url}
        assert run_client(gen, f"127.0.0.1:{server.port}", env) == EXPECTED
        recs = grpc_records(p, 4)
    finally:
        p.stop()
    calls = check_calls(recs, schema=True)
    # the intercepted tunnel's requests, named by the CONNECT's authority
    assert calls["Bidi"]["request"]["url"] == f"http://127.0.0.1:{server.port}/demo.Echo/Bidi"
    assert calls["Bidi"]["mode"] == "regular"


def test_mitm_tls_client_trusting_our_ca(gen: grpcsvc.Generated, tmp_path: Path) -> None:
    """TLS gRPC: the client trusts the tapproxy CA through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH."""
    ca = CertAuthority.create(tmp_path / "ca")
    pem = ca.server_cert(["localhost"], "server.pem").read_bytes()
    cert, _, key = pem.partition(b"-----END CERTIFICATE-----\n")
    creds = grpc.ssl_server_credentials([(key, cert + b"-----END CERTIFICATE-----\n")])
    tls_server = grpcsvc.serve(gen, creds)
    certs = tmp_path / "certs"
    p = start_proxy(
        "--mitm", "--certs", str(certs), "--upstream-ca", str(ca.cert_path),
        "--proto-path", str(gen.proto), flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip
    try:
        env = {
            "grpc_proxy": p.url,
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(certs / "tapproxy-ca.pem"),
        }
        assert run_client(gen, f"localhost:{tls_server.port}", env, "--tls") == EXPECTED
        recs = grpc_records(p, 4)
    finally:
        p.stop()
        tls_server.stop()
    calls = check_calls(recs, schema=True)
    assert calls["Unary"]["tls"]["intercepted"] is True
    assert calls["Unary"]["request"]["url"].startswith("https://localhost:")


def test_gzip_messages_decoded(gen: grpcsvc.Generated, tmp_path: Path) -> None:
    """Both sides compress (gRPC core leaves a message uncompressed when gzip would
    not make it smaller, so these are large and repetitive)."""
    gz_server = grpcsvc.serve(gen, compression=grpc.Compression.Gzip)
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{gz_server.port}", "--proto-path", str(gen.proto),
        flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip
    channel = grpc.insecure_channel(f"127.0.0.1:{p.port}", compression=grpc.Compression.Gzip)
    try:
        stub = gen.grpc.EchoStub(channel)
        assert stub.Unary(gen.pb2.Req(text="z" * 4000, count=1), timeout=10).count == 2
        replies = list(stub.ServerStream(gen.pb2.Req(text="s", count=2, size=5000), timeout=10))
        assert [len(r.payload) for r in replies] == [5000, 5000]
        recs = grpc_records(p, 2)
    finally:
        channel.close()
        p.stop()
        gz_server.stop()
    calls = calls_by_method(recs)
    assert calls["Unary"]["grpc"]["encoding"] == {"request": "gzip", "response": "gzip"}
    m = unary_request(recs, calls)
    assert m["compressed"] is True and m["encoding"] == "gzip" and m["error"] is None
    assert m["size"] < 200 and m["raw"]["size"] > 4000  # as sent, and inflated
    assert m["decoded"] == {"text": "z" * 4000, "count": 1}
    out = [
        x for x in messages_of(recs, calls["ServerStream"]["id"]) if x["direction"] == "response"
    ]
    assert [x["compressed"] for x in out] == [True, True]
    assert [len(x["decoded"]["payload"]) for x in out] == [6668, 6668]  # base64 of 5000 bytes


def test_bidi_messages_in_the_log_while_the_call_is_open(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path
) -> None:
    log = tmp_path / "flows.jsonl"
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", "--proto-path", str(gen.proto),
        flow_log=log,
    )  # fmt: skip
    gate = grpcsvc.Gate()
    channel = grpc.insecure_channel(f"127.0.0.1:{p.port}")
    try:
        replies = gen.grpc.EchoStub(channel).Bidi(iter(gate), timeout=30)
        for i, text in enumerate(("one", "two")):
            gate.put(gen.pb2.Req(text=text, count=i))
            assert next(replies).text == text.upper()
            want = {("request", i), ("response", i)}
            deadline = time.monotonic() + 10
            while True:
                recs = complete_records(log)
                seen = {
                    (r["grpc_message"]["direction"], r["grpc_message"]["index"])
                    for r in recs if r["kind"] == "grpc_message"
                }  # fmt: skip
                if want <= seen or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert want <= seen, recs
            assert not any(r["kind"] == "http" for r in recs), "the call is still open"
            texts = [
                r["grpc_message"]["decoded"]["text"] for r in recs if r["kind"] == "grpc_message"
            ]
            assert text in texts and text.upper() in texts
        gate.close()
        assert list(replies) == []
        recs = grpc_records(p, 1)
    finally:
        gate.close()
        channel.close()
        p.stop()
    call = calls_by_method(recs)["Bidi"]["grpc"]
    assert call["messages"] == {"request": 2, "response": 2} and call["status"]["name"] == "OK"


def test_hostile_message_is_a_decode_error_in_the_record(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path
) -> None:
    """Bytes that are no protobuf message: the record says why, the proxy goes on."""
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", "--proto-path", str(gen.proto),
        flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip
    channel = grpc.insecure_channel(f"127.0.0.1:{p.port}")
    raw = channel.unary_unary(
        "/demo.Echo/Unary", request_serializer=None, response_deserializer=None
    )
    hostile = b"\x0a\xff\xff\xff\xff\x0f" + b"\x12\x80"  # a huge length, a truncated varint
    try:
        with pytest.raises(grpc.RpcError) as info:
            raw(hostile, timeout=10)
        assert info.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
        stub = gen.grpc.EchoStub(channel)
        assert stub.Unary(gen.pb2.Req(text="still", count=1), timeout=10).text == "still"
        recs = grpc_records(p, 2)
    finally:
        channel.close()
        p.stop()
    bad = next(
        r["grpc_message"] for r in recs
        if r["kind"] == "grpc_message" and r["grpc_message"]["size"] == len(hostile)
    )  # fmt: skip
    assert "decoded" not in bad and "fields" not in bad
    assert bad["error"].startswith("schema: not a demo.Req")
    assert "not a protobuf message: length" in bad["error"]


def test_upstream_trailers_only_error_reaches_the_client(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path
) -> None:
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", flow_log=tmp_path / "flows.jsonl"
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{p.port}")
    try:
        with pytest.raises(grpc.RpcError) as info:
            gen.grpc.EchoStub(channel).Unary(gen.pb2.Req(text="fail"), timeout=10)
        recs = grpc_records(p, 1)
    finally:
        channel.close()
        p.stop()
    status = calls_by_method(recs)["Unary"]["grpc"]["status"]
    assert status["name"] == "INVALID_ARGUMENT" and status["from"] == "headers"
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_status_details_decoded_in_the_record(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path
) -> None:
    """grpc-message percent-decoded, grpc-status-details-bin as google.rpc.Status."""
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", flow_log=tmp_path / "flows.jsonl"
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{p.port}")
    try:
        with pytest.raises(grpc.RpcError):
            gen.grpc.EchoStub(channel).Unary(gen.pb2.Req(text="details"), timeout=10)
        recs = grpc_records(p, 1)
    finally:
        channel.close()
        p.stop()
    valid(recs)
    status = calls_by_method(recs)["Unary"]["grpc"]["status"]
    assert (status["code"], status["name"], status["message"]) == (14, "UNAVAILABLE", "dépôt down")
    details = status["details"]
    assert details["code"] == 14 and details["message"] == "dépôt down"
    [any_] = details["details"]
    assert any_["type_url"] == "type.googleapis.com/demo.Reply"
    assert any_["fields"] == [
        {"n": 1, "type": "string", "value": "retry later"}, {"n": 2, "type": "varint", "value": 3},
    ]  # fmt: skip


def test_har_carries_the_decoded_messages(
    gen: grpcsvc.Generated, server: grpcsvc.Server, tmp_path: Path
) -> None:
    """--har live, and ``tapproxy convert`` of the flow log: the same entries."""
    har, log = tmp_path / "calls.har", tmp_path / "flows.jsonl"
    p = start_proxy(
        "--mode", f"reverse:h2c://127.0.0.1:{server.port}", "--proto-path", str(gen.proto),
        "--har", str(har), flow_log=log,
    )  # fmt: skip
    try:
        assert run_client(gen, f"127.0.0.1:{p.port}") == EXPECTED
        grpc_records(p, 4)
    finally:
        p.stop()
    converted = tmp_path / "converted.har"
    subprocess.run(
        [sys.executable, "-m", "proxy", "convert", str(log), "--to", "har", "-o", str(converted)],
        cwd=REPO, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    har_schema = json.loads((REPO / "tests" / "data" / "har-1.2.schema.json").read_text())
    for path in (har, converted):
        doc = json.loads(path.read_text())
        Draft202012Validator(har_schema).validate(doc)
        entries = {e["request"]["url"].rsplit("/", 1)[1]: e for e in doc["log"]["entries"]}
        bidi = entries["Bidi"]
        assert json.loads(bidi["request"]["postData"]["text"]) == [
            {"text": "a", "count": 1}, {"text": "b", "count": 2},
        ]  # fmt: skip
        assert json.loads(bidi["response"]["content"]["text"]) == [
            {"text": "A", "count": 1}, {"text": "B", "count": 2, "index": 1},
        ]  # fmt: skip
        assert "gRPC messages decoded" in bidi["response"]["content"]["comment"]
        assert bidi["_tapproxy"]["grpc"]["status"]["name"] == "OK"
        unary = json.loads(entries["Unary"]["request"]["postData"]["text"])
        assert unary == [
            {"text": "hello", "count": 21, "inner": {"label": "in", "values": [1, 2, 300]}}
        ]
