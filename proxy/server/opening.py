"""Opening a new upstream connection: directly, or through a next proxy.

``connect`` resolves and connects (or has ``proxy.server.chain`` open a
tunnel through the next proxy the route names), runs the TLS handshake to
the origin when asked, and turns every failure into an ``UpstreamError``
whose message says which side failed, bounded by ``--connect-timeout``.
"""

from __future__ import annotations

import asyncio
import ssl

from OpenSSL import SSL

from proxy.server import chain
from proxy.server.connecterrors import describe_error
from proxy.server.upstream import FORWARD, Key, UpstreamConnection
from proxy.session.errors import UpstreamError
from proxy.sinks.pcap import PcapTap
from proxy.tls.endpoint import TlsClient, TlsHandshakeError
from proxy.via import parse_via


async def connect(
    key: Key,
    timeout: float,
    tls_context: SSL.Context | None,
    tap: PcapTap | None = None,
    alpn: tuple[str, ...] | None = None,
    proxy_tls: ssl.SSLContext | None = None,
) -> UpstreamConnection:
    """Open a new upstream connection (TLS handshake done, if any) or raise ``UpstreamError``.

    ``tls_context`` (:func:`proxy.tls.client.client_context`) is required
    when the key asks for TLS; ``alpn``: the protocols to offer, if not the
    context's (HTTP/1.1); ``proxy_tls``: how to verify an ``https://`` next proxy.
    """
    loop = asyncio.get_running_loop()
    host, port, sni, via = key
    if sni is not None and tls_context is None:
        raise ValueError(f"TLS to {host}:{port} needs a client context")
    conn: UpstreamConnection | None = None
    try:
        tls = TlsClient(tls_context, sni or host, alpn) if tls_context and sni is not None else None
        async with asyncio.timeout(timeout):
            if via is None:
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(key, tap, tls), host, port
                )
            elif (proxy := parse_via(via.removeprefix(FORWARD))).is_http:
                context = (proxy_tls or ssl.create_default_context()) if proxy.tls else None
                conn, rest = await chain.through_http_proxy(
                    proxy, host, port, via.startswith(FORWARD),
                    lambda: UpstreamConnection(key, tap, tls), context,
                )  # fmt: skip
                conn.take_early(rest)
            else:
                sock = await chain.tunnel_through(proxy, host, port)  # SOCKS5
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(key, tap, tls), sock=sock
                )
            if conn.handshake is not None:
                await conn.handshake
                conn.handshake = None
    except TimeoutError as e:
        _abandon(conn)
        e.__traceback__ = None
        where = (
            "" if via is None else f"next proxy {parse_via(via.removeprefix(FORWARD)).address}: "
        )
        raise UpstreamError(f"{where}connect timed out after {timeout:g}s", timeout=True) from None
    except (OSError, TlsHandshakeError, UnicodeError) as e:
        _abandon(conn)
        message = describe_error(e)
        e.__traceback__ = None  # its frames would keep the connection alive
        raise UpstreamError(message) from None
    return conn


def _abandon(conn: UpstreamConnection | None) -> None:
    if conn is None:
        return
    conn.handshake = None
    if conn.transport is not None and not conn.closed:
        conn.closed = True
        conn.transport.abort()
