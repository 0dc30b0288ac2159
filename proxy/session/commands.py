"""Commands a session asks the IO shell to carry out.

The session never touches a socket; it answers each event with a list of
these, in order. The shell (``proxy.server``) executes them and feeds the
outcome back as events (``server_connected``, ``server_failed``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.flow.record import FlowRecord, FlowSource


@dataclass(frozen=True, slots=True)
class SendClient:
    data: bytes
    # Not before this time (the session's clock): rule faults (delay, bandwidth).
    at: float | None = None


@dataclass(frozen=True, slots=True)
class SendServer:
    data: bytes


@dataclass(frozen=True, slots=True)
class OpenServer:
    """Connect (or take a pooled connection) to ``host:port``; answer with
    ``server_connected`` or ``server_failed``."""

    host: str
    port: int
    tls: bool = False
    sni: str | None = None
    reuse: bool = True  # a pooled idle connection may be used


@dataclass(frozen=True, slots=True)
class ReleaseServer:
    """Done with the current server connection: pool it or close it."""

    reusable: bool


@dataclass(frozen=True, slots=True)
class CloseClient:
    """Close the client connection once everything queued is written."""

    abort: bool = False  # reset instead of a graceful close


@dataclass(frozen=True, slots=True)
class PauseClient:
    """Stop reading from the client: the session has enough buffered."""


@dataclass(frozen=True, slots=True)
class ResumeClient:
    pass


@dataclass(frozen=True, slots=True)
class Wait:
    """Call ``resume`` after ``seconds`` (a rule's request delay)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class StartTunnel:
    """From now on relay opaque bytes both ways (CONNECT, 101 Upgrade).

    ``to_server``/``to_client`` are bytes already read past the last HTTP
    message; they go out first. The shell reports the end through
    ``tunnel_closed``.
    """

    to_server: bytes = b""
    to_client: bytes = b""


@dataclass(frozen=True, slots=True)
class Intercept:
    """The client was told the tunnel is up; look at its first bytes and
    terminate TLS (or decode plain HTTP) for ``host:port`` instead of relaying."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class FlowDone:
    flow: FlowSource

    @property
    def record(self) -> FlowRecord:
        return self.flow.to_record()


Command = (
    SendClient
    | SendServer
    | OpenServer
    | ReleaseServer
    | CloseClient
    | PauseClient
    | ResumeClient
    | StartTunnel
    | Wait
    | Intercept
    | FlowDone
)
