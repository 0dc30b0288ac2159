"""Playbook tests for the first bytes of a relayed CONNECT: h2c is decoded, the rest relayed."""

from __future__ import annotations

from proxy.flow.hooks import HookKind
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Hook,
    OpenServer,
    ResumeReading,
    SendData,
    server_conn,
)
from proxy.layers.events import DataReceived, EofReceived, ServerOpened
from proxy.layers.http2.server import Http2Server
from proxy.layers.root import ClientLayers
from proxy.layers.tunnel import TunnelLayer
from proxy.session.config import SessionConfig
from proxy.session.refusals import H2_PREFACE
from tests.playbook import Playbook

PEER = ("127.0.0.1", 40000)
S1 = server_conn(1)
CONNECT = b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n"
ESTABLISHED = SendData(CLIENT, b"HTTP/1.1 200 Connection established\r\n\r\n")
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame


def connected() -> ClientLayers:
    layers = ClientLayers(SessionConfig(clock=lambda: 1.0), PEER)
    assert (
        Playbook(layers)
        >> DataReceived(CLIENT, CONNECT)
        << OpenServer(S1, "db", 5432, reuse=False)
        >> ServerOpened(S1, ("10.0.0.5", 5432), reused=False)
        << ESTABLISHED
        << ResumeReading(CLIENT)
    )
    return layers


def test_the_preface_in_pieces_hands_the_tunnel_to_http2() -> None:
    layers = connected()
    assert layers.handle(DataReceived(CLIENT, H2_PREFACE[:10])) == []  # not yet known
    out = layers.handle(DataReceived(CLIENT, H2_PREFACE[10:] + SETTINGS))
    assert out[0] == CloseConnection(S1, discard=True)  # the streams open their own
    assert isinstance(out[1], Hook) and out[1].kind is HookKind.DONE  # the CONNECT's record
    assert type(layers.current) is Http2Server


def test_an_http2_server_greeting_waits_for_the_client() -> None:
    layers = connected()
    assert layers.handle(DataReceived(S1, SETTINGS)) == []  # held back
    out = layers.handle(DataReceived(CLIENT, H2_PREFACE + SETTINGS))
    assert out[0] == CloseConnection(S1, discard=True)
    assert type(layers.current) is Http2Server


def test_anything_else_is_relayed_from_its_first_byte() -> None:
    layers = connected()
    assert layers.handle(DataReceived(CLIENT, b"\x16\x03\x01")) == [SendData(S1, b"\x16\x03\x01")]
    assert type(layers.current) is TunnelLayer


def test_a_server_that_speaks_first_is_relayed_at_once() -> None:
    layers = connected()
    greeting = b"220 db ESMTP\r\n"
    assert layers.handle(DataReceived(S1, greeting)) == [SendData(CLIENT, greeting)]
    out = layers.handle(DataReceived(CLIENT, b"EHLO x\r\n"))
    assert out == [SendData(S1, b"EHLO x\r\n")]  # and no sniffing any more


def test_held_bytes_are_relayed_in_order_when_it_is_not_http2() -> None:
    layers = connected()
    assert layers.handle(DataReceived(S1, SETTINGS)) == []
    assert layers.handle(DataReceived(CLIENT, b"PRI")) == []  # could be the preface
    out = layers.handle(EofReceived(CLIENT))
    assert out[:2] == [SendData(CLIENT, SETTINGS), SendData(S1, b"PRI")]
