"""Record, then replay, through a live proxy process (issue 19).

* 300 mixed HTTP/1.1 flows (JSON API, POSTed JSON, binary bodies of 0 B to
  5 MiB, chunked ones) are recorded with ``--save``; the service is stopped
  and a listener counting connections takes its port; ``--server-replay``
  answers every request byte-identical and the listener sees none; an
  unmatched request gets the explanatory 404.
* ``tapproxy replay`` against a new version of the service where 3 of 100
  responses changed reports exactly those 3 and exits 1; against the same
  version, 0 differences and exit 0.
* A recording whose writer was killed loads up to its last complete flow.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from proxy.replay.reader import load
from tests.support.proxyproc import running_proxy, start_proxy
from tests.support.replay_service import CHANGED_IN_V2, CountingListener, Service
from tests.support.upstreams import pattern_chunks

TIMEOUT = aiohttp.ClientTimeout(total=60)
#: Framing fields: a replayed chunked body is framed by its length instead.
FRAMING = {"content-length", "transfer-encoding"}

Req = tuple[str, str, bytes | None]
Got = tuple[int, list[tuple[str, str]], bytes]


def mixed_requests() -> list[Req]:
    reqs: list[Req] = [("GET", f"/api/items/{n}", None) for n in range(150)]
    reqs += [
        ("POST", f"/api/orders?n={n}", json.dumps({"sku": n, "qty": n % 5}).encode())
        for n in range(50)
    ]
    sizes = [0, 1, 100, 4096, 65536, 300_000]
    reqs += [("GET", f"/bin/{sizes[n % len(sizes)] + n}", None) for n in range(57)]
    reqs += [("GET", "/bin/5242880", None), ("GET", "/bin/1048576", None), ("GET", "/bin/0", None)]
    chunked = [0, 10, 5000, 200_000]
    reqs += [("GET", f"/chunked/{chunked[n % len(chunked)] + n}", None) for n in range(40)]
    assert len(reqs) == 300
    return reqs


async def fetch_all(proxy: str, base: str, reqs: list[Req], concurrency: int = 8) -> list[Got]:
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=TIMEOUT, auto_decompress=False) as session:

        async def one(method: str, path: str, body: bytes | None) -> Got:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            async with (
                gate,
                session.request(method, base + path, data=body, headers=headers, proxy=proxy) as r,
            ):
                fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in r.raw_headers]
                return r.status, fields, await r.read()

        return list(await asyncio.gather(*(one(*req) for req in reqs)))


def _semantic(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in fields if k.lower() not in FRAMING]


def test_record_then_server_replay_answers_all_with_nothing_reaching_the_network(
    tmp_path: Path,
) -> None:
    recording = tmp_path / "traffic.tap"
    reqs = mixed_requests()
    service = Service()
    port = service.port
    try:
        with running_proxy("--save", str(recording)) as p:
            recorded = asyncio.run(fetch_all(p.url, service.url, reqs))
    finally:
        service.stop()
    assert all(status == 200 for status, _, _ in recorded)
    assert recorded[-1][2] == b"".join(pattern_chunks(len(recorded[-1][2])))
    loaded = load(recording)
    assert len(loaded.flows) == 300 and not loaded.cut
    assert max(f.response.body.size for f in loaded.flows if f.response) == 5 * 1024 * 1024

    listener = CountingListener(port)  # where the service was
    try:
        args = ("--server-replay", str(recording), "--server-replay-speed", "0")
        with running_proxy(*args) as p:
            replayed = asyncio.run(fetch_all(p.url, f"http://127.0.0.1:{port}", reqs))
            missed = asyncio.run(
                fetch_all(p.url, f"http://127.0.0.1:{port}", [("GET", "/api/items/1?x=2", None)])
            )
        assert listener.count() == 0
    finally:
        listener.close()
    for (status, fields, body), (r_status, r_fields, r_body) in zip(
        recorded, replayed, strict=True
    ):
        assert (r_status, r_body) == (status, body)  # byte-identical
        assert _semantic(r_fields) == _semantic(fields)
    status, _, text = missed[0]
    assert status == 404
    assert b"closest recorded request: GET http://127.0.0.1:" in text
    assert b"/api/items/1 " in text and b"--server-replay-ignore-params x" in text


def test_unmatched_request_is_forwarded_with_extra_forward(tmp_path: Path) -> None:
    recording = tmp_path / "one.tap"
    service = Service()
    try:
        with running_proxy("--save", str(recording)) as p:
            asyncio.run(fetch_all(p.url, service.url, [("GET", "/api/items/1", None)]))
        args = ("--server-replay", str(recording), "--server-replay-extra", "forward",
                "--server-replay-speed", "0")  # fmt: skip
        with running_proxy(*args) as p:
            reqs: list[Req] = [("GET", "/api/items/2", None)] * 2 + [("GET", "/api/items/1", None)]
            got = asyncio.run(fetch_all(p.url, service.url, reqs, concurrency=1))
    finally:
        service.stop()
    assert [json.loads(b)["id"] for _, _, b in got] == [2, 2, 1]


def test_recorded_delays_are_kept_unless_sped_up(tmp_path: Path) -> None:
    recording = tmp_path / "slow.tap"
    service = Service()
    try:
        with running_proxy("--save", str(recording)) as p:
            asyncio.run(fetch_all(p.url, service.url, [("GET", "/bin/1000", None)]))
    finally:
        service.stop()
    # Make the recorded server time 0.6 s, as a slow service would have taken.
    from proxy.replay.convert import write_recording
    from proxy.replay.format import Offsets

    (flow,) = load(recording).flows
    slow = type(flow)(**{**{s: getattr(flow, s) for s in flow.__slots__},
                         "offsets": Offsets(0.001, 0.002, 0.5, 0.602)})  # fmt: skip
    with open(recording, "wb") as f:
        write_recording([slow], f)
    for speed, low, high in (("1", 0.55, 5.0), ("0", 0.0, 0.45)):
        with running_proxy("--server-replay", str(recording), "--server-replay-speed", speed) as p:
            start = time.monotonic()
            asyncio.run(fetch_all(p.url, service.url, [("GET", "/bin/1000", None)]))
            took = time.monotonic() - start
        assert low <= took <= high, (speed, took)


def _replay(recording: Path, to: str, tmp_path: Path) -> tuple[int, dict[str, object], str]:
    report, json_report = tmp_path / "diff.md", tmp_path / "diff.json"
    proc = subprocess.run(
        [sys.executable, "-m", "proxy", "replay", str(recording), "--to", to,
         "--concurrency", "4", "--rate", "500", "--report", str(report),
         "--json-report", str(json_report)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc.returncode, json.loads(json_report.read_text()), report.read_text()


def test_client_replay_reports_exactly_the_changed_responses(tmp_path: Path) -> None:
    recording = tmp_path / "api.tap"
    reqs: list[Req] = [("GET", f"/api/items/{n}", None) for n in range(100)]
    v1 = Service(version=1)
    try:
        with running_proxy("--save", str(recording)) as p:
            asyncio.run(fetch_all(p.url, v1.url, reqs))
        code, same, _ = _replay(recording, v1.url, tmp_path)
    finally:
        v1.stop()
    assert code == 0, same["summary"]
    assert same["counts"] == {"replayed": 100, "same": 100, "differs": 0, "failed": 0,
                              "skipped": 0}  # fmt: skip
    v2 = Service(version=2)
    try:
        code, changed, markdown = _replay(recording, v2.url, tmp_path)
    finally:
        v2.stop()
    assert code == 1
    differing = [f for f in changed["flows"] if f["result"] != "same"]  # type: ignore[attr-defined]
    assert sorted(int(f["url"].rsplit("/", 1)[1]) for f in differing) == list(CHANGED_IN_V2)
    by_item = {int(f["url"].rsplit("/", 1)[1]): f["differences"] for f in differing}
    assert by_item[7] == ["body JSON $.price: 21 -> 22"]
    assert by_item[42][0] == "status 200 -> 503"
    assert by_item[77] == ["header x-api-version: '1' -> '2'"]
    assert "**100 replayed: 97 same, 3 differ, 0 failed; 0 skipped**" in markdown


def test_recording_cut_by_a_kill_loads_up_to_the_last_complete_flow(tmp_path: Path) -> None:
    recording = tmp_path / "cut.tap"
    service = Service()
    try:
        p = start_proxy("--save", str(recording))
        try:
            for wave in range(2):  # two waves: at least two members of flows
                reqs: list[Req] = [("GET", f"/api/items/{n}", None) for n in range(20)]
                asyncio.run(fetch_all(p.url, service.url, reqs))
                deadline = time.monotonic() + 20
                while len(load(recording).flows) < 20 * (wave + 1):  # flushed in batches
                    assert time.monotonic() < deadline, "the recording never got the flows"
                    time.sleep(0.05)
            asyncio.run(fetch_all(p.url, service.url, [("GET", "/bin/300000", None)] * 8))
        finally:
            p.proc.send_signal(signal.SIGKILL)
            p.proc.wait(10)
    finally:
        service.stop()
    whole = load(recording)
    assert len(whole.flows) >= 40
    # A kill may land between writes; cut the last member as a kill inside a write would.
    data = recording.read_bytes()
    cut = tmp_path / "cut-mid-write.tap"
    cut.write_bytes(data[:-7])
    partial = load(cut)
    assert partial.cut
    assert 0 < len(partial.flows) < len(whole.flows)
    assert partial.flows == whole.flows[: len(partial.flows)]
    # The proxy command reads it too, saying it was cut.
    proc = subprocess.run([sys.executable, "-m", "proxy", "-r", str(cut)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == len(partial.flows)
    assert "cut write" in proc.stderr


def test_server_replay_matches_bodies_with_json_fields_ignored(tmp_path: Path) -> None:
    recording = tmp_path / "orders.tap"

    def order(sku: int, ts: int) -> Req:
        return ("POST", "/api/orders?n=1", json.dumps({"sku": sku, "ts": ts}).encode())

    service = Service()
    try:
        with running_proxy("--save", str(recording)) as p:
            for sku in (1, 2):  # one after the other: recorded in this order
                asyncio.run(fetch_all(p.url, service.url, [order(sku, 100)]))
    finally:
        service.stop()
    args = ("--server-replay", str(recording), "--server-replay-ignore-json", "ts",
            "--server-replay-speed", "0", "--server-replay-reuse")  # fmt: skip
    with running_proxy(*args) as p:
        got = asyncio.run(fetch_all(p.url, service.url, [order(2, 999), order(1, 5), order(3, 1)]))
    assert [json.loads(b)["order"]["sku"] for _, _, b in got[:2]] == [2, 1]
    status, _, text = got[2]
    assert status == 404
    assert b'body {"sku":3} (recorded {"sku":1}; --server-replay-ignore-json PATH)' in text


def test_recording_keeps_the_body_a_rule_rewrote(tmp_path: Path) -> None:
    rules = tmp_path / "rewrite.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: more\n    match: {method: POST}\n    request:\n"
        "      - replace_body: {literal: '\"qty\": 2', with: '\"qty\": 3'}\n"
    )
    recording = tmp_path / "ruled.tap"
    service = Service()
    try:
        with running_proxy("--rules", str(rules), "--save", str(recording)) as p:
            body = json.dumps({"sku": 1, "qty": 2, "pad": "x" * 1000}).encode()
            asyncio.run(fetch_all(p.url, service.url, [("POST", "/api/orders?n=1", body)]))
    finally:
        service.stop()
    (flow,) = load(recording).flows
    assert flow.request is not None and flow.forwarded is not None and flow.response is not None
    assert flow.request.body.data == body  # as the client sent it, whole
    assert flow.forwarded.body.data == body.replace(b'"qty": 2', b'"qty": 3')  # as sent
    assert json.loads(flow.response.body.data)["order"]["qty"] == 3


def test_save_to_a_path_that_cannot_be_written_stops_the_start(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "dir" / "x.tap"
    proc = subprocess.run([sys.executable, "-m", "proxy", "-p", "0", "--save", str(target)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 2
    assert f"--save {target}: cannot write this file" in proc.stderr
