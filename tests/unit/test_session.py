"""The HTTP session driven by events alone (no sockets), like a playbook."""

from __future__ import annotations

import itertools

import pytest

from proxy.session.commands import (
    CloseClient,
    Command,
    FlowDone,
    OpenServer,
    PauseClient,
    ReleaseServer,
    ResumeClient,
    SendClient,
    SendServer,
    StartTunnel,
)
from proxy.session.config import SessionConfig, Upstream
from proxy.session.errors import UpstreamError
from proxy.session.http import CLIENT_HEAD, CLIENT_IDLE, RESPONSE_HEAD, HttpSession

CLIENT = ("127.0.0.1", 5000)
SERVER = ("127.0.0.1", 80)


def make(**kw: object) -> HttpSession:
    ids = (str(i) for i in itertools.count())
    clock = itertools.count(1000.0, 0.001)
    config = SessionConfig(new_id=lambda: next(ids), clock=lambda: next(clock), **kw)  # type: ignore[arg-type]
    return HttpSession(config, CLIENT)


def kinds(cmds: list[Command]) -> list[str]:
    return [type(c).__name__ for c in cmds]


def sent_server(cmds: list[Command]) -> bytes:
    return b"".join(c.data for c in cmds if isinstance(c, SendServer))


def sent_client(cmds: list[Command]) -> bytes:
    return b"".join(c.data for c in cmds if isinstance(c, SendClient))


GET = b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


def test_simple_get() -> None:
    s = make()
    cmds = s.client_data(GET)
    assert cmds == [OpenServer("a.test", 80, tls=False, sni=None)]
    cmds = s.server_connected(SERVER, reused=False)
    assert sent_server(cmds) == b"GET /x HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t\r\n\r\n"
    assert s.deadline() == RESPONSE_HEAD
    cmds = s.server_data(OK)
    assert sent_client(cmds) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    (done,) = [c for c in cmds if isinstance(c, FlowDone)]
    assert done.record.response is not None and done.record.response.status == 200
    assert done.record.request is not None and done.record.request.url == "http://a.test/x"
    assert s.deadline() == CLIENT_IDLE


def test_keep_alive_reuses_server_and_switches_host() -> None:
    s = make()
    s.client_data(GET)
    s.server_connected(SERVER, reused=False)
    s.server_data(OK)
    cmds = s.client_data(GET)
    assert kinds(cmds) == ["SendServer"]  # same upstream: no new connection
    s.server_data(OK)
    cmds = s.client_data(b"GET http://b.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n")
    assert cmds == [ReleaseServer(reusable=True), OpenServer("b.test", 80, tls=False, sni=None)]


def test_pipelined_request_waits_for_previous_response() -> None:
    s = make()
    s.client_data(GET + GET)
    cmds = s.server_connected(SERVER, reused=False)
    assert sent_server(cmds).count(b"GET /x") == 1
    cmds = s.server_data(OK)
    # The first response goes out, then the second request is forwarded.
    assert kinds(cmds) == ["SendClient", "SendClient", "FlowDone", "SendServer"]
    assert sent_client(cmds).count(b"200 OK") == 1
    assert sent_server(cmds).count(b"GET /x") == 1


def test_backlog_pauses_and_resumes_client() -> None:
    s = make(max_client_backlog=100)
    s.client_data(GET)
    cmds = s.client_data(GET * 3)  # server not connected yet: all of it waits
    assert PauseClient() in cmds
    s.server_connected(SERVER, reused=False)
    cmds = s.server_data(OK) + s.server_data(OK) + s.server_data(OK)
    assert ResumeClient() in cmds


def test_connect_becomes_tunnel() -> None:
    s = make()
    cmds = s.client_data(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03\x01")
    assert cmds == [OpenServer("a.test", 443, reuse=False)]
    cmds = s.server_connected(SERVER, reused=False)
    assert cmds == [
        SendClient(b"HTTP/1.1 200 Connection established\r\n\r\n"),
        StartTunnel(to_server=b"\x16\x03\x01"),
    ]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UpstreamError("connection refused"), b"502"),
        (UpstreamError("connect timed out", timeout=True), b"504"),
    ],
)
def test_upstream_failure_answers_and_records(error: UpstreamError, status: bytes) -> None:
    s = make()
    s.client_data(GET)
    cmds = s.server_failed(error)
    assert sent_client(cmds).startswith(b"HTTP/1.1 " + status)
    assert str(error).encode() in sent_client(cmds)
    (done,) = [c for c in cmds if isinstance(c, FlowDone)]
    assert done.record.error is not None and str(error) in done.record.error
    assert cmds[-1] == CloseClient(abort=False)


def test_bad_request_answers_400_and_never_opens_server() -> None:
    s = make()
    cmds = s.client_data(
        b"GET http://a.test/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    )
    assert sent_client(cmds).startswith(b"HTTP/1.1 400 ")
    assert not any(isinstance(c, OpenServer) for c in cmds)
    assert isinstance(cmds[-1], CloseClient)


def test_partial_head_uses_head_deadline() -> None:
    s = make()
    s.client_data(b"GET http://a.test/ HTTP/1.1\r\nHo")
    assert s.deadline() == CLIENT_HEAD


def test_reverse_mode_sets_upstream_host() -> None:
    s = make(upstream=Upstream("http", "10.0.0.1", 9000), mode="reverse:http://10.0.0.1:9000")
    cmds = s.client_data(b"GET /p HTTP/1.1\r\nHost: public.example\r\n\r\n")
    assert cmds == [OpenServer("10.0.0.1", 9000, tls=False, sni=None)]
    cmds = s.server_connected(SERVER, reused=False)
    assert sent_server(cmds) == b"GET /p HTTP/1.1\r\nHost: 10.0.0.1:9000\r\n\r\n"


def test_stale_pooled_connection_retried_once() -> None:
    s = make()
    s.client_data(GET)
    s.server_connected(SERVER, reused=True)
    cmds = s.server_eof()
    assert cmds == [
        ReleaseServer(reusable=False),
        OpenServer("a.test", 80, tls=False, sni=None, reuse=False),
    ]
    s.server_connected(SERVER, reused=False)
    cmds = s.server_eof()
    assert sent_client(cmds).startswith(b"HTTP/1.1 502 ")


def test_chunked_request_body_reframed() -> None:
    s = make()
    s.client_data(
        b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    cmds = s.server_connected(SERVER, reused=False)
    cmds += s.client_data(b"3;ext=1\r\nabc\r\n0\r\n\r\n")
    assert sent_server(cmds) == (
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )


def test_kept_connection_closed_by_server_is_retried() -> None:
    # The server's FIN arrives only after the next request went out on the
    # connection the session kept: retried on a fresh connection, not 502.
    s = make()
    s.client_data(GET)
    s.server_connected(SERVER, reused=False)
    s.server_data(OK)
    assert kinds(s.client_data(GET)) == ["SendServer"]
    cmds = s.server_eof()
    assert cmds == [
        ReleaseServer(reusable=False),
        OpenServer("a.test", 80, tls=False, sni=None, reuse=False),
    ]
