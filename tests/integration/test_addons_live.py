"""Addons (``-s``) through a live proxy process: the examples, answers and kills,
a failing addon, and a reload on change (issue 19 item 4)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import requests

from proxy.replay.reader import load
from tests.support.proxyproc import running_proxy
from tests.support.upstreams import Upstreams

EXAMPLES = Path(__file__).resolve().parents[2] / "addons" / "examples"


def _echo(r: requests.Response) -> dict[str, object]:
    assert r.status_code == 200, r.text
    return json.loads(r.content)  # type: ignore[no-any-return]


def _headers(echo: dict[str, object]) -> dict[str, str]:
    return {k.lower(): v for k, v in echo["headers"]}  # type: ignore[attr-defined]


def test_sign_requests_with_hmac(upstreams: Upstreams, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPPROXY_HMAC_SECRET", "k3y")
    body = b'{"amount": 12}'
    with running_proxy("-s", str(EXAMPLES / "sign_requests.py")) as p:
        r = requests.post(f"{upstreams.url}/echo/pay?x=1", data=body,
                          proxies={"http": p.url}, timeout=10)  # fmt: skip
    echo = _echo(r)
    got = _headers(echo)
    message = f"POST\n/echo/pay?x=1\n{got['x-timestamp']}\n{hashlib.sha256(body).hexdigest()}"
    expected = hmac.new(b"k3y", message.encode(), hashlib.sha256).hexdigest()
    assert got["x-signature"] == expected
    assert echo["body"] == body.decode()  # the body went on unchanged


def test_redact_secrets_in_the_recording_only(upstreams: Upstreams, tmp_path: Path) -> None:
    rec = tmp_path / "r.tap"
    args = ("-s", str(EXAMPLES / "redact_secrets.py"), "--save", str(rec))
    with running_proxy(*args) as p:
        r = requests.post(
            f"{upstreams.url}/echo/login",
            json={"user": "ann", "password": "hunter22"},
            headers={"Authorization": "Bearer s3cret-token"},
            proxies={"http": p.url},
            timeout=10,
        )
    echo = _echo(r)
    assert _headers(echo)["authorization"] == "Bearer s3cret-token"  # the service got it
    assert "hunter22" in str(echo["body"])
    everything = b"".join(zlib.decompressobj(31).decompress(m) for m in _members(rec.read_bytes()))
    assert everything.startswith(b'{"type":"header"')
    assert b"s3cret-token" not in everything and b"hunter22" not in everything
    (flow,) = load(rec).flows
    assert flow.request is not None and (b"Authorization", b"REDACTED") in flow.request.headers
    assert json.loads(flow.request.body.data)["password"] == "REDACTED"


def _members(data: bytes) -> list[bytes]:
    out = []
    while data:
        d = zlib.decompressobj(31)
        d.decompress(data)
        out.append(data[: len(data) - len(d.unused_data)])
        data = d.unused_data
    return out


def test_latency_by_header_holds_one_flow_not_the_proxy(upstreams: Upstreams) -> None:
    with running_proxy("-s", str(EXAMPLES / "latency_by_header.py")) as p:
        proxies = {"http": p.url}
        slow: dict[str, float] = {}

        def slow_one() -> None:
            start = time.monotonic()
            r = requests.get(f"{upstreams.url}/echo/slow", headers={"X-Delay-Ms": "800"},
                             proxies=proxies, timeout=10)  # fmt: skip
            slow["took"] = time.monotonic() - start
            slow["header_forwarded"] = float("x-delay-ms" in _headers(_echo(r)))

        t = threading.Thread(target=slow_one)
        t.start()
        time.sleep(0.1)  # the slow one is held now (a head start, not synchronisation)
        start = time.monotonic()
        requests.get(f"{upstreams.url}/echo/fast", proxies=proxies, timeout=10)
        fast = time.monotonic() - start
        t.join(15)
    assert slow["took"] >= 0.8
    assert fast < 0.6  # served while the other flow waited
    assert slow["header_forwarded"] == 0.0


def test_har_of_matching_flows_only(upstreams: Upstreams, tmp_path: Path) -> None:
    har = tmp_path / "api.har"
    env = {"TAPPROXY_HAR_PATH": str(har), "TAPPROXY_HAR_MATCH": "/echo/api/"}
    os.environ.update(env)
    try:
        with running_proxy("-s", str(EXAMPLES / "har_matching.py"), "--save",
                           str(tmp_path / "all.tap")) as p:  # fmt: skip
            for path in ("/echo/api/1", "/bytes/10", "/echo/other", "/echo/api/2?x=1"):
                requests.get(upstreams.url + path, proxies={"http": p.url}, timeout=10)
            deadline = time.monotonic() + 10
            while _entries(har) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        for k in env:
            os.environ.pop(k)
    doc = json.loads(har.read_text())
    urls = [e["request"]["url"] for e in doc["log"]["entries"]]
    assert urls == [upstreams.url + "/echo/api/1", upstreams.url + "/echo/api/2?x=1"]
    assert json.loads(doc["log"]["entries"][0]["response"]["content"]["text"])["path"] == (
        "/echo/api/1"
    )


def _entries(har: Path) -> int:
    try:
        return len(json.loads(har.read_text())["log"]["entries"])
    except (OSError, ValueError):
        return 0


ANSWERING = """
from proxy.addons.api import Response

def request(flow):
    if flow.request.url.endswith("/answer"):
        flow.response = Response.make(201, {"answered": flow.options["listen_host"]})
    elif flow.request.url.endswith("/kill"):
        flow.kill()
    elif flow.request.url.endswith("/rewrite"):
        flow.request.content = flow.request.content.upper() + b"!"

class Tagger:
    def response(self, flow):
        flow.response.headers["X-Seen-By"] = "addon"
        if flow.request.url.endswith("/teapot"):
            flow.response.status_code = 418

addons = [Tagger()]
"""


def test_addon_answers_kills_and_edits(upstreams: Upstreams, tmp_path: Path) -> None:
    script = tmp_path / "answering.py"
    script.write_text(ANSWERING)
    with running_proxy("-s", str(script)) as p:
        proxies = {"http": p.url}
        answer = requests.get(f"{upstreams.url}/echo/answer", proxies=proxies, timeout=10)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{upstreams.url}/echo/kill", proxies=proxies, timeout=10)
        teapot = requests.get(f"{upstreams.url}/echo/teapot", proxies=proxies, timeout=10)
        rewritten = requests.post(f"{upstreams.url}/echo/rewrite", data=b"quiet",
                                  proxies=proxies, timeout=10)  # fmt: skip
    assert (answer.status_code, answer.json()) == (201, {"answered": "127.0.0.1"})
    assert "X-Seen-By" not in answer.headers  # an answer is not a server's response
    assert (teapot.status_code, teapot.headers["X-Seen-By"]) == (418, "addon")
    assert _echo_path(teapot) == "/echo/teapot"
    assert _echo(rewritten)["body"] == "QUIET!"  # a new body, framed by its length
    assert f"addons {script}" in p.stderr_text  # the start line says addons are on


def _echo_path(r: requests.Response) -> str:
    return str(json.loads(r.content)["path"])


FAILING = """
def request(flow):
    1 / 0
"""


def test_failing_addon_is_reported_once_and_the_proxy_serves(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    with running_proxy("-s", str(script)) as p:
        statuses = [
            requests.get(
                f"{upstreams.url}/echo/{n}", proxies={"http": p.url}, timeout=10
            ).status_code
            for n in range(3)
        ]
    assert statuses == [200, 200, 200]
    err = p.stderr_text
    assert err.count("failed in request()") == 1
    assert "ZeroDivisionError" in err and f'File "{script}", line 3' in err


def test_addon_reloaded_when_it_changes(upstreams: Upstreams, tmp_path: Path) -> None:
    script = tmp_path / "tag.py"
    body = "def request(flow):\n    flow.request.headers['X-Version'] = '{}'\n"
    script.write_text(body.format("v1"))
    with running_proxy("-s", str(script)) as p:
        proxies = {"http": p.url}

        def version() -> str:
            r = requests.get(f"{upstreams.url}/echo/v", proxies=proxies, timeout=10)
            return _headers(_echo(r))["x-version"]

        assert version() == "v1"
        script.write_text(body.format("v2"))
        mtime = script.stat().st_mtime + 2
        os.utime(script, (mtime, mtime))  # a change even where mtime is coarse
        deadline = time.monotonic() + 10
        while version() != "v2":
            assert time.monotonic() < deadline, "the addon was never reloaded"
            time.sleep(0.1)
    assert "reloaded" in p.stderr_text


def test_addon_that_cannot_load_stops_the_start(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("def request(flow):\n    return (\n")
    proc = subprocess.run([sys.executable, "-m", "proxy", "-p", "0", "-s", str(script)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 2
    assert "cannot load addon" in proc.stderr and "SyntaxError" in proc.stderr


WATCHING = """
import json, os

def error(flow):
    with open(os.environ["TAPPROXY_TEST_OUT"], "a") as f:
        f.write(json.dumps({"hook": "error", "url": flow.request.url, "error": flow.error}) + "\\n")

async def done(flow):
    with open(os.environ["TAPPROXY_TEST_OUT"], "a") as f:
        status = flow.response.status_code if flow.response else None
        f.write(json.dumps({"hook": "done", "url": flow.request.url, "status": status}) + "\\n")
"""


def test_error_and_done_hooks_see_the_final_flow(
    upstreams: Upstreams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, out = tmp_path / "watching.py", tmp_path / "seen.jsonl"
    script.write_text(WATCHING)
    monkeypatch.setenv("TAPPROXY_TEST_OUT", str(out))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connecting is refused
    with running_proxy("-s", str(script)) as p:
        proxies = {"http": p.url}
        ok = requests.get(f"{upstreams.url}/echo/fine", proxies=proxies, timeout=10)
        refused = requests.get(f"http://127.0.0.1:{port}/gone", proxies=proxies, timeout=10)
        deadline = time.monotonic() + 10
        while len(_lines(out)) < 3:
            assert time.monotonic() < deadline, _lines(out)
            time.sleep(0.05)
    assert (ok.status_code, refused.status_code) == (200, 502)
    seen = _lines(out)
    assert seen[0] == {"hook": "done", "url": f"{upstreams.url}/echo/fine", "status": 200}
    assert seen[1]["hook"] == "error" and seen[1]["url"] == f"http://127.0.0.1:{port}/gone"
    assert "refused" in seen[1]["error"]
    assert seen[2] == {"hook": "done", "url": f"http://127.0.0.1:{port}/gone", "status": 502}


def _lines(path: Path) -> list[dict[str, object]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
