"""The few TLS handshake messages a passive reader needs, parsed from their bodies.

Only what decryption and the record need is read:

* ClientHello: the ``random`` (which names the connection in a key log), SNI,
  offered ALPN and whether 0-RTT early data is offered. The extensions are
  read by ``proxy.tls.clienthello``, shared with the live proxy.
* ServerHello (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3): the negotiated version
  (``supported_versions`` wins over ``legacy_version``, §4.2.1), the cipher
  suite, the server random, the ALPN choice (TLS 1.2 sends it here), and
  whether it is really a HelloRetryRequest (the special random of §4.1.3).
* EncryptedExtensions (RFC 8446 §4.3.1): the ALPN choice in TLS 1.3.
* Certificate (RFC 5246 §7.4.2, RFC 8446 §4.4.2): subject and issuer of the
  end-entity certificate.

Every parser is total: it returns a value or raises ``HandshakeError``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography import x509

from proxy.tls.clienthello import ClientHelloError, parse_client_hello

__all__ = [
    "HRR_RANDOM",
    "Certificate",
    "ClientHelloFacts",
    "HandshakeError",
    "ServerHello",
    "parse_certificate",
    "parse_client_hello_body",
    "parse_encrypted_extensions",
    "parse_server_hello",
]

#: RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest
#: (the SHA-256 of "HelloRetryRequest").
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

_EXT_ALPN = 16
_EXT_EARLY_DATA = 42
_EXT_SUPPORTED_VERSIONS = 43
_RECORD_MAX = 1 << 14


class HandshakeError(ValueError):
    """A handshake message that does not parse."""


class _Cursor:
    """Bounds-checked reads over one message body."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise HandshakeError("truncated handshake message")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> _Cursor:
        return _Cursor(self.take(self.uint(length_size)))

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


@dataclass(frozen=True, slots=True)
class ClientHelloFacts:
    random: bytes
    sni: str | None
    alpn: tuple[str, ...]
    early_data: bool  # offers 0-RTT (RFC 8446 §4.2.10)


@dataclass(frozen=True, slots=True)
class ServerHello:
    version: int  # negotiated: 0x0303 TLS 1.2, 0x0304 TLS 1.3
    random: bytes
    cipher_suite: int
    alpn: str | None  # TLS 1.2 only; TLS 1.3 sends it encrypted
    retry: bool  # a HelloRetryRequest


@dataclass(frozen=True, slots=True)
class Certificate:
    subject: str
    issuer: str


def parse_client_hello_body(body: bytes) -> ClientHelloFacts:
    """Facts from a ClientHello's body (the handshake header already removed)."""
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    records = bytearray()
    for i in range(0, len(message), _RECORD_MAX):  # re-framed for the shared reader
        chunk = message[i : i + _RECORD_MAX]
        records += b"\x16\x03\x01" + len(chunk).to_bytes(2, "big") + chunk
    try:
        hello = parse_client_hello(records)
    except ClientHelloError as e:
        raise HandshakeError(f"ClientHello: {e}") from None
    if hello is None:  # cannot happen: the message is whole
        raise HandshakeError("ClientHello incomplete")
    return ClientHelloFacts(
        random=body[2:34],
        sni=hello.sni,
        alpn=tuple(p.decode("latin-1") for p in hello.alpn_protocols),
        early_data=_EXT_EARLY_DATA in hello.extensions,
    )


def parse_server_hello(body: bytes) -> ServerHello:
    """RFC 8446 §4.1.3 / RFC 5246 §7.4.1.3 ServerHello (or HelloRetryRequest)."""
    c = _Cursor(body)
    version = c.uint(2)
    random = c.take(32)
    if len(c.vector(1).data) > 32:
        raise HandshakeError("ServerHello session id longer than 32 bytes")
    suite = c.uint(2)
    c.take(1)  # compression method
    alpn: str | None = None
    if not c.at_end():
        exts = c.vector(2)
        while not exts.at_end():
            ext_type, ext = exts.uint(2), exts.vector(2)
            if ext_type == _EXT_SUPPORTED_VERSIONS:
                version = ext.uint(2)  # RFC 8446 §4.2.1: selected_version
            elif ext_type == _EXT_ALPN:
                alpn = _one_alpn(ext)
    if version >> 8 != 3:
        raise HandshakeError(f"ServerHello version {version:#06x}")
    return ServerHello(version, random, suite, alpn, random == HRR_RANDOM)


def parse_encrypted_extensions(body: bytes) -> str | None:
    """The ALPN protocol the server chose, from TLS 1.3 EncryptedExtensions."""
    exts = _Cursor(body).vector(2)
    while not exts.at_end():
        ext_type, ext = exts.uint(2), exts.vector(2)
        if ext_type == _EXT_ALPN:
            return _one_alpn(ext)
    return None


def _one_alpn(ext: _Cursor) -> str:
    """RFC 7301 §3.1: the server's ProtocolNameList holds exactly one name."""
    names = ext.vector(2)
    name = names.vector(1).data
    if not name or not names.at_end():
        raise HandshakeError("server ALPN is not exactly one protocol")
    return name.decode("latin-1")


def parse_certificate(body: bytes, tls13: bool) -> Certificate | None:
    """Subject and issuer of the first (end-entity) certificate; None if there is none.

    TLS 1.3 (RFC 8446 §4.4.2) prefixes a request context and follows each
    certificate with extensions; TLS 1.2 (RFC 5246 §7.4.2) is a plain list.
    """
    c = _Cursor(body)
    if tls13:
        c.vector(1)  # certificate_request_context
    certs = c.vector(3)
    if certs.at_end():
        return None
    return _certificate(certs.vector(3).data)


@functools.lru_cache(maxsize=256)
def _certificate(der: bytes) -> Certificate:
    """Subject and issuer of one DER certificate, remembered: a capture's connections
    to one server repeat the same certificate, and parsing it is ~0.25 ms (a failure
    raises again each time: ``lru_cache`` does not keep exceptions)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        return Certificate(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string())
    except Exception as e:
        # Hostile DER goes to a third-party parser whose exceptions are not all
        # ValueError (x509.InvalidVersion is not, found by fuzz_tls): any of them
        # only means that there are no certificate facts.
        raise HandshakeError(f"certificate does not parse: {e}") from None
