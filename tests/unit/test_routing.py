"""Routes: next-proxy URLs, the NO_PROXY-style bypass, the router's order, route rules,
and the bytes we send a next proxy (CONNECT, SOCKS5 addresses) and read back."""

from __future__ import annotations

import base64

import pytest

from proxy.http1 import RequestParser
from proxy.layers import socks5wire as wire
from proxy.server.chain import ChainError, connect_request, read_connect_answer
from proxy.session.config import SessionConfig
from proxy.session.messages import request_out
from proxy.session.routing import Bypass, Router, forwards_plain, parse_via, redact
from proxy.session.target import forward_target
from proxy.via import with_auth
from tests.unit.test_rules_loader import errors, load


def test_parse_via_and_redact() -> None:
    p = parse_via("http://al%40ice:pa:ss@Proxy.Corp:3128")
    assert (p.scheme, p.host, p.port, p.user, p.password) == (
        "http",
        "proxy.corp",
        3128,
        "al@ice",
        "pa:ss",
    )
    assert p.url == "http://proxy.corp:3128"
    assert parse_via("socks5h://[::1]:1080").url == "socks5://[::1]:1080"
    assert redact("socks5://u:p@127.0.0.1:9050") == "socks5://127.0.0.1:9050"
    assert redact(None) == "direct"
    assert parse_via("https://h:3128").tls and parse_via("https://h:3128").is_http
    for bad in ("ftp://h:1", "http://h", "http://h:70000"):
        with pytest.raises(ValueError):
            parse_via(bad)


def test_with_auth_keeps_credentials_in_the_url() -> None:
    assert with_auth("http://h:1", "u:p") == "http://u:p@h:1"
    assert with_auth("http://a:b@h:1", "u:p") == "http://a:b@h:1"
    assert with_auth("http://h:1", None) == "http://h:1"


def test_bypass_like_curl_no_proxy() -> None:
    b = Bypass("example.com, .corp 10.0.0.0/8 ::1 internal:8443")
    assert b.matches("example.com", 80) and b.matches("www.example.com", 443)
    assert not b.matches("badexample.com", 80)
    assert b.matches("x.corp", 1) and b.matches("10.2.3.4", 80) and b.matches("::1", 80)
    assert b.matches("internal", 8443) and not b.matches("internal", 443)
    assert not b.matches("11.0.0.1", 80)
    assert Bypass("*").matches("anything", 1)
    assert not Bypass("")


def test_router_rules_then_bypass_then_default() -> None:
    rules = load(
        """\
        version: 1
        tcp:
          - match: {host: {glob: "*.onion"}}
            route: {via: "socks5://127.0.0.1:9050"}
          - match: {host: direct.test}
            route: {via: direct}
        """
    )
    router = Router("upstream:http://p:3128", "http://p:3128", Bypass("local.test"), lambda: rules)
    assert router("x.onion", 80) == "socks5://127.0.0.1:9050"
    assert router("direct.test", 80) is None
    assert router("local.test", 80) is None
    assert router("other.test", 443) == "http://p:3128"
    assert Router(rules=lambda: rules)("other.test", 443) is None


def test_route_rule_errors_have_positions() -> None:
    found = errors(
        """\
        version: 1
        tcp:
          - match: {host: a}
            route: {via: "ftp://x:1"}
          - match: {client: 10.0.0.0/8}
            route: {via: direct}
        """
    )
    assert any(":4:" in e and "route.via" in e and "unknown scheme" in e for e in found), found
    assert any(":6:" in e and "match.client" in e for e in found), found


def test_plain_request_to_an_http_next_proxy_is_absolute_form_with_credentials() -> None:
    parser = RequestParser()
    parser.feed(b"GET http://a.test:8000/p?q HTTP/1.1\r\nHost: a.test:8000\r\n\r\n")
    head = parser.next_event()
    target = forward_target(head)  # type: ignore[arg-type]
    proxy = forwards_plain("http://u:p@127.0.0.1:3128")
    out, _, _ = request_out(head, target, SessionConfig(), proxy=proxy)  # type: ignore[arg-type]
    token = base64.b64encode(b"u:p")
    assert out.startswith(b"GET http://a.test:8000/p?q HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic " + token + b"\r\n" in out
    assert forwards_plain("socks5://127.0.0.1:1080") is None


def test_connect_request_and_strict_answer() -> None:
    req = connect_request(parse_via("http://u:p@h:1"), "::1", 443)
    assert req.startswith(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n")
    assert b"Proxy-Authorization: Basic dTpw\r\n" in req
    head = read_connect_answer(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    assert head.status == 407
    with pytest.raises(ChainError):
        read_connect_answer(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ChainError):  # obs-fold: two parsers could read it two ways
        read_connect_answer(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n")


def test_socks5_addresses_round_trip() -> None:
    for host in ("10.1.2.3", "::1", "example.com"):
        data = wire.encode_address(host, 443)
        assert wire.address_length(data) == len(data)
        assert wire.decode_address(data) == (host, 443)
    assert wire.reply_text(4) == "host unreachable (reply 0x04)"


def test_the_pool_key_includes_the_route() -> None:
    from proxy.layers.commands import OpenServer, TlsRequest, server_conn
    from proxy.server.ends import key_of
    from proxy.server.upstream import FORWARD

    conn = server_conn(1)
    via = "http://u:p@10.0.0.9:3128"
    direct = key_of(OpenServer(conn, "a.test", 443, TlsRequest("a.test")))
    tunnel = key_of(OpenServer(conn, "a.test", 443, TlsRequest("a.test"), via=via))
    assert direct == ("a.test", 443, "a.test", None) and tunnel == ("a.test", 443, "a.test", via)
    # Plain requests for any origin share the connections to the next proxy itself.
    one = key_of(OpenServer(conn, "a.test", 80, via=via, forward=True))
    two = key_of(OpenServer(conn, "b.test", 8080, via=via, forward=True))
    assert one == two == ("10.0.0.9", 3128, None, FORWARD + via)


def test_transparent_flows_are_named_by_sni_then_host() -> None:
    from dataclasses import replace

    from proxy.session.config import Upstream
    from proxy.session.routing import named_url
    from proxy.session.target import Target

    parser = RequestParser()
    parser.feed(b"GET /p HTTP/1.1\r\nHost: Origin.Test:8080\r\n\r\n")
    head = parser.next_event()
    target = Target("http", "10.0.0.2", 80, b"/p")
    config = SessionConfig(original_dst=("10.0.0.2", 80), upstream=Upstream("http", "10.0.0.2", 80))
    assert named_url(target, head, config) == "http://origin.test/p"  # type: ignore[arg-type]
    tls = replace(config, upstream=Upstream("https", "10.0.0.2", 443, sni="a.test"))
    secure = Target("https", "10.0.0.2", 443, b"/p")
    assert named_url(secure, head, tls) == "https://a.test/p"  # type: ignore[arg-type]
