"""Hazard rows decided after parsing: request-target and Host (rows 22-25),
hop-by-hop fields (26), and the heads the proxy builds from its own parse
(rows 4, 10, 17, 23, 26 on requests; 30 on responses).

Pure functions of proxy/session/target.py, hop.py and messages.py; the same
rows go through a running proxy in tests/integration/test_hazards.py.
"""

from __future__ import annotations

import pytest

from proxy.http1 import (
    CHUNKED,
    NO_BODY,
    TUNNEL,
    Fields,
    Framing,
    FramingKind,
    ProtocolError,
    RequestHead,
    ResponseHead,
)
from proxy.session.config import SessionConfig, Upstream
from proxy.session.messages import informational_out, request_out, response_out
from proxy.session.target import Target, connect_target, forward_target, origin_target

REGULAR = SessionConfig()
REVERSE = SessionConfig(upstream=Upstream("http", "127.0.0.1", 9000))


def length(n: int) -> Framing:
    return Framing(FramingKind.LENGTH, n)


def req(
    target: bytes = b"http://a.example/p",
    fields: Fields = ((b"Host", b"a.example"),),
    method: bytes = b"GET",
    framing: Framing = NO_BODY,
    version: bytes = b"1.1",
) -> RequestHead:
    return RequestHead(method, target, version, fields, framing)


def status_of(fn: object, *args: object) -> int:
    with pytest.raises(ProtocolError) as e:
        fn(*args)  # type: ignore[operator]
    return e.value.status


def forwarded(head: RequestHead, config: SessionConfig = REGULAR) -> bytes:
    """The request head the proxy sends upstream for ``head``."""
    if config.upstream is None:
        target = forward_target(head)
    else:
        up = config.upstream
        target = origin_target(head, up.scheme, up.host, up.port)
    return request_out(head, target, config)[0]


# -- row 22: Host ---------------------------------------------------------------------

BAD_HOSTS = [
    pytest.param((), b"1.1", id="row-22-missing"),
    pytest.param(((b"Host", b"a.example"), (b"Host", b"a.example")), b"1.1", id="row-22-two-equal"),
    pytest.param(
        ((b"Host", b"a.example"), (b"Host", b"b.example")), b"1.1", id="row-22-two-different"
    ),
    pytest.param(
        ((b"host", b"a.example"), (b"HOST", b"b.example")), b"1.1", id="row-22-two-case-variants"
    ),
    pytest.param(((b"Host", b"a.example, b.example"),), b"1.1", id="row-22-list"),
    pytest.param(((b"Host", b"a.example,"),), b"1.1", id="row-22-list-trailing-comma"),
    pytest.param(
        ((b"Host", b"a.example"), (b"Host", b"b.example")), b"1.0", id="row-22-two-in-http-1.0"
    ),
    pytest.param(((b"Host", b"a b"),), b"1.1", id="row-22-space"),
    pytest.param(((b"Host", b"a/b"),), b"1.1", id="row-22-slash"),
    pytest.param(((b"Host", b"a:99999"),), b"1.1", id="row-22-bad-port"),
    pytest.param(((b"Host", b"a:8x"),), b"1.1", id="row-22-non-digit-port"),
    pytest.param(((b"Host", b""),), b"1.1", id="row-22-empty"),
]


@pytest.mark.parametrize(("fields", "version"), BAD_HOSTS)
@pytest.mark.parametrize("config", [REGULAR, REVERSE], ids=["regular", "reverse"])
def test_row_22_bad_host_is_400(fields: Fields, version: bytes, config: SessionConfig) -> None:
    head = req(b"http://a.example/" if config is REGULAR else b"/", fields, version=version)
    assert status_of(forwarded, head, config) == 400


def test_row_22_http_1_0_may_omit_host() -> None:
    head = req(b"http://a.example/p", (), version=b"1.0")
    assert forwarded(head) == b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n"


# -- row 23: absolute-form authority wins over Host --------------------------------------------


@pytest.mark.parametrize(
    ("target", "fields", "expected"),
    [
        pytest.param(
            b"http://b.example:8080/x?y",
            ((b"Host", b"a.example"), (b"Accept", b"*/*")),
            b"GET /x?y HTTP/1.1\r\nHost: b.example:8080\r\nAccept: */*\r\n\r\n",
            id="row-23-host-rewritten",
        ),
        pytest.param(
            b"http://B.Example:80",
            ((b"X-First", b"1"), (b"hOsT", b"evil.example")),
            b"GET / HTTP/1.1\r\nX-First: 1\r\nhOsT: b.example\r\n\r\n",
            id="row-23-position-and-name-case-kept-default-port-dropped",
        ),
        pytest.param(
            b"http://[::1]:8080?q",
            ((b"Host", b"a.example"),),
            b"GET /?q HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            id="row-23-ipv6-query-only",
        ),
    ],
)
def test_row_23_absolute_form_authority_wins(
    target: bytes, fields: Fields, expected: bytes
) -> None:
    assert forwarded(req(target, fields)) == expected


def test_row_23_target_routes_the_connection() -> None:
    head = req(b"http://b.example:8080/x", ((b"Host", b"a.example:9999"),))
    assert forward_target(head) == Target("http", "b.example", 8080, b"/x")


def test_row_23_reverse_mode_uses_the_upstream_and_target_path() -> None:
    head = req(b"http://b.example/x?y", ((b"Host", b"a.example"),))
    assert forwarded(head, REVERSE) == b"GET /x?y HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n"


# -- row 24: userinfo ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "fields", "config"),
    [
        pytest.param(b"http://a@b.example/", ((b"Host", b"b.example"),), REGULAR, id="row-24-user"),
        pytest.param(
            b"http://u:p@b.example/", ((b"Host", b"b.example"),), REGULAR, id="row-24-user-pass"
        ),
        pytest.param(
            b"http://@b.example/", ((b"Host", b"b.example"),), REGULAR, id="row-24-empty-user"
        ),
        pytest.param(
            b"http://b.example/", ((b"Host", b"u@b.example"),), REGULAR, id="row-24-in-host"
        ),
        pytest.param(
            b"http://a@b.example/", ((b"Host", b"b.example"),), REVERSE, id="row-24-reverse"
        ),
        pytest.param(b"/", ((b"Host", b"u@b.example"),), REVERSE, id="row-24-reverse-host"),
    ],
)
def test_row_24_userinfo_is_400(target: bytes, fields: Fields, config: SessionConfig) -> None:
    assert status_of(forwarded, req(target, fields), config) == 400


def test_row_24_at_sign_in_path_is_fine() -> None:
    head = req(b"http://b.example/@user", ((b"Host", b"b.example"),))
    assert forwarded(head) == b"GET /@user HTTP/1.1\r\nHost: b.example\r\n\r\n"


# -- other request-targets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "config"),
    [
        pytest.param(b"/p", REGULAR, id="origin-form-to-forward-proxy"),
        pytest.param(b"*", REGULAR, id="asterisk-to-forward-proxy"),
        pytest.param(b"ftp://a.example/", REGULAR, id="other-scheme"),
        pytest.param(b"http:///p", REGULAR, id="empty-authority"),
        pytest.param(b"http://a.example/#frag", REGULAR, id="fragment"),
        pytest.param(b"a.example:80", REGULAR, id="authority-form-not-connect"),
        pytest.param(b"a.example:80", REVERSE, id="authority-form-not-connect-reverse"),
        pytest.param(b"*", REVERSE, id="asterisk-not-options-reverse"),
    ],
)
def test_invalid_targets(target: bytes, config: SessionConfig) -> None:
    assert status_of(forwarded, req(target, ((b"Host", b"a.example"),)), config) == 400


def test_options_asterisk_in_reverse_mode() -> None:
    head = req(b"*", ((b"Host", b"x"),), method=b"OPTIONS")
    assert forwarded(head, REVERSE) == b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n"


# -- row 25: CONNECT ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"a.example:443", ("a.example", 443)),
        (b"A.Example:8443", ("a.example", 8443)),
        (b"[::1]:443", ("::1", 443)),
        (b"10.0.0.1:22", ("10.0.0.1", 22)),
    ],
)
def test_row_25_connect_host_port(target: bytes, expected: tuple[str, int]) -> None:
    assert connect_target(req(target, ((b"Host", target),), b"CONNECT")) == expected


@pytest.mark.parametrize(
    ("fields", "version", "status"),
    [
        pytest.param(((b"Host", b"a.example:443"),), b"1.1", None, id="one-host"),
        pytest.param(
            ((b"Host", b"other.example"),), b"1.1", None, id="host-differs-tunnel-follows-target"
        ),
        pytest.param((), b"1.0", None, id="http-1.0-without-host"),
        pytest.param((), b"1.1", 400, id="row-22-connect-missing-host"),
        pytest.param(
            ((b"Host", b"a.example:443"),) * 2, b"1.1", 400, id="row-22-connect-two-hosts"
        ),
        pytest.param(
            ((b"Host", b"a.example:443, b.example"),), b"1.1", 400, id="row-22-connect-host-list"
        ),
        pytest.param(((b"Host", b"u@a.example"),), b"1.1", 400, id="row-24-connect-host-userinfo"),
    ],
)
def test_connect_host_rules(fields: Fields, version: bytes, status: int | None) -> None:
    head = req(b"a.example:443", fields, b"CONNECT", version=version)
    if status is None:
        assert connect_target(head) == ("a.example", 443)
    else:
        assert status_of(connect_target, head) == status


@pytest.mark.parametrize(
    ("target", "framing"),
    [
        pytest.param(b"a.example", NO_BODY, id="row-25-no-port"),
        pytest.param(b"a.example:", NO_BODY, id="row-25-empty-port"),
        pytest.param(b":443", NO_BODY, id="row-25-no-host"),
        pytest.param(b"a.example:0", NO_BODY, id="row-25-port-0"),
        pytest.param(b"a.example:65536", NO_BODY, id="row-25-port-too-big"),
        pytest.param(b"a.example:443/x", NO_BODY, id="row-25-path"),
        pytest.param(b"http://a.example:443", NO_BODY, id="row-25-absolute-form"),
        pytest.param(b"/", NO_BODY, id="row-25-origin-form"),
        pytest.param(b"*", NO_BODY, id="row-25-asterisk"),
        pytest.param(b"u@a.example:443", NO_BODY, id="row-25-userinfo"),
        pytest.param(b"a.example:443", length(5), id="row-25-content-length-body"),
        pytest.param(b"a.example:443", CHUNKED, id="row-25-chunked-body"),
        # Even an empty one: RFC 9110 §9.3.6 "A CONNECT request message does
        # not have content" (the proxy refuses any framing field).
        pytest.param(b"a.example:443", length(0), id="row-25-content-length-zero"),
    ],
)
def test_row_25_bad_connect_is_400(target: bytes, framing: Framing) -> None:
    head = req(target, ((b"Host", b"a.example:443"),), b"CONNECT", framing)
    assert status_of(connect_target, head) == 400


# -- rows 4, 10, 17, 26: framing and hop-by-hop fields of forwarded requests ---------


@pytest.mark.parametrize(
    ("fields", "framing", "expected"),
    [
        pytest.param(
            ((b"Host", b"a.example"), (b"Content-Length", b"010")),
            length(10),
            b"Host: a.example\r\nContent-Length: 10\r\n",
            id="row-04-decimal",
        ),
        pytest.param(
            ((b"Host", b"a.example"), (b"Transfer-Encoding", b",chunked")),
            CHUNKED,
            b"Host: a.example\r\nTransfer-Encoding: chunked\r\n",
            id="row-10-canonical-te",
        ),
        pytest.param(
            (
                (b"Host", b"a.example"),
                (b"Transfer_Encoding", b"chunked"),
                (b"Content-Length", b"2"),
            ),
            length(2),
            b"Host: a.example\r\nTransfer_Encoding: chunked\r\nContent-Length: 2\r\n",
            id="row-17-underscore-forwarded-as-is",
        ),
        pytest.param(
            (
                (b"Host", b"a.example"),
                (b"Connection", b"Content-Length"),
                (b"Content-Length", b"5"),
            ),
            length(5),
            b"Host: a.example\r\nContent-Length: 5\r\n",
            id="row-26-connection-content-length",
        ),
        pytest.param(
            (
                (b"Host", b"a.example"),
                (b"Connection", b"transfer-encoding"),
                (b"Transfer-Encoding", b"chunked"),
            ),
            CHUNKED,
            b"Host: a.example\r\nTransfer-Encoding: chunked\r\n",
            id="row-26-connection-transfer-encoding",
        ),
        pytest.param(
            ((b"Host", b"a.example"), (b"Connection", b"Host, close")),
            NO_BODY,
            b"Host: a.example\r\n",
            id="row-26-connection-host",
        ),
        pytest.param(
            (
                (b"Host", b"a.example"),
                (b"Connection", b"X-Secret,, close"),
                (b"connection", b"X-Other"),
                (b"X-Secret", b"1"),
                (b"X-Other", b"2"),
                (b"X-Kept", b"3"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Proxy-Connection", b"keep-alive"),
                (b"Proxy-Authorization", b"Basic eDp5"),
                (b"TE", b"trailers"),
                (b"Trailer", b"X-T"),
                (b"Upgrade", b"h2c"),
            ),
            NO_BODY,
            b"Host: a.example\r\nX-Kept: 3\r\n",
            id="row-26-listed-and-standard-hop-fields-removed",
        ),
    ],
)
def test_forwarded_request_framing(fields: Fields, framing: Framing, expected: bytes) -> None:
    head = req(b"http://a.example/", fields, b"POST", framing)
    assert forwarded(head) == b"POST / HTTP/1.1\r\n" + expected + b"\r\n"


def test_row_26_length_survives_connection_in_reverse_mode_with_kept_host() -> None:
    config = SessionConfig(upstream=Upstream("http", "127.0.0.1", 9000), keep_host=True)
    head = req(
        b"/",
        ((b"Host", b"a"), (b"Connection", b"Content-Length, Host"), (b"Content-Length", b"3")),
        framing=length(3),
    )
    assert forwarded(head, config) == b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"


# -- row 30 and friends: the response head the client gets -----------------------------


def resp(status: int, fields: Fields, framing: Framing, reason: bytes = b"R") -> ResponseHead:
    return ResponseHead(b"1.1", status, reason, fields, framing)


GET = req()
HEAD = req(method=b"HEAD")


@pytest.mark.parametrize(
    ("request_head", "response", "expected"),
    [
        # A 204 never carries Content-Length (RFC 9110 §8.6): a client that
        # believed it would read the next response as this one's body.
        pytest.param(
            GET,
            resp(204, ((b"Content-Length", b"5"), (b"X", b"1")), NO_BODY),
            b"HTTP/1.1 204 R\r\nX: 1\r\n\r\n",
            id="row-30-204-content-length-dropped",
        ),
        pytest.param(
            GET,
            resp(204, ((b"Transfer-Encoding", b"chunked"),), NO_BODY),
            b"HTTP/1.1 204 R\r\n\r\n",
            id="row-30-204-transfer-encoding-dropped",
        ),
        # HEAD and 304: Content-Length describes the representation and is
        # kept in place, but canonical.
        pytest.param(
            HEAD,
            resp(200, ((b"Content-Length", b"010"), (b"X", b"1")), NO_BODY),
            b"HTTP/1.1 200 R\r\nContent-Length: 10\r\nX: 1\r\n\r\n",
            id="row-30-head-content-length-kept-canonical",
        ),
        pytest.param(
            HEAD,
            resp(200, ((b"Transfer-Encoding", b"chunked"),), NO_BODY),
            b"HTTP/1.1 200 R\r\n\r\n",
            id="row-30-head-transfer-encoding-dropped",
        ),
        pytest.param(
            GET,
            resp(304, ((b"ETag", b'"x"'), (b"Content-Length", b"7")), NO_BODY),
            b'HTTP/1.1 304 R\r\nETag: "x"\r\nContent-Length: 7\r\n\r\n',
            id="row-30-304-content-length-kept",
        ),
        # Row 26 on responses: Connection cannot remove our framing.
        pytest.param(
            GET,
            resp(200, ((b"Connection", b"Content-Length"), (b"Content-Length", b"2")), length(2)),
            b"HTTP/1.1 200 R\r\nContent-Length: 2\r\n\r\n",
            id="row-26-response-connection-content-length",
        ),
        # Row 4 on responses.
        pytest.param(
            GET,
            resp(200, ((b"Content-Length", b"02"),), length(2)),
            b"HTTP/1.1 200 R\r\nContent-Length: 2\r\n\r\n",
            id="row-04-response-decimal",
        ),
    ],
)
def test_response_out(request_head: RequestHead, response: ResponseHead, expected: bytes) -> None:
    assert response_out(request_head, response, False)[:2] == (expected, False)


def test_row_30_101_carries_no_length() -> None:
    head = req(
        b"http://a.example/ws",
        ((b"Host", b"a.example"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")),
    )
    response = resp(
        101,
        ((b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"), (b"Content-Length", b"5")),
        TUNNEL,
    )
    out, _, _ = response_out(head, response, True)
    assert out == b"HTTP/1.1 101 R\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


def test_row_30_informational_carries_no_framing_but_keeps_other_fields() -> None:
    head = resp(
        103,
        ((b"Link", b"</s.css>; rel=preload"), (b"Content-Length", b"5"), (b"Connection", b"X-H")),
        NO_BODY,
        b"Early Hints",
    )
    assert (
        informational_out(head)
        == b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    )
