"""Matchers, one table row per condition, and the index against a linear scan."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.rules import RequestInfo, SourceText, load_sources
from proxy.rules.engine import RuleSet
from proxy.rules.facts import Facts, normalize_path
from proxy.rules.textmatch import Pattern, StrPred, glob_regex


def load(text: str) -> RuleSet:
    return load_sources([SourceText(Path("/virtual/t.yaml"), textwrap.dedent(text))])


def req(
    url: str = "https://api.svc/v1/users",
    method: str = "GET",
    headers: tuple[tuple[bytes, bytes], ...] = (),
    client: str = "10.1.2.3",
    mode: str = "regular",
) -> RequestInfo:
    scheme, rest = url.split("://", 1)
    hostport, _, target = rest.partition("/")
    host, _, port = hostport.partition(":")
    path, _, query = ("/" + target).partition("?")
    default = 443 if scheme == "https" else 80
    fields = ((b"Host", hostport.encode()), *headers)
    return RequestInfo(
        scheme, host, int(port or default), method, path, query, fields, client, mode
    )


def matches(match: str, info: RequestInfo) -> bool:
    rs = load(f"version: 1\nrules: [{{match: {match}, log: {{tags: hit}}}}]")
    return rs.on_request(info).matched == ("t.yaml:2",)


CASES = [
    # (match, request, expected)
    ("{host: api.svc}", req(), True),
    ("{host: API.SVC}", req(), True),
    ("{host: api.svc}", req("https://API.Svc./"), True),
    ("{host: other.svc}", req(), False),
    ("{host: '*.svc'}", req("https://a.b.svc/"), True),
    ("{host: '*.svc'}", req("https://svc/"), False),
    ("{host: 'api.*.svc'}", req("https://api.eu.svc/"), True),
    ("{host: 'api.*.svc'}", req("https://web.eu.svc/"), False),
    ("{host: 'ap?.svc'}", req(), True),
    ("{host: {regex: '^api-[0-9]+\\.svc$'}}", req("https://api-12.svc/"), True),
    ("{host: {regex: '^api-[0-9]+\\.svc$'}}", req("https://api-x.svc/"), False),
    ("{host: {regex: 'API'}}", req(), True),
    ("{host: [x.svc, '*.com', {regex: '^api'}]}", req(), True),
    ("{scheme: http}", req(), False),
    ("{scheme: [http, https]}", req(), True),
    ("{port: 443}", req(), True),
    ("{port: '8000-8100'}", req("http://a:8080/"), True),
    ("{port: ['8000-8100', 9000]}", req("http://a:9001/"), False),
    ("{method: GET}", req(), True),
    ("{method: [POST, PUT]}", req(), False),
    ("{method: PURGE}", req(method="PURGE"), True),
    ("{path: /v1/users}", req(), True),
    ("{path: /v1/user}", req(), False),
    ("{path: {prefix: /v1/}}", req(), True),
    ("{path: {prefix: /v2/}}", req(), False),
    ("{path: '/v1/*'}", req(), True),
    ("{path: '/v1/*'}", req("https://a/v1/users/3"), False),
    ("{path: '/v1/**'}", req("https://a/v1/users/3"), True),
    ("{path: {glob: '/v?/users'}}", req(), True),
    ("{path: {regex: 'users$'}}", req(), True),
    ("{path: /admin}", req("https://a/%61dmin"), True),
    ("{path: /admin}", req("https://a/x/../admin"), True),
    ("{path: /admin}", req("https://a/admin?x=1"), True),
    ("{path: {exact: '/v1/*'}}", req("https://a/v1/*"), True),
    ("{query: {id: '3'}}", req("https://a/?id=3&x=1"), True),
    ("{query: {id: ['1', '2']}}", req("https://a/?id=3&id=2"), True),
    ("{query: {id: {present: true}}}", req("https://a/?id="), True),
    ("{query: {id: {absent: true}}}", req("https://a/?idx=1"), True),
    ("{query: {q: 'a b'}}", req("https://a/?q=a+b"), True),
    ("{headers: {x-debug: '1'}}", req(headers=((b"X-Debug", b"1"),)), True),
    ("{headers: {x-debug: '1'}}", req(headers=((b"X-Debug", b"2"),)), False),
    ("{headers: {x-debug: '1'}}", req(headers=((b"x-debug", b"2"), (b"x-debug", b"1"))), True),
    ("{headers: {x-a: {prefix: ab}}}", req(headers=((b"x-a", b"abc"),)), True),
    ("{headers: {x-a: {glob: 'a*c'}}}", req(headers=((b"x-a", b"abbc"),)), True),
    ("{headers: {x-a: {regex: '^[0-9]+$'}}}", req(headers=((b"x-a", b"12a"),)), False),
    ("{headers: {x-a: {present: true}}}", req(), False),
    ("{headers: {x-a: {absent: true}}}", req(), True),
    ("{headers: {x-a: {present: false}}}", req(), True),
    ("{client: 10.0.0.0/8}", req(), True),
    ("{client: [192.168.0.0/16, '::1']}", req(client="::1"), True),
    ("{client: 10.0.0.0/8}", req(client="not-an-ip"), False),
    ("{mode: reverse}", req(), False),
    ("{mode: [regular, reverse]}", req(), True),
    ("{not: {host: api.svc}}", req(), False),
    ("{not: {path: /healthz}}", req(), True),
    ("{any: [{host: x}, {path: /v1/users}]}", req(), True),
    ("{any: [{host: x}, {path: /nope}]}", req(), False),
    ("{any: [{not: {any: [{host: api.svc}]}}, {method: POST}]}", req(), False),
    ("{host: api.svc, method: GET, path: {prefix: /v1}, port: 443}", req(), True),
    ("{host: api.svc, method: POST}", req(), False),
]


@pytest.mark.parametrize(("match", "info", "expected"), CASES)
def test_match(match: str, info: RequestInfo, expected: bool) -> None:
    assert matches(match, info) is expected


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/a/b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/../a", "/a"),
        ("/a/..", "/"),
        ("/a/.", "/a/"),
        ("/%7Euser/%41", "/~user/A"),
        ("/a%2Fb", "/a%2Fb"),
        ("/%2e%2e/etc", "/etc"),
        ("//a", "//a"),
    ],
)
def test_normalize_path(path: str, normal: str) -> None:
    assert normalize_path(path) == normal


RESPONSE_CASES = [
    ("{status: 404}", 404, (), True),
    ("{status: '5xx'}", 503, (), True),
    ("{status: '5XX'}", 404, (), False),
    ("{status: '500-504'}", 504, (), True),
    ("{status: ['4xx', 500]}", 500, (), True),
    (
        "{content_type: application/json}",
        200,
        ((b"Content-Type", b"Application/JSON; charset=utf-8"),),
        True,
    ),
    ("{content_type: 'text/*'}", 200, ((b"content-type", b"text/html"),), True),
    ("{content_type: 'text/*'}", 200, (), False),
    ("{response_headers: {server: nginx}}", 200, ((b"Server", b"nginx"),), True),
    ("{response_headers: {server: {absent: true}}}", 200, ((b"Server", b"nginx"),), False),
    (
        "{any: [{status: 500}, {response_headers: {x-err: {present: true}}}]}",
        200,
        ((b"x-err", b""),),
        True,
    ),
]


@pytest.mark.parametrize(("match", "status", "fields", "expected"), RESPONSE_CASES)
def test_response_match(
    match: str, status: int, fields: tuple[tuple[bytes, bytes], ...], expected: bool
) -> None:
    rs = load(f"version: 1\nrules: [{{match: {match}, log: {{tags: hit}}}}]")
    plan = rs.on_request(req())
    assert plan.matched == ()  # decided only by the response
    assert (rs.on_response(plan, status, fields).matched == ("t.yaml:2",)) is expected


BODY_CASES = [
    ("{contains: needle}", b"hay needle hay", True),
    ("{contains: needle}", b"hay", False),
    ("{regex: '^[{]\"a\":[0-9]+'}", b'{"a":12}', True),
    ("{json: {/user/role: admin}}", b'{"user":{"role":"admin"}}', True),
    ("{json: {/user/role: admin}}", b'{"user":{"role":"guest"}}', False),
    ("{json: {/n: 1}}", b'{"n":1.0}', True),
    ("{json: {/n: 1}}", b'{"n":true}', False),
    ("{json: {/list/1: b}}", b'{"list":["a","b"]}', True),
    ("{json: {/a~1b: 1}}", b'{"a/b":1}', True),
    ("{json: {/x: 1}}", b"not json", False),
    ("[{contains: x}, {contains: y}]", b"y", True),
    ("{contains: a, json: {/b: 1}}", b'{"b":1}', False),
]


@pytest.mark.parametrize(("cond", "body", "expected"), BODY_CASES)
def test_body_match(cond: str, body: bytes, expected: bool) -> None:
    rs = load(f"version: 1\nrules: [{{match: {{body: {cond}}}, log: {{tags: hit}}}}]")
    plan = rs.on_request(req(method="POST"))
    assert plan.pending and plan.needs_body
    done = rs.complete_request(plan, body)
    assert not done.pending
    assert (done.matched == ("t.yaml:2",)) is expected


def test_glob_translation() -> None:
    assert glob_regex("/a/*/b", "/") == r"\A(?:/a/[^/]*/b)\Z"
    assert glob_regex("*.svc", None) == r"\A(?:.*\.svc)\Z"


def test_strpred_combines_regexes_but_not_backreferences() -> None:
    pred = StrPred([Pattern("regex", "^a"), Pattern("glob", "b*"), Pattern("regex", r"(x)\1")])
    assert pred.regex is not None and len(pred.regexes) == 1
    assert pred("abc") and pred("bcd") and pred("xx") and not pred("xy")
    assert pred.source is None  # a backreference keeps the rule out of the combined host regex


# -- the index never changes the result ----------------------------------

HOSTS = ["api.svc", "a.b.svc", "web.com", "api-7.svc", "x"]
PATHS = ["/", "/v1", "/v1/", "/v1/users", "/v1/users/3", "/v10/x", "/static/a.css", "/admin", "//x"]
RULE_MATCHES = [
    "{host: api.svc}",
    "{host: '*.svc'}",
    "{host: '*.b.svc', path: {prefix: /v1/}}",
    "{host: {regex: 'api-[0-9]'}}",
    "{host: [web.com, '*.svc'], path: /v1/users}",
    "{path: {prefix: /v1}}",
    "{path: '/static/*'}",
    "{path: {regex: 'admin'}}",
    "{not: {host: api.svc}}",
    "{any: [{host: x}, {path: /}]}",
    "{host: 'api*'}",
    "{method: POST}",
    "{host: {regex: '(a)\\1'}}",
    "{path: {prefix: /v1/users/}}",
    "{path: [/v1/users/3, {prefix: /v}]}",
    "{path: {prefix: /}}",
    "{path: '/v1/*/3'}",
    "{path: '/*'}",
    "{host: api.svc, path: /v1/}",
    "{host: [{regex: '^api'}, '*.b.svc'], path: {prefix: /v1/u}}",
    "{headers: {x-a: '1'}}",
    "{headers: {x-a: ['1', '2'], x-b: {absent: true}}}",
    "{headers: {x-a: {present: true}}}",
    "{headers: {x-a: {regex: '^1'}}}",
    "{headers: {x-b: {absent: true}}}",
    "{method: [GET, HEAD]}",
]
HEADER_SETS = [
    (),
    ((b"X-A", b"1"),),
    ((b"x-a", b"2"), (b"x-b", b"")),
    ((b"x-a", b"10"),),
    ((b"x-a", b"3"), (b"X-A", b"1"), (b"x-c", b"1")),  # a repeated name
]


@settings(max_examples=100, deadline=None)
@given(
    rules=st.lists(st.sampled_from(RULE_MATCHES), min_size=1, max_size=8),
    host=st.sampled_from(HOSTS),
    path=st.sampled_from(PATHS),
    headers=st.sampled_from(HEADER_SETS),
    method=st.sampled_from(["GET", "POST"]),
)
def test_index_agrees_with_linear_scan(
    rules: list[str], host: str, path: str, headers: tuple[tuple[bytes, bytes], ...], method: str
) -> None:
    text = "version: 1\nrules:\n" + "".join(
        f"  - {{match: {m}, log: {{tags: t}}}}\n" for m in rules
    )
    rs = load(text)
    info = req(f"https://{host}{path}", method=method, headers=headers)
    linear = [r.name for r in rs.rules if r.match.test(Facts(info))]
    assert list(rs.on_request(info).matched) == linear
    # The session asks the index first, from the head, and describes the
    # request only when some rule may match (proxy.session.rulephase).
    candidates = rs.candidates(info.host, info.path, info.method, info.fields)
    assert list(rs.fresh().on_request(info, candidates).matched) == linear
    if not candidates:
        assert not linear
