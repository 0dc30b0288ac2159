"""The next-layer choice: what the client speaks once a tunnel we intercept is up.

After ``200 Connection established`` (or on a reverse listener with
interception on) the client's first bytes decide:

* a TLS ClientHello: read SNI and ALPN; unless the host is ignored (by
  ``--ignore-hosts`` on ``sni:port``) or remembered as pinning, ask the shell
  to terminate the client's TLS with a leaf for that name
  (``StartClientTls``), then decode what flows as HTTP;
* something that looks like an HTTP request: decode it as HTTP to host:port;
* anything else, or nothing within a second (server-speaks-first
  protocols): relay the bytes untouched.

A client that aborts the handshake after seeing our certificate most likely
does not trust the CA or pins certificates; that is recorded plainly, and
with ``--auto-passthrough`` later connections to that host are relayed. The
layer only decides: ``choice`` says what comes next, and the root layer
(``proxy.layers.root``) builds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.flow.record import TlsInfo, TlsSide
from proxy.layers.commands import Command, SetTimer, StartClientTls
from proxy.layers.events import (
    ClientTlsEstablished,
    ClientTlsFailed,
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
    TimedOut,
    TimerFired,
)
from proxy.tls.clienthello import ClientHello, ClientHelloError, looks_like_tls, parse_client_hello
from proxy.tls.policy import InterceptPolicy, PassthroughMemory

_HTTP_START = re.compile(rb"[A-Z]{3,10} ")
# Alerts by which a client says it does not accept our certificate (RFC 8446 §6.2).
REJECTION_ALERTS = frozenset(
    {
        "unknown_ca", "bad_certificate", "certificate_unknown", "unsupported_certificate",
        "certificate_expired", "certificate_revoked", "access_denied",
    }
)  # fmt: skip
MAX_HELLO = 128 * 1024
SNIFF_TIMEOUT = 1.0
SNIFF_TOKEN = 1  # this layer's timer


@dataclass(frozen=True, slots=True)
class RelayRaw:
    """Connect to the target and relay ``data`` and what follows untouched."""

    data: bytes
    tls: TlsInfo | None = None  # a TLS connection passed through: its ClientHello's facts
    eof: bool = False  # the client already ended its stream


@dataclass(frozen=True, slots=True)
class DecodeHttp:
    """Decode ``data`` and what follows as HTTP; ``tls``: the client TLS we terminated."""

    data: bytes
    tls: TlsSide | None = None
    name: str | None = None  # the name the client asked for (SNI), for the upstream
    eof: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Nothing to relay or decode: the client refused our certificate, timed out
    in its handshake, or was gone before its first bytes said what it speaks."""

    message: str
    tls: TlsInfo | None


Choice = RelayRaw | DecodeHttp | GiveUp


@dataclass(frozen=True, slots=True)
class InterceptSettings:
    """What interception needs to decide (shared by all connections)."""

    policy: InterceptPolicy
    pinned: PassthroughMemory
    ca_path: str  # where the CA certificate is, for messages
    http2: bool = True  # offer h2 in ALPN to clients that offer it
    # Connect upstream first to copy its certificate's names; off when nothing
    # may reach the network (server replay answers every request).
    probe: bool = True


class NextLayer:
    """Sniffs the client's first bytes for ``host:port``; ``choice`` is the outcome.

    ``listener``: a reverse listener with interception on. There clients
    always speak first (no silent-client rule), TLS is always terminated,
    and anything else is the listener's own HTTP.
    """

    __slots__ = ("buffer", "choice", "handshaking", "hello", "host", "listener", "port", "settings")

    def __init__(
        self, host: str, port: int, settings: InterceptSettings, listener: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self.settings = settings
        self.listener = listener
        self.buffer = bytearray()
        self.hello: ClientHello | None = None
        self.handshaking = False  # the shell is terminating the client's TLS
        self.choice: Choice | None = None

    def start(self) -> list[Command]:
        return [] if self.listener else [SetTimer(SNIFF_TIMEOUT, SNIFF_TOKEN)]

    def handle(self, event: Event) -> list[Command]:
        if self.choice is not None:
            return []
        if isinstance(event, DataReceived) and event.conn.is_client:
            if not self.handshaking:
                self.buffer += event.data
                return self._sniff(eof=False)
        elif isinstance(event, EofReceived) and event.conn.is_client:
            return self._client_gone()
        elif isinstance(event, ConnectionClosed) and event.conn.is_client:
            if not self.handshaking:  # gone, not half-closed: there is nobody to relay for
                self.choice = GiveUp("client: gone before its first bytes were decided", None)
                return []
            return self._client_gone()
        elif isinstance(event, TimerFired) and event.token == SNIFF_TOKEN:
            if not self.handshaking:  # nothing (or nothing useful) within a second
                self._decide_raw(eof=False)
        elif isinstance(event, ClientTlsEstablished):
            self.choice = DecodeHttp(b"", event.tls, self._name())
        elif isinstance(event, ClientTlsFailed):
            self._handshake_failed(event)
        elif isinstance(event, TimedOut):
            self.choice = GiveUp("timeout during the client's TLS handshake", self._tls_info())
        return []

    def _client_gone(self) -> list[Command]:
        if self.handshaking:
            self._handshake_failed(ClientTlsFailed())
            return []
        return self._sniff(eof=True)

    # -- sniffing ---------------------------------------------------------------
    def _sniff(self, eof: bool) -> list[Command]:
        data = bytes(self.buffer)
        if len(data) < 3:
            if eof:
                self._decide_raw(eof=True)
            return []
        if looks_like_tls(data):
            try:
                hello = parse_client_hello(data)
            except ClientHelloError:
                self._decide_raw(eof)
                return []
            if hello is None:
                if len(data) > MAX_HELLO or eof:
                    self._decide_raw(eof)
                return []
            self.hello = hello
            return self._decide_tls(data)
        if _HTTP_START.match(data):
            self.choice = DecodeHttp(data, eof=eof)
            return []
        self._decide_raw(eof)
        return []

    def _decide_raw(self, eof: bool, tls: TlsInfo | None = None) -> None:
        data = bytes(self.buffer)
        self.buffer.clear()
        if self.listener:  # not TLS: the listener's own HTTP session reads it
            self.choice = DecodeHttp(data, eof=eof)
        else:
            self.choice = RelayRaw(data, tls, eof)

    def _decide_tls(self, data: bytes) -> list[Command]:
        hello = self.hello
        assert hello is not None
        name = self._name()
        offered = self._offered()
        if not self.listener and (
            not self.settings.policy.intercept(name, self.port)
            or (name, self.port) in self.settings.pinned
        ):
            side = TlsSide(sni=hello.sni, offered_alpn=offered)
            self._decide_raw(eof=False, tls=TlsInfo(False, client=side))
            return []
        self.handshaking = True
        self.buffer.clear()
        probe = not self.listener and self.settings.probe
        alpn = ("h2", "http/1.1") if self.settings.http2 else ("http/1.1",)
        return [StartClientTls(self.host, self.port, name, hello.sni, offered, data, probe, alpn)]

    def _name(self) -> str:
        return (self.hello.sni if self.hello else None) or self.host

    def _offered(self) -> tuple[str, ...]:
        if self.hello is None:
            return ()
        return tuple(p.decode("latin-1") for p in self.hello.alpn_protocols)

    def _tls_info(self) -> TlsInfo:
        sni = self.hello.sni if self.hello else None
        return TlsInfo(True, client=TlsSide(sni=sni, offered_alpn=self._offered()))

    # -- the handshake's end -------------------------------------------------------
    def _handshake_failed(self, event: ClientTlsFailed) -> None:
        """Only a certificate alert, or a close mid-handshake, counts as refusing
        our certificate (and may pin the host with --auto-passthrough); any
        other failure (garbage, a bad record) is recorded as what it is."""
        name = self._name()
        if event.message is not None and event.alert not in REJECTION_ALERTS:
            message = f"TLS handshake with the client failed for {name}: {event.message}"
            self.choice = GiveUp(message, self._tls_info())
            return
        if event.alert:
            how = f"alert {event.alert}"
        else:
            how = "closed the connection during the handshake"
        message = (
            f"client rejected the proxy's certificate for {name} ({how}); "
            f"make it trust the CA ({self.settings.ca_path}, or browse http://tapproxy.ca/ "
            f"through the proxy)"
        )
        if self.settings.policy.auto_passthrough:
            self.settings.pinned.add(name, self.port)
            message += "; later connections to this host will be passed through"
        self.choice = GiveUp(message, self._tls_info())
