"""A TLS endpoint over memory BIOs: ciphertext in, plaintext out (sans-IO).

The proxy must read a client's ClientHello (for SNI and ALPN) before it
knows which certificate to present, so the bytes that start the handshake
have already been consumed from the socket. ``loop.start_tls`` cannot be
handed those bytes; an ``ssl.SSLObject`` over ``MemoryBIO``s can. asyncio's
own SSL transport is built the same way, so this costs nothing extra: the
cryptography runs in OpenSSL, Python only moves buffers per read.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass

_READ_SIZE = 256 * 1024


class TlsHandshakeError(Exception):
    """The handshake failed; ``alert`` is the TLS alert name when the peer sent one."""

    def __init__(self, message: str, alert: str | None = None) -> None:
        super().__init__(message)
        self.alert = alert


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What was negotiated on one side of an intercepted connection."""

    version: str | None
    cipher: str | None
    alpn: str | None
    sni: str | None


def _alert_of(e: ssl.SSLError) -> str | None:
    reason = (getattr(e, "reason", None) or "").lower()
    # OpenSSL names received alerts "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", ...
    for prefix in ("tlsv1_alert_", "sslv3_alert_", "tlsv13_alert_"):
        if reason.startswith(prefix):
            return reason[len(prefix) :]
    return None


class TlsEndpoint:
    """One side of a TLS connection that we terminate (server side) or open."""

    def __init__(
        self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None = None
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        self.handshake_done = False
        self.sni = server_hostname
        #: The peer sent close_notify: its end of the stream (RFC 8446 §6.1).
        self.peer_closed = False

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed ciphertext; return (plaintext received, ciphertext to send back).

        Raises ``TlsHandshakeError`` while handshaking, ``ssl.SSLError`` after.
        """
        if data:
            self._in.write(data)
        if not self.handshake_done:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                return b"", self._out.read()
            except ssl.SSLError as e:
                raise TlsHandshakeError(str(e), _alert_of(e)) from e
            self.handshake_done = True
        return self._read_plain(), self._out.read()

    def _read_plain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self._obj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.peer_closed = True
                break
            if not chunk:
                # CPython's SSLObject.read returns b"" (rather than raising
                # SSLZeroReturnError) once close_notify has been received.
                self.peer_closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext``; return the ciphertext to write."""
        view = memoryview(plaintext)
        while view:
            n = self._obj.write(view)
            view = view[n:]
        return self._out.read()

    def close(self) -> bytes:
        """A close_notify alert to send (best effort)."""
        with contextlib.suppress(ssl.SSLError):
            self._obj.unwrap()
        return self._out.read()

    def facts(self) -> TlsFacts:
        cipher = self._obj.cipher()
        return TlsFacts(
            version=self._obj.version(),
            cipher=cipher[0] if cipher else None,
            alpn=self._obj.selected_alpn_protocol(),
            sni=self.sni,
        )
