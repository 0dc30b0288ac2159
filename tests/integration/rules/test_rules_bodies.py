"""Rule examples that edit heads and bodies, through a live proxy.

headers.yaml, body-replace.yaml, json-patch.yaml and response-match.yaml,
with every content coding (gzip, deflate, br, zstd): the client (curl
--compressed) sees the edited body with a correct Content-Length, the
upstream sees the edited request. Bodies over --max-body stream untouched
with a warning in the flow record. See test_rules_live.py for the approach.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import brotli
import pytest
import zstandard

from tests.integration.rules_support import (
    Origin,
    curl,
    matched,
    read_all,
    record_for,
    rules_proxy,
    send,
    split_response,
)
from tests.support.proxyproc import ProxyProcess
from tests.support.rawhttp import recv_response
from tests.support.upstreams import RawConnection, Upstreams


def _unbrotli(data: bytes) -> bytes:
    d = brotli.Decompressor()
    out = d.process(data)
    assert d.is_finished(), "truncated br stream"
    return bytes(out)


def _unzstd(data: bytes) -> bytes:
    d = zstandard.ZstdDecompressor().decompressobj()
    out = d.decompress(data)
    assert d.eof, "truncated zstd frame"
    return bytes(out)


# Encoders, and decoders that fail on a truncated stream (gzip and zlib do already).
CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip": (gzip.compress, gzip.decompress),
    "deflate": (zlib.compress, zlib.decompress),
    "br": (brotli.compress, _unbrotli),
    "zstd": (lambda b: zstandard.ZstdCompressor().compress(b), _unzstd),
}


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _proxy(
    tmp_path_factory: pytest.TempPathFactory, origin: Origin, *files: str
) -> Iterator[ProxyProcess]:
    with rules_proxy(tmp_path_factory.mktemp("rules"), *files, origin=origin) as p:
        yield p


def check_encoded(proxy: ProxyProcess, url: str, coding: str, expected: Any) -> None:
    """curl --compressed decodes ``expected``; the raw body is ``coding``-encoded and
    exactly Content-Length long (curl fails on a short body, checked too)."""
    r = curl(proxy, url, "--compressed")
    assert r.returncode == 0, r.stderr
    assert r.status == 200, r
    assert json.loads(r.body) == expected, r
    raw = curl(proxy, url)
    assert raw.returncode == 0, raw.stderr
    assert raw.header("content-encoding") == [coding], raw
    assert raw.header("content-length") == [str(len(raw.body))]
    assert raw.header("transfer-encoding") == []
    assert json.loads(CODECS[coding][1](raw.body)) == expected


# -- headers.yaml ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def headers(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    yield from _proxy(tmp_path_factory, origin, "examples/headers.yaml")


def test_header_edits_both_ways(headers: ProxyProcess, origin: Origin) -> None:
    r = curl(
        headers,
        "http://api.svc/h1",
        "-H",
        "Cookie: a=1",
        "-H",
        "Authorization: Bearer x",
        "-H",
        "x-debug: 0",
        "-H",
        "x-trace: client",
        "-H",
        "Origin: http://localhost:3000",
    )
    assert r.status == 200
    seen = origin.only()
    assert seen.header("x-debug") == ["1"]  # set_header replaces
    assert seen.header("x-trace") == ["client", "tapproxy"]  # add_header appends
    assert "cookie" not in seen.names and "authorization" not in seen.names
    assert r.header("server") == []  # aiohttp sends one; removed
    assert r.header("cache-control") == ["no-store"]
    assert r.header("access-control-allow-origin") == ["*"]
    rec = record_for(headers, "api.svc/h1")
    # One entry per rule, with what it did in both phases, in order.
    entries = [(m["rule"], m["actions"]) for m in rec["rules"]["matched"]]
    assert entries == [
        ("debug-header", ["set_header x-debug", "add_header x-trace", "remove_header cookie",
                          "remove_header authorization", "remove_header server",
                          "set_header cache-control"]),
        ("cors-for-local-ui", ["set_header access-control-allow-origin"]),
        ("route-to-origin", [f"map_remote http://127.0.0.1:{origin.port}"]),
    ]  # fmt: skip


@pytest.mark.parametrize("origin_value", [None, "https://evil.example"])
def test_header_cors_only_for_local_origin(
    headers: ProxyProcess, origin: Origin, origin_value: str | None
) -> None:
    args = ["-H", f"Origin: {origin_value}"] if origin_value else []
    r = curl(headers, "http://api.svc/h2", *args)
    assert r.header("access-control-allow-origin") == []
    assert r.header("cache-control") == ["no-store"]
    assert "cors-for-local-ui" not in matched(record_for(headers, "api.svc/h2"))


def test_header_edits_only_for_matching_hosts(headers: ProxyProcess, origin: Origin) -> None:
    r = curl(headers, "http://www.example.org/h3", "-H", "Cookie: a=1")
    assert r.header("server") != [] and r.header("cache-control") == []
    assert origin.only().header("cookie") == ["a=1"]


# -- body-replace.yaml -------------------------------------------------------------------


@pytest.fixture(scope="module")
def body_replace(
    tmp_path_factory: pytest.TempPathFactory, origin: Origin
) -> Iterator[ProxyProcess]:
    yield from _proxy(tmp_path_factory, origin, "examples/body-replace.yaml")


@pytest.mark.parametrize("coding", list(CODECS))
def test_replace_body_in_encoded_response(
    body_replace: ProxyProcess, origin: Origin, coding: str
) -> None:
    """Bar (a) for replace_body: decoded, edited, re-encoded, Content-Length right."""
    doc = {"env": "prod", "name": "x" * 300, "n": 1}
    origin.reply(
        "/config",
        body=CODECS[coding][0](dumps(doc)),
        headers={"Content-Type": "application/json; charset=utf-8", "Content-Encoding": coding},
    )
    check_encoded(body_replace, "http://cfg.svc/config", coding, {**doc, "env": "dev"})
    rec = record_for(body_replace, "cfg.svc/config")
    assert [a.startswith("replace_body") for a in matched(rec)["env-dev"]] == [True]
    assert rec["rules"]["warnings"] == []


def test_replace_body_not_for_other_content_types(
    body_replace: ProxyProcess, origin: Origin
) -> None:
    origin.reply("/text", body='{"env":"prod"}', headers={"Content-Type": "text/plain"})
    r = curl(body_replace, "http://cfg.svc/text")
    assert r.body == b'{"env":"prod"}'
    assert "env-dev" not in matched(record_for(body_replace, "cfg.svc/text"))


def test_replace_body_chunked_response(
    tmp_path: Path, upstreams: Upstreams, origin: Origin
) -> None:
    """A chunked, gzip-encoded upstream response is buffered, edited and sent with a length."""
    body = gzip.compress(b'{"env":"prod","list":[' + b"1," * 2000 + b"2]}")

    async def chunked(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for i in range(0, len(body), 100):
            part = body[i : i + 100]
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
            await conn.writer.drain()
        conn.send(b"0\r\n\r\n")
        await conn.writer.drain()
        await conn.read_some(2)

    server = upstreams.raw(chunked)
    with rules_proxy(tmp_path, "examples/body-replace.yaml", origin=server.port) as p:
        r = curl(p, "http://cfg.svc/chunked", "--compressed")
        assert r.returncode == 0, r.stderr
        assert r.body == b'{"env":"dev","list":[' + b"1," * 2000 + b"2]}"
        assert r.header("transfer-encoding") == []
        assert len(r.header("content-length")) == 1


def test_replace_body_in_request(body_replace: ProxyProcess, origin: Origin) -> None:
    body = b'{"userName":"ada","note":"\\"userName\\""}'
    r = curl(
        body_replace,
        "http://api.svc/users",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
    )
    assert r.status == 200
    seen = origin.only()
    assert seen.body == body.replace(b'"userName"', b'"username"')
    assert seen.header("content-length") == [str(len(seen.body))]
    rules = matched(record_for(body_replace, "api.svc/users"))
    assert [a.startswith("replace_body") for a in rules["rename-field"]] == [True]


def test_replace_body_in_gzip_request(body_replace: ProxyProcess, origin: Origin) -> None:
    body = gzip.compress(b'{"userName":"ada"}')
    s = send(
        body_replace.port,
        b"POST http://api.svc/users/gz HTTP/1.1\r\nHost: api.svc\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert split_response(recv_response(s))[0] == 200
    s.close()
    seen = origin.requests()[-1]
    assert seen.header("content-encoding") == ["gzip"]
    assert gzip.decompress(seen.body) == b'{"username":"ada"}'
    assert seen.header("content-length") == [str(len(seen.body))]


def test_response_over_max_body_streams_untouched(tmp_path: Path, origin: Origin) -> None:
    """Bar (e): with --max-body 1K a 5,000-byte JSON body is not edited, but arrives whole."""
    doc = dumps({"env": "prod", "pad": "p" * 5000})
    origin.reply("/big", body=doc, headers={"Content-Type": "application/json"})
    origin.reply(
        "/small", body=dumps({"env": "prod"}), headers={"Content-Type": "application/json"}
    )
    with rules_proxy(
        tmp_path, "examples/body-replace.yaml", origin=origin, args=("--max-body", "1K")
    ) as p:
        r = curl(p, "http://cfg.svc/big")
        assert r.returncode == 0 and r.body == doc
        assert r.header("content-length") == [str(len(doc))]
        rec = record_for(p, "cfg.svc/big")
        small = curl(p, "http://cfg.svc/small")
        assert small.json() == {"env": "dev"}  # under the limit: edited
        big_req = b'{"userName":"' + b"u" * 3000 + b'"}'
        curl(p, "http://api.svc/upload", "--data-binary", big_req, "-H", "expect:")
        assert origin.requests()[-1].body == big_req
        rec2 = record_for(p, "api.svc/upload")
    assert rec["response"]["body_size"] == len(doc)
    assert any("max-body" in w for w in rec["rules"]["warnings"]), rec["rules"]
    assert any("max-body" in w for w in rec2["rules"]["warnings"]), rec2["rules"]


# -- json-patch.yaml -----------------------------------------------------------------------

PROFILE = {"plan": "free", "ads": {"slots": 3}, "limits": {"requests": 100, "burst": 5}, "id": 7}
CART = {
    "currency": "EUR",
    "total": 120,
    "items": [{"sku": "A", "qty": 2}],
    "coupon": "SUMMER",
    "note": "leave at door",
}


@pytest.fixture(scope="module")
def json_patch(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    yield from _proxy(tmp_path_factory, origin, "examples/json-patch.yaml")


def test_json_merge(json_patch: ProxyProcess, origin: Origin) -> None:
    origin.reply(
        "/v1/profile",
        body=gzip.compress(dumps(PROFILE)),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    expected = {"plan": "premium", "limits": {"requests": 10000, "burst": 5}, "id": 7}
    check_encoded(json_patch, "http://api.svc/v1/profile", "gzip", expected)
    assert matched(record_for(json_patch, "api.svc/v1/profile"))["merge-profile"] == ["json_merge"]


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_json_patch(json_patch: ProxyProcess, origin: Origin, coding: str) -> None:
    """Bar (a) for JSON Patch."""
    origin.reply(
        "/v1/carts/42",
        body=CODECS[coding][0](dumps(CART)),
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
    )
    expected = {
        "currency": "EUR",
        "total": 0,
        "items": [{"sku": "A", "qty": 2}, {"sku": "FREE-GIFT", "qty": 1}],
        "subtotal": 0,
        "comment": "leave at door",
    }
    check_encoded(json_patch, "http://api.svc/v1/carts/42", coding, expected)
    rec = record_for(json_patch, "api.svc/v1/carts/42")
    assert matched(rec)["patch-cart"] == ["json_patch (6 ops)"]
    assert rec["rules"]["warnings"] == []


def test_json_patch_failing_test_leaves_body(json_patch: ProxyProcess, origin: Origin) -> None:
    usd = dumps({**CART, "currency": "USD"})
    origin.reply(
        "/v1/carts/7",
        body=gzip.compress(usd),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    r = curl(json_patch, "http://api.svc/v1/carts/7", "--compressed")
    assert r.returncode == 0 and r.body == usd
    rec = record_for(json_patch, "api.svc/v1/carts/7")
    assert "patch-cart" in matched(rec)
    assert any("test" in w for w in rec["rules"]["warnings"]), rec["rules"]


def test_json_patch_on_invalid_json(json_patch: ProxyProcess, origin: Origin) -> None:
    origin.reply("/v1/carts/bad", body=b"{not json", headers={"Content-Type": "application/json"})
    r = curl(json_patch, "http://api.svc/v1/carts/bad")
    assert r.status == 200 and r.body == b"{not json"
    rec = record_for(json_patch, "api.svc/v1/carts/bad")
    assert rec["rules"]["warnings"], rec["rules"]


# -- response-match.yaml ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def response_match(
    tmp_path_factory: pytest.TempPathFactory, origin: Origin
) -> Iterator[ProxyProcess]:
    yield from _proxy(tmp_path_factory, origin, "examples/response-match.yaml")


@pytest.mark.parametrize(("status", "tagged"), [(503, True), (429, True), (404, False)])
def test_tag_errors(
    response_match: ProxyProcess, origin: Origin, status: int, tagged: bool
) -> None:
    r = curl(response_match, f"http://api.svc/status/{status}")
    assert r.status == status
    rec = record_for(response_match, f"api.svc/status/{status}")
    assert rec["rules"]["tags"] == (["error"] if tagged else [])
    assert rec["rules"]["detail"] == ("full" if tagged else None)
    assert ("tag-errors" in matched(rec)) is tagged


@pytest.mark.parametrize(
    ("ctype", "cache", "expected"),
    [
        ("application/json; charset=utf-8", None, ["no-store"]),
        ("application/json", "max-age=60", ["max-age=60"]),
        ("text/html", None, []),
    ],
)
def test_no_cache_json(
    response_match: ProxyProcess,
    origin: Origin,
    ctype: str,
    cache: str | None,
    expected: list[str],
) -> None:
    hdrs = {"Content-Type": ctype, **({"Cache-Control": cache} if cache else {})}
    origin.reply("/doc", body=b"{}", headers=hdrs)
    r = curl(response_match, "http://www.example.org/doc")
    assert r.status == 200 and r.body == b"{}"
    assert r.header("cache-control") == expected


def test_feature_off(response_match: ProxyProcess, origin: Origin) -> None:
    doc = {"features": {"beta": True, "dark": False}}
    origin.reply(
        "/features",
        status=503,
        body=gzip.compress(dumps(doc)),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    r = curl(response_match, "http://flags.svc/features", "--compressed")
    assert r.returncode == 0, r.stderr
    assert r.status == 200 and r.json() == {"features": {"beta": False, "dark": False}}
    raw = curl(response_match, "http://flags.svc/features")
    assert raw.header("content-length") == [str(len(raw.body))]
    rec = record_for(response_match, "flags.svc/features")
    rules = matched(rec)
    assert rules["feature-off"] == ["json_patch (1 op)", "set_status 200"]
    assert rec["response"]["status"] == 200
    assert rec["rules"]["tags"] == ["error"]  # tag-errors saw the upstream's 503


def test_feature_off_not_for_beta_false(response_match: ProxyProcess, origin: Origin) -> None:
    origin.reply("/features", body={"features": {"beta": False}})
    r = curl(response_match, "http://flags.svc/features?v=2")
    assert r.json() == {"features": {"beta": False}}
    rec = record_for(response_match, "flags.svc/features?v=2")
    assert "feature-off" not in matched(rec)
    assert r.header("cache-control") == ["no-store"]  # no-cache-json did match


# -- HEAD turned into GET, with response rules that buffer the body --------------------------


def test_head_to_get_with_body_rules(tmp_path: Path, origin: Origin) -> None:
    """head-to-get (rewrite.yaml) + env-dev (body-replace.yaml): the buffered, edited
    response to a client's HEAD still goes out without a body."""
    origin.reply("/cfg", body={"env": "prod"})
    with rules_proxy(
        tmp_path, "examples/rewrite.yaml", "examples/body-replace.yaml", origin=origin
    ) as p:
        s = send(
            p.port,
            b"HEAD http://legacy.svc/cfg HTTP/1.1\r\nHost: legacy.svc\r\n\r\n"
            b"GET http://legacy.svc/cfg HTTP/1.1\r\nHost: legacy.svc\r\nConnection: close\r\n\r\n",
        )
        data, how = read_all(s)
        s.close()
    assert how == "fin"
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:60]  # no body after the HEAD response
    status, _, body = split_response(rest)
    assert status == 200 and json.loads(body) == {"env": "dev"}
    assert [x.method for x in origin.requests()] == ["GET", "GET"]


def test_replace_body_action_summary_is_readable(
    body_replace: ProxyProcess, origin: Origin
) -> None:
    origin.reply("/summary", body={"env": "prod"})
    curl(body_replace, "http://cfg.svc/summary")
    (action,) = matched(record_for(body_replace, "cfg.svc/summary"))["env-dev"]
    assert "b'" not in action and "regex" in action
