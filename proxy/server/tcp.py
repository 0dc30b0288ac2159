"""The ``tcp:host:port`` mode: every client connection is relayed raw."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from proxy.flow.record import FlowRecord, TunnelInfo, tcp_rules_info
from proxy.rules import TcpPlan
from proxy.server.context import ListenerContext
from proxy.server.relay import Relay
from proxy.server.transport import tune
from proxy.server.upstream import connect
from proxy.session.errors import UpstreamError
from proxy.sinks.pcap import PcapTap


class TcpConnection(asyncio.Protocol):
    def __init__(self, ctx: ListenerContext, host: str, port: int) -> None:
        self.ctx = ctx
        self.key: tuple[str, int, str | None] = (host, port, None)
        self.transport: asyncio.Transport | None = None
        self.relay: Relay | None = None
        self.start = time.time()
        self.client = ("?", 0)
        self.server: tuple[str, int] | None = None
        self.last_active = time.monotonic()
        self._pending: list[bytes] = []
        self._eof = False
        self._task: asyncio.Task[None] | None = None
        self._tap: PcapTap | None = None
        self._plan: TcpPlan | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.client = (str(peer[0]), int(peer[1]))
        tune(transport)
        transport.pause_reading()  # nothing to do with bytes until upstream is there
        tap = self.ctx.tap
        self._tap = tap if tap is not None and tap.client_side else None
        if self._tap is not None:
            local = transport.get_extra_info("sockname")
            self._tap.open(id(self), self.client, (local[0], local[1]))
        self.ctx.registry.connections.add(self)
        self._task = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        assert self.transport is not None
        try:
            conn = await connect(self.key, self.ctx.timeouts.connect, None, self.ctx.tap)
        except UpstreamError as e:
            self._record(None, f"upstream {self.key[0]}:{self.key[1]}: {e}")
            self.transport.abort()
            return
        if self.transport.is_closing():
            conn.close()
            return
        assert conn.transport is not None
        peer = conn.transport.get_extra_info("peername") or self.key[:2]
        self.server = (str(peer[0]), int(peer[1]))
        tap, key = self._tap, id(self)
        on_out = None if tap is None else (lambda data: tap.data(key, False, data))
        self._plan = self._tcp_rules()
        self.relay = Relay(self.transport, conn, self._done, None, on_out, self._plan)
        self.relay.start(b"", b"")  # toxics that act from the start (reset_peer, timeout)
        self.transport.resume_reading()

    def _tcp_rules(self) -> TcpPlan | None:
        get = self.ctx.session.rules
        rules = get() if get is not None else None
        if rules is None:
            return None
        return rules.tcp_for(self.key[0], self.key[1], self.ctx.session.mode, self.client[0])

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.relay is not None:
            if self._tap is not None:
                self._tap.data(id(self), True, data)
            self.relay.from_client(data)

    def eof_received(self) -> bool:
        if self.relay is not None:
            self.relay.client_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.registry.connections.discard(self)
        if self._tap is not None:
            self._tap.close(id(self), reset=exc is not None, from_client=True)
        if self.relay is not None:
            self.relay.client_lost(exc)
        elif self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        if self.relay is not None:
            self.relay.client_pause_writing()

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.client_resume_writing()

    def _done(self, info: TunnelInfo) -> None:
        self._record(info, None)

    def _record(self, info: TunnelInfo | None, error: str | None) -> None:
        self.ctx.submit(
            FlowRecord(
                id=self.ctx.session.new_id(),
                kind="tcp",
                mode=self.ctx.session.mode,
                start=self.start,
                end=time.time(),
                client=self.client,
                server=self.server,
                tunnel=info,
                error=error,
                rules=tcp_rules_info(self._plan.matched if self._plan else ()),
            )
        )

    def check_timeout(self, now: float) -> None:
        if self.relay is not None and now - self.last_active > self.ctx.timeouts.tunnel_idle:
            self.relay.close("timeout")

    @property
    def idle(self) -> bool:
        return False

    def close_now(self) -> None:
        if self.relay is not None:
            self.relay.close("proxy")
        elif self.transport is not None:
            self.transport.abort()
