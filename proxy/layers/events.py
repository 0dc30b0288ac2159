"""What the IO shell reports to a layer, each event naming its connection."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from proxy.flow.hooks import HookKind, Verdict
from proxy.flow.record import Address, TlsInfo, TlsSide, TunnelInfo
from proxy.layers.commands import Conn


@dataclass(frozen=True, slots=True)
class DataReceived:
    conn: Conn
    data: bytes


@dataclass(frozen=True, slots=True)
class EofReceived:
    """``conn`` ended its stream: a FIN, close_notify, or (for a server) a loss."""

    conn: Conn


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """``conn`` is gone: closed (by either side) or, with ``reset``, reset."""

    conn: Conn
    reset: bool = False


@dataclass(frozen=True, slots=True)
class TooManyConnections:
    """The shell is over ``--max-connections``: refuse this new client connection."""


@dataclass(frozen=True, slots=True)
class Stopping:
    """The proxy is shutting down and ends this connection now."""


@dataclass(frozen=True, slots=True)
class ClientTlsEstablished:
    tls: TlsSide


@dataclass(frozen=True, slots=True)
class ClientTlsFailed:
    """The client's TLS handshake failed: ``alert`` it sent, or ``message`` of
    another failure; both None: it closed the connection during the handshake."""

    alert: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ServerOpened:
    conn: Conn
    address: Address
    reused: bool
    tls: TlsSide | None = None


@dataclass(frozen=True, slots=True)
class ServerFailed:
    """``conn`` could not be opened; ``timeout`` selects 504 over 502."""

    conn: Conn
    message: str
    timeout: bool = False


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A ``SetTimer`` ran out."""

    token: int = 0


class TimeoutKind(Enum):
    """Which inactivity limit applies now; values name ``Timeouts`` fields."""

    CLIENT_IDLE = "client_idle"
    CLIENT_HEAD = "client_head"
    RESPONSE_HEAD = "response_head"
    TRANSFER_IDLE = "transfer_idle"
    TUNNEL_IDLE = "tunnel_idle"
    TLS_HANDSHAKE = "tls_handshake"
    HELD = "held"  # a flow waits at a breakpoint or for an addon


@dataclass(frozen=True, slots=True)
class TimedOut:
    kind: TimeoutKind


@dataclass(frozen=True, slots=True)
class HookResumed:
    """A held hook of the current flow was resumed with ``verdict``."""

    kind: HookKind
    verdict: Verdict
    stream: int = 0


@dataclass(frozen=True, slots=True)
class TunnelEnded:
    """The tunnel (or intercepted connection) ended; ``info`` None: no relay ran."""

    info: TunnelInfo | None
    error: str | None = None
    tls: TlsInfo | None = None
    tcp_rules: tuple[str, ...] = ()


Event = (
    DataReceived
    | EofReceived
    | ConnectionClosed
    | TooManyConnections
    | Stopping
    | ClientTlsEstablished
    | ClientTlsFailed
    | ServerOpened
    | ServerFailed
    | TimerFired
    | TimedOut
    | HookResumed
    | TunnelEnded
)
