"""The web UI's flow store (proxy/web/store.py): caps, order, bodies, messages, threads."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.flow.grpcinfo import GrpcMessage
from proxy.flow.record import CapturedBodies, FlowRecord, Message, RequestInfo, ResponseInfo
from proxy.flow.wsinfo import SseEvent, WsMessage
from proxy.web.rows import BodyRow, FlowRow, MessageRow, Summary
from proxy.web.store import FlowStore
from proxy.web.storedb import CACHE_KIB, SOFT_HEAP_LIMIT, StoreError
from proxy.web.storesink import StoreSink

T0 = 1_795_000_000.0


def summary(i: int, **over: object) -> Summary:
    s: Summary = {
        "id": f"f{i:06d}", "start": T0 + i, "duration": 1.5, "protocol": "HTTP/1.1",
        "kind": "http", "method": "GET", "url": f"http://a.test/{i}", "host": "a.test",
        "path": f"/{i}", "status": 200, "type": "text/plain", "size": 2, "error": None,
        "rules": [], "changed": False, "marked": False,
    }  # fmt: skip
    s.update(over)
    return s


def row(i: int, record_size: int = 50, bodies: tuple[BodyRow, ...] = (), **over: object) -> FlowRow:
    record = b'{"id":"f%06d","pad":"' % i + b"x" * record_size + b'"}'
    return FlowRow(summary(i, **over), record, bodies)


def message(flow: str, n: int, size: int = 10) -> MessageRow:
    detail = b'{"direction":"client","type":"text","n":%d,"text":"%s"}' % (n, b"m" * size)
    return MessageRow(flow, detail)


@pytest.fixture
def store() -> Iterator[FlowStore]:
    s = FlowStore(max_flows=10_000)
    yield s
    s.close()


def ids(summaries: list[Summary]) -> list[str]:
    return [s["id"] for s in summaries]


def test_count_cap_drops_the_oldest_in_batches() -> None:
    s = FlowStore(max_flows=10)
    try:
        for start in range(0, 25, 7):
            s.add_many([row(i) for i in range(start, min(start + 7, 25))])
        page, total = s.query(limit=100)
        assert total == s.count == 10 and s.dropped == 15
        assert ids(page) == [f"f{i:06d}" for i in range(24, 14, -1)]
        assert s.get("f000014") is None and s.get("f000015") is not None
    finally:
        s.close()


def test_size_cap_drops_the_oldest_and_counts_them() -> None:
    s = FlowStore(max_size=5_000)
    try:
        for i in range(20):
            s.add_many([row(i, record_size=1_000)])
            assert s.size_bytes <= 5_000
        page, total = s.query(limit=100)
        assert total == s.count == 4 and s.dropped == 16
        assert ids(page) == ["f000019", "f000018", "f000017", "f000016"]
        # One batch larger than the cap keeps its newest rows only.
        s.add_many([row(i, record_size=1_000) for i in range(100, 110)])
        assert s.count == 4 and s.dropped == 26 and s.size_bytes <= 5_000
        assert ids(s.query()[0])[0] == "f000109"
    finally:
        s.close()


def test_bodies_are_capped_with_their_size_and_truncated_flag() -> None:
    s = FlowStore(max_body=1_000)
    try:
        big = BodyRow("response", b"r" * 5_000, 5_000, False)
        small = BodyRow("request", b"q" * 10, 10, False)
        s.add_many([row(1, bodies=(big, small))])
        assert s.body("f000001", "response") == b"r" * 1_000
        assert s.body("f000001", "request") == b"q" * 10
        assert s.body("f000001", "request_sent") is None
        assert s.bodies("f000001") == {
            "response": {"size": 5_000, "stored": 1_000, "truncated": True},
            "request": {"size": 10, "stored": 10, "truncated": False},
        }
        flow = s.get("f000001")
        assert flow is not None and flow.body("response") == b"r" * 1_000
        assert s.size_bytes == len(row(1).record) + 1_010  # capped bytes are what counts
    finally:
        s.close()


def test_query_pages_in_both_orders_without_a_predicate(store: FlowStore) -> None:
    store.add_many([row(i) for i in range(30)])
    page, total = store.query(offset=5, limit=10)
    assert total == 30 and ids(page) == [f"f{i:06d}" for i in range(24, 14, -1)]
    page, _ = store.query(offset=25, limit=10, newest_first=False)
    assert ids(page) == [f"f{i:06d}" for i in range(25, 30)]
    assert [s["seq"] for s in store.query(limit=3)[0]] == [30, 29, 28]
    first = store.query(limit=1)[0][0]
    assert first == {**summary(29), "seq": 30, "state": "done", "held": None}


def test_query_with_a_predicate_counts_every_match_and_pages(store: FlowStore) -> None:
    rows = [
        row(
            i, status=500 if i % 3 == 0 else 200, bodies=(BodyRow("request", b"k%d" % i, 2, False),)
        )
        for i in range(2_500)  # more than one scan chunk
    ]
    store.add_many(rows)
    errors, total = store.query(lambda f: f.summary["status"] == 500, offset=2, limit=3)
    assert total == 834 and ids(errors) == ["f002493", "f002490", "f002487"]
    by_record, total = store.query(lambda f: f.record["id"].endswith("7"), limit=2)
    assert total == 250 and ids(by_record) == ["f002497", "f002487"]
    by_body, total = store.query(lambda f: f.body("request") == b"k42", newest_first=False)
    assert total == 1 and ids(by_body) == ["f000042"]
    assert store.query(lambda f: False) == ([], 0)


def test_messages_stay_with_their_flow_and_go_with_it() -> None:
    s = FlowStore(max_flows=2)
    try:
        s.add_many([message("f000001", 0), message("f000001", 1), message("fX", 0)])
        assert s.pending == 3 and s.count == 0
        assert [m["n"] for m in s.messages("f000001")] == [0, 1]
        s.add_many([row(1), message("f000001", 2)])  # the flow, then one more message
        s.add_many([message("f000001", 3)])
        assert s.pending == 1 and s.count == 1
        assert [m["n"] for m in s.messages("f000001")] == [0, 1, 2, 3]
        assert ids(s.query()[0]) == ["f000001"]  # messages are no rows of the list
        assert [m["n"] for m in s.messages("f000001", offset=1, limit=2)] == [1, 2]
        before = s.size_bytes
        s.add_many([row(2), row(3)])  # f000001 is dropped, and its messages with it
        assert s.dropped == 1 and s.messages("f000001") == []
        expected = before + len(row(2).record) + len(row(3).record)
        assert s.size_bytes == expected - len(row(1).record) - 4 * message("f000001", 0).nbytes
        assert [m["n"] for m in s.messages("fX")] == [0] and s.pending == 1
    finally:
        s.close()


def test_pending_messages_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proxy.web.store.MAX_PENDING", 5)
    s = FlowStore()
    try:
        s.add_many([message("live", n) for n in range(8)])
        assert s.pending == 5 and [m["n"] for m in s.messages("live")] == [3, 4, 5, 6, 7]
        assert s.size_bytes == 5 * message("live", 0).nbytes
    finally:
        s.close()


def test_a_flow_stored_again_replaces_its_row(store: FlowStore) -> None:
    store.add_many([row(1), message("f000001", 0), row(2)])
    store.add_many([row(1, status=404)])
    page, total = store.query()
    assert total == store.count == 2 and ids(page) == ["f000001", "f000002"]
    assert page[0]["status"] == 404 and len(store.messages("f000001")) == 1
    assert store.pending == 0


def test_mark_clear_and_get(store: FlowStore) -> None:
    store.add_many([row(1), row(2), message("f000002", 0)])
    assert store.set_marked("f000002", True) and not store.set_marked("nope", True)
    marked, total = store.query(lambda f: bool(f.summary["marked"]))
    assert total == 1 and ids(marked) == ["f000002"]
    flow = store.get("f000002")
    assert flow is not None and flow.record == {"id": "f000002", "pad": "x" * 50}
    store.clear()
    assert store.query() == ([], 0) and store.count == store.size_bytes == store.pending == 0
    assert store.messages("f000002") == []
    store.add_many([row(3)])
    assert store.query()[0][0]["seq"] == 3  # seqs go on after a clear


def test_writer_thread_and_reader_at_once() -> None:
    s = FlowStore(max_flows=3_000)
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for start in range(0, 10_000, 200):
                s.add_many([row(i) for i in range(start, start + 200)])
        except BaseException as e:  # pragma: no cover - reported below
            failures.append(e)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    try:
        while not done.is_set() or reads < 3:
            page, total = s.query(limit=50)
            assert total <= 3_000 and len(page) == min(50, total)
            seqs = [f["seq"] for f in page]
            assert seqs == sorted(seqs, reverse=True)
            odd, _ = s.query(lambda f: f.seq % 2 == 1, limit=10)
            assert all(f["seq"] % 2 for f in odd)
            reads += 1
        writer.join(timeout=60)
        assert not failures and not writer.is_alive()
        assert s.count == 3_000 and s.dropped == 7_000
        assert ids(s.query(limit=1)[0]) == ["f009999"]
    finally:
        s.close()


def test_temp_store_is_deleted_at_close_and_its_cache_bounded() -> None:
    s = FlowStore()
    s.add_many([row(1)])
    assert os.path.exists(s.path)
    with sqlite3.connect(s.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._w.db.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    assert s._r.db.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    assert s._r.db.execute("PRAGMA soft_heap_limit").fetchone()[0] == SOFT_HEAP_LIMIT
    s.close()
    assert not [
        p for p in os.listdir(os.path.dirname(s.path)) if p.startswith(os.path.basename(s.path))
    ]


def test_a_store_file_persists_and_another_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "flows.sqlite")
    s = FlowStore(path, max_flows=5)
    s.add_many([row(i) for i in range(8)])
    s.close()
    again = FlowStore(path, max_flows=2)  # smaller caps: trimmed at once
    try:
        assert again.count == 2 and again.dropped == 6 and ids(again.query()[0])[0] == "f000007"
        again.add_many([row(9)])
        assert again.query()[0][0]["seq"] == 9
    finally:
        again.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema 99"):
        FlowStore(path)


# -- the sink: records to rows -------------------------------------------------------------
def http_record(i: int, **over: object) -> FlowRecord:
    fields: dict[str, object] = {
        "id": f"h{i}", "kind": "http", "mode": "regular", "start": T0, "end": T0 + 0.25,
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
        "request": RequestInfo(b"POST", "http://a.test/p?q=1", Message((), 5, b"hello")),
        "response": ResponseInfo(
            200, b"OK", Message(((b"Content-Type", b"application/json; charset=utf-8"),), 2, b"{}")
        ),
    }  # fmt: skip
    fields.update(over)
    return FlowRecord(**fields)  # type: ignore[arg-type]


def test_sink_rows_summaries_and_bodies(store: FlowStore) -> None:
    heard: list[list[Summary]] = []
    sink = StoreSink(store, on_rows=heard.append, close_store=False)
    big = b"B" * 3_000
    response = ResponseInfo(
        200,
        b"OK",
        Message(((b"content-type", b"text/event-stream"),), 3_000, big[:256]),
        upstream=ResponseInfo(200, b"OK", Message((), 4, b"orig")),
    )
    ws = FlowRecord(
        "w1", "websocket_message", "regular", T0, T0, ("127.0.0.1", 1), None,
        message=WsMessage("h2", "upstream", 0, "text", 2, 8, 1, False, b"hi", False, at=T0),
    )  # fmt: skip
    captured = CapturedBodies("", None, big, response_truncated=False)
    records = [http_record(1), ws, http_record(2, response=response, bodies=captured)]
    sink.prepare(records)
    sink.index_all()
    assert [[s["id"] for s in batch] for batch in heard] == [["h1", "h2"]]
    assert heard[0][0]["seq"] == 1 and heard[0][1]["seq"] == 2
    page, total = store.query(newest_first=False)
    assert total == 2 and page == heard[0]
    first, second = page
    assert first["protocol"] == "HTTP/1.1" and first["type"] == "application/json"
    assert (first["host"], first["path"], first["method"]) == ("a.test", "/p?q=1", "POST")
    assert first["duration"] == 250.0 and first["size"] == 2 and not first["changed"]
    assert second["protocol"] == "SSE" and second["changed"]
    assert store.body("h1", "request") == b"hello"  # whole in the preview
    assert store.body("h2", "response") == big  # captured
    assert store.body("h2", "response_upstream") == b"orig"
    assert store.messages("h2")[0]["text"] == "hi"
    assert store.messages("h2")[0]["direction"] == "client"


def test_sink_message_shapes(store: FlowStore) -> None:
    sink = StoreSink(store, close_store=False)
    grpc = GrpcMessage("g", "response", 0, "S", "M", 3, False, None, False, b"\xff\x00\x01", 3)
    sse = SseEvent("g", 0, None, "tick", b"data", 4, at=T0 + 2)
    records = [
        FlowRecord("m1", "grpc_message", "regular", T0 + 1, T0 + 1, ("h", 1), None, grpc=grpc),
        FlowRecord("m2", "sse_event", "regular", T0, T0, ("h", 1), None, message=sse),
    ]
    sink.prepare(records)
    sink.index_all()
    first, second = store.messages("g")
    assert first["direction"] == "server" and first["type"] == "grpc" and first["text"] is None
    assert first["base64"] == "/wAB" and first["time"] == T0 + 1
    assert (second["type"], second["text"], second["time"]) == ("tick", "data", T0 + 2)
    assert store.count == 0 and store.pending == 2


def test_websocket_payload_kept_whole_when_captured(store: FlowStore) -> None:
    sink = StoreSink(store, close_store=False)
    text = "é" * 50_000  # 100,000 bytes of UTF-8, beyond the 64 KiB message cap
    data = text.encode()
    message = WsMessage("w", "downstream", 0, "text", len(data), 0, 1, False, data[:10], False)
    records = [
        FlowRecord("m", "websocket_message", "regular", T0, T0, ("h", 1), None, message=m)
        for m in (message, replace(message, index=1, data=data))
    ]
    sink.prepare(records)
    sink.index_all()
    preview, whole = store.messages("w")
    assert preview["text"] == text[:5] and preview["truncated"]
    assert whole["text"] == text[: 64 * 1024 // 2] and whole["truncated"]
    assert whole["direction"] == "server" and whole["size"] == len(data)


def test_split_url_agrees_with_urlsplit() -> None:
    from urllib.parse import urlsplit

    from proxy.web.summary import split_url

    for url in (
        "http://a.test/p?q=1",
        "https://A.Test:8443/x/y#frag",
        "http://u:p@h.test",
        "http://[::1]:80/z",
        "example.com:443",
        "http://h/p?q=/a/b",
    ):
        parts = urlsplit(url if "//" in url else "//" + url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        assert split_url(url) == (parts.hostname, path)
    assert split_url("http://h?x=1") == ("h", "/?x=1")
