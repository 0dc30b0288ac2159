"""The client's end of the socket, as the commands act on it.

``ClientEnd`` carries out the client-side half of the commands that are
not plain sends: writes a rule timed (``DelayedWriter``, in order with what
is already queued), half-close (after the timed writes), close (after them,
unless discarded or aborted; with the TLS close_notify when we terminate
the client's TLS), and the reasons reading from the client is paused
(``BACKLOG``: the layers have enough unprocessed bytes; ``PEER``: a server
cannot take more), with the reads an event loop still delivers while paused
held back until reading resumes. ``proxy.server.client.ClientConnection``
owns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from proxy.layers.commands import CloseConnection, SendData, Shutdown
from proxy.server.pacing import DelayedWriter
from proxy.server.transport import reset
from proxy.tls.endpoint import TlsEndpoint

BACKLOG, PEER = 1, 2  # why reading from the client is paused
EOF = b""  # in ``ClientEnd.held``: the client's FIN (a read is never empty)


class ClientEndHost(Protocol):
    """The client connection whose socket this is."""

    transport: asyncio.Transport | None
    tls: TlsEndpoint | None

    @property
    def closed(self) -> bool: ...
    def write_client(self, data: bytes) -> None: ...
    def loop_time(self, at: float | None) -> float: ...
    def take_read(self, data: bytes) -> None: ...
    def take_eof(self) -> bool: ...


class ClientEnd:
    __slots__ = ("_backlog", "_paused", "held", "host", "writer")

    def __init__(self, host: ClientEndHost, backlog: Callable[[bool], None]) -> None:
        self.host = host
        self._backlog = backlog  # told when the timed writes to the client fill up
        self.writer: DelayedWriter | None = None  # timed writes to the client
        self._paused = 0  # bit set of reasons reading from the client is paused
        #: Reads the event loop delivered while paused (uvloop reads once after
        #: ``connection_made`` even when it paused reading), ``EOF`` for the
        #: client's FIN behind them: the layers get them in order when reading
        #: resumes, as the pause promised.
        self.held: list[bytes] = []

    def cancel(self) -> None:
        """The client is gone: what is still timed for it is dropped."""
        if self.writer is not None:
            self.writer.cancel()
            self.writer = None  # its write callback is a bound method of the connection

    def client_writer(self) -> DelayedWriter:
        if self.writer is None:
            self.writer = DelayedWriter(self.host.write_client, self._backlog)
        return self.writer

    def send_later(self, cmd: SendData) -> None:
        """A send to the client a rule delayed or paced, in order with what is queued."""
        self.client_writer().write_at(self.host.loop_time(cmd.at), cmd.data)

    def shutdown(self, cmd: Shutdown) -> None:
        if cmd.at is not None or self.writer is not None:
            self.client_writer().call_at(self.host.loop_time(cmd.at), self._write_eof)
        else:
            self._write_eof()

    def _write_eof(self) -> None:
        t = self.host.transport
        if t is not None and not t.is_closing() and t.can_write_eof():
            t.write_eof()

    def close(self, cmd: CloseConnection) -> None:
        host = self.host
        transport = host.transport
        if transport is None:
            return
        writer = self.writer
        if writer is not None and cmd.discard:
            writer.cancel()
        elif writer is not None and writer.busy and not cmd.abort:
            # Close after what rules delayed has gone out; then for real.
            self.writer = None
            writer.call_at(0.0, lambda: self.close(cmd))
            return
        if cmd.abort:
            reset(transport)
            return
        if host.tls is not None and host.tls.handshake_done and not transport.is_closing():
            transport.write(host.tls.close())
        transport.close()

    @property
    def paused(self) -> bool:
        return bool(self._paused)

    def pause(self, reason: int) -> None:
        if not self._paused and self.host.transport is not None:
            self.host.transport.pause_reading()
        self._paused |= reason

    def unpause(self, reason: int) -> None:
        was = self._paused
        self._paused &= ~reason
        host = self.host
        if was and not self._paused and host.transport is not None and not host.closed:
            host.transport.resume_reading()
            if self.held:  # after the commands being carried out, in order
                asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        """Feed the reads held while paused, until the layers pause again."""
        host = self.host
        while self.held and not self._paused and not host.closed:
            data = self.held.pop(0)
            if data == EOF:
                if not host.take_eof() and host.transport is not None:
                    host.transport.close()  # what eof_received returning False asks of the loop
            else:
                host.take_read(data)
