"""WebSocket limits (``--ws-max-message``, ``--ws-inflate-ratio``)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
DEFAULT_RATIO = 100


@dataclass(frozen=True, slots=True)
class WsSettings:
    """``max_message``: a frame or a message (inflated) longer than this fails
    the connection with 1009; ``inflate_ratio``: so does a compressed message
    that inflates more than this many times its size (past 1 MiB). Messages are
    held whole for rules only up to ``--max-body``; longer ones stream."""

    max_message: int = DEFAULT_MAX_MESSAGE
    inflate_ratio: int = DEFAULT_RATIO
