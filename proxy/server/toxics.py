"""Carrying out TCP rules (Toxiproxy's toxics) on a relay.

The transformers in ``proxy.rules.tcp`` decide, without IO, what each
direction should do and when: send these bytes at t, forward the FIN at t,
close or reset at t, wake me at t. ``Toxics`` executes those instructions
with one ``DelayedWriter`` per direction, so ordering and backpressure are
the writer's (a slowed direction stops reading its source).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.rules import Close, Instruction, Reset, Send, Shutdown, TcpPlan, Transformer, Wake
from proxy.server.pacing import DelayedWriter

if TYPE_CHECKING:
    from proxy.server.relay import Relay


class Toxics:
    def __init__(self, relay: Relay, plan: TcpPlan) -> None:
        self.relay = relay
        self.plan = plan
        self.loop = asyncio.get_running_loop()
        self.to_server = DelayedWriter(relay.upstream.write, relay.client_backlog)
        self.to_client = DelayedWriter(relay.client_out, relay.server_backlog)
        self._timers: list[asyncio.TimerHandle] = []

    def start(self) -> None:
        now = self.loop.time()
        self._run(self.plan.upstream.start(now), True)
        self._run(self.plan.downstream.start(now), False)

    def data(self, to_server: bool, data: bytes) -> None:
        self._run(self._transformer(to_server).feed(self.loop.time(), data), to_server)

    def eof(self, to_server: bool) -> None:
        self._run(self._transformer(to_server).eof(self.loop.time()), to_server)

    def cancel(self) -> None:
        self.to_server.cancel()
        self.to_client.cancel()
        for timer in self._timers:
            timer.cancel()

    def _transformer(self, to_server: bool) -> Transformer:
        return self.plan.upstream if to_server else self.plan.downstream

    def _run(self, instructions: list[Instruction], to_server: bool) -> None:
        writer = self.to_server if to_server else self.to_client
        relay = self.relay
        for ins in instructions:
            if isinstance(ins, Send):
                writer.write_at(ins.at, ins.data)
            elif isinstance(ins, Shutdown):
                writer.call_at(ins.at, self._shutdown(to_server))
            elif isinstance(ins, Close):
                writer.call_at(ins.at, lambda: relay.close("rule"))
            elif isinstance(ins, Reset):
                self._later(ins.at, relay.reset)
            elif isinstance(ins, Wake):
                self._later(ins.at, self._ticker(to_server))

    def _shutdown(self, to_server: bool) -> Callable[[], None]:
        def shutdown() -> None:
            self.relay.shutdown_toward(to_server)
            self.relay.maybe_done()

        return shutdown

    def _ticker(self, to_server: bool) -> Callable[[], None]:
        def tick() -> None:
            self._run(self._transformer(to_server).tick(self.loop.time()), to_server)

        return tick

    def _later(self, at: float, action: Callable[[], None]) -> None:
        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(self.loop.call_at(at, action))
