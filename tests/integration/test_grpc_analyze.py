"""``tapproxy analyze`` decodes gRPC in a capture (issue 16 item 6).

The grpcio client of ``tests.support.grpcclient`` calls the grpcio service
directly over h2c while ``tcpdump -i lo`` records it; ``analyze`` must give
each call (service, method, status from the trailers, message counts) and
each message, decoded with ``--proto-path`` and schemalessly without it,
in records that validate against docs/flow-log.schema.json.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.cli.analyze_cmd import main
from tests.integration.test_analyze_tls import _ended
from tests.integration.test_analyze_tshark import _capture_command, _wait_listening
from tests.integration.test_grpc import COUNTS, EXPECTED, KINDS, run_client, valid
from tests.support import grpcsvc


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, grpcsvc.Generated]]:
    tmp = tmp_path_factory.mktemp("grpccap")
    gen = grpcsvc.build(tmp / "gen")
    server = grpcsvc.serve(gen)
    cap = tmp / "grpc.pcap"
    try:
        dump = subprocess.Popen(
            _capture_command(cap, server.port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_listening(dump, time.monotonic() + 15)
            assert run_client(gen, f"127.0.0.1:{server.port}") == EXPECTED
            deadline = time.monotonic() + 15
            while _ended(cap, [server.port]) < 1:
                assert time.monotonic() < deadline, "the capture never showed the connection end"
                time.sleep(0.05)
        finally:
            dump.send_signal(signal.SIGTERM)
            dump.wait(timeout=15)
    finally:
        server.stop()
    yield cap, gen


def analyzed(cap: Path, out: Path, *extra: str) -> list[dict[str, Any]]:
    assert main([str(cap), "-o", str(out), "--no-progress", *extra]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("schema", [True, False], ids=["proto", "schemaless"])
def test_calls_and_messages_from_a_capture(
    capture: tuple[Path, grpcsvc.Generated], tmp_path: Path, schema: bool
) -> None:
    cap, gen = capture
    extra = ("--proto-path", str(gen.proto)) if schema else ()
    recs = analyzed(cap, tmp_path / "out.jsonl", *extra)
    valid(recs)
    calls = {r["grpc"]["method"]: r for r in recs if "grpc" in r}
    assert set(calls) == set(KINDS)
    for method, rec in calls.items():
        g = rec["grpc"]
        assert g["service"] == "demo.Echo" and rec["mode"] == "capture"
        assert g["status"]["name"] == "OK" and g["status"]["from"] == "trailers"
        assert (g["messages"]["request"], g["messages"]["response"]) == COUNTS[method]
        assert g["streaming"] == KINDS[method] and g["schema"] is schema
        msgs = [
            r["grpc_message"] for r in recs
            if r["kind"] == "grpc_message" and r["grpc_message"]["flow"] == rec["id"]
        ]  # fmt: skip
        assert len(msgs) == sum(COUNTS[method])
        ids = [r["id"] for r in recs]
        assert all(
            ids.index(f"{rec['id']}:{m['direction']}:{m['index']}") < ids.index(rec["id"])
            for m in msgs
        )
    unary = next(
        r["grpc_message"] for r in recs
        if r["kind"] == "grpc_message" and r["grpc_message"]["method"] == "Unary"
        and r["grpc_message"]["direction"] == "request"
    )  # fmt: skip
    if schema:
        assert unary["decoded"] == {
            "text": "hello", "count": 21, "inner": {"label": "in", "values": [1, 2, 300]},
        }  # fmt: skip
    else:
        assert unary["fields"][0] == {"n": 1, "type": "string", "value": "hello"}
