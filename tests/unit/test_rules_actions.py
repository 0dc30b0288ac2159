"""Head edits, body edits and content codings."""

from __future__ import annotations

import gzip
import textwrap
import zlib
from pathlib import Path

import pytest

from proxy.rules import RequestInfo, SourceText, load_sources
from proxy.rules import body as codec
from proxy.rules.engine import RuleSet

Fields = tuple[tuple[bytes, bytes], ...]


def load(text: str) -> RuleSet:
    return load_sources([SourceText(Path("/virtual/t.yaml"), textwrap.dedent(text))])


def info(path: str = "/v1/users", query: str = "id=3&x=a%20b", fields: Fields = ()) -> RequestInfo:
    base = ((b"Host", b"api.svc"), (b"Cookie", b"a=1"), *fields)
    return RequestInfo("https", "api.svc", 443, "GET", path, query, base)


def edit(actions: str, request: RequestInfo | None = None) -> tuple[str, str, Fields]:
    rs = load(f"version: 1\nrules: [{{request: {actions}}}]")
    head = rs.on_request(request or info()).apply_head()
    return head.method, head.url, head.fields


HEAD_CASES = [
    (
        "[{set_header: {x-debug: '1'}}]",
        "GET",
        "https://api.svc/v1/users?id=3&x=a%20b",
        ((b"Host", b"api.svc"), (b"Cookie", b"a=1"), (b"x-debug", b"1")),
    ),
    (
        "[{set_header: {cookie: b=2}}]",
        "GET",
        "https://api.svc/v1/users?id=3&x=a%20b",
        ((b"Host", b"api.svc"), (b"cookie", b"b=2")),
    ),
    (
        "[{add_header: {cookie: b=2}}]",
        "GET",
        "https://api.svc/v1/users?id=3&x=a%20b",
        ((b"Host", b"api.svc"), (b"Cookie", b"a=1"), (b"cookie", b"b=2")),
    ),
    (
        "[{remove_header: [COOKIE, x-none]}]",
        "GET",
        "https://api.svc/v1/users?id=3&x=a%20b",
        ((b"Host", b"api.svc"),),
    ),
    (
        "[{set_method: POST}]",
        "POST",
        "https://api.svc/v1/users?id=3&x=a%20b",
        ((b"Host", b"api.svc"), (b"Cookie", b"a=1")),
    ),
    (
        "[{rewrite_path: {regex: '^/v1/(.*)', with: '/v2/\\1'}}]",
        "GET",
        "https://api.svc/v2/users?id=3&x=a%20b",
        ((b"Host", b"api.svc"), (b"Cookie", b"a=1")),
    ),
    (
        "[{set_query: {id: '4'}}]",
        "GET",
        "https://api.svc/v1/users?id=4&x=a%20b",
        ((b"Host", b"api.svc"), (b"Cookie", b"a=1")),
    ),
    (
        "[{set_query: {id: null, new: 'a&b'}}]",
        "GET",
        "https://api.svc/v1/users?x=a%20b&new=a%26b",
        ((b"Host", b"api.svc"), (b"Cookie", b"a=1")),
    ),
    (
        "[{rewrite_url: {regex: '^https://api\\.svc/', with: 'http://localhost:8080/api/'}}]",
        "GET",
        "http://localhost:8080/api/v1/users?id=3&x=a%20b",
        ((b"Host", b"localhost:8080"), (b"Cookie", b"a=1")),
    ),
    (
        "[{set_header: {host: pinned}}, {rewrite_url: {regex: api.svc, with: other.svc}}]",
        "GET",
        "https://other.svc/v1/users?id=3&x=a%20b",
        ((b"host", b"pinned"), (b"Cookie", b"a=1")),
    ),
]


@pytest.mark.parametrize(("actions", "method", "url", "fields"), HEAD_CASES)
def test_head_edits(actions: str, method: str, url: str, fields: Fields) -> None:
    assert edit(actions) == (method, url, fields)


def test_edits_stack_across_rules_in_order() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - request: [{set_header: {x-a: '1'}}]
          - request: [{set_header: {x-a: '2'}}, {add_header: {x-b: '3'}}]
        """
    )
    head = rs.on_request(info()).apply_head()
    assert head.fields[-2:] == ((b"x-a", b"2"), (b"x-b", b"3"))


def test_bad_rewrite_result_is_a_warning_not_a_crash() -> None:
    rs = load(
        "version: 1\nrules: [{request: [{rewrite_url: {regex: '^https://', with: 'ftp://'}}]}]"
    )
    head = rs.on_request(info()).apply_head()
    assert head.url == "https://api.svc/v1/users?id=3&x=a%20b"
    assert "unusable URL" in head.warnings[0]


def test_map_remote_keeps_path_and_query_and_moves_host() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - {match: {path: /a}, map_remote: 'http://localhost:8080'}
          - {match: {path: /b}, map_remote: {to: 'https://cdn.net/origin/', keep_host: true}}
        """
    )
    a = rs.on_request(info(path="/a"))
    assert a.terminal is not None and a.terminal.kind == "map_remote"
    head = a.apply_head()
    assert (head.url, head.fields[0]) == (
        "http://localhost:8080/a?id=3&x=a%20b",
        (b"Host", b"localhost:8080"),
    )
    head = rs.on_request(info(path="/b")).apply_head()
    assert (head.url, head.fields[0]) == (
        "https://cdn.net/origin/b?id=3&x=a%20b",
        (b"Host", b"api.svc"),
    )


def test_response_head_edits() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - response: [{remove_header: server}, {set_status: 200}, {set_header: {x-a: b}}]
        """
    )
    plan = rs.on_response(rs.on_request(info()), 503, ((b"Server", b"nginx"),))
    edited = plan.apply_head(503, ((b"Server", b"nginx"),))
    assert (edited.status, edited.fields) == (200, ((b"x-a", b"b"),))


# -- bodies ------------------------------------------------------------------


def _encoders() -> dict[str, object]:
    return {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": codec.brotli.compress if codec.brotli else None,
        "zstd": codec.zstandard.ZstdCompressor().compress if codec.zstandard else None,
    }


BODY_RULES = """\
version: 1
rules:
  - response:
      - replace_body: {regex: '"env":"(\\w+)"', with: '"env":"dev-\\1"'}
      - json_merge: {added: true}
"""


@pytest.mark.parametrize(
    "coding", ["identity", "gzip", "x-gzip", "deflate", "br", "zstd", "gzip, br"]
)
def test_body_edit_roundtrip_through_codings(coding: str) -> None:
    codings = codec.codings_of(((b"content-encoding", coding.encode()),))
    if any(
        (c == "br" and codec.brotli is None) or (c == "zstd" and codec.zstandard is None)
        for c in codings
    ):
        pytest.skip("optional codec not installed")
    raw = codec.encode(b'{"env":"prod"}', codings)
    fields = ((b"Content-Encoding", coding.encode()), (b"Content-Length", str(len(raw)).encode()))
    rs = load(BODY_RULES)
    rplan = rs.on_response(rs.on_request(info()), 200, fields)
    assert rplan.needs_body
    out = rplan.apply_body(raw, fields)
    assert out.changed and not out.warnings
    assert codec.decode(out.body, codings) == b'{"env":"dev-prod","added":true}'
    assert dict(out.fields)[b"Content-Length"] == str(len(out.body)).encode()


def test_raw_deflate_is_accepted() -> None:
    c = zlib.compressobj(wbits=-15)
    raw = c.compress(b"hello") + c.flush()
    assert codec.decode(raw, ["deflate"]) == b"hello"


def test_missing_optional_codec_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "brotli", None)
    fields = ((b"content-encoding", b"br"),)
    rs = load(BODY_RULES)
    out = rs.on_response(rs.on_request(info()), 200, fields).apply_body(b"\x8b\x00\x80", fields)
    assert (out.body, out.changed) == (b"\x8b\x00\x80", False)
    assert "brotli" in out.warnings[0]


@pytest.mark.parametrize(
    ("raw", "codings", "message"),
    [
        (b"not gzip", ["gzip"], "corrupt"),
        (gzip.compress(b"x" * 100)[:-10], ["gzip"], "truncated"),
        (gzip.compress(b"x" * 5000), ["gzip"], "over 1000 bytes"),
        (b"x", ["compress"], "unsupported content coding"),
    ],
)
def test_decode_errors(raw: bytes, codings: list[str], message: str) -> None:
    with pytest.raises(codec.CodecError, match=message):
        codec.decode(raw, codings, limit=1000)


@pytest.mark.skipif(codec.zstandard is None or codec.brotli is None, reason="optional codecs")
@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_decompression_bombs_are_bounded(coding: str) -> None:
    raw = codec.encode(b"\0" * 5_000_000, [coding])
    with pytest.raises(codec.CodecError, match="over"):
        codec.decode(raw, [coding], limit=1000)


def test_multi_member_gzip() -> None:
    assert codec.decode(gzip.compress(b"a") + gzip.compress(b"b"), ["gzip"]) == b"ab"


def test_json_patch_failure_leaves_body_unchanged() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - response:
              - json_patch:
                  - {op: test, path: /currency, value: EUR}
                  - {op: replace, path: /total, value: 0}
        """
    )
    plan = rs.on_response(rs.on_request(info()), 200, ())
    out = plan.apply_body(b'{"currency":"USD","total":5}', ())
    assert (out.body, out.changed) == (b'{"currency":"USD","total":5}', False)
    assert "test failed" in out.warnings[0]
    out = plan.apply_body(b'{"currency":"EUR","total":5}', ())
    assert out.body == b'{"currency":"EUR","total":0}'


def test_json_edit_on_non_json_body_is_a_warning() -> None:
    rs = load("version: 1\nrules: [{request: [{json_merge: {a: 1}}]}]")
    out = rs.on_request(info()).apply_body(b"<html>", ())
    assert not out.changed and "not JSON" in out.warnings[0]


def test_literal_replace_is_not_a_regex() -> None:
    rs = load("version: 1\nrules: [{request: [{replace_body: {literal: 'a.b', with: '\\1'}}]}]")
    out = rs.on_request(info()).apply_body(b"a.b axb", ())
    assert out.body == b"\\1 axb"


def test_hostile_json_bodies_are_warnings() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    rs = load("version: 1\nrules: [{request: [{json_merge: {a: 1}}]}]")
    out = rs.on_request(info()).apply_body(deep, ())
    assert not out.changed and out.warnings
    rs = load("version: 1\nrules: [{match: {body: {json: {/a: 1}}}, log: {}}]")
    plan = rs.complete_request(rs.on_request(info()), deep)
    assert plan.matched == ()
