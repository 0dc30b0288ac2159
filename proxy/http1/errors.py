"""The one exception the HTTP/1 codec raises."""

from __future__ import annotations


class ProtocolError(Exception):
    """A message that cannot be parsed unambiguously.

    ``status`` is what a proxy should answer the sender with when the peer is
    a client (400, 414, 431, 501, 505). When the peer is a server the session
    answers 502 instead; the status here then only classifies the fault.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ProtocolError({self.status}, {self.message!r})"
