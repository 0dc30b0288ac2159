"""Playbook tests of the HTTP session layer: events in, commands out, no sockets."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from proxy.flow.hooks import (
    HoldSwitch,
    HookKind,
    HookSettings,
    Kill,
    Proceed,
    Reply,
    RequestEdit,
    ResponseEdit,
)
from proxy.flow.record import FlowRecord, TunnelInfo
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Hook,
    Intercept,
    OpenServer,
    PauseReading,
    ReleaseServer,
    ResumeReading,
    SendData,
    SetTimer,
    StartTunnel,
    TlsRequest,
    server_conn,
)
from proxy.layers.events import (
    DataReceived,
    EofReceived,
    HookResumed,
    ServerFailed,
    ServerOpened,
    TimedOut,
    TimeoutKind,
    TimerFired,
    TunnelEnded,
)
from proxy.rules import RuleSet, SourceText, load_sources
from proxy.session.config import SessionConfig, Upstream
from proxy.session.http import HttpSession
from tests.playbook import Capture, Match, Playbook, startswith

PEER = ("127.0.0.1", 5000)
SERVER = ("127.0.0.1", 80)
S1, S2 = server_conn(1), server_conn(2)

GET = b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t\r\n\r\n"
GET_OUT = b"GET /x HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
END = b"\r\n\r\n"


def make(**kw: object) -> HttpSession:
    ids = (str(i) for i in itertools.count())
    clock = itertools.count(1000.0, 0.001)
    config = SessionConfig(new_id=lambda: next(ids), clock=lambda: next(clock), **kw)  # type: ignore[arg-type]
    return HttpSession(config, PEER)


def with_rules(yaml_text: str, **kw: object) -> HttpSession:
    rules = load_sources([SourceText(Path("/t/rules.yaml"), yaml_text)], rng=lambda: 0.0)
    return make(rules=lambda: rules, **kw)


def done(check: object = None) -> Match:
    """A DONE hook whose record passes ``check`` (a predicate on the FlowRecord)."""

    def ok(flow: object) -> bool:
        record = flow.to_record()  # type: ignore[attr-defined]
        return check is None or bool(check(record))  # type: ignore[operator]

    return Match(Hook, kind=HookKind.DONE, flow=ok)


def status(code: int) -> object:
    return lambda r: r.response is not None and r.response.status == code


# -- the plain path ------------------------------------------------------------------
def test_simple_get() -> None:
    s = make()
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, GET_OUT)
    )
    assert s.deadline() is TimeoutKind.RESPONSE_HEAD
    record = Capture()
    assert (
        Playbook(s)
        >> DataReceived(S1, OK)
        << SendData(CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        << SendData(CLIENT, b"hi")
        << Match(Hook, kind=HookKind.DONE, flow=record)
    )
    r: FlowRecord = record.value.to_record()
    assert r.response is not None and r.response.status == 200
    assert r.request is not None and r.request.url == "http://a.test/x"
    assert s.deadline() is TimeoutKind.CLIENT_IDLE


def test_keep_alive_reuses_server_and_switches_host() -> None:
    s = make()
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, GET_OUT)
        >> DataReceived(S1, OK)
        << Match(SendData)
        << Match(SendData)
        << done()
        >> DataReceived(CLIENT, GET)
        << SendData(S1, GET_OUT)  # same upstream: no new connection
        >> DataReceived(S1, OK)
        << Match(SendData)
        << Match(SendData)
        << done()
        >> DataReceived(CLIENT, b"GET http://b.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n")
        << ReleaseServer(S1, reusable=True)
        << OpenServer(S2, "b.test", 80)
    )


def test_data_from_a_released_server_is_ignored() -> None:
    s = make()
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, GET_OUT)
        >> DataReceived(S1, OK)
        << Match(SendData)
        << Match(SendData)
        << done()
        >> DataReceived(CLIENT, b"GET http://b.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n")
        << ReleaseServer(S1, reusable=True)
        << OpenServer(S2, "b.test", 80)
        >> DataReceived(S1, b"HTTP/1.1 200 OK\r\n")  # a late byte on the old connection
        >> EofReceived(S1)
    )


def test_pipelined_request_waits_for_previous_response() -> None:
    s = make()
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET + GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, GET_OUT)  # only the first
        >> DataReceived(S1, OK)
        << Match(SendData, data=startswith(b"HTTP/1.1 200 OK"))
        << SendData(CLIENT, b"hi")
        << done()
        << SendData(S1, GET_OUT)  # then the second
    )


def test_backlog_pauses_and_resumes_client() -> None:
    s = make(max_client_backlog=100)
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> DataReceived(CLIENT, GET * 3)  # server not connected yet: all of it waits
        << PauseReading(CLIENT)
    )
    out = s.handle(ServerOpened(S1, SERVER, reused=False))
    for _ in range(3):
        out += s.handle(DataReceived(S1, OK))
    assert ResumeReading(CLIENT) in out


def test_chunked_request_body_reframed() -> None:
    s = make()
    head = b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, head)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        >> DataReceived(CLIENT, b"3;ext=1\r\nabc\r\n0\r\n\r\n")
        << SendData(S1, b"3\r\n")
        << SendData(S1, b"abc")
        << SendData(S1, b"\r\n")
        << SendData(S1, b"0\r\n\r\n")
    )


def test_reverse_mode_sets_upstream_host() -> None:
    s = make(upstream=Upstream("http", "10.0.0.1", 9000), mode="reverse:http://10.0.0.1:9000")
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, b"GET /p HTTP/1.1\r\nHost: public.example\r\n\r\n")
        << OpenServer(S1, "10.0.0.1", 9000)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, b"GET /p HTTP/1.1\r\nHost: 10.0.0.1:9000\r\n\r\n")
    )


def test_https_upstream_names_sni_and_alpn() -> None:
    s = make(upstream=Upstream("https", "api.internal", 443), mode="reverse:https://api.internal")
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        << OpenServer(S1, "api.internal", 443, TlsRequest("api.internal", ("http/1.1",)))
    )


# -- failures ---------------------------------------------------------------------------
@pytest.mark.parametrize(("timeout", "code"), [(False, 502), (True, 504)])
def test_upstream_failure_answers_and_records(timeout: bool, code: int) -> None:
    s = make()
    message = "connect timed out" if timeout else "connection refused"
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerFailed(S1, message, timeout)
        << Match(
            SendData, data=lambda d: d.startswith(b"HTTP/1.1 %d" % code) and message.encode() in d
        )
        << done(lambda r: message in r.error and r.response.status == code)
        << CloseConnection(CLIENT)
    )


def test_bad_request_answers_400_and_never_opens_server() -> None:
    s = make()
    assert (
        Playbook(s)
        >> DataReceived(
            CLIENT,
            b"GET http://a.test/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2"
            b"\r\n\r\n",
        )
        << Match(SendData, conn=CLIENT, data=startswith(b"HTTP/1.1 400 "))
        << done(lambda r: r.response.status == 400 and r.refused.data.startswith(b"GET http"))
        << CloseConnection(CLIENT)
    )


def test_partial_head_uses_head_deadline_and_is_recorded() -> None:
    s = make()
    assert Playbook(s) >> DataReceived(CLIENT, b"GET http://a.test/ HTTP/1.1\r\nHo")
    assert s.deadline() is TimeoutKind.CLIENT_HEAD
    assert (
        Playbook(s)
        >> TimedOut(TimeoutKind.CLIENT_HEAD)
        << Match(SendData, data=startswith(b"HTTP/1.1 408 "))
        << done(lambda r: r.request.method == b"GET" and "never completed" in r.error)
        << CloseConnection(CLIENT)
    )


def test_response_head_timeout_answers_504() -> None:
    s = make()
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, GET_OUT)
        >> TimedOut(TimeoutKind.RESPONSE_HEAD)
        << Match(SendData, data=startswith(b"HTTP/1.1 504 "))
        << done(lambda r: "timeout (response_head)" in r.error)
        << ReleaseServer(S1, reusable=False)
        << CloseConnection(CLIENT)
    )


def test_stale_pooled_connection_retried_once() -> None:
    s = make()
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=True)
        << SendData(S1, GET_OUT)
        >> EofReceived(S1)
        << ReleaseServer(S1, reusable=False)
        << OpenServer(S2, "a.test", 80, reuse=False)
        >> ServerOpened(S2, SERVER, reused=False)
        << SendData(S2, GET_OUT)
        >> EofReceived(S2)
        << Match(SendData, data=startswith(b"HTTP/1.1 502 "))
        << done()
        << ReleaseServer(S2, reusable=False)
        << CloseConnection(CLIENT)
    )


def test_kept_connection_closed_by_server_is_retried() -> None:
    # The server's FIN arrives only after the next request went out on the
    # connection the session kept: retried on a fresh connection, not 502.
    s = make()
    for event in (DataReceived(CLIENT, GET), ServerOpened(S1, SERVER, False), DataReceived(S1, OK)):
        s.handle(event)
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << SendData(S1, GET_OUT)
        >> EofReceived(S1)
        << ReleaseServer(S1, reusable=False)
        << OpenServer(S2, "a.test", 80, reuse=False)
    )


# -- tunnels and the interception choice ----------------------------------------------
def test_connect_becomes_tunnel_and_its_end_is_recorded() -> None:
    s = make()
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03")
        << OpenServer(S1, "a.test", 443, reuse=False)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(CLIENT, b"HTTP/1.1 200 Connection established\r\n\r\n")
        << StartTunnel(S1, to_server=b"\x16\x03")
    )
    assert s.deadline() is TimeoutKind.TUNNEL_IDLE
    info = TunnelInfo(10, 20, "fin", "fin")
    assert (
        Playbook(s)
        >> TunnelEnded(info)
        << done(lambda r: r.kind == "tunnel" and r.tunnel == info and r.server == SERVER)
    )


def test_connect_to_an_intercepted_host_hands_over_to_the_next_layer() -> None:
    s = make(intercept=lambda host, port: host == "a.test")
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n")
        << SendData(CLIENT, b"HTTP/1.1 200 Connection established\r\n\r\n")
        << Intercept("a.test", 443)
    )
    s2 = make(intercept=lambda host, port: host == "a.test")
    assert (
        Playbook(s2)
        >> DataReceived(CLIENT, b"CONNECT b.test:443 HTTP/1.1\r\nHost: b.test:443\r\n\r\n")
        << OpenServer(S1, "b.test", 443, reuse=False)
    )


SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def test_websocket_upgrade_becomes_a_tunnel() -> None:
    s = make()
    upgrade = (
        b"GET http://a.test/ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\n"
    )
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, upgrade)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << Match(SendData, conn=S1, data=startswith(b"GET /ws HTTP/1.1"))
        >> DataReceived(S1, SWITCHING + b"\x81\x00")
        << Match(SendData, conn=CLIENT, data=startswith(b"HTTP/1.1 101 "))
        << StartTunnel(S1, to_server=b"", to_client=b"\x81\x00")
    )


def test_proxy_auth_refuses_then_accepts() -> None:
    s = make(proxy_auth=b"dTpw")  # base64("u:pw")
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << Match(SendData, data=lambda d: d.startswith(b"HTTP/1.1 407 ") and b"Basic" in d)
        << done(lambda r: r.response.status == 407)
        >> DataReceived(
            CLIENT, GET.replace(b"\r\n\r\n", b"\r\nProxy-Authorization: Basic dTpw\r\n\r\n")
        )
        << OpenServer(S1, "a.test", 80)
    )


# -- the rule phase --------------------------------------------------------------------
def test_rule_respond_answers_without_a_server() -> None:
    s = with_rules(
        "version: 1\nrules:\n  - name: mock\n    match: {host: a.test}\n"
        "    respond: {status: 201, body: made up}\n"
    )
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << Match(SendData, data=lambda d: d.startswith(b"HTTP/1.1 201 ") and d.endswith(b"made up"))
        << done(lambda r: status(201)(r) and r.rules.matched[0][0] == "mock")
        >> DataReceived(CLIENT, GET)  # keep-alive: the next request is ruled too
        << Match(SendData, data=startswith(b"HTTP/1.1 201 "))
        << done()
    )


def test_rule_block_close_and_reset() -> None:
    for kind, abort in (("block: {close: true}", False), ("fault: {reset: true}", True)):
        s = with_rules(
            f"version: 1\nrules:\n  - name: r\n    match: {{host: a.test}}\n    {kind}\n"
        )
        assert (
            Playbook(s)
            >> DataReceived(CLIENT, GET)
            << done(lambda r: r.error.startswith("rule r: "))
            << CloseConnection(CLIENT, abort)
        )


def test_rule_request_delay_waits_for_the_timer() -> None:
    s = with_rules(
        "version: 1\nrules:\n  - name: slow\n    match: {host: a.test}\n"
        "    fault: {phase: request, delay: {ms: 250}}\n"
    )
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << SetTimer(0.25)
        >> TimerFired()
        << OpenServer(S1, "a.test", 80)
    )


def test_rule_body_edit_collects_the_body_and_answers_100_continue() -> None:
    s = with_rules(
        "version: 1\nrules:\n  - name: edit\n    match: {host: a.test}\n"
        "    request:\n      - replace_body: {literal: prod, with: dev}\n"
    )
    head = (
        b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 8\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, head)
        << SendData(CLIENT, b"HTTP/1.1 100 Continue\r\n\r\n")
        >> DataReceived(CLIENT, b"env=prod")
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 7\r\n\r\n")
        << SendData(S1, b"env=dev")
    )


def test_rule_response_edit_reframes_the_body() -> None:
    s = with_rules(
        "version: 1\nrules:\n  - name: edit\n    match: {host: a.test}\n"
        "    response:\n      - replace_body: {literal: hi, with: hello}\n"
    )
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, GET_OUT)
        >> DataReceived(S1, OK)
        << SendData(CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        << SendData(CLIENT, b"hello")
        << done(
            lambda r: (
                r.response.message.body_size == 5
                and r.response.upstream.message.body_size == 2
                and r.response.upstream.message.preview == b"hi"
            )
        )
    )


def test_rule_close_after_cuts_the_body() -> None:
    s = with_rules(
        "version: 1\nrules:\n  - name: cut\n    match: {host: a.test, status: 200}\n"
        "    fault: {close_after: {bytes: 1}}\n"
    )
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, GET_OUT)
        >> DataReceived(S1, OK)
        << Match(SendData, data=startswith(b"HTTP/1.1 200 OK"))
        << SendData(CLIENT, b"h")
        << done(lambda r: "closed after 1 body bytes" in r.error)
        << ReleaseServer(S1, reusable=False)
        << CloseConnection(CLIENT)
    )


def test_rule_hang_says_nothing_until_the_timeout() -> None:
    s = with_rules(
        "version: 1\nrules:\n  - name: h\n    match: {host: a.test}\n    fault: {hang: true}\n"
    )
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        >> TimedOut(TimeoutKind.RESPONSE_HEAD)
        << done(lambda r: r.error == "rule h: hang, ended by the response_head timeout")
        << CloseConnection(CLIENT)
    )


def test_no_rules_loaded_means_no_rule_phase() -> None:
    empty: RuleSet = load_sources([SourceText(Path("/t/r.yaml"), "version: 1\nrules: []\n")])
    s = make(rules=lambda: empty)
    assert Playbook(s) >> DataReceived(CLIENT, GET) << OpenServer(S1, "a.test", 80)


# -- lifecycle hooks -------------------------------------------------------------------
def hooked(
    notify: frozenset[HookKind] = frozenset(), hold: frozenset[HookKind] = frozenset()
) -> HttpSession:
    return make(hooks=HookSettings(notify, hold))


def held(kind: HookKind) -> Match:
    return Match(Hook, kind=kind, hold=True)


def test_held_request_waits_then_goes_on_edited() -> None:
    s = hooked(hold=frozenset({HookKind.REQUEST}))
    edit = RequestEdit(method=b"POST", url="http://b.test:8080/y", headers=((b"X-Edited", b"1"),))
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << held(HookKind.REQUEST)  # nothing goes upstream while it is held
        >> DataReceived(CLIENT, GET)  # a pipelined request waits too
        >> HookResumed(HookKind.REQUEST, Proceed(edit))
        << OpenServer(S1, "b.test", 8080)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, b"POST /y HTTP/1.1\r\nHost: b.test:8080\r\nX-Edited: 1\r\n\r\n")
    )


def test_held_request_answered_or_killed() -> None:
    s = hooked(hold=frozenset({HookKind.REQUEST}))
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << held(HookKind.REQUEST)
        >> HookResumed(HookKind.REQUEST, Reply(418, ((b"Content-Type", b"text/plain"),), b"tea"))
        << SendData(
            CLIENT,
            b"HTTP/1.1 418 I'm a Teapot\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 3\r\n\r\ntea",
        )
        << done(status(418))
    )
    s = hooked(hold=frozenset({HookKind.REQUEST}))
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << held(HookKind.REQUEST)
        >> HookResumed(HookKind.REQUEST, Kill())
        << done(lambda r: r.error == "killed by a hook")
        << CloseConnection(CLIENT, abort=True)
    )


def test_held_response_head_pauses_the_server_and_goes_out_edited() -> None:
    s = hooked(hold=frozenset({HookKind.RESPONSE_HEAD}))
    edit = ResponseEdit(status=203, headers=((b"X-Seen", b"yes"),))
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, GET_OUT)
        >> DataReceived(S1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh")
        << PauseReading(S1)
        << held(HookKind.RESPONSE_HEAD)
        >> DataReceived(S1, b"i")  # in flight before the pause: kept for later
        >> HookResumed(HookKind.RESPONSE_HEAD, Proceed(edit))
        << ResumeReading(S1)  # first: a 101 hands over with StartTunnel, the list's last
        << SendData(
            CLIENT,
            b"HTTP/1.1 203 Non-Authoritative Information\r\nX-Seen: yes\r\n"
            b"Content-Length: 2\r\n\r\n",
        )
        << SendData(CLIENT, b"hi")
        << done(lambda r: r.response.status == 203)
    )


def test_notices_are_emitted_only_when_asked_for() -> None:
    kinds = frozenset({HookKind.STARTED, HookKind.RESPONSE, HookKind.ERROR})
    s = hooked(notify=kinds)
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, GET)
        << Match(Hook, kind=HookKind.STARTED, hold=False)
        << OpenServer(S1, "a.test", 80)
        >> ServerFailed(S1, "connection refused")
        << Match(SendData)
        << Match(Hook, kind=HookKind.ERROR)
        << done()
        << CloseConnection(CLIENT)
    )


# -- answers to HEAD carry no body (RFC 9110 §9.3.2) -------------------------------------
HEAD_REQ = b"HEAD http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"


def test_an_error_answer_to_head_has_no_body() -> None:
    s = make()
    sent = Capture()
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, HEAD_REQ)
        << OpenServer(S1, "a.test", 80)
        >> ServerFailed(S1, "connection refused")
        << Match(SendData, data=sent)
        << done(lambda r: r.response.status == 502 and r.response.message.body_size == 0)
        << CloseConnection(CLIENT)
    )
    head, _, body = sent.value.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 ") and b"Content-Length: " in head and body == b""


def test_a_mocked_answer_to_head_has_no_body_and_the_connection_goes_on() -> None:
    s = with_rules(
        "version: 1\nrules:\n  - name: mock\n    match: {host: a.test}\n"
        "    respond: {status: 200, body: hello}\n"
    )
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, HEAD_REQ)
        << SendData(CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        << done(lambda r: r.response.message.body_size == 0)
        >> DataReceived(CLIENT, GET)  # the next request is read as a request, not a body
        << Match(SendData, data=lambda d: d.endswith(b"\r\n\r\nhello"))
        << done()
    )


def test_switch_arms_the_request_point_at_run_time_and_a_note_reaches_the_record() -> None:
    switch = HoldSwitch()
    s = make(hooks=HookSettings(switch=switch))
    pb = Playbook(s) >> DataReceived(CLIENT, GET) << OpenServer(S1, "a.test", 80)
    assert pb  # not armed: nothing held, straight upstream
    switch.kinds = frozenset({HookKind.REQUEST})
    s = make(hooks=HookSettings(switch=switch))
    assert s.deadline() is TimeoutKind.CLIENT_IDLE
    assert Playbook(s) >> DataReceived(CLIENT, GET) << held(HookKind.REQUEST)
    assert s.deadline() is TimeoutKind.HELD  # only the breakpoint's own limit applies
    assert s.handle(TimedOut(TimeoutKind.RESPONSE_HEAD)) == []  # another stream's limit
    assert (
        Playbook(s)
        >> HookResumed(HookKind.REQUEST, Proceed(note="held 300 s at a breakpoint: went on"))
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, GET_OUT)
        >> DataReceived(S1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        << SendData(CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        << done(lambda r: r.rules.warnings == ("held 300 s at a breakpoint: went on",))
    )
