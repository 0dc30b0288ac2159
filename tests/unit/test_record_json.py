"""The flow record's JSON encoding: timestamps and the shape of a small exchange."""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import given
from hypothesis import strategies as st

from proxy.flow.jsonview import _iso, record_to_json
from proxy.flow.record import (
    SCHEMA_VERSION,
    FlowRecord,
    Message,
    RequestInfo,
    ResponseInfo,
)
from proxy.sinks.jsonenc import dumps


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_iso_matches_datetime(ts: float) -> None:
    """The per-second cache rounds exactly like datetime.fromtimestamp."""
    expected = dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds")
    assert _iso(ts) == expected


def test_iso_carries_into_the_next_second() -> None:
    assert _iso(1795762093.9999996) == "2026-11-27T06:48:14.000000+00:00"
    assert _iso(1795762093.25) == "2026-11-27T06:48:13.250000+00:00"


def test_small_exchange_round_trips_through_json() -> None:
    record = FlowRecord(
        id="f1",
        kind="http",
        mode="regular",
        start=1795762093.5,
        end=1795762093.75,
        client=("127.0.0.1", 5000),
        server=("127.0.0.1", 80),
        request=RequestInfo(b"GET", "http://a.test/", Message(((b"Host", b"a.test"),), 0, b"")),
        response=ResponseInfo(
            200, b"OK", Message(((b"X-\xe9", b"caf\xe9"),), 3, b"hi\xff", b"1.0")
        ),
    )
    out = json.loads(dumps(record_to_json(record)))
    assert out["schema"] == SCHEMA_VERSION and out["duration_ms"] == 250.0
    assert out["start"] == "2026-11-27T06:48:13.500000+00:00"
    assert out["request"] == {
        "method": "GET",
        "url": "http://a.test/",
        "http_version": "HTTP/1.1",
        "headers": [["Host", "a.test"]],
        "body_size": 0,
    }
    response = out["response"]
    assert response["http_version"] == "HTTP/1.0"
    assert response["headers"] == [["X-\u00e9", "caf\u00e9"]]  # latin-1 keeps every byte
    assert response["body_preview"] == {"data": "aGn/", "encoding": "base64", "truncated": False}
