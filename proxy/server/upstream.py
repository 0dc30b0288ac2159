"""Upstream connections: the protocol object and a bounded keep-alive pool.

An ``UpstreamConnection`` forwards what its socket delivers to whoever owns
it now (a client connection), or, while it sits idle in the pool, treats any
byte or close as the end of its usefulness. The pool keeps at most
``per_host`` idle connections for each (host, port, tls) and drops those
idle longer than ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import time
from collections import OrderedDict, deque
from typing import Protocol, cast

from cryptography import x509

from proxy.server.transport import reset, tune
from proxy.session.errors import UpstreamError
from proxy.sinks.pcap import PcapTap
from proxy.sinks.record import TlsSide
from proxy.tls.leaf import certificate_names

# (host, port, tls): tls is the SNI/hostname to verify for TLS, None for plain TCP.
Key = tuple[str, int, str | None]


class Owner(Protocol):
    def on_server_data(self, data: bytes) -> None: ...
    def on_server_eof(self) -> None: ...
    def on_server_lost(self, exc: Exception | None) -> None: ...
    def on_server_pause_writing(self) -> None: ...
    def on_server_resume_writing(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, key: Key, tap: PcapTap | None = None) -> None:
        self.key = key
        self.tap = tap
        self.transport: asyncio.Transport | None = None
        self.owner: Owner | None = None
        self.closed = False
        self.idle_since = 0.0
        self.paused_reading = False
        self._tls: TlsSide | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        tune(transport)
        if self.tap is not None and self.tap.upstream_side:
            local = transport.get_extra_info("sockname")
            peer = transport.get_extra_info("peername")
            if local and peer:
                self.tap.open(id(self), (local[0], local[1]), (peer[0], peer[1]))

    def write(self, data: bytes) -> None:
        """Send to the server (plaintext: TLS, if any, is the transport's)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            if self.tap is not None and self.tap.upstream_side:
                self.tap.data(id(self), True, data)

    def data_received(self, data: bytes) -> None:
        if self.tap is not None and self.tap.upstream_side:
            self.tap.data(id(self), False, data)
        if self.owner is not None:
            self.owner.on_server_data(data)
        else:  # unsolicited bytes on an idle connection: it is not reusable
            self.close()

    def eof_received(self) -> bool:
        if self.owner is not None:
            self.owner.on_server_eof()
            return True  # keep our write side; the owner decides when to close
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
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
            self.transport.close()

    def abort(self) -> None:
        """Reset the connection (RST): the exchange on it was cut short."""
        self.owner = None
        if self.transport is not None and not self.closed:
            self.closed = True
            reset(self.transport)

    def tls_facts(self) -> TlsSide | None:
        """TLS version, cipher, ALPN and certificate of this connection (cached)."""
        if self._tls is None and self.key[2] is not None and self.transport is not None:
            obj = self.transport.get_extra_info("ssl_object")
            if obj is not None:
                self._tls = tls_side_of(obj, self.key[2])
        return self._tls

    @property
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()


def describe_error(exc: BaseException) -> str:
    """A short, human cause for a failed connect (shown in 502 bodies)."""
    if isinstance(exc, socket.gaierror):
        return f"name not resolved ({exc.strerror})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class Pool:
    """Idle keep-alive connections to upstreams, bounded per key and in total.

    The total bounds matter when keys are many (intercepting a distinct SNI
    each time leaves one pooled TLS connection per name): beyond ``total``
    idle connections, or beyond ``total_tls`` idle TLS ones, the one idle
    longest is closed (principle 1: memory stays bounded whatever the
    traffic). TLS gets its own, smaller bound because each idle TLS
    connection holds asyncio's 256 KiB read buffer, ~30 times what a plain
    one holds; 64 is still far more hosts than a browser keeps warm.
    """

    def __init__(
        self, per_host: int = 32, idle_timeout: float = 60.0, total: int = 256, total_tls: int = 64
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


def tls_side_of(obj: ssl.SSLObject, sni: str) -> TlsSide:
    cipher = obj.cipher()
    der = obj.getpeercert(binary_form=True)
    subject = issuer = not_after = None
    sans: tuple[str, ...] = ()
    if der:
        subject, issuer, not_after = _certificate_summary(der)
        with contextlib.suppress(ValueError):
            sans = certificate_names(der)[0]
    return TlsSide(
        version=obj.version(),
        cipher=cipher[0] if cipher else None,
        alpn=obj.selected_alpn_protocol(),
        sni=sni or None,
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


async def connect(
    key: Key, timeout: float, ssl_context: ssl.SSLContext | None, tap: PcapTap | None = None
) -> UpstreamConnection:
    """Open a new upstream connection or raise ``UpstreamError``."""
    loop = asyncio.get_running_loop()
    host, port, sni = key
    tls = sni is not None
    try:
        async with asyncio.timeout(timeout):
            _, proto = await loop.create_connection(
                lambda: UpstreamConnection(key, tap),
                host,
                port,
                ssl=ssl_context if tls else None,
                server_hostname=(sni or host) if tls else None,
                ssl_handshake_timeout=timeout if tls else None,
            )
    except TimeoutError as e:
        e.__traceback__ = None
        raise UpstreamError(f"connect timed out after {timeout:g}s", timeout=True) from None
    except (OSError, ssl.SSLError) as e:
        # The traceback of a failed TLS handshake keeps its 256 KiB buffers
        # alive until a full collection (CPython gh-109534): ~40 MB per 1,000
        # failures was measured. Only the message is kept.
        message = describe_error(e)
        e.__traceback__ = None
        raise UpstreamError(message) from None
    return proto
