"""What the parts of a session see of it: the ``Sequencer`` protocol.

``Endings`` and ``ResponsePath`` act on the session's state (the current
exchange, the two sides, whether the client connection is done) and hand
control back to it (``pump_client``, to start the next pipelined request).
They see it through this protocol, so no part imports the session.
"""

from __future__ import annotations

from typing import Protocol

from proxy.flow.record import Address
from proxy.layers.commands import Command
from proxy.session.codec import ClientCodec
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange
from proxy.session.serverside import ServerSide


class Sequencer(Protocol):
    config: SessionConfig
    client: Address
    client_side: ClientCodec
    server: ServerSide
    ex: Exchange | None
    tunnel: Exchange | None
    closed: bool

    def pump_client(self, out: list[Command]) -> list[Command]: ...
