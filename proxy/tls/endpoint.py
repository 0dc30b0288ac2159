"""Both sides of an intercepted TLS connection, over memory BIOs (sans-IO).

:class:`TlsEndpoint` is the server side that a client talks to;
:class:`TlsClient` is our own connection to the upstream server. Both are
ciphertext in, plaintext out: the IO shell moves the bytes.

The proxy must read a client's ClientHello (for SNI and ALPN) before it
knows which certificate to present, so the bytes that start the handshake
have already been consumed from the socket. ``loop.start_tls`` cannot be
handed those bytes; a TLS connection over memory BIOs can: ciphertext in,
plaintext out, and the caller moves the bytes.

This side runs on pyOpenSSL (the OpenSSL that ``cryptography`` ships), not
the ``ssl`` module: a connection then takes the host's leaf, and a shared
context the key, as objects already in memory, where ``ssl.SSLContext`` can
only load them from PEM files, which OpenSSL 3.0 decodes at ~0.8 ms per new
host (see docs/performance.md, scenario d). The upstream side follows for the
same OpenSSL: its handshake costs a third less CPU than through ``ssl``
(verification: :mod:`proxy.tls.client`). Errors are mapped to this module's
own exceptions so callers never see either library's types.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from OpenSSL import SSL, crypto

from proxy.tls.client import Verification
from proxy.tls.leaf import ServerTls
from proxy.tls.names import parse_ip

__all__ = [
    "TlsClient",
    "TlsEndpoint",
    "TlsError",
    "TlsFacts",
    "TlsHandshakeError",
    "TlsVerifyError",
    "describe_ssl_error",
]

#: Plaintext per ``recv``: one TLS record carries at most 2^14 bytes (RFC 8446 §5.1).
_RECORD = 16 * 1024
#: Ciphertext per ``bio_read``; a shorter read means the BIO is empty.
_OUT_CHUNK = 64 * 1024


class TlsError(Exception):
    """The TLS connection failed after its handshake (a bad record, a fatal alert)."""


class TlsHandshakeError(Exception):
    """The handshake failed; ``alert`` is the TLS alert name when the peer sent one."""

    def __init__(self, message: str, alert: str | None = None) -> None:
        super().__init__(message)
        self.alert = alert


class TlsVerifyError(TlsHandshakeError):
    """We refused the server's certificate; the message says why (``certificate has expired``)
    and what the user can do about it (``VERIFY_HINT``)."""


#: What a refused upstream certificate can be fixed with; it ends up in 502 bodies.
VERIFY_HINT = "--upstream-ca FILE trusts the server's CA; --insecure skips verification"


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What was negotiated on one side of an intercepted connection."""

    version: str | None
    cipher: str | None
    alpn: str | None
    sni: str | None


def _reasons(e: SSL.Error) -> list[str]:
    """OpenSSL's reason strings from an error queue (``[(lib, func, reason), ...]``)."""
    queue = e.args[0] if e.args and isinstance(e.args[0], list) else []
    return [str(entry[2]) for entry in queue if isinstance(entry, tuple) and len(entry) == 3]


def describe_ssl_error(e: SSL.Error) -> str:
    """OpenSSL's reasons for ``e``, joined (``no certificate or crl found``)."""
    return "; ".join(r for r in _reasons(e) if r) or type(e).__name__


def _alert_of(e: SSL.Error) -> str | None:
    """The alert the peer sent, as RFC 8446 §6 names it (``unknown_ca``), if any."""
    # OpenSSL reports a received alert as "tlsv1 alert unknown ca", "sslv3
    # alert bad certificate", "tlsv13 alert certificate required", and
    # OpenSSL 3 "(ssl/)tls alert handshake failure".
    for reason in _reasons(e):
        words = reason.lower().replace(" ", "_")
        for prefix in (
            "tlsv1_alert_",
            "sslv3_alert_",
            "tlsv13_alert_",
            "ssl/tls_alert_",
            "tls_alert_",
        ):
            if words.startswith(prefix):
                return words[len(prefix) :]
    return None


class _TlsConnection:
    """What both sides share: a pyOpenSSL connection over memory BIOs."""

    def __init__(self, conn: SSL.Connection, sni: str | None) -> None:
        self._conn = conn
        self.handshake_done = False
        self.sni = sni
        #: The peer sent close_notify: its end of the stream (RFC 8446 §6.1).
        self.peer_closed = False

    def _handshake_error(self, e: SSL.Error) -> TlsHandshakeError:
        return TlsHandshakeError(describe_ssl_error(e), _alert_of(e))

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed ciphertext; return (plaintext received, ciphertext to send back).

        Raises ``TlsHandshakeError`` while handshaking, ``TlsError`` after.
        """
        if data:
            self._conn.bio_write(data)
        if not self.handshake_done:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                return b"", self._pending_out()
            except SSL.Error as e:
                raise self._handshake_error(e) from e
            self.handshake_done = True
        try:
            plain = self._read_plain()
        except SSL.Error as e:
            raise TlsError(describe_ssl_error(e)) from e
        return plain, self._pending_out()

    def _read_plain(self) -> bytes:
        chunks = []
        while not self.peer_closed:
            try:
                chunks.append(self._conn.recv(_RECORD))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.peer_closed = True
        return b"".join(chunks)

    def _pending_out(self, expect: int = 0) -> bytes:
        """All ciphertext waiting in the outgoing BIO.

        pyOpenSSL signals an empty BIO with an exception (~2 µs), and each
        read copies through a buffer of the size asked. A memory BIO returns
        all it holds up to that size, so asking for what is expected (a
        send's plaintext plus record overhead) usually takes one read, and a
        short read ends the loop without the exception (measured per request
        and per MB of intercepted download).
        """
        size = max(_OUT_CHUNK, expect)
        chunks = []
        while True:
            try:
                chunk = self._conn.bio_read(size)
            except SSL.WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < size:
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext``; return the ciphertext to write."""
        view = memoryview(plaintext)
        try:
            while view:
                n = self._conn.send(view)
                view = view[n:]
        except SSL.Error as e:
            raise TlsError(describe_ssl_error(e)) from e
        # TLS 1.3 adds 22 bytes per record of at most 2^14 (RFC 8446 §5.2).
        return self._pending_out(len(plaintext) + (len(plaintext) // _RECORD + 1) * 64)

    def close(self) -> bytes:
        """A close_notify alert to send (best effort)."""
        with contextlib.suppress(SSL.Error):
            self._conn.shutdown()
        return self._pending_out()

    def facts(self) -> TlsFacts:
        alpn = self._conn.get_alpn_proto_negotiated()
        return TlsFacts(
            version=self._conn.get_protocol_version_name() if self.handshake_done else None,
            cipher=self._conn.get_cipher_name(),
            alpn=alpn.decode("latin-1") if alpn else None,
            sni=self.sni,
        )


class TlsEndpoint(_TlsConnection):
    """The server side of a TLS connection that we terminate.

    ``server`` comes from :meth:`proxy.tls.leaf.LeafIssuer.server_tls`;
    ``sni`` is the name the client asked for (from its ClientHello), kept for
    :meth:`facts`.
    """

    def __init__(self, server: ServerTls, sni: str | None = None) -> None:
        conn = SSL.Connection(server.context, None)  # None: memory BIOs
        if server.shared:
            conn.use_certificate(server.leaf.cert)
        conn.set_accept_state()
        super().__init__(conn, sni)


class TlsClient(_TlsConnection):
    """Our TLS connection to an upstream server, verified for ``hostname``.

    ``context`` comes from :func:`proxy.tls.client.client_context`. SNI is
    sent unless ``hostname`` is an IP literal (RFC 6066 §3). :meth:`start`
    gives the ClientHello; a refused certificate raises ``TlsVerifyError``.
    A host name IDNA cannot encode raises ``UnicodeError``, as in ``ssl``.
    """

    def __init__(
        self, context: SSL.Context, hostname: str, alpn: tuple[str, ...] | None = None
    ) -> None:
        self._verification = Verification(hostname)
        conn = SSL.Connection(context, None)
        if alpn is not None:  # this connection's offer, instead of the context's
            conn.set_alpn_protos([p.encode("latin-1") for p in alpn])
        conn.set_app_data(self._verification)  # for the verify callback
        conn.set_connect_state()
        ip = parse_ip(hostname) is not None
        if not ip:
            conn.set_tlsext_host_name(hostname.rstrip(".").encode("idna"))
        super().__init__(conn, None if ip else hostname)
        self.hostname = hostname

    def start(self) -> bytes:
        """The ClientHello to send."""
        return self.receive(b"")[1]

    def peer_certificate(self) -> bytes | None:
        """The server's certificate (DER), once the handshake is done."""
        state = self._verification
        if state.peer_der is None and self.handshake_done:  # not verified (--insecure)
            cert = self._conn.get_peer_certificate()
            if cert is not None:
                state.peer_der = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
        return state.peer_der

    def _handshake_error(self, e: SSL.Error) -> TlsHandshakeError:
        if self._verification.error is not None:
            return TlsVerifyError(f"{self._verification.error} ({VERIFY_HINT})")
        return super()._handshake_error(e)
