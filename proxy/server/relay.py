"""Opaque byte relay between a client and an upstream, half-close aware.

Used for CONNECT tunnels, WebSocket connections after the 101, and the raw
``tcp:`` mode. A FIN from one side is passed on with ``write_eof`` while the
other side may still send (RFC 9293 §3.6); the relay ends when both
directions have finished or either side resets. Backpressure: each side's
write buffer above its high-water mark pauses reading on the other side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.flow.record import TunnelInfo
from proxy.rules import TcpPlan
from proxy.server.toxics import Toxics
from proxy.server.transport import reset
from proxy.server.upstream import UpstreamConnection


class Relay:
    """Owns both transports once bytes flow opaquely."""

    def __init__(
        self,
        client: asyncio.Transport,
        upstream: UpstreamConnection,
        on_done: Callable[[TunnelInfo], None],
        write_client: Callable[[bytes], None] | None = None,
        on_client_out: Callable[[bytes], None] | None = None,
        rules: TcpPlan | None = None,
    ) -> None:
        self.client = client
        # Writes to the client go through TLS when the client side is intercepted;
        # then a FIN cannot be passed on (TLS has no half-close), only a close.
        self.write_client = write_client or client.write
        self.half_close = write_client is None
        self.on_client_out = on_client_out  # the pcap tap, when on
        self.upstream = upstream
        self.on_done = on_done
        self.bytes_up = 0
        self.bytes_down = 0
        self.client_close = ""
        self.server_close = ""
        self.done = False
        self._client_paused = False
        upstream.owner = self
        self.toxics = Toxics(self, rules) if rules is not None and rules.matched else None

    def start(self, to_server: bytes, to_client: bytes) -> None:
        if self.toxics is not None:
            self.toxics.start()
        if to_server:
            self.from_client(to_server)
        if to_client:
            self.on_server_data(to_client)

    # client side --------------------------------------------------------------
    def from_client(self, data: bytes) -> None:
        self.bytes_up += len(data)
        if self.toxics is not None:
            self.toxics.data(True, data)
        else:
            self.upstream.write(data)

    def client_eof(self) -> None:
        self.client_close = self.client_close or "fin"
        if self.toxics is not None:
            self.toxics.eof(True)  # the FIN goes on when the toxics say so
        else:
            self.shutdown_toward(True)
        self.maybe_done()

    def shutdown_toward(self, to_server: bool) -> None:
        """Pass a FIN on (write_eof), if that side can take one."""
        if to_server:
            t = self.upstream.transport
            if t is not None and not t.is_closing() and t.can_write_eof():
                t.write_eof()
        elif self.half_close and not self.client.is_closing() and self.client.can_write_eof():
            self.client.write_eof()

    def client_lost(self, exc: Exception | None) -> None:
        if not self.client_close:
            self.client_close = "reset" if exc is not None else "fin"
        if exc is not None or not self.server_close:
            self.upstream.abort() if exc is not None else self.upstream.close()
            self.server_close = self.server_close or "proxy"
        self._finish()

    def client_pause_writing(self) -> None:
        self.upstream.pause_reading()

    def client_resume_writing(self) -> None:
        self.upstream.resume_reading()

    # server side (Owner protocol) ---------------------------------------------
    def on_server_data(self, data: bytes) -> None:
        self.bytes_down += len(data)
        if self.toxics is not None:
            self.toxics.data(False, data)
        else:
            self.client_out(data)

    def client_out(self, data: bytes) -> None:
        if not self.client.is_closing():
            self.write_client(data)
            if self.on_client_out is not None:
                self.on_client_out(data)

    def on_server_eof(self) -> None:
        self.server_close = self.server_close or "fin"
        if not self.half_close:
            self.client_close = self.client_close or "proxy"
        elif self.toxics is not None:
            self.toxics.eof(False)
        else:
            self.shutdown_toward(False)
        self.maybe_done()

    def on_server_lost(self, exc: Exception | None) -> None:
        if not self.server_close:
            self.server_close = "reset" if exc is not None else "fin"
        if exc is not None:
            reset(self.client)  # the server reset: so does the client side
            self.client_close = self.client_close or "proxy"
        elif not self.client_close:
            # The server closed without a FIN we saw: end the client side too.
            self.client.close()
            self.client_close = "proxy"
        self._finish()

    def client_backlog(self, full: bool) -> None:
        """Toxics hold too much for the server: stop (restart) reading the client."""
        if full:
            self.on_server_pause_writing()
        else:
            self.on_server_resume_writing()

    def server_backlog(self, full: bool) -> None:
        """Toxics hold too much for the client: stop (restart) reading the server."""
        if full:
            self.upstream.pause_reading()
        else:
            self.upstream.resume_reading()

    def reset(self) -> None:
        """A reset_peer toxic: abort both sides (RST)."""
        self.client_close = self.client_close or "reset"
        self.server_close = self.server_close or "reset"
        self.upstream.abort()
        reset(self.client)
        self._finish()

    def on_server_pause_writing(self) -> None:
        if not self._client_paused:
            self._client_paused = True
            self.client.pause_reading()

    def on_server_resume_writing(self) -> None:
        if self._client_paused:
            self._client_paused = False
            self.client.resume_reading()

    # ending -------------------------------------------------------------------
    def maybe_done(self) -> None:
        if self.toxics is not None and (self.toxics.to_server.busy or self.toxics.to_client.busy):
            return  # bytes held by toxics still have to go; their Shutdown/Close follow
        if self.client_close and self.server_close:
            self.upstream.close()
            self.client.close()

    def close(self, reason: str) -> None:
        """End the relay from our side (timeout, shutdown)."""
        self.client_close = self.client_close or reason
        self.server_close = self.server_close or reason
        self.upstream.close()
        self.client.close()
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.toxics is not None:
            self.toxics.cancel()
        self.on_done(
            TunnelInfo(self.bytes_up, self.bytes_down, self.client_close, self.server_close)
        )
