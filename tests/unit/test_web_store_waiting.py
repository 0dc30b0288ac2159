"""Flows waiting to be indexed (proxy/web/storewait.py): order, caps, bodies, spool files."""

from __future__ import annotations

import errno
import glob
import os
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.flow.jsonview import record_to_json
from proxy.flow.record import CapturedBodies, FlowRecord, Message, RequestInfo, ResponseInfo
from proxy.sinks.jsonenc import dumps
from proxy.web import storewait
from proxy.web.rows import BodyRow, Summary
from proxy.web.store import FlowStore
from proxy.web.storesink import StoreSink
from proxy.web.storewait import FLOW, MESSAGE, SpoolError, packed_bodies, unpack_bodies

T0 = 1_795_000_000.0


def record(i: int, body: bytes = b"{}") -> FlowRecord:
    return FlowRecord(
        f"r{i}", "http", "regular", T0 + i, T0 + i + 0.5, ("127.0.0.1", 5000), ("127.0.0.1", 80),
        request=RequestInfo(b"GET", f"http://a.test/{i}", Message((), 0, b"")),
        response=ResponseInfo(200, b"OK", Message((), len(body), body[:256])),
    )  # fmt: skip


def waiting_row(i: int) -> tuple[int, bytes, bytes]:
    return (FLOW, dumps(record_to_json(record(i))), b"")


def test_bodies_pack_and_unpack_and_a_damaged_blob_is_refused() -> None:
    response = ResponseInfo(
        200,
        b"OK",
        Message((), 10_000, b"x" * 256),
        upstream=ResponseInfo(200, b"OK", Message((), 2, b"\x00\xff")),
    )
    captured = CapturedBodies("", b"", b"x" * 300, response_truncated=True)
    r = replace(record(1), response=response, bodies=captured)
    blob = packed_bodies(r, 1 << 20)
    assert unpack_bodies(blob) == (  # the empty request body is left out
        BodyRow("response", b"x" * 300, 10_000, True),
        BodyRow("response_upstream", b"\x00\xff", 2, False),
    )
    assert unpack_bodies(packed_bodies(r, 100))[0] == BodyRow("response", b"x" * 100, 10_000, True)
    assert unpack_bodies(b"") == ()
    for bad in (blob[:-1], blob[:5], b"\x09" + blob[1:]):
        with pytest.raises(ValueError):
            unpack_bodies(bad)


def test_flows_wait_until_indexed_then_come_in_order() -> None:
    store = FlowStore(max_flows=1_000)
    heard: list[list[Summary]] = []
    sink = StoreSink(store, heard.append, close_store=False)
    try:
        for start in range(0, 600, 100):
            sink.prepare([record(i) for i in range(start, start + 100)])
        assert store.count == 0 and store.waiting.flows == 600 and not heard
        taken = sink.index(256)  # from one segment at a time
        assert 0 < taken <= 256 and store.count == taken and store.waiting.flows == 600 - taken
        sink.index_all()
        page, total = store.query(limit=1_000, newest_first=False)
        assert total == 600 and [s["id"] for s in page] == [f"r{i}" for i in range(600)]
        assert [s["seq"] for s in page] == list(range(1, 601))
        assert [s for batch in heard for s in batch] == page
        assert page[3]["start"] == T0 + 3 and page[3]["duration"] == 500.0
    finally:
        store.close()


def test_a_browser_watching_gets_each_batch_indexed_at_once() -> None:
    store = FlowStore()
    watching = False
    heard: list[Summary] = []
    sink = StoreSink(store, heard.extend, close_store=False, live=lambda: watching)
    try:
        sink.prepare([record(1), record(2)])
        assert store.count == 0 and not heard
        watching = True
        sink.prepare([record(3)])  # what waited goes first
        assert [s["id"] for s in heard] == ["r1", "r2", "r3"] and store.waiting.rows == 0
    finally:
        store.close()


def test_waiting_flows_past_the_caps_are_dropped_as_indexing_would() -> None:
    store = FlowStore(max_flows=80)  # segments of 10 flows (an eighth of the cap)
    try:
        store.wait_many([waiting_row(i) for i in range(40)])
        StoreSink(store, close_store=False).index_all()
        assert store.count == 40 and store.waiting.rows == 0
        # 80 more waiting fill the cap alone: the 40 indexed would all go, and go now.
        for start in range(100, 180, 10):
            store.wait_many([waiting_row(i) for i in range(start, start + 10)])
        assert store.count == 0 and store.dropped == 40 and store.waiting.flows == 80
        # Past the cap, the oldest waiting segments go whole, counted as dropped.
        for start in range(1_000, 1_100, 10):
            store.wait_many([waiting_row(i) for i in range(start, start + 10)])
        assert store.waiting.flows == 80 and store.dropped == 40 + 100
        StoreSink(store, close_store=False).index_all()
        page, total = store.query(limit=100, newest_first=False)
        assert total == 80 and page[0]["id"] == "r1020" and page[-1]["id"] == "r1099"
        assert len(segments(store.path)) == 1  # read through: gone but the last
    finally:
        store.close()
    assert segments(store.path) == []


def test_messages_wait_with_their_flow_and_join_it() -> None:
    store = FlowStore()
    try:
        detail = b'{"direction":"client","type":"text","text":"hi"}'
        store.wait_many([(MESSAGE, b"r1", detail), waiting_row(1)])
        assert store.waiting.rows == 2 and store.waiting.flows == 1
        StoreSink(store, close_store=False).index_all()
        assert store.messages("r1") == [{"direction": "client", "type": "text", "text": "hi"}]
        assert store.pending == 0 and store.waiting.rows == 0
    finally:
        store.close()


def test_a_damaged_waiting_row_is_counted_lost_not_fatal() -> None:
    store = FlowStore()
    sink = StoreSink(store, close_store=False)
    try:
        store.wait_many([waiting_row(1), (FLOW, b"{not json", b""), (FLOW, b"{}", b"\x07")])
        sink.index_all()
        assert store.count == 1 and sink.lost == 2 and store.waiting.rows == 0
    finally:
        store.close()


def test_a_store_file_is_indexed_at_close_and_waiting_rows_survive_a_crash(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "flows.sqlite")
    store = FlowStore(path)
    StoreSink(store).prepare([record(1), record(2)])
    with open(segments(path)[0], "ab") as f:
        f.write(b"\x01\x00\x10")  # the process died in the middle of a write
    again = FlowStore(path)  # a crash: the spool was left, with a torn last row
    assert again.count == 0 and again.waiting.flows == 2
    sink = StoreSink(again)
    sink.prepare([record(3)])
    sink.close()  # indexes what waits, then closes
    assert segments(path) == []
    last = FlowStore(path)
    try:
        page, total = last.query(newest_first=False)
        assert total == 3 and [s["id"] for s in page] == ["r1", "r2", "r3"]
        assert last.waiting.rows == 0
    finally:
        last.close()


def test_a_failed_write_leaves_no_torn_row(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FlowStore()
    sink = StoreSink(store, close_store=False)
    real_write = os.write

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    try:
        sink.prepare([record(1)])
        monkeypatch.setattr(storewait.os, "write", half_then_full)
        sink.prepare([record(2), record(3)])  # lost, and cut back off the spool
        monkeypatch.undo()
        sink.prepare([record(4)])
        sink.index_all()
        page, _ = store.query(newest_first=False)
        assert [s["id"] for s in page] == ["r1", "r4"] and sink.lost == 2
    finally:
        store.close()


def test_indexing_without_a_running_loop_happens_at_once() -> None:
    store = FlowStore()
    sink = StoreSink(store, close_store=False, live=lambda: True)
    try:  # the dispatcher's last batch at exit, a browser still watching
        sink.prepare([record(i) for i in range(600)])
        assert store.count == 600 and store.waiting.rows == 0
    finally:
        store.close()


def test_a_row_claiming_more_than_the_file_holds_is_cut_off(tmp_path: Path) -> None:
    path = str(tmp_path / "flows.sqlite")
    store = FlowStore(path)
    StoreSink(store).prepare([record(1)])
    with open(segments(path)[0], "ab") as f:
        f.write(struct.pack("<BII", FLOW, 2**31, 0) + b"{")  # a length no file here holds
    again = FlowStore(path)
    try:
        assert again.waiting.flows == 1
        StoreSink(again, close_store=False).index_all()
        assert [s["id"] for s in again.query()[0]] == ["r1"]
    finally:
        again.close()


def test_a_segment_of_another_version_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "flows.sqlite")
    FlowStore(path).close()
    Path(path + ".waiting-1").write_bytes(b"tapproxy-waiting 9\n")
    with pytest.raises(SpoolError, match="waiting-1"):
        FlowStore(path)


def segments(path: str) -> list[str]:
    return sorted(glob.glob(glob.escape(path) + ".waiting-*"))
