"""The memory-BIO TLS server endpoint, pumped against an ``ssl`` client without sockets."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest

from proxy.tls.ca import CertificateAuthority
from proxy.tls.endpoint import TlsEndpoint, TlsError, TlsHandshakeError
from proxy.tls.leaf import LeafIssuer, ServerTls


class _Client:
    """A stdlib ``ssl`` client over memory BIOs: the other end of the pump."""

    def __init__(self, context: ssl.SSLContext, host: str = "example.test") -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._in, self._out, server_hostname=host)
        self.peer_closed = False

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        self._in.write(data)
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return b"", self._out.read()
        chunks = []
        while True:
            try:
                chunk = self.obj.read(1 << 20)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:
                self.peer_closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks), self._out.read()

    def send(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self._out.read()

    def close(self) -> bytes:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.unwrap()
        return self._out.read()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_ctx(ca: CertificateAuthority) -> ServerTls:
    return LeafIssuer(ca).server_tls("example.test")


@pytest.fixture(scope="module")
def client_ctx(ca: CertificateAuthority) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.cert_path))


def _pair(server_ctx: ServerTls, client_ctx: ssl.SSLContext) -> tuple[TlsEndpoint, _Client]:
    server = TlsEndpoint(server_ctx, sni="example.test")
    client = _Client(client_ctx)
    _, to_server = client.receive(b"")
    while not (server.handshake_done and client.obj.version()):
        _, to_client = server.receive(to_server)
        _, to_server = client.receive(to_client)
    server.receive(to_server)
    return server, client


def test_plaintext_both_ways(server_ctx: ServerTls, client_ctx: ssl.SSLContext) -> None:
    server, client = _pair(server_ctx, client_ctx)
    assert server.receive(client.send(b"ping"))[0] == b"ping"
    assert client.receive(server.send(b"pong" * 100_000))[0] == b"pong" * 100_000
    facts = server.facts()
    assert facts.version == "TLSv1.3" and facts.sni == "example.test"
    assert facts.alpn is None  # the client offered none
    assert facts.cipher == client.obj.cipher()[0]  # type: ignore[index]


def test_alpn_is_our_first_choice_among_the_clients(
    ca: CertificateAuthority, client_ctx: ssl.SSLContext
) -> None:
    """RFC 7301 §3.2: the server picks; no overlap carries on without ALPN."""
    issuer = LeafIssuer(ca)
    for ours, theirs, chosen in [
        (("http/1.1",), ["h2", "http/1.1"], "http/1.1"),
        (("h2", "http/1.1"), ["http/1.1", "h2"], "h2"),
        (("http/1.1",), ["h2"], None),
    ]:
        ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        ctx.set_alpn_protocols(theirs)
        server, client = _pair(issuer.server_tls("example.test", alpn=ours), ctx)
        assert server.facts().alpn == chosen == client.obj.selected_alpn_protocol()


@pytest.mark.parametrize("with_data", [False, True])
def test_close_notify_marks_the_peer_closed(
    server_ctx: ServerTls, client_ctx: ssl.SSLContext, with_data: bool
) -> None:
    """RFC 8446 §6.1: close_notify ends the sender's stream; data before it still arrives."""
    server, client = _pair(server_ctx, client_ctx)
    data = client.send(b"last words") if with_data else b""
    plain, _ = server.receive(data + client.close())
    assert plain == (b"last words" if with_data else b"")
    assert server.peer_closed and not client.peer_closed
    client.receive(server.close())
    assert client.peer_closed


def test_garbage_instead_of_a_client_hello(server_ctx: ServerTls) -> None:
    server = TlsEndpoint(server_ctx)
    with pytest.raises(TlsHandshakeError) as e:
        server.receive(b"GET / HTTP/1.1\r\n\r\n")
    assert e.value.alert is None and str(e.value)


def test_a_client_that_rejects_the_certificate_names_the_alert(
    server_ctx: ServerTls, tmp_path: Path
) -> None:
    """A client that does not trust our CA sends unknown_ca (RFC 8446 §6.2)."""
    other = ssl.create_default_context(cafile=str(CertificateAuthority.create(tmp_path).cert_path))
    server = TlsEndpoint(server_ctx)
    client = _Client(other)
    _, hello = client.receive(b"")
    _, flight = server.receive(hello)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.receive(flight)
    with pytest.raises(TlsHandshakeError) as e:
        server.receive(client._out.read())
    assert e.value.alert == "unknown_ca"


def test_a_corrupt_record_after_the_handshake_is_a_tls_error(
    server_ctx: ServerTls, client_ctx: ssl.SSLContext
) -> None:
    server, client = _pair(server_ctx, client_ctx)
    record = bytearray(client.send(b"x" * 100))
    record[-1] ^= 0xFF  # breaks the AEAD tag
    with pytest.raises(TlsError):
        server.receive(bytes(record))


@pytest.mark.parametrize("size", [1, 16_383, 16_384, 16_385, 65_536, 3 * 65_536 + 7, 1_000_000])
def test_every_byte_sent_comes_out_whatever_the_size(
    server_ctx: ServerTls, client_ctx: ssl.SSLContext, size: int
) -> None:
    """The ciphertext of one send is drained whole, around record and read sizes."""
    server, client = _pair(server_ctx, client_ctx)
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    wire = server.send(data) + server.send(b"tail")
    assert client.receive(wire)[0] == data + b"tail"
