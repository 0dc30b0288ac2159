"""Every example loads, validates against rules/schema.json, and does what it says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from proxy.rules import (
    CloseConnection,
    MapRemote,
    RequestInfo,
    Respond,
    RulesError,
    Send,
    SourceText,
    load_rules,
    load_sources,
)
from proxy.rules.engine import RuleSet
from proxy.rules.tcp import Close, Reset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "rules" / "examples"
SCHEMA = json.loads((ROOT / "rules" / "schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
FILES = sorted(EXAMPLES.glob("*.yaml"))


def example(name: str, rng: float = 0.0) -> RuleSet:
    return load_rules([EXAMPLES / name], rng=lambda: rng)


def req(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, client: str = "10.0.0.1"
) -> RequestInfo:
    scheme, rest = url.split("://", 1)
    hostport, _, target = rest.partition("/")
    host, _, port = hostport.partition(":")
    path, _, query = ("/" + target).partition("?")
    fields = (
        (b"host", hostport.encode()),
        *((k.encode(), v.encode()) for k, v in (headers or {}).items()),
    )
    return RequestInfo(
        scheme,
        host,
        int(port or (443 if scheme == "https" else 80)),
        method,
        path,
        query,
        fields,
        client,
    )


def test_there_is_an_example_per_feature() -> None:
    assert len(FILES) >= 15


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_loads_and_validates(path: Path) -> None:
    load_rules([path])
    VALIDATOR.validate(yaml.safe_load(path.read_text()))


def test_all_examples_load_together() -> None:
    rs = load_rules([EXAMPLES])
    assert len(rs.rules) > 30 and len(rs.tcp_rules) == 11  # 8 with toxics, 3 routes
    assert rs.route_for("x.onion", 80, "regular") == "socks5://127.0.0.1:9050"
    assert rs.route_for("db.corp.example", 5432, "socks5") == "direct"
    assert rs.route_for("elsewhere.example", 443, "regular") is None


def test_schema_is_valid_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


INVALID = [
    "rules: []",
    "version: 2",
    "version: 1\nextra: 1",
    "version: 1\nrules: [{match: {host: x}}]",
    "version: 1\nrules: [{matchh: {}, log: {}}]",
    "version: 1\nrules: [{match: {path: {prefx: /a}}, log: {}}]",
    "version: 1\nrules: [{match: {port: 0}, log: {}}]",
    "version: 1\nrules: [{match: {status: 6xx}, log: {}}]",
    "version: 1\nrules: [{match: {percent: 200}, log: {}}]",
    "version: 1\nrules: [{match: {not: {times: 2}}, log: {}}]",
    "version: 1\nrules: [{match: {headers: {x: {present: 1}}}, log: {}}]",
    'version: 1\nrules: [{request: [{set_header: {x: "a\\r\\nb"}}]}]',
    "version: 1\nrules: [{request: [{set_header: {Content-Length: '1'}}]}]",
    "version: 1\nrules: [{request: [{set_status: 200}]}]",
    "version: 1\nrules: [{request: [{set_header: {x: a}, add_header: {y: b}}]}]",
    "version: 1\nrules: [{request: [{json_patch: [{op: add, path: /a}]}]}]",
    "version: 1\nrules: [{request: [{replace_body: {with: x}}]}]",
    "version: 1\nrules: [{respond: {status: 700}}]",
    "version: 1\nrules: [{respond: {}, block: {}}]",
    "version: 1\nrules: [{respond: {body: a, json: 1}}]",
    "version: 1\nrules: [{map_remote: 'ftp://x'}]",
    "version: 1\nrules: [{map_local: {missing: 404}}]",
    "version: 1\nrules: [{block: {close: false}}]",
    "version: 1\nrules: [{fault: {abort: {status: 503}, reset: true}}]",
    "version: 1\nrules: [{fault: {bandwidth: {bytes_per_second: 0}}}]",
    "version: 1\nrules: [{log: {detail: all}}]",
    "version: 1\ntcp: [{match: {port: 1}}]",
    "version: 1\ntcp: [{latency: {ms: -1}}]",
    "version: 1\ntcp: [{match: {direction: up}, latency: {ms: 1}}]",
    "version: 1\ntcp: [{replace: {with: x}}]",
    "version: 1\ntcp: [{limit_data: {bytes: 1.5}}]",
]


@pytest.mark.parametrize("text", INVALID)
def test_loader_and_schema_agree_on_invalid_documents(text: str) -> None:
    doc: Any = yaml.safe_load(text)
    assert not VALIDATOR.is_valid(doc)
    with pytest.raises(RulesError):
        load_sources([SourceText(EXAMPLES / "x.yaml", text)])


# -- each example against pure inputs ------------------------------------------


def test_respond_example() -> None:
    rs = example("respond.yaml")
    t = rs.on_request(req("https://api.eu.svc/v1/users?id=3")).terminal
    assert isinstance(t, Respond) and t.file == EXAMPLES / "mocks" / "users.json"
    flags = rs.on_request(req("http://flags.svc/v1/flags")).terminal
    assert isinstance(flags, Respond) and json.loads(flags.body)["new-checkout"] is True
    assert (b"content-type", b"application/json") in flags.fields
    assert rs.on_request(req("https://api.eu.svc/v1/users", "POST")).terminal is None


def test_headers_example() -> None:
    rs = example("headers.yaml")
    plan = rs.on_request(
        req("https://api.svc/", headers={"Origin": "http://localhost:3000", "Cookie": "a"})
    )
    assert plan.matched == ("debug-header", "cors-for-local-ui")
    fields = plan.apply_head().fields
    assert (b"x-debug", b"1") in fields and not any(k.lower() == b"cookie" for k, _ in fields)
    resp = rs.on_response(plan, 200, ((b"Server", b"nginx"),)).apply_head(
        200, ((b"Server", b"nginx"),)
    )
    assert resp.fields == ((b"cache-control", b"no-store"), (b"access-control-allow-origin", b"*"))


def test_rewrite_example() -> None:
    rs = example("rewrite.yaml")
    head = rs.on_request(req("https://api.svc/v1/items?debug=1&a=b")).apply_head()
    assert head.url == "https://api.svc/v2/items?a=b&source=tapproxy"
    head = rs.on_request(req("https://shop.example.com/cart")).apply_head()
    assert (head.url, head.fields[0]) == (
        "https://staging.shop.example.com/cart",
        (b"host", b"staging.shop.example.com"),
    )
    assert rs.on_request(req("http://legacy.svc/", "HEAD")).apply_head().method == "GET"


def test_body_replace_example() -> None:
    rs = example("body-replace.yaml")
    fields = ((b"content-type", b"application/json"),)
    out = rs.on_response(rs.on_request(req("https://a.svc/")), 200, fields).apply_body(
        b'{"env":"prod"}', fields
    )
    assert out.body == b'{"env":"dev"}'
    plan = rs.on_request(req("https://api.svc/u", "POST"))
    assert plan.needs_body and plan.apply_body(b'{"userName":"x"}', ()).body == b'{"username":"x"}'


def test_json_patch_example() -> None:
    rs = example("json-patch.yaml")
    profile = rs.on_response(rs.on_request(req("https://api.svc/v1/profile")), 200, ())
    out = profile.apply_body(b'{"plan":"free","ads":true,"limits":{"requests":10,"burst":5}}', ())
    assert json.loads(out.body) == {"plan": "premium", "limits": {"requests": 10000, "burst": 5}}
    cart = rs.on_response(rs.on_request(req("https://api.svc/v1/carts/7")), 200, ())
    body = b'{"currency":"EUR","total":9,"items":[],"coupon":"X","note":"hi"}'
    assert json.loads(cart.apply_body(body, ()).body) == {
        "currency": "EUR",
        "total": 0,
        "subtotal": 0,
        "items": [{"sku": "FREE-GIFT", "qty": 1}],
        "comment": "hi",
    }
    usd = cart.apply_body(body.replace(b"EUR", b"USD"), ())
    assert not usd.changed and "test failed" in usd.warnings[0]


def test_map_local_example() -> None:
    rs = example("map-local.yaml")
    t = rs.on_request(req("https://www.example.com/static/css/app.css")).terminal
    assert isinstance(t, Respond) and t.file == EXAMPLES / "site" / "css" / "app.css"
    assert rs.on_request(req("https://www.example.com/static/missing.js")).terminal is None
    plan = rs.on_request(req("https://www.example.com/x"))
    served = rs.on_response(plan, 503, ()).terminal
    assert isinstance(served, Respond) and served.file == EXAMPLES / "site" / "index.html"


def test_map_remote_example() -> None:
    rs = example("map-remote.yaml")
    plan = rs.on_request(req("https://api.svc/v1/x?y=1"))
    assert isinstance(plan.terminal, MapRemote)
    head = plan.apply_head()
    assert (
        head.url == "http://localhost:8080/v1/x?y=1"
        and (b"x-forwarded-by", b"tapproxy") in head.fields
    )
    head = rs.on_request(req("https://www.example.com/img/a.png")).apply_head()
    assert head.url == "https://cdn.example.net/origin/img/a.png" and head.fields[0] == (
        b"host",
        b"www.example.com",
    )


def test_block_example() -> None:
    rs = example("block.yaml")
    t = rs.on_request(req("https://stats.g.doubleclick.net/x")).terminal
    assert isinstance(t, Respond) and t.status == 403
    assert rs.on_request(req("https://telemetry.svc/")).terminal == CloseConnection(
        "close", "drop-telemetry"
    )


def test_faults_example() -> None:
    rs = example("faults.yaml", rng=0.05)
    assert 0.2 <= rs.on_request(req("https://search.svc/")).faults.delay <= 0.4
    downloads = rs.on_request(req("https://files.svc/download/a"))
    assert downloads.faults.bandwidth is None
    assert rs.on_response(downloads, 200, ()).faults.bandwidth == 65536
    abort = rs.on_request(req("https://payments.svc/pay")).terminal
    assert isinstance(abort, Respond) and abort.status == 503
    assert (
        example("faults.yaml", rng=0.5).on_request(req("https://payments.svc/pay")).terminal is None
    )
    assert rs.on_request(req("wss://ws.svc/")).terminal == CloseConnection("reset", "reset-ws")
    assert rs.on_request(req("https://legacy.svc/slow")).terminal == CloseConnection(
        "hang", "hang-legacy"
    )
    reports = rs.on_request(req("https://reports.svc/"))
    assert rs.on_response(reports, 200, ()).faults.close_after == 1024
    assert not rs.on_response(reports, 404, ()).faults


def test_match_example() -> None:
    rs = example("match.yaml")
    admin = req(
        "https://admin-3.corp/admin/users/1?debug=true",
        headers={"x-team": "search", "x-canary": ""},
    )
    assert rs.on_request(admin).matched == ("internal-admin",)
    assert (
        rs.on_request(
            req(admin.url + "&token=1", headers={"x-team": "search", "x-canary": ""})
        ).matched
        == ()
    )
    assert rs.on_request(req("https://a.svc/x?debug=1")).matched == ("not-health",)
    assert rs.on_request(req("https://a.svc/healthz?debug=1")).matched == ()
    assert rs.on_request(req("https://a.svc/x")).matched == ()


def test_response_match_example() -> None:
    rs = example("response-match.yaml")
    plan = rs.on_request(req("https://a.svc/"))
    assert rs.on_response(plan, 429, ()).log.tags == ("error",)
    ok = rs.on_response(plan, 200, ((b"content-type", b"application/json"),))
    assert ok.matched == ("no-cache-json",)
    flags = rs.on_response(rs.on_request(req("https://flags.svc/")), 200, ())
    assert flags.pending
    done = rs.complete_response(flags, b'{"features":{"beta":true}}')
    assert done.apply_body(b'{"features":{"beta":true}}', ()).body == b'{"features":{"beta":false}}'


def test_body_match_example() -> None:
    rs = example("body-match.yaml")
    plan = rs.on_request(req("https://shop.svc/orders", "POST"))
    assert plan.needs_body
    t = rs.complete_request(plan, b'{"order":{"qty":1000}}').terminal
    assert isinstance(t, Respond) and t.status == 422
    gql = rs.on_request(req("https://api.svc/graphql", "POST"))
    assert rs.complete_request(gql, b"query IntrospectionQuery { x }").terminal is not None
    assert rs.complete_request(gql, b"query Users { x }").terminal is None


def test_percent_times_example() -> None:
    rs = example("percent-times.yaml", rng=0.9)
    statuses = [rs.on_request(req("https://orders.svc/")).terminal for _ in range(4)]
    assert [isinstance(t, Respond) for t in statuses] == [True, True, True, False]
    assert (
        example("percent-times.yaml", rng=0.1)
        .fresh()
        .on_request(req("https://orders.svc/"))
        .faults.delay
        == 0
    )
    slow = example("percent-times.yaml", rng=0.1)
    for _ in range(3):
        slow.on_request(req("https://orders.svc/"))
    assert slow.on_request(req("https://orders.svc/")).faults.delay == 2.0


def test_log_example() -> None:
    rs = example("log.yaml")
    plan = rs.on_request(
        req("https://shop.svc/checkout/pay", headers={"User-Agent": "Mozilla (iPhone)"})
    )
    assert plan.log.tags == ("checkout", "money", "mobile") and plan.log.detail == "full"
    assert plan.log.capture == EXAMPLES / "captures" / "checkout"


def test_tcp_example() -> None:
    rs = example("tcp.yaml")
    cut = rs.tcp_for("anything", 9000)
    assert cut.downstream.feed(0.0, b"x" * 2000) == [Send(0.0, b"x" * 1024), Close(0.0)]
    db = rs.tcp_for("db.internal", 5432)
    assert db.matched == ("slow-db",) and all(i.at >= 0.04 for i in db.upstream.feed(0.0, b"q"))
    assert rs.tcp_for("queue.internal", 1).upstream.start(0.0) == [Reset(5.0)]
    assert rs.tcp_for("x", 9999).downstream.feed(0.0, b"lost") == []


def test_tcp_replace_example() -> None:
    rs = example("tcp-replace.yaml")
    up = rs.tcp_for("cache", 6379).upstream
    out = up.feed(0.0, b"FLUSH") + up.feed(0.001, b"ALL\r\n") + up.eof(0.002)
    assert b"".join(i.data for i in out if isinstance(i, Send)) == b"PING\r\n"
