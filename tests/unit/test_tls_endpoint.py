"""The memory-BIO TLS endpoint, pumped against another endpoint without sockets."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from proxy.tls.endpoint import TlsEndpoint, TlsHandshakeError
from tests.support.certs import CertAuthority


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = CertAuthority.create(tmp_path_factory.mktemp("ca"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(ca.server_cert(["example.test"], "leaf.pem"))
    client = ssl.create_default_context(cafile=str(ca.cert_path))
    return server, client


def _pair(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> tuple[TlsEndpoint, TlsEndpoint]:
    server = TlsEndpoint(contexts[0], server_side=True)
    client = TlsEndpoint(contexts[1], server_side=False, server_hostname="example.test")
    _, to_server = client.receive(b"")
    while not (server.handshake_done and client.handshake_done):
        _, to_client = server.receive(to_server)
        _, to_server = client.receive(to_client)
    server.receive(to_server)
    return server, client


def test_plaintext_both_ways(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server, client = _pair(contexts)
    assert server.receive(client.send(b"ping"))[0] == b"ping"
    assert client.receive(server.send(b"pong" * 100_000))[0] == b"pong" * 100_000
    assert server.facts().version == "TLSv1.3" and client.facts().sni == "example.test"


@pytest.mark.parametrize("with_data", [False, True])
def test_close_notify_marks_the_peer_closed(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], with_data: bool
) -> None:
    """RFC 8446 §6.1: close_notify ends the sender's stream; data before it still arrives."""
    server, client = _pair(contexts)
    data = client.send(b"last words") if with_data else b""
    plain, _ = server.receive(data + client.close())
    assert plain == (b"last words" if with_data else b"")
    assert server.peer_closed and not client.peer_closed
    client.receive(server.close())
    assert client.peer_closed


def test_garbage_instead_of_a_client_hello(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server = TlsEndpoint(contexts[0], server_side=True)
    with pytest.raises(TlsHandshakeError):
        server.receive(b"GET / HTTP/1.1\r\n\r\n")


def test_untrusted_server_fails_the_handshake(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path
) -> None:
    other = ssl.create_default_context(cafile=str(CertAuthority.create(tmp_path).cert_path))
    server = TlsEndpoint(contexts[0], server_side=True)
    client = TlsEndpoint(other, server_side=False, server_hostname="example.test")
    _, hello = client.receive(b"")
    _, flight = server.receive(hello)
    with pytest.raises(TlsHandshakeError, match="certificate verify failed") as e:
        client.receive(flight)
    assert e.value.alert is None  # our own verdict, not an alert from the peer
