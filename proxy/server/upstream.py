"""Upstream connections: the protocol object and a bounded keep-alive pool.

An ``UpstreamConnection`` forwards what its socket delivers to whoever owns
it now (a client connection), or, while it sits idle in the pool, treats any
byte or close as the end of its usefulness. For TLS it runs a
:class:`proxy.tls.endpoint.TlsClient` over the plain socket: ciphertext in
and out there, plaintext to and from the owner. The pool keeps at most
``per_host`` idle connections for each (host, port, tls) and drops those
idle longer than ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import OrderedDict, deque
from typing import Protocol, cast

from cryptography import x509

from proxy.flow.record import TlsSide
from proxy.server.connecterrors import late_handshake_error
from proxy.server.transport import reset, tune
from proxy.sinks.pcap import PcapTap
from proxy.tls.endpoint import TlsClient, TlsError, TlsHandshakeError
from proxy.tls.names import certificate_names

# (host, port, tls, via): tls is the SNI/hostname to verify for TLS, None for
# plain TCP; via the next proxy's URL (proxy.session.routing), None: direct.
# A connection to an HTTP next proxy for absolute-form requests is keyed by
# the next proxy's own host and port, and via ``FORWARD + URL``.
Key = tuple[str, int, str | None, str | None]
FORWARD = "forward "
#: What a fresh connection's server may send before the connection has an owner
#: (the event loop may deliver it before ``create_connection`` returns).
EARLY_LIMIT = 64 * 1024


class Owner(Protocol):
    def on_server_data(self, data: bytes) -> None: ...
    def on_server_eof(self) -> None: ...
    def on_server_lost(self, exc: Exception | None) -> None: ...
    def on_server_pause_writing(self) -> None: ...
    def on_server_resume_writing(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, key: Key, tap: PcapTap | None = None, tls: TlsClient | None = None) -> None:
        self.key = key
        self.tap = tap
        self.tls = tls
        #: Settles when the TLS handshake is done or failed (None: plain TCP).
        self.handshake: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.owner: Owner | None = None
        self.closed = False
        self.idle_since = 0.0
        self.paused_reading = False
        self._tls_facts: TlsSide | None = None
        self._error: Exception | None = None  # why we cut the connection, for the owner
        self._eof_seen = False  # close_notify or FIN already passed on
        self._plain_seen = False  # a byte of plaintext came from the server
        self.early = b""  # plaintext that came before an owner (ServerEnds hands it over)
        self.fresh = True  # never owned yet: what the server sends first is kept in ``early``

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        tune(transport)
        if self.tap is not None and self.tap.upstream_side:
            local = transport.get_extra_info("sockname")
            peer = transport.get_extra_info("peername")
            if local and peer:
                self.tap.open(id(self), (local[0], local[1]), (peer[0], peer[1]))
        if self.tls is not None:
            self.handshake = asyncio.get_running_loop().create_future()
            self._tls_step(b"")

    def take_early(self, data: bytes) -> None:
        """Bytes the server sent before this protocol had the transport (right behind
        a next proxy's answer): received as if they had come now, so the TLS
        handshake's go to it and plaintext is kept for the first owner (``early``)."""
        if data:
            self.data_received(data)

    def write(self, data: bytes) -> None:
        """Send plaintext to the server (encrypted here for TLS)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self.tls is None:
                transport.write(data)
            else:
                try:
                    transport.write(self.tls.send(data))
                except TlsError as e:
                    self._cut(ConnectionError(f"TLS error: {e}"))
                    return
            if self.tap is not None and self.tap.upstream_side:
                self.tap.data(id(self), True, data)

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            data = self._tls_step(data)  # plaintext; b"" for handshake or ticket records
        if data:
            self._plain_seen = True
            if self.tap is not None and self.tap.upstream_side:
                self.tap.data(id(self), False, data)
            if self.owner is not None:
                self.owner.on_server_data(data)
            elif self.fresh:  # a server that speaks first (HTTP/2's SETTINGS), not handed over yet
                self.early += data
                if len(self.early) > EARLY_LIMIT:
                    self.pause_reading()  # ServerEnds resumes it when it hands ``early`` over
            else:  # unsolicited bytes on an idle connection: it is not reusable
                self.close()
        if self.tls is not None and self.tls.peer_closed:
            self._tls_closed()  # a no-op once closed

    def _tls_step(self, data: bytes) -> bytes:
        """Feed ciphertext to the TLS client; send its answer; return the plaintext."""
        tls, transport = self.tls, self.transport
        assert tls is not None and transport is not None
        handshaking = not tls.handshake_done
        try:
            plain, out = tls.receive(data)
        except TlsHandshakeError as e:
            self._handshake_settled(e)
            self.closed = True
            transport.write(tls.close())  # the alert saying why, if OpenSSL made one
            transport.close()
            return b""
        except TlsError as e:
            if self._plain_seen:
                self._cut(ConnectionError(f"TLS error: {e}"))
            else:  # before any byte of an answer: the handshake failed late (TLS 1.3)
                self._cut(late_handshake_error(e))
            return b""
        if out and not transport.is_closing():
            transport.write(out)
        if handshaking and tls.handshake_done:
            self._handshake_settled(None)
        return plain

    def _handshake_settled(self, error: Exception | None) -> None:
        future = self.handshake
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:  # its traceback's frames would hold this connection in a cycle
                future.set_exception(error.with_traceback(None))

    def _tls_closed(self) -> None:
        """The server sent close_notify: the end of its stream, like a FIN."""
        if not self._eof_seen and not self.closed and not self.eof_received():
            self.close()

    def _cut(self, error: Exception) -> None:
        """Reset the connection after a TLS failure; the owner learns ``error``."""
        self._error = error
        if self.transport is not None:
            reset(self.transport)

    def eof_received(self) -> bool:
        if self.handshake is not None and not self.handshake.done():
            self._handshake_settled(ConnectionResetError("closed during the TLS handshake"))
            return False
        if self._eof_seen:  # the FIN after a close_notify already passed on
            return True
        self._eof_seen = True
        if self.owner is not None:
            self.owner.on_server_eof()
            return True  # keep our write side; the owner decides when to close
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exc = exc or self._error
        self._handshake_settled(exc or ConnectionResetError("closed during the TLS handshake"))
        if self.tap is not None and self.tap.upstream_side:
            self.tap.close(id(self), reset=exc is not None, from_client=False)
        owner, self.owner = self.owner, None
        if owner is not None:
            owner.on_server_lost(exc)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.on_server_pause_writing()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.on_server_resume_writing()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.paused_reading:
            self.paused_reading = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.paused_reading:
            self.paused_reading = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.owner = None
        if self.transport is not None and not self.closed:
            self.closed = True
            if self.tls is not None and self.tls.handshake_done:
                with contextlib.suppress(OSError):
                    self.transport.write(self.tls.close())  # close_notify (RFC 8446 §6.1)
            self.transport.close()

    def abort(self) -> None:
        """Reset the connection (RST): the exchange on it was cut short."""
        self.owner = None
        if self.transport is not None and not self.closed:
            self.closed = True
            reset(self.transport)

    def tls_facts(self) -> TlsSide | None:
        """TLS version, cipher, ALPN and certificate of this connection (cached)."""
        if self._tls_facts is None and self.tls is not None and self.tls.handshake_done:
            self._tls_facts = tls_side_of(self.tls)
        return self._tls_facts

    @property
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()


class Pool:
    """Idle keep-alive connections to upstreams, bounded per key and in total.

    The total bounds matter when keys are many (intercepting a distinct SNI
    each time leaves one pooled TLS connection per name): beyond ``total``
    idle connections, or beyond ``total_tls`` idle TLS ones, the one idle
    longest is closed (principle 1: memory stays bounded whatever the
    traffic). TLS gets its own, smaller bound because each idle TLS
    connection also holds an OpenSSL connection and its buffers; 64 is
    still far more hosts than a browser keeps warm.

    ``per_host`` is 128, above HTTP/2's 100 concurrent streams per client
    connection (``proxy.layers.http2.link.MAX_CONCURRENT_STREAMS``): each
    stream translated to HTTP/1.1 holds an upstream connection, and with 32
    idle at most, one request in five found none free and connected anew
    (2,574 connects for 12,000 h2load requests, 10 clients x 10 streams).
    ``total`` still bounds the idle connections of all hosts.
    """

    def __init__(
        self, per_host: int = 128, idle_timeout: float = 60.0, total: int = 256, total_tls: int = 64
    ) -> None:
        self.per_host = per_host
        self.idle_timeout = idle_timeout
        self.total = total
        self.total_tls = total_tls
        self._idle: dict[Key, deque[UpstreamConnection]] = {}
        self._all: OrderedDict[UpstreamConnection, None] = OrderedDict()  # oldest first
        self._tls: OrderedDict[UpstreamConnection, None] = OrderedDict()  # the TLS ones

    def take(self, key: Key) -> UpstreamConnection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            self._all.pop(conn, None)
            self._tls.pop(conn, None)
            if conn.usable:
                return conn
        return None

    def put(self, conn: UpstreamConnection) -> None:
        conn.owner = None
        conn.fresh = False
        conn.resume_reading()
        if not conn.usable:
            return
        conns = self._idle.setdefault(conn.key, deque())
        if len(conns) >= self.per_host:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        conns.append(conn)
        self._all[conn] = None
        if conn.key[2] is not None:
            self._tls[conn] = None
        while len(self._all) > self.total:
            self._evict(next(iter(self._all)))
        while len(self._tls) > self.total_tls:
            self._evict(next(iter(self._tls)))

    def _evict(self, conn: UpstreamConnection) -> None:
        del self._all[conn]
        self._forget(conn)
        conn.close()

    def _forget(self, conn: UpstreamConnection) -> None:
        self._tls.pop(conn, None)
        conns = self._idle.get(conn.key)
        if conns is not None:
            with contextlib.suppress(ValueError):
                conns.remove(conn)
            if not conns:
                del self._idle[conn.key]

    def sweep(self, now: float) -> None:
        """Close connections idle longer than the timeout (called by the watchdog)."""
        for conn in list(self._all):
            if not conn.usable or now - conn.idle_since >= self.idle_timeout:
                self._evict(conn)

    def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._tls.clear()
        self._idle.clear()

    @property
    def idle_count(self) -> int:
        return len(self._all)


def tls_side_of(tls: TlsClient) -> TlsSide:
    facts = tls.facts()
    der = tls.peer_certificate()
    subject = issuer = not_after = None
    sans: tuple[str, ...] = ()
    if der:
        subject, issuer, not_after = _certificate_summary(der)
        with contextlib.suppress(ValueError):
            sans = certificate_names(der)[0]
    return TlsSide(
        version=facts.version,
        cipher=facts.cipher,
        alpn=facts.alpn,
        sni=tls.hostname or None,
        cert_subject=subject,
        cert_issuer=issuer,
        cert_sans=sans,
        cert_not_after=not_after,
    )


@functools.lru_cache(maxsize=256)
def _certificate_summary(der: bytes) -> tuple[str, str, str]:
    """Subject, issuer and expiry for the flow log, parsed once per certificate."""
    cert = x509.load_der_x509_certificate(der)
    return (
        cert.subject.rfc4514_string(),
        cert.issuer.rfc4514_string(),
        cert.not_valid_after_utc.isoformat(),
    )
