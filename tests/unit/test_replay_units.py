"""The pure parts of recording, replay and addons: format, reading, matching, diffs, verdicts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from proxy.addons.api import Flow, Headers, Request, Response
from proxy.addons.verdicts import request_verdict, response_verdict
from proxy.flow.hooks import Kill, Proceed, Reply, RequestEdit, ResponseEdit
from proxy.replay.diff import DEFAULT_IGNORED_HEADERS, DiffOptions, Seen, compare
from proxy.replay.format import (
    Body,
    FormatError,
    Offsets,
    RecordedFlow,
    RecordedMessage,
    RecordedRequest,
    RecordedResponse,
    flow_json,
    flow_of,
    header_line,
)
from proxy.replay.match import MatchOptions, body_key, differences, json_path, key_of
from proxy.replay.reader import gzip_members, load
from proxy.replay.writer import gzip_member

FLOW = RecordedFlow(
    id="f1",
    start=1000.5,
    end=1001.0,
    request=RecordedRequest(
        b"POST", "http://svc:9000/a?b=1", ((b"X-Raw", b"\xff\x01"),), Body(b'{"k": 1}', 8)
    ),
    response=RecordedResponse(
        201,
        b"Made",
        ((b"Content-Type", b"application/octet-stream"),),
        Body(bytes(range(256)), 1000),
    ),
    offsets=Offsets(0.001, 0.002, 0.3, 0.5),
    messages=(RecordedMessage(True, 0.1, b"\x00hi"),),
)


def test_a_flow_survives_its_json_byte_for_byte() -> None:
    again = flow_of(json.loads(json.dumps(flow_json(FLOW))))
    assert again == FLOW
    assert again.response is not None and again.response.body.truncated  # 256 of 1000 kept


def test_unknown_schema_stops_the_reading(tmp_path: Path) -> None:
    path = tmp_path / "future.tap"
    header = {**header_line(0.0, "9"), "schema_version": 99}
    path.write_bytes(gzip_member(json.dumps(header).encode() + b"\n"))
    with pytest.raises(FormatError, match="schema_version 99"):
        load(path)


def test_members_cut_short_end_the_reading() -> None:
    data = gzip_member(b"one\n") + gzip_member(b"two\n") + gzip_member(b"three\n")[:-6]
    assert list(gzip_members(io.BytesIO(data))) == [b"one\n", b"two\n", None]


def test_plain_json_lines_recording_reads_too(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    lines = [json.dumps(header_line(0.0, "x")), json.dumps(flow_json(FLOW)), "{not json"]
    path.write_text("\n".join(lines) + "\n")
    loaded = load(path)
    assert loaded.flows == [FLOW] and loaded.skipped == 1


def test_keys_leave_out_what_is_ignored() -> None:
    opts = MatchOptions(ignore_params=frozenset({"ts"}), ignore_host=True)
    a = key_of(b"GET", "http://a:1/p?x=1&ts=5", (), opts)
    b = key_of(b"GET", "https://b/p?ts=9&x=1", (), opts)
    assert a == b
    assert key_of(b"GET", "http://a/p?x=2", (), opts) != a


def test_json_paths_and_wildcards() -> None:
    assert json_path("a.b.0") == json_path("$.a.b.0") == json_path("/a/b/0") == ("a", "b", "0")
    opts = MatchOptions(ignore_json=(json_path("items.*.at"), json_path("meta")))
    one = b'{"items": [{"id": 1, "at": 5}], "meta": {"x": 1}}'
    two = b'{"meta": 7, "items": [{"at": 9, "id": 1}]}'
    assert body_key(one, opts) == body_key(two, opts) == b'{"items":[{"id":1}]}'


def test_differences_name_the_option_that_ignores_each() -> None:
    opts = MatchOptions()
    live = key_of(b"GET", "http://a/p?x=1", ((b"Content-Type", b"text/plain"),), opts)
    rec = key_of(b"GET", "http://a/p?x=2", ((b"Content-Type", b"application/json"),), opts)
    found = differences(live, b"", rec, b"", opts)
    assert found == [
        "query parameter x: '1' (recorded '2'; --server-replay-ignore-params x)",
        "header content-type: text/plain (recorded application/json; "
        "--server-replay-ignore-headers content-type)",
    ]


def test_compare_is_json_aware_and_ignores_dates() -> None:
    opts = DiffOptions(DEFAULT_IGNORED_HEADERS, (json_path("etag"),))
    recorded = Seen(200, ((b"Date", b"x"), (b"A", b"1")), b'{"a": [1, 2], "b": 1, "etag": 1}')
    got = Seen(200, ((b"Date", b"y"), (b"A", b"1")), b'{"b": 1, "a": [1, 3], "etag": 2}')
    assert compare(recorded, got, opts).lines() == ["body JSON $.a[1]: 2 -> 3"]
    binary = compare(Seen(200, (), b"\x00\x01"), Seen(500, (), b"\x00\x02"), opts)
    assert binary.status == "status 200 -> 500"
    assert binary.body[0].startswith("body differs: 2 bytes sha256 ")


def test_headers_keep_order_and_case() -> None:
    h = Headers([("A", "1"), ("b", "2"), ("a", "3")])
    h["a"] = "x"
    assert h.fields == [("a", "x"), ("b", "2")]
    assert h.get("B") == "2" and "A" in h and h.raw() == ((b"a", b"x"), (b"b", b"2"))


def _flow() -> Flow:
    return Flow("1", Request("GET", "http://a/", Headers([("X", "1")])), {})


def test_request_verdicts() -> None:
    before = ("GET", "http://a/", [("X", "1")])
    f = _flow()
    assert request_verdict(f, before) == Proceed()
    f.request.headers["X"] = "2"
    f.request.url = "http://b/"
    assert request_verdict(f, before) == Proceed(
        RequestEdit(url="http://b/", headers=((b"X", b"2"),))
    )
    f.response = Response.make(202, {"ok": 1})
    assert request_verdict(f, before) == Reply(
        202, ((b"Content-Type", b"application/json"),), b'{"ok": 1}'
    )
    f.kill()
    assert request_verdict(f, before) == Kill()


def test_response_verdicts() -> None:
    f = _flow()
    original = f.response = Response(200, "OK", Headers([("A", "1")]))
    before = (200, [("A", "1")])
    assert response_verdict(f, original, before) == Proceed()
    original.status_code = 418
    assert response_verdict(f, original, before) == Proceed(ResponseEdit(status=418))
    f.response = Response.make(204)
    assert response_verdict(f, original, before) == Reply(204, (), b"")
