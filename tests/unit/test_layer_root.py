"""Playbook tests of the next-layer choice and the root's switches between layers.

The interception choice (TLS, HTTP or raw; ignore-hosts; pinned hosts), the
handshake's outcomes, and what the root builds from each: a nested HTTP
session, a raw relay with its record, or a failure recorded on the CONNECT.
"""

from __future__ import annotations

import itertools

from proxy.flow.hooks import HookKind
from proxy.flow.record import TlsSide
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Hook,
    OpenServer,
    PauseReading,
    ResumeReading,
    SendData,
    SetTimer,
    Shutdown,
    StartClientTls,
    TlsRequest,
    server_conn,
)
from proxy.layers.events import (
    ClientTlsEstablished,
    ClientTlsFailed,
    ConnectionClosed,
    DataReceived,
    EofReceived,
    ServerFailed,
    ServerOpened,
    TimerFired,
)
from proxy.layers.nextlayer import (
    SNIFF_TIMEOUT,
    SNIFF_TOKEN,
    DecodeHttp,
    GiveUp,
    InterceptSettings,
    NextLayer,
    RelayRaw,
)
from proxy.layers.root import RAW_SERVER, ClientLayers
from proxy.layers.tcp import TcpLayers
from proxy.session.config import SessionConfig, Upstream
from proxy.tls.policy import InterceptPolicy, PassthroughMemory
from tests.playbook import Match, Playbook, startswith
from tests.unit.test_tls_clienthello import real_hello

PEER = ("127.0.0.1", 5000)
HELLO = real_hello("a.test")
CONNECT = b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n"
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"

H2_FIRST = ("h2", "http/1.1")  # what the proxy speaks, in its order


def settings(ignore: tuple[str, ...] = (), auto_passthrough: bool = False) -> InterceptSettings:
    policy = InterceptPolicy.build(True, (), ignore, auto_passthrough)
    return InterceptSettings(policy, PassthroughMemory(), "/ca/ca.pem")


def layers(intercept: InterceptSettings | None = None, **kw: object) -> ClientLayers:
    ids = (str(i) for i in itertools.count())
    clock = itertools.count(1000.0, 0.001)
    policy = intercept.policy.intercept if intercept is not None else None
    config = SessionConfig(
        new_id=lambda: next(ids),
        clock=lambda: next(clock),
        intercept=policy,
        **kw,  # type: ignore[arg-type]
    )
    return ClientLayers(config, PEER, intercept)


def done(check: object = None) -> Match:
    def ok(flow: object) -> bool:
        return check is None or bool(check(flow.to_record()))  # type: ignore[attr-defined, operator]

    return Match(Hook, kind=HookKind.DONE, flow=ok)


# -- the choice alone ----------------------------------------------------------------
def test_choice_tls_intercepted() -> None:
    n = NextLayer("a.test", 443, settings())
    assert n.start() == [SetTimer(SNIFF_TIMEOUT, SNIFF_TOKEN)]
    assert (
        Playbook(n)
        >> DataReceived(CLIENT, HELLO[:10])  # the hello comes in pieces
        >> DataReceived(CLIENT, HELLO[10:])
        << StartClientTls(
            "a.test", 443, "a.test", "a.test", ("h2", "http/1.1"), HELLO, True, H2_FIRST
        )
        >> TimerFired(SNIFF_TOKEN)  # the sniff timer no longer matters
    )
    assert n.choice is None
    side = TlsSide("TLSv1.3", "TLS_AES_128_GCM_SHA256", "http/1.1", "a.test")
    assert Playbook(n) >> ClientTlsEstablished(side)
    assert n.choice == DecodeHttp(b"", side, "a.test")


def test_choice_ignored_host_is_passed_through() -> None:
    n = NextLayer("a.test", 443, settings(ignore=(r"^a\.test:443$",)))
    assert Playbook(n) >> DataReceived(CLIENT, HELLO)
    assert isinstance(n.choice, RelayRaw) and n.choice.data == HELLO
    assert n.choice.tls is not None and not n.choice.tls.intercepted
    assert n.choice.tls.client == TlsSide(sni="a.test", offered_alpn=("h2", "http/1.1"))


def test_choice_plain_http_and_raw_bytes_and_silence() -> None:
    n = NextLayer("a.test", 80, settings())
    assert Playbook(n) >> DataReceived(CLIENT, b"GET / HTTP/1.1\r\n")
    assert n.choice == DecodeHttp(b"GET / HTTP/1.1\r\n")
    n = NextLayer("a.test", 5432, settings())
    assert Playbook(n) >> DataReceived(CLIENT, b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
    assert n.choice == RelayRaw(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
    n = NextLayer("a.test", 25, settings())
    assert Playbook(n) >> TimerFired(SNIFF_TOKEN)  # server-speaks-first: nothing came
    assert n.choice == RelayRaw(b"")


def test_choice_rejected_certificate_pins_with_auto_passthrough() -> None:
    s = settings(auto_passthrough=True)
    n = NextLayer("a.test", 443, s)
    n.handle(DataReceived(CLIENT, HELLO))
    assert Playbook(n) >> ClientTlsFailed("unknown_ca", "tlsv1 alert unknown ca")
    assert isinstance(n.choice, GiveUp)
    assert "rejected the proxy's certificate for a.test (alert unknown_ca)" in n.choice.message
    assert "later connections to this host will be passed through" in n.choice.message
    assert ("a.test", 443) in s.pinned
    n = NextLayer("a.test", 443, s)  # the next connection to it is relayed
    assert Playbook(n) >> DataReceived(CLIENT, HELLO)
    assert isinstance(n.choice, RelayRaw)


def test_choice_other_handshake_failure_does_not_pin() -> None:
    s = settings(auto_passthrough=True)
    n = NextLayer("a.test", 443, s)
    n.handle(DataReceived(CLIENT, HELLO))
    assert Playbook(n) >> ClientTlsFailed(None, "wrong version number")
    assert isinstance(n.choice, GiveUp)
    assert (
        n.choice.message == "TLS handshake with the client failed for a.test: wrong version number"
    )
    assert ("a.test", 443) not in s.pinned


def test_listener_choice_never_relays() -> None:
    n = NextLayer("up.internal", 443, settings(), listener=True)
    assert n.start() == []
    assert Playbook(n) >> DataReceived(CLIENT, b"\x01\x02\x03\x04")
    assert n.choice == DecodeHttp(b"\x01\x02\x03\x04")


# -- the root's switches ------------------------------------------------------------
def test_root_intercepts_tls_then_decodes_https() -> None:
    root = layers(settings())
    assert (
        Playbook(root)
        >> DataReceived(CLIENT, CONNECT)
        << SendData(CLIENT, ESTABLISHED)
        << ResumeReading(CLIENT)
        << SetTimer(SNIFF_TIMEOUT, SNIFF_TOKEN)
        >> DataReceived(CLIENT, HELLO)
        << Match(StartClientTls, name="a.test", data=HELLO)
        >> ClientTlsEstablished(TlsSide("TLSv1.3", alpn="http/1.1", sni="a.test"))
        >> DataReceived(CLIENT, b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        << OpenServer(server_conn(1), "a.test", 443, TlsRequest("a.test"))
        >> ServerOpened(server_conn(1), ("10.0.0.1", 443), reused=False)
        << SendData(server_conn(1), b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        >> DataReceived(server_conn(1), b"HTTP/1.1 204 No Content\r\n\r\n")
        << SendData(CLIENT, b"HTTP/1.1 204 No Content\r\n\r\n")
        << done(lambda r: r.request.url == "https://a.test/x" and r.tls.intercepted)
    )


def test_root_relays_raw_bytes_and_records_the_tunnel() -> None:
    root = layers(settings())
    assert (
        Playbook(root)
        >> DataReceived(CLIENT, CONNECT + b"SSH-2.0-x\r\n")
        << SendData(CLIENT, ESTABLISHED)
        << ResumeReading(CLIENT)
        << SetTimer(SNIFF_TIMEOUT, SNIFF_TOKEN)
        << PauseReading(CLIENT)
        << OpenServer(RAW_SERVER, "a.test", 443, reuse=False)
        >> DataReceived(CLIENT, b"more")  # already in flight: kept in order
        >> ServerOpened(RAW_SERVER, ("10.0.0.1", 443), reused=False)
        << ResumeReading(CLIENT)
        << SendData(RAW_SERVER, b"SSH-2.0-x\r\nmore")
        >> EofReceived(CLIENT)
        << Shutdown(RAW_SERVER)
        >> ConnectionClosed(RAW_SERVER)
        << CloseConnection(CLIENT, discard=True)
        << done(lambda r: r.kind == "tunnel" and r.tunnel.bytes_up == 15 and r.error is None)
    )


def test_root_records_a_failed_raw_connect() -> None:
    root = layers(settings())
    root.handle(DataReceived(CLIENT, CONNECT + b"\x00\x01\x02"))
    assert (
        Playbook(root)
        >> ServerFailed(RAW_SERVER, "connection refused")
        << done(lambda r: r.error == "upstream a.test:443: connection refused")
        << CloseConnection(CLIENT)
    )


def test_root_records_a_rejected_certificate_on_the_connect() -> None:
    root = layers(settings())
    root.handle(DataReceived(CLIENT, CONNECT))
    root.handle(DataReceived(CLIENT, HELLO))
    assert (
        Playbook(root)
        >> ClientTlsFailed("bad_certificate", "alert bad certificate")
        << done(lambda r: "rejected the proxy's certificate" in r.error and r.tls.intercepted)
        << CloseConnection(CLIENT)
    )


def test_reverse_listener_with_interception_terminates_tls() -> None:
    up = Upstream("http", "127.0.0.1", 9000)
    root = layers(settings(), upstream=up, mode="reverse:http://127.0.0.1:9000")
    assert root.start() == []
    assert (
        Playbook(root)
        >> DataReceived(CLIENT, HELLO)
        << StartClientTls(
            "127.0.0.1", 9000, "a.test", "a.test", ("h2", "http/1.1"), HELLO, False, H2_FIRST
        )
    )
    root = layers(settings(), upstream=up, mode="reverse:http://127.0.0.1:9000")
    root.start()
    assert (
        Playbook(root)
        >> DataReceived(CLIENT, b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
        << OpenServer(server_conn(1), "127.0.0.1", 9000)
    )


def test_tcp_mode_opens_then_relays_and_records() -> None:
    ids = iter(["f1"])
    config = SessionConfig(new_id=lambda: next(ids), mode="tcp:db:5432")
    tcp = TcpLayers(config, PEER, "db", 5432)
    assert tcp.start() == [
        PauseReading(CLIENT),
        OpenServer(TcpLayers.SERVER, "db", 5432, reuse=False),
    ]
    assert (
        Playbook(tcp)
        >> ServerOpened(TcpLayers.SERVER, ("10.0.0.2", 5432), reused=False)
        << ResumeReading(CLIENT)
        >> DataReceived(TcpLayers.SERVER, b"hello")
        << SendData(CLIENT, b"hello")
        >> ConnectionClosed(TcpLayers.SERVER, reset=True)
        << CloseConnection(CLIENT, abort=True, discard=True)
        << done(lambda r: r.kind == "tcp" and r.tunnel.server_close == "reset" and r.id == "f1")
    )


def test_tcp_mode_records_a_failed_connect() -> None:
    tcp = TcpLayers(SessionConfig(mode="tcp:db:5432"), PEER, "db", 5432)
    tcp.start()
    assert (
        Playbook(tcp)
        >> ServerFailed(TcpLayers.SERVER, "connection refused")
        << done(lambda r: r.error == "upstream db:5432: connection refused")
        << CloseConnection(CLIENT, abort=True)
    )


def test_too_many_connections_is_answered_and_recorded() -> None:
    root = layers()
    out = root.refuse()
    assert [type(c) for c in out] == [SendData, Hook, CloseConnection]
    assert isinstance(out[0], SendData) and out[0].data.startswith(b"HTTP/1.1 503 ")
    assert Match(SendData, data=startswith(b"HTTP/1.1 503")).matches(out[0])


def test_root_records_a_client_gone_while_sniffing() -> None:
    root = layers(settings())
    root.handle(DataReceived(CLIENT, CONNECT + b"\x00"))
    assert (
        Playbook(root)
        >> ConnectionClosed(CLIENT, reset=True)
        << done(lambda r: r.kind == "tunnel" and "gone before its first bytes" in r.error)
        << CloseConnection(CLIENT)
    )


def test_a_backlog_behind_the_connect_does_not_hide_the_switch() -> None:
    root = layers(settings(), max_client_backlog=100)
    out = root.handle(DataReceived(CLIENT, CONNECT + b"\x00" * 500))  # raw bytes, over the backlog
    assert PauseReading(CLIENT) in out  # reading the client waits for the raw relay's server
    assert out[-1] == OpenServer(RAW_SERVER, "a.test", 443, reuse=False)
