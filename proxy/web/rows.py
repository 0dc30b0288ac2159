"""What the flow store keeps of a flow: the rows ``FlowStore.add_many`` takes.

Built on the event loop from the spool's rows (``proxy.web.storesink``) and
written there: plain values only, bytes already capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The bodies a flow may carry (docs/api.md, ``GET /api/flows/ID/body/SIDE``):
#: the request as the client sent it and as it was forwarded, the response as
#: the client got it and as the server sent it.
SIDES = ("request", "request_sent", "response", "response_upstream")

#: The summary columns of docs/api.md kept in the store (``seq``, ``state``
#: and ``held`` are the store's and the server's).
SUMMARY_KEYS = (
    "id",
    "start",
    "duration",
    "protocol",
    "kind",
    "method",
    "url",
    "host",
    "path",
    "status",
    "type",
    "size",
    "error",
    "rules",
    "changed",
    "marked",
)

Summary = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BodyRow:
    """One body: its first ``max_body`` bytes and its size as seen on the wire."""

    side: str  # one of SIDES
    data: bytes
    size: int  # the whole body's size
    truncated: bool  # ``data`` is only its start (capped, or captured only in part)


@dataclass(frozen=True, slots=True)
class FlowRow:
    """A finished flow: its summary (keys of ``SUMMARY_KEYS``), its flow-log
    record as compact JSON, and its bodies. ``seq``: its place in the store's
    order, from ``FlowStore.reserve`` (0: the store gives it one when written)."""

    summary: Summary
    record: bytes
    bodies: tuple[BodyRow, ...] = ()
    seq: int = 0

    @property
    def id(self) -> str:
        return str(self.summary["id"])

    @property
    def nbytes(self) -> int:
        """What the row counts against the store's size cap."""
        return len(self.record) + sum(len(b.data) for b in self.bodies)


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A WebSocket message, server-sent event or gRPC message of flow ``flow``.

    ``detail`` is its compact JSON for ``FlowStore.messages``: direction
    (``client`` or ``server``), type, size, ``text`` or ``base64``, time.
    """

    flow: str
    detail: bytes

    @property
    def nbytes(self) -> int:
        return len(self.detail)


Row = FlowRow | MessageRow
