"""gRPC messages out of an exchange's observer, as ``Hook(MESSAGE)`` commands.

The observer (``proxy.grpc.observer``) is fed by the exchange's body
counters; the session parts that hold a command list call ``drain`` after
feeding it, so each message's record goes out as soon as the message
completes (a streaming call is seen while it is open), and ``Endings``
drains before the call's own ``DONE``.
"""

from __future__ import annotations

from proxy.flow.hooks import HookKind
from proxy.grpc.observer import observe
from proxy.layers.commands import Command, Hook
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange


def watch(ex: Exchange, config: SessionConfig) -> None:
    """Observe ``ex`` if its request is a gRPC call (at the request head)."""
    ex.grpc = observe(ex.request, config.grpc, ex.id, config.preview_bytes)


def drain(ex: Exchange, config: SessionConfig, out: list[Command]) -> None:
    g = ex.grpc
    if g is None or not g.pending:
        return
    for message in g.take(config.mode, config.clock()):
        out.append(Hook(HookKind.MESSAGE, message))
