"""Bytes a TCP relay passed on, for subscribers of ``HookKind.DATA``.

A TCP relay (the ``tcp:`` mode, a CONNECT tunnel, raw bytes inside an
intercepted tunnel) has no messages: each read of one side is reported as
it is relayed, when a subscriber asked for them (addons' ``tcp_message``).
They are not records: no sink writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.flow.record import FlowRecord

DATA_KIND = "tcp_data"


@dataclass(frozen=True, slots=True)
class TcpData:
    flow: str  # the relay's flow id (its record, at its end, has the same)
    host: str  # where the relay goes
    port: int
    from_client: bool
    data: bytes  # one read, as relayed (before any TCP rule's timing)
    at: float

    def to_record(self) -> FlowRecord:
        """A placeholder record (``FlowSource``): DATA hooks never reach the sinks."""
        return FlowRecord(self.flow, DATA_KIND, "", self.at, self.at, ("", 0), None)
