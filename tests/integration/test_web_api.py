"""The web UI's admin API through a live proxy (docs/api.md).

A real tapproxy with ``--web``, a real upstream (tests.support.upstreams),
curl and httpx as clients. Covers: the token (401, 403, cookie), refusing a
non-loopback UI without a token, the flow list and details with bodies and
views, filters (and their column errors), live updates over the WebSocket,
a breakpoint that holds a request which is edited and resumed (the upstream
receives the edited header), reply and kill, a resend, a diff, exports, and
``/metrics`` parsed with prometheus-client. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.h2ws import H2WebSocket
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams

TOKEN = "test-token-1234"


@pytest.fixture(scope="module")
def web() -> Iterator[ProxyProcess]:
    p = start_proxy("--web", "--web-port", "0", "--web-token", TOKEN, modes=2)
    try:
        yield p
    finally:
        p.stop()


def api(p: ProxyProcess) -> httpx.Client:
    host, port = p.addresses[1]
    return httpx.Client(
        base_url=f"http://{host}:{port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
        trust_env=False,
    )


def curl(p: ProxyProcess, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-x", p.url, *extra, url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.05)


def flows(c: httpx.Client, expr: str = "") -> list[dict[str, Any]]:
    r = c.get("/api/flows", params={"filter": expr} if expr else {})
    assert r.status_code == 200, r.text
    return list(r.json()["flows"])


def test_the_token_is_needed(web: ProxyProcess) -> None:
    host, port = web.addresses[1]
    base = f"http://{host}:{port}"
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as c:
        assert c.get("/api/flows").status_code == 401
        assert c.get("/").status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.get("/api/flows", headers={"Authorization": "Bearer nope"}).status_code == 403
        page = c.get("/", params={"token": TOKEN})
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert "tapproxy_token" in page.headers.get("set-cookie", "")
        assert c.get("/api/status").status_code == 200  # the cookie from the first visit


def test_a_ui_beyond_loopback_needs_a_token() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "proxy", "-p", "0", "--web", "--web-host", "0.0.0.0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 2
    assert "without --web-token" in r.stderr


def test_flows_are_listed_with_details_views_and_filters(
    web: ProxyProcess, upstreams: Upstreams
) -> None:
    body = json.dumps({"name": "tap", "n": [1, 2]})
    out = curl(web, f"{upstreams.url}/echo/json-one", "-H", "Content-Type: application/json",
               "--data-binary", body)  # fmt: skip
    assert out.returncode == 0, out.stderr
    with api(web) as c:
        got = until(lambda: [f for f in flows(c) if f["path"].startswith("/echo/json-one")])
        summary = got[0]
        assert summary["method"] == "POST" and summary["status"] == 200
        assert summary["protocol"] == "HTTP/1.1" and summary["state"] == "done"
        detail = c.get(f"/api/flows/{summary['id']}").json()
        assert detail["record"]["request"]["method"] == "POST"
        raw = c.get(f"/api/flows/{summary['id']}/body/request")
        assert raw.content == body.encode()
        view = c.get(f"/api/flows/{summary['id']}/view/request").json()
        assert view["view"] == "json" and view["text"] == json.dumps(json.loads(body), indent=2)
        assert [f["id"] for f in flows(c, "~m POST & ~u json-one")] == [summary["id"]]
        assert flows(c, "~m DELETE") == []
        bad = c.get("/api/flows", params={"filter": "~m POST & (~c 200"})
        assert bad.status_code == 400 and bad.json()["column"] is not None
        assert c.get("/api/flows/nope").status_code == 404


def test_live_updates_arrive_over_the_websocket(web: ProxyProcess, upstreams: Upstreams) -> None:
    host, port = web.addresses[1]
    seen: list[dict[str, Any]] = []
    ready = threading.Event()

    async def watch() -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(
                f"http://{host}:{port}/api/updates", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as ws,
        ):
            ready.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                msg = await ws.receive(timeout=deadline - time.monotonic())
                data = json.loads(msg.data)
                seen.extend(data if isinstance(data, list) else [data])
                if any(m.get("flow", {}).get("state") == "done"
                       and "live-one" in m["flow"].get("url", "") for m in seen):  # fmt: skip
                    return

    t = threading.Thread(target=lambda: asyncio.run(watch()), daemon=True)
    t.start()
    assert ready.wait(10)
    assert curl(web, f"{upstreams.url}/echo/live-one").returncode == 0
    t.join(15)
    states = [m["flow"]["state"] for m in seen if "live-one" in m.get("flow", {}).get("url", "")]
    assert states[0] == "live" and states[-1] == "done", states


def test_a_breakpoint_holds_a_request_that_is_edited_and_resumed(
    web: ProxyProcess, upstreams: Upstreams
) -> None:
    with api(web) as c:
        r = c.put("/api/intercept", json={"filter": "~u held-one", "request": True})
        assert r.status_code == 200, r.text
        result: list[subprocess.CompletedProcess[str]] = []
        t = threading.Thread(
            target=lambda: result.append(
                curl(web, f"{upstreams.url}/echo/held-one", "-H", "X-Before: 1")
            )
        )
        t.start()
        held = until(lambda: c.get("/api/held").json())
        assert held[0]["phase"] == "request" and held[0]["url"].endswith("/echo/held-one")
        assert t.is_alive()  # the client waits while the flow is held
        headers = [[k, v] for k, v in held[0]["headers"] if k != "X-Before"]
        headers.append(["X-Edited", "yes"])
        ok = c.post(f"/api/held/{held[0]['id']}/resume", json={"headers": headers})
        assert ok.status_code == 200, ok.text
        t.join(20)
        echoed = json.loads(result[0].stdout)
        names = [k.lower() for k, _ in echoed["headers"]]
        assert "x-edited" in names and "x-before" not in names
        # reply and kill
        t = threading.Thread(
            target=lambda: result.append(curl(web, f"{upstreams.url}/echo/held-one/2", "-i"))
        )
        t.start()
        held = until(lambda: c.get("/api/held").json())
        c.post(f"/api/held/{held[0]['id']}/reply", json={"status": 418, "body": "from the UI"})
        t.join(20)
        assert " 418 " in result[-1].stdout and result[-1].stdout.endswith("from the UI")
        c.put("/api/intercept", json={"filter": ""})
        assert curl(web, f"{upstreams.url}/echo/held-one/3").returncode == 0  # not held now


def test_resend_diff_exports_and_metrics(web: ProxyProcess, upstreams: Upstreams) -> None:
    assert curl(web, f"{upstreams.url}/echo/resend-one?a=1").returncode == 0
    with api(web) as c:
        first = until(lambda: flows(c, "~u resend-one"))[0]
        r = c.post(
            f"/api/flows/{first['id']}/resend", json={"url": f"{upstreams.url}/echo/resend-one?a=2"}
        )
        assert r.status_code == 200 and r.json()["status"] == 200, r.text
        for bad in ({"body_b64": "not base64!"}, {"headers": [["X-Only-Name"]]}):
            refused = c.post(f"/api/flows/{first['id']}/resend", json=bad)
            assert refused.status_code == 400, refused.text
        both = until(lambda: (f := flows(c, "~u resend-one")) and len(f) >= 2 and f)
        d = c.get("/api/diff", params={"a": both[1]["id"], "b": both[0]["id"]}).json()
        assert "-GET" in d["request"]["line"] and "a=2" in d["request"]["line"]
        assert d["response"]["status"] == ""
        one = c.get(f"/api/flows/{first['id']}/export", params={"format": "curl"}).text
        assert one.startswith("curl ") and "resend-one?a=1" in one
        har = c.post("/api/export", json={"format": "har", "filter": "~u resend-one"}).json()
        assert len(har["log"]["entries"]) == 2
        pcap = c.get(f"/api/flows/{first['id']}/export", params={"format": "pcap"})
        assert pcap.content[:4] == b"\x0a\x0d\x0d\x0a"  # a pcapng section header
        text = c.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        listed = c.get("/api/flows", params={"limit": 5000}).json()["total"]
        flows_total = sum(s.value for s in families["tapproxy_flows"].samples
                          if s.name == "tapproxy_flows_total")  # fmt: skip
        assert flows_total == listed


def test_a_recording_opens_in_the_ui(upstreams: Upstreams, tmp_path: Any) -> None:
    tap = tmp_path / "traffic.tap"
    p = start_proxy("--save", str(tap))
    try:
        for i in range(3):
            assert (
                curl(p, f"{upstreams.url}/bytes/{1000 * (i + 1)}", "-o", "/dev/null").returncode
                == 0
            )
    finally:
        p.stop()
    w = start_proxy("-r", str(tap), "--web", "--web-port", "0", "--web-token", TOKEN, modes=2)
    try:
        with api(w) as c:
            listed = flows(c, "~u /bytes/")
            assert sorted(f["size"] for f in listed) == [1000, 2000, 3000]
            big = next(f for f in listed if f["size"] == 3000)
            body = c.get(f"/api/flows/{big['id']}/body/response").content
            assert len(body) == 3000
            assert c.get(f"/api/flows/{big['id']}/view/response").json()["view"] == "hex"
    finally:
        w.stop()


def test_a_breakpoint_holds_an_http2_stream_and_its_response(upstreams: Upstreams) -> None:
    """One stream held (request, then response) while another on the same
    connection goes through: nghttp multiplexes both on one connection."""
    w = start_proxy("--mode", f"reverse:{upstreams.url}", "--web", "--web-port", "0",
                    "--web-token", TOKEN, modes=2)  # fmt: skip
    try:
        with api(w) as c:
            c.put(
                "/api/intercept", json={"filter": "~u h2-held", "request": True, "response": True}
            )
            result: list[subprocess.CompletedProcess[str]] = []
            cmd = ["nghttp", "-nv", "-t", "20", f"{w.url}/echo/h2-held", f"{w.url}/echo/h2-other"]
            t = threading.Thread(
                target=lambda: result.append(
                    subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                )
            )
            t.start()
            held = until(lambda: c.get("/api/held").json())
            assert held[0]["phase"] == "request"
            until(lambda: flows(c, "~u h2-other"))  # the other stream was not held
            edit = {"headers": [*held[0]["headers"], ["x-from-ui", "1"]]}
            assert c.post(f"/api/held/{held[0]['id']}/resume", json=edit).status_code == 200
            held = until(lambda: [h for h in c.get("/api/held").json() if h["phase"] == "response"])
            assert held[0]["status"] == 200
            c.post(f"/api/held/{held[0]['id']}/resume", json={"status": 203})
            t.join(20)
            statuses = re.findall(r"recv \(stream_id=\d+\) :status: (\d+)", result[0].stdout)
            assert sorted(statuses) == ["200", "203"], result[0].stdout[-2000:]
            (summary,) = until(lambda: flows(c, "~u h2-held"))
            assert summary["protocol"] == "HTTP/2" and summary["changed"]
            record = c.get(f"/api/flows/{summary['id']}").json()["record"]
            sent = [k for k, _ in record["request"]["forwarded"]["headers"]]
            assert "x-from-ui" in sent
            assert record["response"]["upstream"]["status"] == 200
    finally:
        w.stop()


def test_a_breakpoint_holds_websocket_messages(web: ProxyProcess, upstreams: Upstreams) -> None:
    """A client message edited at the breakpoint reaches the echo server
    edited; the echo (a server message) is held too, then dropped."""
    ws_url = upstreams.url.replace("http://", "ws://") + "/ws"
    with api(web) as c:
        r = c.put("/api/intercept", json={"filter": "~websocket & ~u /ws", "request": False,
                                          "response": False, "messages": True})  # fmt: skip
        assert r.status_code == 200 and r.json()["messages"], r.text
        got: list[str] = []
        ready = threading.Event()

        async def talk() -> None:
            async with aiohttp.ClientSession() as s, s.ws_connect(ws_url, proxy=web.url) as ws:
                ready.set()
                await ws.send_str("original")
                got.append((await ws.receive(timeout=20)).data)
                await ws.send_str("second")
                got.append((await ws.receive(timeout=20)).data)

        t = threading.Thread(target=lambda: asyncio.run(talk()), daemon=True)
        t.start()
        assert ready.wait(10)
        held = until(lambda: c.get("/api/held").json())
        assert held[0]["phase"] == "message" and held[0]["direction"] == "client"
        assert held[0]["body"] == "original"
        c.post(f"/api/held/{held[0]['id']}/resume", json={"body": "edited"})
        echo = until(lambda: [h for h in c.get("/api/held").json() if h["direction"] == "server"])
        assert echo[0]["body"] == "echo:edited"
        c.post(f"/api/held/{echo[0]['id']}/resume", json={"body": "echo:seen by the UI"})
        second = until(lambda: [h for h in c.get("/api/held").json() if h["body"] == "second"])
        c.put("/api/intercept", json={"filter": ""})  # off: what is held still waits for us
        c.post(f"/api/held/{second[0]['id']}/resume", json={})
        t.join(20)
        assert got == ["echo:seen by the UI", "echo:second"]


def test_a_breakpoint_holds_messages_of_a_websocket_over_http2(
    web: ProxyProcess, upstreams: Upstreams
) -> None:
    """RFC 8441: the same breakpoint on a WebSocket carried by an HTTP/2 stream."""
    authority = upstreams.url.removeprefix("http://")
    with api(web) as c:
        c.put("/api/intercept", json={"filter": "~websocket", "request": False,
                                      "response": False, "messages": True})  # fmt: skip
        got: list[Any] = []

        async def talk() -> None:
            ws = await H2WebSocket.connect(web.port, authority, "/ws")
            assert ws.status == 200
            await ws.send("over h2")
            got.append((await ws.recv(20)).data)
            await ws.aclose()

        t = threading.Thread(target=lambda: asyncio.run(talk()), daemon=True)
        t.start()
        held = until(lambda: c.get("/api/held").json())
        assert held[0]["body"] == "over h2" and held[0]["url"].endswith("/ws")
        c.post(f"/api/held/{held[0]['id']}/resume", json={"body": "edited over h2"})
        echo = until(lambda: [h for h in c.get("/api/held").json() if h["direction"] == "server"])
        c.put("/api/intercept", json={"filter": ""})
        c.post(f"/api/held/{echo[0]['id']}/resume", json={})
        t.join(20)
        assert got == ["echo:edited over h2"]
