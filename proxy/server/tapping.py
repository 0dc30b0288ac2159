"""``--pcap`` for one client connection: what it sent and got, in a TCP stream of its own.

``ClientTap`` opens the connection's synthetic conversation, writes the
plaintext both ways (decrypted when the proxy terminates TLS), notes on a
client's bytes which flow they began (``tapproxy flow ID``), and, when the
connection turns to HTTP/2 after a CONNECT and a ClientHello (ALPN h2),
starts a new conversation so that a dissector meets the HTTP/2 preface at
the start of a stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from proxy.layers.commands import CLIENT, Command
from proxy.layers.events import DataReceived, Event
from proxy.sinks.pcap import PcapTap

Address = tuple[str, int]


class TappedLayers(Protocol):
    @property
    def flow_id(self) -> str | None: ...
    @property
    def http2(self) -> bool: ...

    def handle(self, event: Event) -> list[Command]: ...


class ClientTap:
    __slots__ = ("client", "http2", "key", "local", "tap")

    def __init__(self, tap: PcapTap, key: int, client: Address, local: Address) -> None:
        self.tap = tap
        self.key = key
        self.client = client
        self.local = local
        self.http2 = False  # the client's HTTP/2 has a stream of its own
        tap.open(key, client, local)

    def feed(self, layers: TappedLayers, data: bytes, run: Callable[[list[Command]], None]) -> None:
        """Tap the client's ``data``, then hand it to the layers; note the flow it began."""
        tap, key = self.tap, self.key
        if layers.http2 and not self.http2:  # chosen by ALPN before this data came
            self.http2 = True
            tap.restart(key, self.client, self.local)
        tap.data(key, True, data, await_note=True)
        before = layers.flow_id
        run(layers.handle(DataReceived(CLIENT, data)))
        after = layers.flow_id
        self.http2 = self.http2 or layers.http2  # the preface began this stream
        tap.note(key, f"tapproxy flow {after}" if after and after != before else None)

    def sent(self, data: bytes) -> None:
        self.tap.data(self.key, False, data)

    def close(self, reset: bool) -> None:
        self.tap.close(self.key, reset=reset, from_client=True)
