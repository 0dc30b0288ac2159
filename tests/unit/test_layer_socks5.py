"""Playbook tests of the SOCKS5 listener (RFC 1928, RFC 1929) and the entry layers.

The handshake alone (methods, credentials, address types, refused commands,
SOCKS4a), then the whole entry: a SOCKS5 connection handed to the same
next-layer choice as an intercepted CONNECT (HTTP decoded, TLS intercepted
or passed through, raw bytes relayed through the route chosen), and a
transparent connection refused when its original destination is the proxy.
"""

from __future__ import annotations

import base64
import itertools

from proxy.flow.hooks import HookKind
from proxy.flow.record import FlowRecord
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Hook,
    OpenServer,
    PauseReading,
    ResumeReading,
    SendData,
    SetTimer,
    StartClientTls,
    server_conn,
)
from proxy.layers.entry import EntryLayers
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    ServerFailed,
    ServerOpened,
    TimedOut,
    TimeoutKind,
)
from proxy.layers.nextlayer import SNIFF_TIMEOUT, SNIFF_TOKEN, InterceptSettings
from proxy.layers.root import RAW_SERVER
from proxy.layers.socks5 import Socks5Layer
from proxy.session.config import SessionConfig
from proxy.tls.policy import InterceptPolicy, PassthroughMemory
from tests.playbook import Match, Playbook
from tests.unit.test_tls_clienthello import real_hello

PEER = ("127.0.0.1", 5000)
TOKEN = base64.b64encode(b"alice:s3cret")
OK_REPLY = b"\x05\x00\x00\x01" + bytes(6)  # succeeded, bound 0.0.0.0:0


def greeting(*methods: int) -> bytes:
    return bytes((5, len(methods), *methods))


def request(cmd: int, address: bytes) -> bytes:
    return bytes((5, cmd, 0)) + address


def domain(name: bytes, port: int) -> bytes:
    return bytes((3, len(name))) + name + port.to_bytes(2, "big")


def ipv4(a: bytes, port: int) -> bytes:
    return b"\x01" + a + port.to_bytes(2, "big")


def ipv6(a: bytes, port: int) -> bytes:
    return b"\x04" + a + port.to_bytes(2, "big")


def auth(user: bytes, password: bytes) -> bytes:
    return bytes((1, len(user))) + user + bytes((len(password),)) + password


def done(check: object = None) -> Match:
    def ok(flow: object) -> bool:
        return check is None or bool(check(flow.to_record()))  # type: ignore[attr-defined, operator]

    return Match(Hook, kind=HookKind.DONE, flow=ok)


# -- the handshake alone -----------------------------------------------------------------
def test_no_auth_connect_by_domain_name_with_early_data() -> None:
    layer = Socks5Layer(None)
    assert (
        Playbook(layer)
        >> DataReceived(CLIENT, greeting(0x00, 0x02))
        << SendData(CLIENT, b"\x05\x00")
        >> DataReceived(CLIENT, request(1, domain(b"Example.COM", 443))[:6])  # split request
        >> DataReceived(CLIENT, request(1, domain(b"Example.COM", 443))[6:] + b"hello")
        << SendData(CLIENT, OK_REPLY)
    )
    assert layer.target == ("example.com", 443)  # remote DNS: the name, resolved by us
    assert layer.early == b"hello"


def test_ipv4_and_ipv6_literals() -> None:
    layer = Socks5Layer(None)
    layer.handle(DataReceived(CLIENT, greeting(0) + request(1, ipv4(bytes((10, 1, 2, 3)), 80))))
    assert layer.target == ("10.1.2.3", 80)
    layer = Socks5Layer(None)
    v6 = bytes(15) + b"\x01"
    layer.handle(DataReceived(CLIENT, greeting(0) + request(1, ipv6(v6, 8443))))
    assert layer.target == ("::1", 8443)


def test_username_password_accepted() -> None:
    assert (
        Playbook(Socks5Layer(TOKEN))
        >> DataReceived(CLIENT, greeting(0x00, 0x02))
        << SendData(CLIENT, b"\x05\x02")
        >> DataReceived(CLIENT, auth(b"alice", b"s3cret"))
        << SendData(CLIENT, b"\x01\x00")
        >> DataReceived(CLIENT, request(1, domain(b"a.test", 80)))
        << SendData(CLIENT, OK_REPLY)
    )


def test_wrong_password_gets_rfc1929_status_1_and_is_closed() -> None:
    layer = Socks5Layer(TOKEN)
    assert (
        Playbook(layer)
        >> DataReceived(CLIENT, greeting(0x02))
        << SendData(CLIENT, b"\x05\x02")
        >> DataReceived(CLIENT, auth(b"alice", b"wrong"))
        << SendData(CLIENT, b"\x01\x01")  # RFC 1929 §2: failure, then close
        << CloseConnection(CLIENT)
    )
    assert layer.refusal is not None and "status 0x01" in layer.refusal.message
    assert layer.target is None


def test_client_without_the_required_method_gets_0xff() -> None:
    assert (
        Playbook(Socks5Layer(TOKEN))
        >> DataReceived(CLIENT, greeting(0x00))
        << SendData(CLIENT, b"\x05\xff")
        << CloseConnection(CLIENT)
    )


def test_bind_and_udp_associate_get_reply_7() -> None:
    for cmd in (2, 3):
        layer = Socks5Layer(None)
        assert (
            Playbook(layer)
            >> DataReceived(CLIENT, greeting(0) + request(cmd, ipv4(bytes(4), 0)))
            << SendData(CLIENT, b"\x05\x00")
            << SendData(CLIENT, b"\x05\x07\x00\x01" + bytes(6))
            << CloseConnection(CLIENT)
        )
        assert layer.refusal is not None and "not supported" in layer.refusal.message


def test_unknown_address_type_gets_reply_8() -> None:
    assert (
        Playbook(Socks5Layer(None))
        >> DataReceived(CLIENT, greeting(0) + b"\x05\x01\x00\x09rest")
        << SendData(CLIENT, b"\x05\x00")
        << SendData(CLIENT, b"\x05\x08\x00\x01" + bytes(6))
        << CloseConnection(CLIENT)
    )


def test_request_for_the_proxy_itself_is_not_allowed() -> None:
    layer = Socks5Layer(None, frozenset({("127.0.0.1", 8080)}))
    assert (
        Playbook(layer)
        >> DataReceived(CLIENT, greeting(0) + request(1, ipv4(bytes((127, 0, 0, 1)), 8080)))
        << SendData(CLIENT, b"\x05\x00")
        << SendData(CLIENT, b"\x05\x02\x00\x01" + bytes(6))
        << CloseConnection(CLIENT)
    )


def test_socks4a_with_a_name_and_socks4_refused_with_credentials() -> None:
    layer = Socks5Layer(None)
    data = b"\x04\x01\x00\x50\x00\x00\x00\x01user\x00a.test\x00GET"
    assert Playbook(layer) >> DataReceived(CLIENT, data) << SendData(CLIENT, b"\x00\x5a" + bytes(6))
    assert layer.target == ("a.test", 80) and layer.early == b"GET"
    assert (
        Playbook(Socks5Layer(TOKEN))
        >> DataReceived(CLIENT, data)
        << SendData(CLIENT, b"\x00\x5b" + bytes(6))
        << CloseConnection(CLIENT)
    )


# -- the entry: SOCKS5 then the next-layer choice ------------------------------------------
def entry(
    intercept: InterceptSettings | None = None,
    original_dst: tuple[str, int] | None = None,
    **kw: object,
) -> EntryLayers:
    ids = (str(i) for i in itertools.count())
    clock = itertools.count(1000.0, 0.001)
    config = SessionConfig(
        new_id=lambda: next(ids),
        clock=lambda: next(clock),
        mode="socks5" if original_dst is None else "transparent",
        own_addresses=frozenset({("127.0.0.1", 8080)}),
        **kw,  # type: ignore[arg-type]
    )
    return EntryLayers(config, PEER, intercept, original_dst)


def handshake(host: bytes, port: int) -> bytes:
    return greeting(0) + request(1, domain(host, port))


def test_socks5_plain_http_is_decoded_and_recorded() -> None:
    layers = entry()
    head = b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n"
    assert (
        Playbook(layers)
        >> DataReceived(CLIENT, handshake(b"a.test", 80) + head)
        << SendData(CLIENT, b"\x05\x00")
        << SendData(CLIENT, OK_REPLY)
        << SetTimer(SNIFF_TIMEOUT, SNIFF_TOKEN)
        << Match(OpenServer, conn=server_conn(1), host="a.test", port=80, tls=None, via=None)
        >> ServerOpened(server_conn(1), ("10.0.0.1", 80), reused=False)
        << SendData(server_conn(1), head)  # decoded and forwarded from our own parse
    )


def test_socks5_tls_is_intercepted_with_mitm() -> None:
    policy = InterceptPolicy.build(True, (), (), False)
    layers = entry(InterceptSettings(policy, PassthroughMemory(), "/ca.pem"))
    hello = real_hello("a.test")
    assert (
        Playbook(layers)
        >> DataReceived(CLIENT, handshake(b"a.test", 443))
        << SendData(CLIENT, b"\x05\x00")
        << SendData(CLIENT, OK_REPLY)
        << SetTimer(SNIFF_TIMEOUT, SNIFF_TOKEN)
        >> DataReceived(CLIENT, hello)
        << Match(StartClientTls, host="a.test", port=443, name="a.test")
    )


def test_socks5_raw_bytes_go_through_the_route_and_are_recorded() -> None:
    layers = entry(route=lambda host, port: "socks5://127.0.0.1:9050")
    assert (
        Playbook(layers)
        >> DataReceived(CLIENT, handshake(b"db.test", 5432) + b"\x00\x00\x00\x08")
        << SendData(CLIENT, b"\x05\x00")
        << SendData(CLIENT, OK_REPLY)
        << SetTimer(SNIFF_TIMEOUT, SNIFF_TOKEN)
        << PauseReading(CLIENT)
        << OpenServer(RAW_SERVER, "db.test", 5432, None, False, "socks5://127.0.0.1:9050")
        >> ServerFailed(RAW_SERVER, "next proxy 127.0.0.1:9050: connection refused")
        << done(
            lambda r: (
                r.kind == "tunnel"
                and r.mode == "socks5"
                and r.request.url == "db.test:5432"
                and r.route.via == "socks5://127.0.0.1:9050"
                and "next proxy 127.0.0.1:9050" in r.error
            )
        )
        << CloseConnection(CLIENT)
    )


def test_socks5_wrong_credentials_are_recorded() -> None:
    layers = entry(proxy_auth=TOKEN)
    assert (
        Playbook(layers)
        >> DataReceived(CLIENT, greeting(2) + auth(b"alice", b"nope"))
        << SendData(CLIENT, b"\x05\x02")
        << SendData(CLIENT, b"\x01\x01")
        << CloseConnection(CLIENT)
        << done(lambda r: r.kind == "tunnel" and "RFC 1929 status 0x01" in r.error)
    )


def test_socks5_handshake_timeout_is_recorded() -> None:
    layers = entry()
    assert layers.deadline() is TimeoutKind.CLIENT_HEAD
    assert (
        Playbook(layers)
        >> DataReceived(CLIENT, b"\x05")
        >> TimedOut(TimeoutKind.CLIENT_HEAD)
        << done(lambda r: r.error == "client: SOCKS handshake timed out")
        << CloseConnection(CLIENT)
    )


# -- the entry: transparent --------------------------------------------------------------
def test_transparent_relays_to_the_original_destination_with_a_record() -> None:
    layers = entry(original_dst=("10.0.0.2", 22))
    out = layers.start()
    assert out == [SetTimer(SNIFF_TIMEOUT, SNIFF_TOKEN)]
    assert (
        Playbook(layers)
        >> DataReceived(CLIENT, b"SSH-2.0-x\r\n")
        << PauseReading(CLIENT)
        << OpenServer(RAW_SERVER, "10.0.0.2", 22, None, False, None)
        >> ServerOpened(RAW_SERVER, ("10.0.0.2", 22), reused=False)
        << ResumeReading(CLIENT)
        << SendData(RAW_SERVER, b"SSH-2.0-x\r\n")
        >> ConnectionClosed(CLIENT)
        << CloseConnection(RAW_SERVER, discard=True)
        << done(
            lambda r: (
                r.kind == "tcp"
                and r.route.original_dst == ("10.0.0.2", 22)
                and r.route.via == "direct"
            )
        )
    )


def test_transparent_loop_to_the_proxy_itself_is_refused() -> None:
    layers = entry(original_dst=("127.0.0.1", 8080))
    out = layers.start()
    assert len(out) == 2 and out[1] == CloseConnection(CLIENT)
    hook = out[0]
    assert isinstance(hook, Hook)
    record = hook.flow.to_record()
    assert isinstance(record, FlowRecord)
    assert record.error is not None and "proxy's own listener" in record.error


def test_transparent_https_names_the_leaf_after_sni() -> None:
    policy = InterceptPolicy.build(True, (), (), False)
    layers = entry(InterceptSettings(policy, PassthroughMemory(), "/ca.pem"), ("10.0.0.2", 443))
    layers.start()
    assert (
        Playbook(layers)
        >> DataReceived(CLIENT, real_hello("b.test"))
        << Match(StartClientTls, host="10.0.0.2", port=443, name="b.test", sni="b.test")
    )
