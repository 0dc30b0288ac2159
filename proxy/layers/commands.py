"""Commands a layer asks the IO shell to carry out, each naming its connection.

A layer never touches a socket: it answers each event with a list of these,
in order. The shell executes them and reports the outcome as events
(``proxy.layers.events``). Server connections are named by the layer that
opens them (``OpenServer.conn``), so a layer may hold several at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from proxy.flow.hooks import HookKind, ScriptedMessage
from proxy.flow.record import FlowSource
from proxy.http1.events import RequestHead


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class Conn:
    """A connection's identity within one client connection's layers."""

    role: Role
    id: int
    # Read for every command the shell carries out: a slot, not a property.
    is_client: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_client", self.role is Role.CLIENT)


CLIENT = Conn(Role.CLIENT, 0)


def server_conn(n: int) -> Conn:
    return Conn(Role.SERVER, n)


@dataclass(frozen=True, slots=True)
class SendData:
    conn: Conn
    data: bytes
    # Not before this time (the layer's clock): rule faults (delay, bandwidth).
    at: float | None = None


@dataclass(frozen=True, slots=True)
class TlsRequest:
    """TLS to the server: the name to send and verify, the ALPN protocols to offer."""

    sni: str
    alpn: tuple[str, ...] = ("http/1.1",)


@dataclass(frozen=True, slots=True)
class OpenServer:
    """Connect (or take a pooled connection) to ``host:port`` as ``conn``.

    Answered with ``ServerOpened`` or ``ServerFailed`` naming ``conn``.
    ``via``: a next proxy to connect through (upstream chaining, a URL from
    ``proxy.session.routing``); None: direct. Through it the shell opens a
    tunnel to ``host:port`` (HTTP CONNECT or SOCKS5), then TLS inside it;
    ``forward`` (an HTTP next proxy, plain HTTP): connect to the next proxy
    itself, to which the session sends requests in absolute-form.
    """

    conn: Conn
    host: str
    port: int
    tls: TlsRequest | None = None
    reuse: bool = True  # a pooled idle connection may be used
    via: str | None = None
    forward: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseServer:
    """Done with server connection ``conn``: pool it or close it."""

    conn: Conn
    reusable: bool
    abort: bool = False  # not reusable and cut short: reset it


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Half-close toward ``conn`` (a FIN), at ``at`` or now, after what is queued for it."""

    conn: Conn
    at: float | None = None


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close ``conn`` once everything queued for it is written; ``abort``: reset it now."""

    conn: Conn
    abort: bool = False
    discard: bool = False  # drop writes still held for later (by rules) instead of waiting


@dataclass(frozen=True, slots=True)
class PauseReading:
    """Stop reading from ``conn``: the layer has enough buffered."""

    conn: Conn


@dataclass(frozen=True, slots=True)
class ResumeReading:
    conn: Conn


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Send ``TimerFired(token)`` after ``seconds`` (rule delays, TCP rules, sniffing)."""

    seconds: float
    token: int = 0


@dataclass(frozen=True, slots=True)
class StartClientTls:
    """Terminate the client's TLS: a leaf for ``name`` (plus the names the
    upstream ``host:port`` presents for ``sni``, looked up once), ALPN chosen
    from ``alpn`` among ``offered``; ``data`` is the ClientHello already read. Answered with
    ``ClientTlsEstablished`` or ``ClientTlsFailed``."""

    host: str
    port: int
    name: str
    sni: str | None
    offered: tuple[str, ...]
    data: bytes
    probe: bool = True  # connect upstream first to copy its certificate's names
    # The protocols we speak, in our order of preference; the shell picks the
    # first the client offered (none offered: HTTP/1.1).
    alpn: tuple[str, ...] = ("http/1.1",)


@dataclass(frozen=True, slots=True)
class StartTunnel:
    """From now on relay opaque bytes between the client and ``server`` (CONNECT, 101).

    ``to_server``/``to_client`` are bytes already read past the last HTTP
    message; they go out first. The shell reports the end with ``TunnelEnded``.
    """

    server: Conn
    to_server: bytes = b""
    to_client: bytes = b""
    # Server replay: ``server`` is no connection, and this recorded WebSocket
    # session answers the client (``proxy.layers.websocket.replayed``).
    replay: tuple[ScriptedMessage, ...] | None = None


@dataclass(frozen=True, slots=True)
class Intercept:
    """The client was told the tunnel is up: hand its next bytes to the
    next-layer decision for ``host:port`` (TLS, plain HTTP or raw)."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class StartHttp2:
    """The client asked for ``Upgrade: h2c`` and was told ``101``: speak HTTP/2
    from now on (RFC 7540 §3.2), with ``request`` as stream 1. ``settings``:
    its HTTP2-Settings value; ``data``: bytes already read past the request."""

    settings: bytes
    request: RequestHead
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Hook:
    """A lifecycle point of ``flow`` for subscribers (sinks, the UI, addons).

    ``DONE`` carries a finished flow; ``to_record`` may then run on any thread.
    With ``hold`` the layer waits, its flow paused, until the shell feeds back
    ``HookResumed`` with the subscribers' verdict.
    """

    kind: HookKind
    flow: FlowSource
    stream: int = 0
    hold: bool = False  # the flow waits for ``HookResumed`` (a holdable point)


Command = (
    SendData
    | OpenServer
    | ReleaseServer
    | CloseConnection
    | Shutdown
    | StartClientTls
    | PauseReading
    | ResumeReading
    | SetTimer
    | StartTunnel
    | Intercept
    | StartHttp2
    | Hook
)
