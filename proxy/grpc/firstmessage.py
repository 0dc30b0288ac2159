"""The first message of a buffered gRPC request body, for rules that match its fields.

A rule's ``match: {grpc: {message: {/field: value}}}`` is decided once the
request body is buffered (as for ``body`` matchers): its first message,
inflated if compressed, decoded with the method's schema when there is one
(field names), else read by field number (``proxy.grpc.fieldedit``).
"""

from __future__ import annotations

from typing import Any

from proxy.grpc import fieldedit
from proxy.grpc.compression import CompressionError, inflate
from proxy.grpc.framing import Deframer
from proxy.grpc.schema import SchemaRegistry

Pointer = tuple[str, ...]


class MessageView:
    """Field values of one message, by JSON Pointer."""

    __slots__ = ("data", "decoded")

    def __init__(self, data: bytes, decoded: dict[str, Any] | None) -> None:
        self.data = data
        self.decoded = decoded

    def value(self, pointer: Pointer) -> Any:
        if self.decoded is not None:
            return resolve(self.decoded, pointer)
        return fieldedit.value(self.data, pointer)


def first_message(
    body: bytes, path: str, encoding: str | None, schemas: SchemaRegistry | None, cap: int
) -> MessageView | None:
    """The body's first message, or None (no whole message, not inflatable)."""
    frames = [f for f in Deframer(cap).feed(body) if not f.trailers]
    if not frames or frames[0].truncated:
        return None
    frame = frames[0]
    data = frame.data
    if frame.compressed:
        try:
            data, cut = inflate(data, encoding or "", cap)
        except CompressionError:
            return None
        if cut:
            return None
    decoded = None
    method = schemas.method(path) if schemas is not None else None
    if schemas is not None and method is not None:
        try:
            decoded = schemas.decode(data, method.request)
        except Exception:  # third-party parsing of hostile bytes (see decode.py)
            return None
    return MessageView(data, decoded)


def resolve(view: Any, pointer: Pointer) -> Any:
    """The value at ``pointer`` in decoded JSON, or ``fieldedit.MISSING``."""
    for token in pointer:
        if isinstance(view, dict) and token in view:
            view = view[token]
        elif isinstance(view, list) and token.isdigit() and int(token) < len(view):
            view = view[int(token)]
        else:
            return fieldedit.MISSING
    return view
