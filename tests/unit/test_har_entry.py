"""Flow record -> HAR entry mapping (proxy/sinks/har_entry.py), table-driven.

Every produced entry is also checked against tests/data/har-1.2.schema.json
(written from the HAR 1.2 spec) and loaded with haralyzer, an independent
HAR reader, so "valid HAR" is not only our own opinion.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import brotli
import jsonschema
import pytest
import zstandard
from haralyzer import HarParser

from proxy import __version__
from proxy.flow.jsonview import record_to_json
from proxy.flow.record import (
    FlowRecord,
    Message,
    RequestInfo,
    ResponseInfo,
    Timings,
    TlsInfo,
    TlsSide,
    TunnelInfo,
)
from proxy.sinks.har import HarLog
from proxy.sinks.har_entry import har_entry, har_timings, timings_total

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "har-1.2.schema.json").read_text())
T0 = 1_800_000_000.0
Headers = tuple[tuple[bytes, bytes], ...]


def msg(
    headers: Headers = (), body: bytes = b"", size: int | None = None, preview: int = 256
) -> Message:
    return Message(headers, len(body) if size is None else size, body[:preview])


def make_record(
    method: bytes = b"GET",
    url: str = "http://127.0.0.1:9000/",
    req: Message | None = None,
    status: int | None = 200,
    resp: Message | None = None,
    marks: tuple[float | None, ...] = (0.001, 0.002, 0.005, 0.008),
    end: float = 0.008,
    kind: str = "http",
    error: str | None = None,
    tunnel: TunnelInfo | None = None,
    tls: TlsInfo | None = None,
    server: tuple[str, int] | None = ("127.0.0.1", 9000),
    id: str = "00000000000000aa",
) -> FlowRecord:
    """A record as the session builds it; ``marks`` are seconds after start."""
    at = [None if m is None else T0 + m for m in marks]
    response = None
    if status is not None:
        response = ResponseInfo(status, b"OK" if status == 200 else b"Other", resp or msg())
    return FlowRecord(
        id=id,
        kind=kind,
        mode="regular",
        start=T0,
        end=T0 + end,
        client=("127.0.0.1", 50000),
        server=server,
        request=RequestInfo(method, url, req or msg(((b"Host", b"127.0.0.1:9000"),))),
        response=response,
        tunnel=tunnel,
        timings=Timings(T0, at[0], at[1], at[2], at[3]),
        error=error,
        tls=tls,
    )


def entry_of(r: FlowRecord) -> dict[str, Any]:
    e = har_entry(record_to_json(r))
    assert e is not None
    return e


def check_valid(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A HAR document of these entries: schema-valid and readable by haralyzer."""
    log = HarLog()
    doc = {
        "log": {
            "version": "1.2",
            "creator": {"name": "tapproxy", "version": __version__},
            "pages": [],
            "entries": entries,
        }
    }
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert json.loads(log.head() + log.tail())["log"]["entries"] == []
    parsed = HarParser(json.loads(json.dumps(doc)))
    assert parsed.version == "1.2"
    har_entries = parsed.pages[0].entries if entries else []
    assert len(har_entries) == len(entries)
    for he, e in zip(har_entries, entries, strict=True):
        assert he.request.method == e["request"]["method"]
        assert he.response.status == e["response"]["status"]
        assert he.startTime is not None
        assert he.port == int(e["connection"])
    return doc


FORM = ((b"Host", b"h"), (b"Content-Type", b"application/x-www-form-urlencoded"))
BINARY = bytes(range(256))
GZ_TEXT = "compressed hello " * 20

# (name, record, checks on the entry)
CASES: list[tuple[str, FlowRecord, Callable[[dict[str, Any]], None]]] = []


def case(name: str, record: FlowRecord) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    def register(check: Callable[[dict[str, Any]], None]) -> None:
        CASES.append((name, record, check))

    return register


@case("get", make_record(resp=msg(((b"Content-Type", b"text/plain; charset=utf-8"),), b"hi")))
def _get(e: dict[str, Any]) -> None:
    assert e["request"]["method"] == "GET" and "postData" not in e["request"]
    assert e["request"]["bodySize"] == 0 and e["request"]["headersSize"] == -1
    assert e["request"]["headers"] == [{"name": "Host", "value": "127.0.0.1:9000"}]
    c = e["response"]["content"]
    assert c == {"size": 2, "mimeType": "text/plain; charset=utf-8", "text": "hi"}
    assert e["response"]["statusText"] == "OK" and e["response"]["httpVersion"] == "HTTP/1.1"
    assert e["response"]["redirectURL"] == "" and e["cache"] == {}
    assert e["serverIPAddress"] == "127.0.0.1" and e["connection"] == "50000"
    assert e["startedDateTime"].startswith("2027-01-15T08:00:00.000000")
    assert e["_tapproxy"]["id"] == "00000000000000aa" and e["_tapproxy"]["kind"] == "http"


@case("post form", make_record(b"POST", req=msg(FORM, b"a=1&b=x%20y&c=")))
def _post_form(e: dict[str, Any]) -> None:
    pd = e["request"]["postData"]
    assert pd["mimeType"] == "application/x-www-form-urlencoded"
    assert pd["text"] == "a=1&b=x%20y&c="
    assert pd["params"] == [
        {"name": "a", "value": "1"},
        {"name": "b", "value": "x y"},
        {"name": "c", "value": ""},
    ]
    assert e["request"]["bodySize"] == 14


@case("post json", make_record(b"POST", req=msg(((b"Content-Type", b"application/json"),), b"{}")))
def _post_json(e: dict[str, Any]) -> None:
    assert e["request"]["postData"] == {"mimeType": "application/json", "text": "{}"}


@case(
    "binary bodies",
    make_record(
        b"PUT",
        req=msg(((b"Content-Type", b"application/octet-stream"),), BINARY),
        resp=msg(((b"Content-Type", b"image/png"),), BINARY),
    ),
)
def _binary(e: dict[str, Any]) -> None:
    b64 = base64.b64encode(BINARY).decode()
    assert e["request"]["postData"] == {"mimeType": "application/octet-stream", "_textBase64": b64}
    c = e["response"]["content"]
    assert c == {"size": 256, "mimeType": "image/png", "text": b64, "encoding": "base64"}


@case(
    "truncated previews",
    make_record(b"POST", req=msg(FORM, b"x" * 300), resp=msg((), b"y" * 1000, preview=256)),
)
def _truncated(e: dict[str, Any]) -> None:
    pd = e["request"]["postData"]
    assert "text" not in pd and "params" not in pd
    assert "256 of 300 bytes" in pd["comment"] and "--body-preview" in pd["comment"]
    c = e["response"]["content"]
    assert "text" not in c and c["size"] == 1000 and "256 of 1000" in c["comment"]
    assert e["response"]["bodySize"] == 1000 and e["request"]["bodySize"] == 300


@case(
    "chunked",
    make_record(resp=msg(((b"Transfer-Encoding", b"chunked"),), b"0123456789abcdef")),
)
def _chunked(e: dict[str, Any]) -> None:
    # body_size is the de-chunked payload, so it is the HAR bodySize as is
    assert e["response"]["bodySize"] == 16
    assert e["response"]["content"]["text"] == "0123456789abcdef"


@case(
    "gzip content is decoded",
    make_record(
        resp=msg(
            ((b"Content-Encoding", b"gzip"), (b"Content-Type", b"text/plain")),
            gzip.compress(GZ_TEXT.encode()),
        )
    ),
)
def _gzip(e: dict[str, Any]) -> None:
    c = e["response"]["content"]
    assert c["text"] == GZ_TEXT and c["size"] == len(GZ_TEXT)
    assert c["compression"] == len(GZ_TEXT) - e["response"]["bodySize"] > 0


@case(
    "br content is decoded",
    make_record(resp=msg(((b"Content-Encoding", b"br"),), brotli.compress(GZ_TEXT.encode()))),
)
def _br(e: dict[str, Any]) -> None:
    assert e["response"]["content"]["text"] == GZ_TEXT


@case(
    "unknown content coding",
    make_record(resp=msg(((b"Content-Encoding", b"compress"),), b"\x1f\x9d\x90hi")),
)
def _unknown_coding(e: dict[str, Any]) -> None:
    c = e["response"]["content"]
    assert "text" not in c and "cannot decode content-encoding compress" in c["comment"]
    assert c["size"] == 5


@case(
    "error without response",
    make_record(
        url="http://127.0.0.1:1/x",
        status=None,
        marks=(None, None, None, None),
        end=0.0004,
        error="upstream 127.0.0.1:1: connection refused",
        server=None,
    ),
)
def _error(e: dict[str, Any]) -> None:
    r = e["response"]
    assert r["status"] == 0 and r["_error"] == "upstream 127.0.0.1:1: connection refused"
    assert r["bodySize"] == -1 and r["content"] == {"size": 0, "mimeType": ""}
    assert "serverIPAddress" not in e and e["_tapproxy"]["error"].startswith("upstream")
    assert e["timings"]["connect"] == -1 and e["time"] == pytest.approx(0.4)


@case(
    "proxy's own 502",
    make_record(
        status=502,
        resp=msg(((b"Content-Type", b"text/plain"),), b"upstream refused"),
        marks=(None, None, None, None),
        end=0.001,
        error="upstream 127.0.0.1:1: connection refused",
    ),
)
def _proxy_502(e: dict[str, Any]) -> None:
    assert e["response"]["status"] == 502 and e["response"]["_error"].startswith("upstream")
    assert e["response"]["content"]["text"] == "upstream refused"


@case(
    "cookies",
    make_record(
        req=msg(((b"Cookie", b"a=1; b=two;empty="), (b"cookie", b"c=3"))),
        resp=msg(
            (
                (b"Set-Cookie", b"sid=xyz; Path=/; Domain=example.com; Secure; HttpOnly"),
                (b"Set-Cookie", b"pref=dark; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
                (b"Set-Cookie", b"short=1; Max-Age=60; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
            )
        ),
    ),
)
def _cookies(e: dict[str, Any]) -> None:
    assert e["request"]["cookies"] == [
        {"name": "a", "value": "1"},
        {"name": "b", "value": "two"},
        {"name": "empty", "value": ""},
        {"name": "c", "value": "3"},
    ]
    sid, pref, short = e["response"]["cookies"]
    assert sid == {
        "name": "sid",
        "value": "xyz",
        "path": "/",
        "domain": "example.com",
        "secure": True,
        "httpOnly": True,
    }
    assert pref == {"name": "pref", "value": "dark", "expires": "2037-10-21T07:28:00+00:00"}
    assert short["expires"].startswith("2027-01-15T08:01:00")  # Max-Age wins over Expires


@case("query string", make_record(url="http://h/p?q=a%20b&q=c&flag&u=%E2%9C%93#frag"))
def _query(e: dict[str, Any]) -> None:
    assert e["request"]["queryString"] == [
        {"name": "q", "value": "a b"},
        {"name": "q", "value": "c"},
        {"name": "flag", "value": ""},
        {"name": "u", "value": "\u2713"},
    ]


@case("redirect", make_record(status=301, resp=msg(((b"Location", b"https://h/new"),))))
def _redirect(e: dict[str, Any]) -> None:
    assert e["response"]["redirectURL"] == "https://h/new" and e["response"]["status"] == 301
    assert e["response"]["content"] == {"size": 0, "mimeType": "", "text": ""}


@case(
    "intercepted TLS",
    make_record(
        url="https://h/",
        tls=TlsInfo(True, TlsSide(version="TLSv1.3", sni="h"), TlsSide(version="TLSv1.3")),
    ),
)
def _tls(e: dict[str, Any]) -> None:
    assert e["_tapproxy"]["tls"]["intercepted"] is True
    assert e["_tapproxy"]["tls"]["client"]["sni"] == "h"


@case(
    "websocket",
    make_record(
        url="http://h/ws",
        kind="websocket",
        status=101,
        marks=(0.001, 0.001, 0.003, None),
        end=5.0,
        tunnel=TunnelInfo(10, 20, "fin", "fin"),
    ),
)
def _websocket(e: dict[str, Any]) -> None:
    assert e["response"]["status"] == 101 and e["_tapproxy"]["tunnel"]["bytes_client_to_server"]
    assert e["time"] == pytest.approx(3.0)  # to the 101, not the tunnel's 5 s


@pytest.mark.parametrize(("name", "record", "check"), CASES, ids=[c[0] for c in CASES])
def test_entry(name: str, record: FlowRecord, check: Callable[[dict[str, Any]], None]) -> None:
    e = entry_of(record)
    check(e)
    t = e["timings"]
    assert e["time"] == pytest.approx(sum(v for k, v in t.items() if v != -1 and k != "ssl"))
    assert all(t[k] >= 0 for k in ("send", "wait", "receive"))
    assert all(v == -1 or v >= 0 for v in t.values())
    check_valid([e])


def test_all_cases_in_one_document() -> None:
    check_valid([entry_of(r) for _, r, _ in CASES])


def test_non_http_records_are_not_entries() -> None:
    connect = make_record(
        b"CONNECT", url="127.0.0.1:443", kind="tunnel", tunnel=TunnelInfo(1, 2, "fin", "fin")
    )
    assert har_entry(record_to_json(connect)) is None
    tcp = FlowRecord("t", "tcp", "tcp:h:1", T0, T0 + 1, ("127.0.0.1", 1), ("127.0.0.1", 2))
    assert har_entry(record_to_json(tcp)) is None
    assert har_entry({"schema": 1, "kind": "dropped", "count": 3}) is None


TIMING_CASES = [
    # (marks ms: connected, request_done, response_head, response_done), duration, expected
    ((1.0, 2.0, 5.0, 8.0), 8.0, {"connect": 1.0, "send": 1.0, "wait": 3.0, "receive": 3.0}),
    ((None, None, None, None), 0.4, {"connect": -1, "send": 0.0, "wait": 0.4, "receive": 0.0}),
    ((1.0, None, None, None), 30.0, {"connect": 1.0, "send": 0.0, "wait": 29.0, "receive": 0.0}),
    # a response that began before the request body ended: no negative phase
    ((1.0, 9.0, 4.0, 10.0), 10.0, {"connect": 1.0, "send": 8.0, "wait": 0.0, "receive": 1.0}),
    # an error mid-response: the rest goes to receive
    ((1.0, 2.0, 3.0, None), 7.5, {"connect": 1.0, "send": 1.0, "wait": 1.0, "receive": 4.5}),
]


@pytest.mark.parametrize(("marks", "duration", "expected"), TIMING_CASES)
def test_timings(
    marks: tuple[float | None, ...], duration: float, expected: dict[str, float]
) -> None:
    names = ("connected", "request_done", "response_head", "response_done")
    t = har_timings({"request_head": 0.0, **dict(zip(names, marks, strict=True))}, duration, False)
    assert {k: t[k] for k in expected} == expected
    assert (t["blocked"], t["dns"], t["ssl"]) == (-1, -1, -1)
    assert timings_total(t) == pytest.approx(duration)


def test_deflate_raw_and_zlib_wrapped() -> None:
    text = b"deflated text " * 10
    for body in (zlib.compress(text), zlib.compress(text)[2:-4]):
        r = make_record(resp=msg(((b"Content-Encoding", b"deflate"),), body))
        assert entry_of(r)["response"]["content"]["text"] == text.decode()


def test_corrupt_gzip_is_not_included() -> None:
    r = make_record(resp=msg(((b"Content-Encoding", b"gzip"),), b"\x1f\x8bnot gzip"))
    c = entry_of(r)["response"]["content"]
    assert "text" not in c and "cannot decode" in c["comment"]


def test_latin1_headers_survive() -> None:
    r = make_record(resp=msg(((b"X-Name", b"caf\xe9"),)))
    assert entry_of(r)["response"]["headers"] == [{"name": "X-Name", "value": "caf\u00e9"}]


def test_schema_is_strict() -> None:
    """The schema would catch what a loose one lets through."""
    good = check_valid([entry_of(make_record())])
    validator = jsonschema.Draft202012Validator(SCHEMA)
    bad_extra = json.loads(json.dumps(good))
    bad_extra["log"]["entries"][0]["tapproxy"] = {}  # custom fields need a leading "_"
    bad_timing = json.loads(json.dumps(good))
    bad_timing["log"]["entries"][0]["timings"]["wait"] = -1  # send/wait/receive: >= 0
    bad_missing = json.loads(json.dumps(good))
    del bad_missing["log"]["entries"][0]["response"]["redirectURL"]
    for doc in (bad_extra, bad_timing, bad_missing):
        assert not validator.is_valid(doc)


def test_zstd_and_stacked_codings() -> None:
    body = gzip.compress(zstandard.ZstdCompressor().compress(GZ_TEXT.encode()))
    r = make_record(resp=msg(((b"Content-Encoding", b"zstd, gzip"),), body, preview=4096))
    assert entry_of(r)["response"]["content"]["text"] == GZ_TEXT


def test_decompression_bomb_is_not_included(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proxy.sinks.har_entry.MAX_DECODED", 1000)
    r = make_record(resp=msg(((b"Content-Encoding", b"gzip"),), gzip.compress(b"\0" * 5000)))
    c = entry_of(r)["response"]["content"]
    assert "text" not in c and "over 1000 bytes" in c["comment"]
