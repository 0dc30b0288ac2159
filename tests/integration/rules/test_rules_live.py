"""Rule examples through a live proxy: answers, blocks, rewrites, routing, logging.

Each test starts from a file in rules/examples/ (copied verbatim, with the
mocks it uses) and checks what a real client gets, what the upstream
receives (nothing at all for terminal actions), and that the flow record
names the rules and actions. Hosts such as ``api.svc`` do not resolve: a
route rule loaded after the example sends whatever the example leaves
unanswered to a local recording origin (see ../rules_support.py; the
``origin`` fixture is in conftest.py). Other example groups:
test_rules_bodies.py, test_rules_faults.py, and one level up
test_rules_reload.py, test_rules_tcp.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rules_support import (
    DATA,
    EXAMPLES,
    Origin,
    curl,
    matched,
    read_all,
    record_for,
    rules_dir,
    rules_proxy,
    send,
    split_response,
)
from tests.support.certs import CertAuthority
from tests.support.proxyproc import ProxyProcess
from tests.support.rawhttp import recv_response
from tests.support.upstreams import Upstreams

USERS_JSON = (EXAMPLES / "mocks" / "users.json").read_bytes()


def _proxy(
    tmp_path_factory: pytest.TempPathFactory,
    origin: Origin,
    *files: str,
    args: tuple[str, ...] = (),
) -> Iterator[ProxyProcess]:
    tmp = tmp_path_factory.mktemp("rules")
    values = {"ORIGIN": origin.port}
    with rules_proxy(tmp, *files, origin=origin, args=args, values=values) as p:
        yield p


def test_every_example_has_a_live_test() -> None:
    """Each rules/examples/*.yaml is loaded by a live test, verbatim or as a copy in
    rules_data/ that says which example it mirrors."""
    # The live rule tests: this folder's and those one level up (reload, tcp).
    here = Path(__file__).parent
    files = [*here.glob("test_rules_*.py"), *here.parent.glob("test_rules_*.py")]
    tests = "".join(f.read_text() for f in files)
    copies = "".join(f.read_text() for f in DATA.glob("*.yaml"))
    for example in sorted(EXAMPLES.glob("*.yaml")):
        name = example.name
        assert f'"examples/{name}"' in tests or f"Mirrors rules/examples/{name}" in copies, name


@pytest.mark.parametrize(
    ("copy", "example", "may_differ"),
    [
        ("map-remote.yaml", "map-remote.yaml", {"map_remote"}),
        ("tcp.yaml", "tcp.yaml", {"match"}),
        ("tcp-replace.yaml", "tcp-replace.yaml", {"match"}),
        ("match-admin.yaml", "match.yaml", {"match.client"}),
    ],
)
def test_copies_keep_the_examples_rules(copy: str, example: str, may_differ: set[str]) -> None:
    """The copies in rules_data/ change only where the rules point (ports, targets)."""
    import yaml

    mine = yaml.safe_load((DATA / copy).read_text().replace("@", ""))
    theirs = yaml.safe_load((EXAMPLES / example).read_text())
    section = "tcp" if "tcp" in mine else "rules"
    by_name = {r["name"]: r for r in theirs[section]}
    for rule in mine[section]:
        original = by_name[rule["name"]]
        for key in set(rule) | set(original):
            if key in may_differ:
                continue
            if key == "match" and "match.client" in may_differ:
                a = {k: v for k, v in rule[key].items() if k != "client"}
                b = {k: v for k, v in original[key].items() if k != "client"}
                assert a == b
                continue
            assert rule.get(key) == original.get(key), (rule["name"], key)
    if section == "tcp" or copy == "map-remote.yaml":
        assert [r["name"] for r in mine[section]] == list(by_name)


# -- respond.yaml ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def respond(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    yield from _proxy(tmp_path_factory, origin, "examples/respond.yaml")


def test_respond_file_mock(respond: ProxyProcess, origin: Origin) -> None:
    r = curl(respond, "http://api.eu.svc/v1/users?page=2")
    assert r.status == 200
    assert r.header("content-type") == ["application/json"]
    assert r.body == USERS_JSON
    assert r.header("content-length") == [str(len(USERS_JSON))]
    rec = record_for(respond, "api.eu.svc/v1/users?page=2")
    assert matched(rec) == {"mock-users": ["respond 200"]}
    assert rec["response"]["status"] == 200 and rec["server"] is None
    assert origin.requests() == []


def test_respond_inline_text_and_json(respond: ProxyProcess, origin: Origin) -> None:
    r = curl(respond, "http://anything.test/healthz")
    assert (r.status, r.body, r.header("content-type")) == (200, b"ok\n", ["text/plain"])
    r = curl(respond, "http://flags.svc/v1/flags")
    assert r.status == 200 and r.json() == {"new-checkout": True, "beta": ["alice", "bob"]}
    assert r.header("content-type") == ["application/json"]
    assert matched(record_for(respond, "anything.test/healthz")) == {"health": ["respond 200"]}
    assert matched(record_for(respond, "flags.svc/v1/flags")) == {"feature-flags": ["respond 200"]}
    assert origin.requests() == []


def test_respond_not_matching_goes_upstream(respond: ProxyProcess, origin: Origin) -> None:
    # mock-users is GET only: a POST goes to the upstream, untouched.
    r = curl(respond, "http://api.eu.svc/v1/users?via=post", "-d", "name=Bob")
    assert r.status == 200
    seen = origin.only()
    assert (seen.method, seen.target, seen.body) == ("POST", "/v1/users?via=post", b"name=Bob")
    assert matched(record_for(respond, "api.eu.svc/v1/users?via=post")) == {
        "route-to-origin": [f"map_remote http://127.0.0.1:{origin.port}"]
    }


def test_respond_keeps_connection_for_next_request(respond: ProxyProcess, origin: Origin) -> None:
    s = send(respond.port, b"GET http://api.eu.svc/v1/users HTTP/1.1\r\nHost: api.eu.svc\r\n\r\n")
    first = recv_response(s)
    s.sendall(b"GET http://api.eu.svc/other HTTP/1.1\r\nHost: api.eu.svc\r\n\r\n")
    second = recv_response(s)
    s.close()
    assert split_response(first)[2] == USERS_JSON
    assert split_response(second)[0] == 200
    assert [x.target for x in origin.requests()] == ["/other"]


def test_respond_to_empty_post_keeps_connection(respond: ProxyProcess, origin: Origin) -> None:
    """Regression: a rule's answer to a request with Content-Length: 0 closed the
    connection (the empty body was taken for one no rule had read)."""
    s = send(
        respond.port,
        b"POST http://x.svc/healthz HTTP/1.1\r\nHost: x.svc\r\nContent-Length: 0\r\n\r\n",
    )
    first = recv_response(s)
    s.sendall(b"GET http://x.svc/healthz HTTP/1.1\r\nHost: x.svc\r\n\r\n")
    second = recv_response(s)
    s.close()
    assert split_response(first)[2] == b"ok\n" and split_response(second)[2] == b"ok\n"


def test_respond_over_https_interception(tmp_path: Path) -> None:
    """A mock for an https URL, through --mitm, with no upstream listening at all."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with rules_proxy(
        tmp_path, "data/respond-https.yaml", values={"CLOSED_PORT": closed},
        args=("--mitm", "--certs", str(tmp_path / "certs")),
    ) as p:  # fmt: skip
        r = curl(p, f"https://localhost:{closed}/v1/users",
                 "--cacert", str(tmp_path / "certs" / "tapproxy-ca.pem"))  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert r.status == 200 and r.body == USERS_JSON
        rec = record_for(p, f"https://localhost:{closed}/v1/users")
    assert matched(rec) == {"mock-https": ["respond 200"]}


# -- block.yaml -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    yield from _proxy(tmp_path_factory, origin, "examples/block.yaml")


@pytest.mark.parametrize("host", ["ads.doubleclick.net", "a.b.google-analytics.com"])
def test_block_with_status(block: ProxyProcess, origin: Origin, host: str) -> None:
    r = curl(block, f"http://{host}/collect?id=1")
    assert (r.status, r.body) == (403, b"blocked by tapproxy\n")
    assert r.header("content-length") == [str(len(b"blocked by tapproxy\n"))]
    assert matched(record_for(block, f"{host}/collect")) == {"no-trackers": ["block 403"]}
    assert origin.requests() == []


def test_block_close_without_answer(block: ProxyProcess, origin: Origin) -> None:
    s = send(
        block.port, b"GET http://telemetry.svc/v1/events HTTP/1.1\r\nHost: telemetry.svc\r\n\r\n"
    )
    data, how = read_all(s)
    s.close()
    assert (data, how) == (b"", "fin")
    rec = record_for(block, "telemetry.svc/v1/events")
    assert matched(rec) == {"drop-telemetry": ["block close"]}
    assert "drop-telemetry" in rec["error"]
    assert origin.requests() == []


def test_block_other_hosts_pass(block: ProxyProcess, origin: Origin) -> None:
    r = curl(block, "http://www.example.org/page")
    assert r.status == 200 and origin.only().target == "/page"


# -- body-match.yaml ------------------------------------------------------------------


@pytest.fixture(scope="module")
def body_match(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    yield from _proxy(tmp_path_factory, origin, "examples/body-match.yaml")


def test_body_json_match_answers(body_match: ProxyProcess, origin: Origin) -> None:
    order = json.dumps({"order": {"qty": 1000, "sku": "X"}})
    r = curl(body_match, "http://shop.svc/orders", "-H", "content-type: application/json",
             "--data-binary", order)  # fmt: skip
    assert r.status == 422 and r.json() == {"error": "quantity too large"}
    assert matched(record_for(body_match, "shop.svc/orders")) == {
        "reject-big-orders": ["respond 422"]
    }
    assert origin.requests() == []


def test_body_json_not_matching_forwarded_intact(body_match: ProxyProcess, origin: Origin) -> None:
    order = json.dumps({"order": {"qty": 3, "sku": "X"}}).encode()
    r = curl(body_match, "http://shop.svc/orders/small", "--data-binary", order)
    assert r.status == 200
    seen = origin.only()
    assert seen.body == order and seen.header("content-length") == [str(len(order))]
    assert "reject-big-orders" not in matched(record_for(body_match, "/orders/small"))


@pytest.mark.parametrize(
    "body",
    [b'{"query":"{ __schema { types { name } } }"}', b'{"query":"query   IntrospectionQuery {x}"}'],
    ids=["contains", "regex"],
)
def test_body_contains_or_regex_blocks(
    body_match: ProxyProcess, origin: Origin, body: bytes
) -> None:
    r = curl(body_match, "http://api.svc/graphql", "--data-binary", body)
    assert r.status == 403
    assert matched(record_for(body_match, "api.svc/graphql")) == {
        "graphql-introspection": ["block 403"]
    }
    assert origin.requests() == []


def test_body_match_chunked_request(body_match: ProxyProcess, origin: Origin) -> None:
    """A chunked request body is buffered, matched and, if it passes, sent framed by length."""
    parts = [b'{"query":', b'"{ users { id }', b' }"}']
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in parts)
    s = send(
        body_match.port,
        b"POST http://api.svc/graphql HTTP/1.1\r\nHost: api.svc\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % chunks,
    )
    status, _, _ = split_response(recv_response(s))
    s.close()
    assert status == 200
    seen = origin.only()
    assert seen.body == b'{"query":"{ users { id } }"}'
    assert seen.header("content-length") == [str(len(seen.body))]
    assert "transfer-encoding" not in seen.names


def test_body_match_answers_100_continue(body_match: ProxyProcess, origin: Origin) -> None:
    """A client that waits for 100 Continue still gets to send the body rules need."""
    body = b'{"query":"{ users { id } }"}'
    s = send(
        body_match.port,
        b"POST http://api.svc/graphql HTTP/1.1\r\nHost: api.svc\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body),
        timeout=3.0,
    )
    interim = s.recv(65536)  # nothing sent: the proxy waits for the body
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
    s.sendall(body)
    status, _, _ = split_response(recv_response(s))
    s.close()
    assert status == 200
    seen = origin.only()
    assert seen.body == body
    assert "expect" not in seen.names  # the proxy already answered the expectation


def test_body_over_max_body_streams_untouched(tmp_path: Path, origin: Origin) -> None:
    """Bar (e), request side: a body over --max-body is not matched, but forwarded whole."""
    big = b'{"query":"' + b"x" * 5000 + b' __schema"}'
    with rules_proxy(
        tmp_path, "examples/body-match.yaml", origin=origin, args=("--max-body", "1K")
    ) as p:
        r = curl(p, "http://api.svc/graphql", "--data-binary", big, "-H", "expect:")
        assert r.status == 200
        seen = origin.only()
        assert seen.body == big
        rec = record_for(p, "api.svc/graphql")
    assert "graphql-introspection" not in matched(rec)
    assert any("max-body" in w for w in rec["rules"]["warnings"]), rec["rules"]


# -- map-local.yaml ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def map_local(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    tmp = tmp_path_factory.mktemp("rules")
    rules_dir(tmp, "examples/map-local.yaml", origin=origin)
    (tmp / "rules" / "site" / "outside.json").symlink_to("../mocks/users.json")
    with rules_proxy(tmp, "examples/map-local.yaml", origin=origin) as p:
        yield p


@pytest.mark.parametrize(
    ("path", "file", "ctype"),
    [("/static/index.html", "site/index.html", "text/html"),
     ("/static/", "site/index.html", "text/html"),
     ("/static/css/app.css", "site/css/app.css", "text/css"),
     ("/config.json", "mocks/users.json", "application/json")],
)  # fmt: skip
def test_map_local_serves_files(
    map_local: ProxyProcess, origin: Origin, path: str, file: str, ctype: str
) -> None:
    r = curl(map_local, f"http://www.example.com{path}")
    expected = (EXAMPLES / file).read_bytes()
    assert r.status == 200 and r.body == expected
    assert r.header("content-type")[0].split(";")[0] == ctype
    assert r.header("content-length") == [str(len(expected))]
    rule = "local-config" if path == "/config.json" else "local-site"
    assert list(matched(record_for(map_local, f"www.example.com{path}"))) == [rule]
    assert origin.requests() == []


def test_map_local_missing_goes_upstream(map_local: ProxyProcess, origin: Origin) -> None:
    r = curl(map_local, "http://www.example.com/static/js/missing.js")
    assert r.status == 200
    assert origin.only().target == "/static/js/missing.js"
    assert "route-to-origin" in matched(record_for(map_local, "/static/js/missing.js"))


def test_map_local_dot_segments_leave_the_rule(map_local: ProxyProcess, origin: Origin) -> None:
    """/static/%2e%2e/x is /x once normalised: local-site does not match, the request
    goes upstream unchanged (docs: "the request itself is forwarded unchanged")."""
    path = b"/static/%2e%2e/mocks/users.json"
    s = send(
        map_local.port,
        b"GET http://www.example.com%s HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % path,
    )
    status, _, body = split_response(recv_response(s))
    s.close()
    assert status == 200 and b"Ada" not in body
    assert origin.only().target == path.decode()


@pytest.mark.parametrize("path", ["/static/..%2fmocks/users.json", "/static/outside.json"])
def test_map_local_refuses_leaving_the_folder(
    map_local: ProxyProcess, origin: Origin, path: str
) -> None:
    """An encoded slash, or a symlink pointing out of the folder (site/outside.json
    -> ../mocks/users.json, made by the fixture): 403, the file is not served."""
    s = send(
        map_local.port,
        b"GET http://www.example.com%s HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % path.encode(),
    )
    status, _, body = split_response(recv_response(s))
    s.close()
    assert status == 403, body
    assert b"Ada" not in body
    assert origin.requests() == []


def test_map_local_replaces_5xx_response(map_local: ProxyProcess, origin: Origin) -> None:
    r = curl(map_local, "http://www.example.com/status/503")
    assert r.body == (EXAMPLES / "site" / "index.html").read_bytes()
    assert r.status == 200
    assert r.header("content-type")[0].startswith("text/html")
    assert origin.only().target == "/status/503"  # the upstream was asked, then overridden
    assert "replace-error-page" in matched(record_for(map_local, "www.example.com/status/503"))
    r = curl(map_local, "http://www.example.com/status/404")
    assert (r.status, r.body) == (404, b"status 404\n")


# -- map-remote.yaml (a copy in rules_data/ pointing at local origins) -----------------------


@pytest.fixture(scope="module")
def tls_origin(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Origin, CertAuthority]]:
    ca = CertAuthority.create(tmp_path_factory.mktemp("ca"))
    cert = ca.server_cert(["localhost", "127.0.0.1"], "origin.pem")
    o = Origin(upstreams, ssl_cert=str(cert))
    yield o, ca
    o.close()


def test_map_remote(
    tmp_path: Path, origin: Origin, tls_origin: tuple[Origin, CertAuthority]
) -> None:
    tls, ca = tls_origin
    tls.reset()
    values = {"ORIGIN": origin.port, "TLS_ORIGIN": tls.port}
    with rules_proxy(tmp_path, "data/map-remote.yaml", values=values,
                     args=("--upstream-ca", str(ca.cert_path))) as p:  # fmt: skip
        r = curl(p, "http://api.svc/v1/users?id=3&x=a%20b", "-H", "x-team: a")
        assert r.status == 200
        seen = origin.only()
        assert seen.target == "/v1/users?id=3&x=a%20b"
        assert seen.header("x-forwarded-by") == ["tapproxy"]
        assert seen.header("host") == [f"localhost:{origin.port}"]  # Host follows
        assert seen.header("x-team") == ["a"]
        r = curl(p, "http://www.example.com/img/logo.png?s=2")
        assert r.status == 200
        seen = tls.only()
        assert seen.target == "/origin/img/logo.png?s=2"  # the target's path is prepended
        rec1 = record_for(p, "api.svc/v1/users")
        rec2 = record_for(p, "/img/logo.png")
    assert matched(rec1) == {
        "api-to-localhost": [
            "set_header x-forwarded-by",
            f"map_remote http://localhost:{origin.port}",
        ]
    }
    assert list(matched(rec2)) == ["images-to-cdn"]
    assert len(origin.requests()) == 1


def test_map_remote_keep_host(
    tmp_path: Path, origin: Origin, tls_origin: tuple[Origin, CertAuthority]
) -> None:
    tls, ca = tls_origin
    tls.reset()
    values = {"ORIGIN": origin.port, "TLS_ORIGIN": tls.port}
    with rules_proxy(tmp_path, "data/map-remote.yaml", values=values,
                     args=("--upstream-ca", str(ca.cert_path))) as p:  # fmt: skip
        assert curl(p, "http://www.example.com/img/logo.png").status == 200
    assert tls.only().header("host") == ["www.example.com"]


# -- rewrite.yaml ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rewrite(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    # rewrite-followup.yaml proves staging-host's rewrite: it only matches the rewritten URL.
    yield from _proxy(
        tmp_path_factory, origin, "examples/rewrite.yaml", "data/rewrite-followup.yaml"
    )


def test_rewrite_path_and_query(rewrite: ProxyProcess, origin: Origin) -> None:
    r = curl(rewrite, "http://api.svc/v1/users/7?debug=1&keep=a%20b&source=old")
    assert r.status == 200
    target = origin.only().target
    path, _, query = target.partition("?")
    assert path == "/v2/users/7"
    params = query.split("&")
    assert "keep=a%20b" in params  # other parameters byte-identical
    assert "source=tapproxy" in params and "source=old" not in params
    assert not any(p.startswith("debug") for p in params)
    acts = matched(record_for(rewrite, "/users/7?"))["v1-to-v2"]
    assert any(a.startswith("rewrite_path") for a in acts)
    assert any(a.startswith("set_query") for a in acts)


def test_rewrite_url(rewrite: ProxyProcess, origin: Origin) -> None:
    # An https URL in absolute form over plain HTTP (curl would CONNECT instead).
    s = send(
        rewrite.port,
        b"GET https://shop.example.com/cart?id=9 HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
    )
    assert split_response(recv_response(s))[0] == 200
    s.close()
    assert origin.only().target == "/staging/cart?id=9"
    rules = matched(record_for(rewrite, "/cart?id=9"))
    assert "staging-host" in rules and "staging-followup" in rules


def test_set_method_head_to_get(rewrite: ProxyProcess, origin: Origin) -> None:
    """The upstream sees GET; the client asked HEAD and must get no body."""
    s = send(
        rewrite.port,
        b"HEAD http://legacy.svc/doc HTTP/1.1\r\nHost: legacy.svc\r\n\r\n"
        b"GET http://legacy.svc/next HTTP/1.1\r\nHost: legacy.svc\r\n\r\n",
    )
    data = b""
    deadline = time.monotonic() + 5
    while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
        chunk = s.recv(65536)
        assert chunk and time.monotonic() < deadline
        data += chunk
    s.close()
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:80]  # no body after the HEAD response
    assert [(x.method, x.target) for x in origin.requests()] == [("GET", "/doc"), ("GET", "/next")]
    assert matched(record_for(rewrite, "legacy.svc/doc"))["head-to-get"] == ["set_method GET"]


# -- match.yaml -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def match(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    yield from _proxy(tmp_path_factory, origin, "examples/match.yaml")


@pytest.mark.parametrize(
    ("url", "headers", "seen"),
    [
        ("http://api.svc/items?debug=1", [], True),
        ("http://a.b.svc/items", ["x-debug: 1"], True),
        ("http://api.svc/healthz?debug=1", ["x-debug: 1"], False),
        ("http://api.svc/items?debug=0", [], False),
        ("http://api.example.com/items?debug=1", [], False),
    ],
)
def test_match_not_any(
    match: ProxyProcess, origin: Origin, url: str, headers: list[str], seen: bool
) -> None:
    args = [a for h in headers for a in ("-H", h)]
    assert curl(match, url, *args).status == 200
    got = origin.only()
    assert got.header("x-debug-seen") == (["1"] if seen else [])
    rules = matched(record_for(match, url.removeprefix("http://")))
    assert ("not-health" in rules) is seen
    # internal-admin needs https, an admin-N.corp host and a 10/8 client: never from here.
    assert "internal-admin" not in rules


ADMIN_REQUEST = (
    b"GET https://admin-12.corp:8443/admin/a/b?debug=true HTTP/1.1\r\nHost: admin-12.corp:8443\r\n"
    b"X-Team: search\r\nX-Canary: on\r\n\r\n"
)


@pytest.mark.parametrize(
    ("change", "tagged"),
    [
        ((b"", b""), True),
        ((b"debug=true", b"debug=true&token=x"), False),
        ((b"X-Team: search", b"X-Team: billing"), False),
        ((b"X-Canary: on\r\n", b""), False),
        ((b"GET ", b"POST "), False),
        ((b"/admin/a/b", b"/public/a"), False),
        ((b":8443/", b":9443/"), False),
    ],
    ids=["all", "token", "team", "canary", "method", "path", "port"],
)
def test_match_all_keys(
    tmp_path: Path, origin: Origin, change: tuple[bytes, bytes], tagged: bool
) -> None:
    """internal-admin (client widened to 127.0.0.0/8, see rules_data/match-admin.yaml)."""
    req = ADMIN_REQUEST.replace(*change)
    with rules_proxy(tmp_path, "data/match-admin.yaml", origin=origin) as p:
        s = send(p.port, req)
        assert split_response(recv_response(s))[0] == 200
        s.close()
        rec = record_for(p, "admin-12.corp")
    assert ("admin" in rec["rules"]["tags"]) is tagged
    assert ("internal-admin" in matched(rec)) is tagged
    assert origin.only().target == "/admin/a/b?debug=true" or not tagged


# -- percent-times.yaml --------------------------------------------------------------------------


def test_times_then_percent(tmp_path: Path, origin: Origin) -> None:
    with rules_proxy(tmp_path, "examples/percent-times.yaml", origin=origin) as p:
        for i in range(3):
            r = curl(p, f"http://orders.svc/o/{i}")
            assert r.status == 500
        assert origin.requests() == []
        for i in range(3, 7):
            r = curl(p, f"http://orders.svc/o/{i}")
            assert r.status == 200
            rules = matched(record_for(p, f"orders.svc/o/{i}"))
            assert "first-three-fail" not in rules
            if "one-in-four-slow" in rules:
                assert r.seconds >= 2.0
        recs = [record_for(p, f"orders.svc/o/{i}") for i in range(3)]
    assert [matched(r) for r in recs] == [{"first-three-fail": ["fault abort 500"]}] * 3
    assert [x.target for x in origin.requests()] == [f"/o/{i}" for i in range(3, 7)]


# -- log.yaml ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log_proxy(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[ProxyProcess]:
    yield from _proxy(tmp_path_factory, origin, "examples/log.yaml")


def test_log_tags_and_detail(log_proxy: ProxyProcess, origin: Origin) -> None:
    r = curl(log_proxy, "http://shop.svc/checkout/pay", "-d", "card=4242",
             "-A", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)")  # fmt: skip
    # By path: the origin is shared by the module's proxies, and a request of
    # an earlier test's may still land after the reset.
    paid = [s.body for s in origin.requests() if s.target == "/checkout/pay"]
    assert r.status == 200 and paid == [b"card=4242"]
    rec = record_for(log_proxy, "shop.svc/checkout/pay")
    assert rec["rules"]["tags"] == ["checkout", "money", "mobile"]
    assert rec["rules"]["detail"] == "full"
    assert set(matched(rec)) == {"watch-checkout", "tag-mobile", "route-to-origin"}
    r = curl(log_proxy, "http://shop.svc/cart", "-A", "curl")
    rec = record_for(log_proxy, "shop.svc/cart")
    assert rec["rules"]["tags"] == [] and rec["rules"]["detail"] is None


def test_log_capture_writes_bodies(tmp_path: Path, origin: Origin) -> None:
    with rules_proxy(tmp_path, "examples/log.yaml", origin=origin) as p:
        curl(p, "http://shop.svc/checkout/pay", "-d", "card=4242")
        record_for(p, "shop.svc/checkout/pay")
        folder = tmp_path / "rules" / "captures" / "checkout"
        deadline = time.monotonic() + 5
        while not (folder.is_dir() and any(folder.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.05)
    files = [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []
    assert any(f.read_bytes() == b"card=4242" for f in files), files
    assert not (EXAMPLES / "captures").exists()  # relative to the loaded file, not the cwd
