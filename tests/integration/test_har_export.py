"""``--har FILE`` on a live proxy, checked against its own flow log and ``convert``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from haralyzer import HarParser

from tests.support.proxyproc import start_proxy
from tests.support.rawhttp import connect, recv_response
from tests.support.upstreams import Upstreams

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "har-1.2.schema.json").read_text())
ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _har(path: Path, expect: int, timeout: float = 10.0) -> dict[str, Any]:
    """The HAR document while the proxy runs; waits (bounded) for ``expect`` entries.

    A read may overlap the single write(2) that appends a batch (microseconds),
    so one unparsable read is retried; a file left invalid fails at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            doc: dict[str, Any] = json.loads(path.read_bytes())
        except json.JSONDecodeError:
            if time.monotonic() > deadline:
                raise
        else:
            if len(doc["log"]["entries"]) >= expect or time.monotonic() > deadline:
                return doc
        time.sleep(0.02)


def _tunnel_request(proxy_port: int, upstream_port: int) -> None:
    """A CONNECT tunnel (not decrypted): a flow record that is not a HAR entry."""
    s = connect(proxy_port)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % upstream_port)
    assert recv_response(s).startswith(b"HTTP/1.1 200")
    s.sendall(b"GET /echo/tunnelled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert recv_response(s).startswith(b"HTTP/1.1 200")
    s.close()


def test_har_matches_flow_log_and_convert(tmp_path: Path, upstreams: Upstreams) -> None:
    har, flows = tmp_path / "live.har", tmp_path / "flows.jsonl"
    proxy = start_proxy("--har", str(har), flow_log=flows)
    try:
        proxies = {"http": proxy.url}
        base = upstreams.url
        with requests.Session() as s:
            s.proxies.update(proxies)
            r = s.get(f"{base}/echo/q?a=1&b=two%20words", cookies={"sid": "abc"}, timeout=10)
            assert r.status_code == 200
            r = s.post(f"{base}/echo/form", data={"name": "x y", "n": "1"}, timeout=10)
            assert r.status_code == 200
            assert s.get(f"{base}/bytes/100", timeout=10).content  # binary, whole in preview
            # Past the 64K HAR preview (docs/har.md): truncated, the HAR says how to get it.
            assert len(s.get(f"{base}/bytes/70000", timeout=10).content) == 70000
            assert len(s.get(f"{base}/chunked/64", timeout=10).content) == 64
        dead = requests.get(f"http://127.0.0.1:{_free_port()}/x", proxies=proxies, timeout=10)
        assert dead.status_code == 502
        _tunnel_request(proxy.port, upstreams.port)
        recs = proxy.records(7)
        http = [r for r in recs if r["kind"] == "http"]
        assert len(http) == 6 and len(recs) == 7
        running = _har(har, 6)  # valid and complete while the proxy still runs
        assert len(running["log"]["entries"]) == 6
    finally:
        assert proxy.stop() == 0
    doc = json.loads(har.read_bytes())
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    entries = doc["log"]["entries"]
    assert [e["_tapproxy"]["id"] for e in entries] == [r["id"] for r in http]
    assert doc["log"]["_tapproxy"] == {"dropped": 0, "skipped": {"tunnel": 1}}

    by_path = {e["request"]["url"].split("/", 3)[3]: e for e in entries[:5]}
    get = by_path["echo/q?a=1&b=two%20words"]
    assert get["request"]["queryString"] == [
        {"name": "a", "value": "1"},
        {"name": "b", "value": "two words"},
    ]
    assert {"name": "sid", "value": "abc"} in get["request"]["cookies"]
    assert json.loads(get["response"]["content"]["text"])["path"] == "/echo/q?a=1&b=two%20words"
    post = by_path["echo/form"]["request"]["postData"]
    assert post["params"] == [{"name": "name", "value": "x y"}, {"name": "n", "value": "1"}]
    binary = by_path["bytes/100"]["response"]["content"]
    assert binary["encoding"] == "base64" and binary["size"] == 100
    big = by_path["bytes/70000"]["response"]
    assert "text" not in big["content"] and big["bodySize"] == 70000
    assert "--capture-bodies DIR" in big["content"]["comment"]
    assert by_path["chunked/64"]["response"]["bodySize"] == 64
    failed = entries[5]
    assert (
        failed["response"]["status"] == 502 and "connection refused" in failed["response"]["_error"]
    )
    for e in entries:
        t = e["timings"]
        total = sum(v for k, v in t.items() if v != -1 and k != "ssl")
        assert e["time"] == pytest.approx(total, abs=1e-6)

    parsed = HarParser(doc)
    assert [e.request.method for e in parsed.pages[0].entries] == [
        "GET", "POST", "GET", "GET", "GET", "GET",
    ]  # fmt: skip

    converted = subprocess.run(
        [sys.executable, "-m", "proxy", "convert", str(flows), "--to", "har", "-o", "-"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert converted.returncode == 0, converted.stderr
    assert converted.stdout == har.read_bytes()
    assert b"skipped 1 non-HTTP flow (1 tunnel)" in converted.stderr


def test_unwritable_har_path_refuses_to_start(tmp_path: Path) -> None:
    """Issue 14 item 5: a HAR path that cannot be written stops the proxy at
    start (exit 2) instead of proxying with nothing captured; a HAR file that
    fails later is tests/integration/test_sink_failures.py's."""
    path = tmp_path / "no-such-dir" / "s.har"
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "-q", "-p", "0", "--har", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"--har {path}: cannot write this file: it or a parent directory does not exist" in (
        done.stderr
    )
