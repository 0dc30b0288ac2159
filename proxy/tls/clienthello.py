"""A sans-IO reader for the TLS ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2).

The proxy peeks at the first bytes a client sends to decide what to do before
any TLS library sees them: is this TLS at all, which host does it want (SNI),
which protocols does it offer (ALPN). Nothing is consumed; the caller keeps
its buffer and hands it to the TLS layer afterwards.

``parse_client_hello`` is total on arbitrary bytes: it returns a
:class:`ClientHello`, returns ``None`` when more bytes are needed, or raises
:class:`ClientHelloError`. It never raises anything else. A ClientHello may be
split over several handshake records (large post-quantum key shares make that
common) and may arrive in any number of reads.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientHello", "ClientHelloError", "looks_like_tls", "parse_client_hello"]

_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_MAX_RECORD = 1 << 14  # RFC 8446 5.1: plaintext fragments are at most 2^14 bytes
#: The ClientHello body cannot exceed this: two 16-bit vectors plus small fixed fields.
_MAX_HELLO = 2 + 32 + 1 + 255 + 2 + 0xFFFF + 1 + 255 + 2 + 0xFFFF

_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_EXT_SUPPORTED_VERSIONS = 43


class ClientHelloError(ValueError):
    """The bytes are not a well-formed TLS ClientHello."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the proxy needs from a ClientHello.

    ``sni`` is the host_name exactly as sent (ASCII; not lower-cased),
    ``alpn_protocols`` the raw protocol ids in the client's order,
    ``supported_versions`` empty when the extension is absent (pre-TLS 1.3
    clients), ``extensions`` the extension types in order (for fingerprints),
    and ``record_bytes`` how many input bytes the records carrying the hello
    took up.
    """

    legacy_version: int
    sni: str | None
    alpn_protocols: tuple[bytes, ...]
    supported_versions: tuple[int, ...]
    cipher_suites: tuple[int, ...]
    extensions: tuple[int, ...]
    record_bytes: int

    @property
    def cipher_suites_count(self) -> int:
        return len(self.cipher_suites)

    @property
    def offers_tls13(self) -> bool:
        return 0x0304 in self.supported_versions


def looks_like_tls(first_bytes: bytes | bytearray | memoryview) -> bool:
    """True if ``first_bytes`` start like a TLS handshake record (``16 03 00..04``).

    Needs at least three bytes; with fewer it answers False, so buffer three
    bytes before asking. SSLv2-style hellos are not TLS for this purpose.
    """
    return (
        len(first_bytes) >= 3
        and first_bytes[0] == _HANDSHAKE
        and first_bytes[1] == 0x03
        and first_bytes[2] <= 0x04
    )


def parse_client_hello(data: bytes | bytearray | memoryview) -> ClientHello | None:
    """Parse the ClientHello at the start of ``data``; ``None`` if incomplete.

    Bytes after the ClientHello (early data, a second message) are ignored.
    """
    assembled = _reassemble(bytes(data))
    if assembled is None:
        return None
    body, record_bytes = assembled
    return _parse_body(body, record_bytes)


def _reassemble(data: bytes) -> tuple[bytes, int] | None:
    """Join handshake-record fragments until one whole handshake message is present."""
    fragments = bytearray()
    pos = 0
    need: int | None = None  # total handshake message length once the header is known
    while need is None or len(fragments) < need:
        header = data[pos : pos + 5]
        _check_record_prefix(header)
        if len(header) < 5:
            return None
        length = int.from_bytes(header[3:5], "big")
        if length == 0 or length > _MAX_RECORD:
            raise ClientHelloError(f"bad handshake record length {length}")
        pos += 5
        fragments += data[pos : pos + length]
        available = len(data) - pos
        pos += length
        if need is None and len(fragments) >= 4:
            if fragments[0] != _CLIENT_HELLO:
                raise ClientHelloError(f"first handshake message is type {fragments[0]}")
            body_length = int.from_bytes(fragments[1:4], "big")
            if body_length > _MAX_HELLO:
                raise ClientHelloError(f"ClientHello length {body_length} is impossible")
            need = 4 + body_length
        if available < length:
            return None
    assert need is not None
    return bytes(fragments[4:need]), pos


def _check_record_prefix(header: bytes) -> None:
    if len(header) >= 1 and header[0] != _HANDSHAKE:
        raise ClientHelloError(f"record type {header[0]} is not handshake")
    if len(header) >= 2 and header[1] != 0x03:
        raise ClientHelloError("record version is not 3.x")
    if len(header) >= 3 and header[2] > 0x04:
        raise ClientHelloError(f"record version 3.{header[2]} is unknown")


class _Reader:
    """Bounds-checked cursor over a byte string; every overrun is a ClientHelloError."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise ClientHelloError("truncated field")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> _Reader:
        return _Reader(self.take(self.uint(length_size)))

    def take_rest(self) -> bytes:
        return self.take(self.remaining())

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def expect_end(self, what: str) -> None:
        if not self.at_end():
            raise ClientHelloError(f"trailing bytes in {what}")


def _parse_body(body: bytes, record_bytes: int) -> ClientHello:
    r = _Reader(body)
    legacy_version = r.uint(2)
    if legacy_version >> 8 != 0x03:
        raise ClientHelloError(f"ClientHello version {legacy_version:#06x}")
    r.take(32)  # random
    if r.vector(1).remaining() > 32:
        raise ClientHelloError("session id longer than 32 bytes")
    suites_vector = r.vector(2)
    suites: list[int] = []
    while not suites_vector.at_end():
        suites.append(suites_vector.uint(2))
    if not suites:
        raise ClientHelloError("no cipher suites")
    if r.vector(1).remaining() == 0:
        raise ClientHelloError("no compression methods")
    sni: str | None = None
    alpn: tuple[bytes, ...] = ()
    versions: tuple[int, ...] = ()
    types: list[int] = []
    if not r.at_end():  # pre-TLS 1.2 clients may omit the extensions block
        extensions = r.vector(2)
        r.expect_end("ClientHello")
        while not extensions.at_end():
            ext_type = extensions.uint(2)
            ext = extensions.vector(2)
            if ext_type in types:
                raise ClientHelloError(f"duplicate extension {ext_type}")
            types.append(ext_type)
            if ext_type == _EXT_SERVER_NAME:
                sni = _server_name(ext)
            elif ext_type == _EXT_ALPN:
                alpn = _alpn(ext)
            elif ext_type == _EXT_SUPPORTED_VERSIONS:
                versions = _supported_versions(ext)
    return ClientHello(
        legacy_version=legacy_version,
        sni=sni,
        alpn_protocols=alpn,
        supported_versions=versions,
        cipher_suites=tuple(suites),
        extensions=tuple(types),
        record_bytes=record_bytes,
    )


def _server_name(ext: _Reader) -> str | None:
    names = ext.vector(2)
    ext.expect_end("server_name")
    host: str | None = None
    while not names.at_end():
        name_type = names.uint(1)
        name = names.vector(2).take_rest()
        if name_type != 0:
            continue  # RFC 6066: unknown name types are skipped
        if host is not None:
            raise ClientHelloError("two host_name entries in server_name")
        if not name or not name.isascii():
            raise ClientHelloError("server_name host_name is empty or not ASCII")
        host = name.decode("ascii")
    return host


def _alpn(ext: _Reader) -> tuple[bytes, ...]:
    protocols = ext.vector(2)
    ext.expect_end("ALPN")
    out: list[bytes] = []
    while not protocols.at_end():
        proto = protocols.vector(1).take_rest()
        if not proto:
            raise ClientHelloError("empty ALPN protocol id")
        out.append(proto)
    if not out:
        raise ClientHelloError("empty ALPN list")
    return tuple(out)


def _supported_versions(ext: _Reader) -> tuple[int, ...]:
    versions = ext.vector(1)
    ext.expect_end("supported_versions")
    out: list[int] = []
    while not versions.at_end():
        out.append(versions.uint(2))
    if not out:
        raise ClientHelloError("empty supported_versions")
    return tuple(out)
