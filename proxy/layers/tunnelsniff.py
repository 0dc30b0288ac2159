"""Is a CONNECT tunnel relayed as is really HTTP/2 with prior knowledge?

gRPC clients configured with ``grpc_proxy``/``http_proxy`` send CONNECT and
then the HTTP/2 preface in clear (RFC 9113 §3.3). No certificate is needed
to decode that, so the root layer watches the first bytes of every relayed
CONNECT: the client's preface hands the connection to HTTP/2; anything else
is relayed from its first byte. An HTTP/2 server greets first with SETTINGS
(§3.4), so a server whose first bytes are a SETTINGS frame is held back
until the client's first bytes decide; a server that says anything else
first speaks another protocol, and the relay starts at once.
"""

from __future__ import annotations

from enum import Enum

from proxy.layers.commands import CLIENT
from proxy.layers.events import ConnectionClosed, DataReceived, EofReceived, Event
from proxy.session.refusals import H2_PREFACE


def preface(probe: bytearray, data: bytes) -> bool | None:
    """Add ``data`` to the first bytes seen: True, the HTTP/2 preface (RFC 9113
    §3.4); False, something else; None, too few bytes yet to tell."""
    probe += data
    if len(probe) < len(H2_PREFACE) and H2_PREFACE.startswith(probe):
        return None
    return bytes(probe[: len(H2_PREFACE)]) == H2_PREFACE


def _settings_frame(data: bytes) -> bool:
    """Starts with an HTTP/2 SETTINGS frame header: type 4 on stream 0 (RFC 9113 §6.5)."""
    return len(data) >= 9 and data[3] == 4 and data[5:9] == b"\0\0\0\0"


class Verdict(Enum):
    WAIT = "wait"  # not yet known
    HTTP2 = "http2"  # the client sent the preface: ``client`` holds its bytes
    RELAY = "relay"  # not HTTP/2: ``replay`` are the events to relay, in order


class TunnelSniff:
    __slots__ = ("client", "replay", "server")

    def __init__(self) -> None:
        self.client = bytearray()  # the client's first bytes
        self.server: list[Event] = []  # the server's greeting, held back
        self.replay: list[Event] = []

    def feed(self, event: DataReceived | EofReceived | ConnectionClosed) -> Verdict:
        """A connection's data or end (other events pass the sniff by)."""
        if type(event) is DataReceived and event.conn.is_client:
            verdict = preface(self.client, event.data)
            if verdict is None:
                return Verdict.WAIT
            if verdict:
                return Verdict.HTTP2
            return self._relay(DataReceived(CLIENT, bytes(self.client)))
        if type(event) is DataReceived and not self.server and _settings_frame(event.data):
            self.server.append(event)  # an HTTP/2 server's greeting: wait for the client
            return Verdict.WAIT
        held = [DataReceived(CLIENT, bytes(self.client))] if self.client else []
        return self._relay(*held, event)

    def _relay(self, *events: Event) -> Verdict:
        self.replay = [*self.server, *events]
        return Verdict.RELAY
