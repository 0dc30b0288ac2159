"""Opening a server connection through a next proxy (upstream chaining).

``through_http_proxy`` connects to an ``http://`` or ``https://`` next proxy
(over TLS to the proxy itself for the latter, verified for its name) and
asks it for a tunnel to ``host:port``: an HTTP ``CONNECT`` (RFC 9110 §9.3.6,
with ``Proxy-Authorization: Basic`` from the credentials in the route), its
answer read with our strict HTTP/1 codec. ``tunnel_through`` runs the SOCKS5
client handshake (RFC 1928, RFC 1929 for username/password), names sent for
the next proxy to resolve, and returns the socket carrying the tunnel. TLS to
the origin, if asked, then runs inside the tunnel as on a direct connection
(``proxy.server.opening.connect``).

Every failure is an ``UpstreamError`` whose message starts with ``next
proxy HOST:PORT``, so a 502 says whether the next proxy or the origin
failed: ``next proxy 127.0.0.1:3128: 407 Proxy Authentication Required``,
``next proxy 127.0.0.1:3128: connection refused``, ``next proxy
127.0.0.1:1080 could not reach the origin: host unreachable (reply 0x04)``.

No byte the origin sent is lost: what came right behind the CONNECT answer
(a server that speaks first) is handed to the connection that takes the
transport over (``UpstreamConnection.take_early``); a SOCKS5 reply has a
known length, so nothing past it is read. The CONNECT answer is read by a
transport's protocol, not by peeking at the socket: that works the same on
every event loop (uvloop cannot watch a socket's readiness and then hand the
socket to a transport).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import TypeVar

from proxy.http1 import ProtocolError, ResponseHead, ResponseParser
from proxy.layers import socks5wire as wire
from proxy.session.errors import UpstreamError
from proxy.session.routing import NextProxy, proxy_authorization

ProtocolT = TypeVar("ProtocolT", bound=asyncio.Protocol)
MAX_HEAD = 16 * 1024
# Answers of a next proxy that say the origin could not be reached (RFC 9110 §15.6.3, §15.6.5).
ORIGIN_STATUSES = frozenset({502, 503, 504})
ORIGIN_REPLIES = frozenset(
    {wire.Reply.NETWORK_UNREACHABLE, wire.Reply.HOST_UNREACHABLE, wire.Reply.CONNECTION_REFUSED,
     wire.Reply.TTL_EXPIRED}
)  # fmt: skip


class ChainError(Exception):
    """The next proxy misbehaved or refused; the message says how."""


async def tunnel_through(proxy: NextProxy, host: str, port: int) -> socket.socket:
    """A connected socket to a SOCKS5 next proxy carrying a tunnel to ``host:port``."""
    loop = asyncio.get_running_loop()
    sock = await open_socket(proxy)
    try:
        await _socks5_connect(loop, sock, proxy, host, port)
    except ChainError as e:
        sock.close()
        raise UpstreamError(f"next proxy {proxy.address}{e}") from None
    except OSError as e:
        sock.close()
        raise UpstreamError(f"next proxy {proxy.address}: {_os_error(e)}") from None
    except BaseException:
        sock.close()
        raise
    return sock


async def open_socket(proxy: NextProxy) -> socket.socket:
    """A TCP connection to the next proxy itself (every address it resolves to, in turn)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UpstreamError(
            f"next proxy {proxy.address}: name not resolved ({e.strerror})"
        ) from None
    last: OSError | None = None
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
        except OSError as e:
            sock.close()
            last = e
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    error = _os_error(last) if last is not None else "no address"
    raise UpstreamError(f"next proxy {proxy.address}: {error}")


def _os_error(e: OSError) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset"
    return (e.strerror or str(e) or type(e).__name__).lower()


# -- an HTTP(S) next proxy: CONNECT read by a protocol -----------------------------
class _Answer(asyncio.Protocol):
    """Reads the next proxy's answer to CONNECT (over TLS to an ``https://`` one)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer and not self.done.done():
            self.done.set_result(None)
        elif len(self.buffer) > MAX_HEAD and not self.done.done():
            self.done.set_exception(ChainError(f": answer head over {MAX_HEAD} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ChainError(": closed the connection without answering CONNECT"))


async def through_http_proxy(
    proxy: NextProxy,
    host: str,
    port: int,
    forward: bool,
    factory: Callable[[], ProtocolT],
    context: ssl.SSLContext | None,
) -> tuple[ProtocolT, bytes]:
    """A connection to an ``http://`` next proxy, or over TLS (``context``, verified
    for its name) to an ``https://`` one, then, unless ``forward``, CONNECT to
    ``host:port`` through it. The transport is handed to a protocol from
    ``factory``; returned with the bytes that came after the proxy's answer
    (the origin's, for whoever owns the connection next)."""
    loop = asyncio.get_running_loop()
    where = f"next proxy {proxy.address}"
    try:
        transport, answer = await loop.create_connection(
            _Answer,
            proxy.host,
            proxy.port,
            ssl=context,
            server_hostname=proxy.host if context is not None else None,
        )
    except ssl.SSLCertVerificationError as e:
        raise UpstreamError(
            f"{where}: certificate verification failed: {e.verify_message}"
        ) from None
    except ssl.SSLError as e:
        raise UpstreamError(f"{where}: TLS handshake failed: {e.reason or e}") from None
    except OSError as e:
        raise UpstreamError(f"{where}: {_os_error(e)}") from None
    try:
        rest = b""
        if not forward:
            transport.write(connect_request(proxy, host, port))
            await answer.done
            end = answer.buffer.index(b"\r\n\r\n") + 4
            check_answer(read_connect_answer(answer.buffer[:end]), host, port)
            rest = answer.buffer[end:]
        protocol = factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return protocol, rest
    except ChainError as e:
        transport.abort()
        raise UpstreamError(f"{where}{e}") from None
    except BaseException:
        transport.abort()
        raise


# -- HTTP CONNECT ------------------------------------------------------------------
def connect_request(proxy: NextProxy, host: str, port: int) -> bytes:
    """``CONNECT host:port`` in authority-form (RFC 9112 §3.2.3) with Host and credentials."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    fields = [(b"Host", authority.encode("idna")), *proxy_authorization(proxy)]
    lines = [b"CONNECT " + authority.encode("idna") + b" HTTP/1.1"]
    lines += [k + b": " + v for k, v in fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def read_connect_answer(data: bytes) -> ResponseHead:
    """The next proxy's answer head, parsed strictly (``ChainError`` if it is not HTTP)."""
    parser = ResponseParser()
    parser.expect(b"CONNECT")
    parser.feed(data)
    try:
        event = parser.next_event()
    except ProtocolError as e:
        raise ChainError(f" answered CONNECT with something else than HTTP: {e.message}") from None
    if not isinstance(event, ResponseHead):
        raise ChainError(" answered CONNECT with an incomplete head")
    return event


def check_answer(answer: ResponseHead, host: str, port: int) -> None:
    """A 2xx opens the tunnel (RFC 9110 §9.3.6); anything else says who failed."""
    if 200 <= answer.status < 300:
        return
    status = f"{answer.status} {answer.reason.decode('latin-1')}".strip()
    if answer.status in ORIGIN_STATUSES:
        raise ChainError(f" could not reach the origin {host}:{port}: {status}")
    raise ChainError(f": {status}")


# -- SOCKS5 ------------------------------------------------------------------------
async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = await loop.sock_recv(sock, n - len(out))
        if not chunk:
            raise ChainError(": closed the connection during the SOCKS5 handshake")
        out += chunk
    return out


async def _socks5_connect(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, proxy: NextProxy, host: str, port: int
) -> None:
    methods = [wire.Method.NO_AUTH]
    if proxy.user is not None:
        methods = [wire.Method.USER_PASS, wire.Method.NO_AUTH]
    await loop.sock_sendall(sock, bytes((wire.VERSION, len(methods), *methods)))
    version, method = await _recv_exactly(loop, sock, 2)
    if version != wire.VERSION:
        raise ChainError(f": not a SOCKS5 server (version byte 0x{version:02x})")
    if method == wire.Method.USER_PASS:
        if proxy.user is None:
            raise ChainError(": asks for a user name and password; give them in the route URL")
        await loop.sock_sendall(sock, wire.user_pass_request(proxy.user, proxy.password or ""))
        _, status = await _recv_exactly(loop, sock, 2)
        if status != 0:  # RFC 1929 §2: 0x00 success, anything else failure
            raise ChainError(f": user name and password refused (RFC 1929 status 0x{status:02x})")
    elif method != wire.Method.NO_AUTH:
        raise ChainError(": accepts none of our authentication methods")
    try:
        address = wire.encode_address(host, port)
    except ValueError as e:
        raise ChainError(f": {e}") from None
    await loop.sock_sendall(sock, bytes((wire.VERSION, wire.Cmd.CONNECT, 0)) + address)
    version, code, _, atyp = await _recv_exactly(loop, sock, 4)
    if code in ORIGIN_REPLIES:
        raise ChainError(f" could not reach the origin {host}:{port}: {wire.reply_text(code)}")
    if code != wire.Reply.SUCCEEDED:
        raise ChainError(f": refused CONNECT to {host}:{port}: {wire.reply_text(code)}")
    rest = 2 + (4 if atyp == wire.Atyp.IPV4 else 16 if atyp == wire.Atyp.IPV6 else 0)
    if atyp == wire.Atyp.DOMAIN:
        rest = 2 + (await _recv_exactly(loop, sock, 1))[0]
    await _recv_exactly(loop, sock, rest)  # BND.ADDR and BND.PORT: not needed for CONNECT
