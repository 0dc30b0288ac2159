"""``tapproxy convert`` between recordings, flow logs with body files, and HAR,
and ``-r`` reading each, on a recording made by a live proxy."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path

from proxy.replay.format import RecordedFlow
from proxy.replay.reader import load
from tests.integration.test_replay_live import Req, fetch_all
from tests.support.proxyproc import running_proxy
from tests.support.replay_service import Service

REQS: list[Req] = [
    ("GET", "/api/items/3", None),
    ("GET", "/bin/300000", None),
    ("GET", "/chunked/70000", None),
    ("POST", "/api/orders?n=9", b'{"sku": 9, "qty": 2}'),
    ("GET", "/bin/0", None),
]


def _tapproxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def _bodies(flows: list[RecordedFlow]) -> list[tuple[bytes, bytes]]:
    return [
        (f.request.body.data if f.request else b"", f.response.body.data if f.response else b"")
        for f in flows
    ]


def test_convert_round_trips_keep_whole_bodies(tmp_path: Path) -> None:
    rec = tmp_path / "rec.tap"
    service = Service()
    try:
        with running_proxy("--save", str(rec)) as p:
            for req in REQS:  # one by one: the recording keeps this order
                asyncio.run(fetch_all(p.url, service.url, [req]))
    finally:
        service.stop()
    original = load(rec).flows
    assert len(original) == len(REQS)
    assert len(original[1].response.body.data) == 300_000  # type: ignore[union-attr]

    flowlog = tmp_path / "flows.jsonl"
    out = _tapproxy("convert", str(rec), "--to", "flowlog", "-o", str(flowlog))
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in flowlog.read_text().splitlines()]
    big = records[1]["response"]
    assert Path(big["body_file"]).read_bytes() == original[1].response.body.data  # type: ignore[union-attr]
    assert Path(big["body_file"]).parent == tmp_path / "flows.jsonl.bodies"

    back = tmp_path / "back.tap"
    assert _tapproxy("convert", str(flowlog), "--to", "recording", "-o", str(back)).returncode == 0
    assert _bodies(load(back).flows) == _bodies(original)

    har = tmp_path / "rec.har"
    assert _tapproxy("convert", str(rec), "--to", "har", "-o", str(har)).returncode == 0
    entries = json.loads(har.read_text())["log"]["entries"]
    content = entries[1]["response"]["content"]
    assert content["encoding"] == "base64"
    assert base64.b64decode(content["text"]) == original[1].response.body.data  # type: ignore[union-attr]
    assert entries[3]["request"]["postData"]["text"] == '{"sku": 9, "qty": 2}'

    from_har = tmp_path / "from-har.tap"
    assert _tapproxy("convert", str(har), "--to", "recording", "-o", str(from_har)).returncode == 0
    assert _bodies(load(from_har).flows) == _bodies(original)

    for name in (rec, flowlog, har):
        shown = _tapproxy("-r", str(name))
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert len(lines) == len(REQS), (name, shown.stdout)
        assert "GET http://127.0.0.1:" in lines[1] and " 200 " in lines[1]
