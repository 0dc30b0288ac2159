"""Rules acting on gRPC messages as they stream: set fields, drop, delay.

A matching rule's message actions (``proxy.rules.grpcspec``) are carried
out here, one whole message at a time: the bytes of a message are held
until it is complete (at most ``max_message``; a longer one passes as it
comes, untouched), then each action that applies to it runs in rule order.
An edited message is re-encoded, with the schema (protobuf's json_format)
or by field number (``proxy.grpc.fieldedit``), and goes out uncompressed
(the flag is per message, so the call's grpc-encoding stays valid). An
action that cannot run (a field path the message lacks, a value of the
wrong type) leaves the message as it was, and says so in the call's record.
"""

from __future__ import annotations

from typing import Any

from proxy.grpc import fieldedit
from proxy.grpc.compression import CompressionError, inflate
from proxy.grpc.firstmessage import resolve
from proxy.grpc.framing import COMPRESSED, PREFIX
from proxy.grpc.observer import GrpcObserver
from proxy.grpc.schema import SchemaError, SchemaRegistry
from proxy.rules.grpcspec import MessageAction, MessageActions, Pointer

MAX_NOTES = 50


class _Splitter:
    """Whole messages (up to ``cap``) out of a stream; longer ones as raw bytes."""

    __slots__ = ("body", "cap", "flags", "head", "left", "passing")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.head = bytearray()
        self.body = bytearray()
        self.left = -1  # -1: reading a prefix
        self.flags = 0
        self.passing = False  # the current message is over the cap: forwarded as it comes

    def feed(self, data: bytes) -> list[bytes | tuple[int, bytes]]:
        """Raw bytes to forward as they are, or (flags, payload) of a whole message."""
        out: list[bytes | tuple[int, bytes]] = []
        pos = 0
        while pos < len(data):
            if self.left < 0:
                take = min(PREFIX - len(self.head), len(data) - pos)
                self.head += data[pos : pos + take]
                pos += take
                if len(self.head) < PREFIX:
                    break
                self.flags = self.head[0]
                self.left = int.from_bytes(self.head[1:5], "big")
                self.passing = self.left > self.cap
                if self.passing:
                    out.append(bytes(self.head))
            elif self.left > 0:
                chunk = data[pos : pos + self.left]
                pos += len(chunk)
                self.left -= len(chunk)
                if self.passing:
                    out.append(chunk)
                else:
                    self.body += chunk
            if self.left == 0:
                if not self.passing:
                    out.append((self.flags, bytes(self.body)))
                self.head.clear()
                self.body.clear()
                self.left, self.passing = -1, False
        return out

    def rest(self) -> bytes:
        """An incomplete message at the end of the body: forwarded as it was."""
        rest = bytes(self.head) + bytes(self.body) if not self.passing else b""
        self.head.clear()
        self.body.clear()
        return rest


def frame(flags: int, payload: bytes) -> bytes:
    return bytes([flags]) + len(payload).to_bytes(4, "big") + payload


class GrpcEditor:
    """The message actions of one call, on its request and response bodies."""

    __slots__ = ("actions", "notes", "observer", "registry", "requests", "responses", "split")

    def __init__(
        self,
        actions: MessageActions,
        observer: GrpcObserver,
        registry: SchemaRegistry | None,
        max_message: int,
    ) -> None:
        self.actions = actions
        self.observer = observer
        self.registry = registry
        self.split = (_Splitter(max_message), _Splitter(max_message))
        self.requests = 0
        self.responses = 0
        self.notes: list[str] = []

    def request(self, data: bytes) -> bytes:
        """Request body bytes as they should go to the server."""
        if not self.actions.request:
            return data
        return b"".join(piece for piece, _ in self._side(data, True))

    def response(self, data: bytes) -> list[tuple[bytes, float]]:
        """Response body bytes for the client, each with a delay (seconds) before it."""
        if not self.actions.response:
            return [(data, 0.0)]
        return self._side(data, False)

    def rest(self, request: bool) -> bytes:
        return self.split[0 if request else 1].rest()

    def _side(self, data: bytes, request: bool) -> list[tuple[bytes, float]]:
        out: list[tuple[bytes, float]] = []
        for item in self.split[0 if request else 1].feed(data):
            if isinstance(item, bytes):
                out.append((item, 0.0))
                continue
            if request:
                index, self.requests = self.requests, self.requests + 1
            else:
                index, self.responses = self.responses, self.responses + 1
            out.append(self._message(item[0], item[1], index, request))
        return out

    def _message(
        self, flags: int, payload: bytes, index: int, request: bool
    ) -> tuple[bytes, float]:
        side = "request" if request else "response"
        message = _Message(self, flags, payload, request)
        delay = 0.0
        for action in self.actions.request if request else self.actions.response:
            if action.index is not None and action.index != index:
                continue
            if action.where and not message.matches(action.where):
                continue
            if action.kind == "drop":
                self._note(f"{side} #{index} dropped")
                return b"", delay
            if action.kind == "delay":
                delay += action.delay_ms / 1000
                self._note(f"{side} #{index} delayed {action.delay_ms:g}ms")
            else:
                error = message.set(action.values)
                self._note(f"{side} #{index} " + (error or "set " + _paths(action)))
        return message.out(), delay

    def _note(self, note: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(note)


def _paths(action: MessageAction) -> str:
    return ", ".join("/" + "/".join(p) for p, _ in action.values)


class _Message:
    """One message under the actions: decoded on demand, re-encoded if changed."""

    __slots__ = ("changed", "data", "decoded", "editor", "flags", "original", "request", "usable")

    def __init__(self, editor: GrpcEditor, flags: int, payload: bytes, request: bool) -> None:
        self.editor = editor
        self.flags = flags
        self.original = payload
        self.request = request
        self.changed = False
        self.decoded: dict[str, Any] | None = None
        self.usable = True
        self.data = payload
        if flags & COMPRESSED:
            g = editor.observer
            encoding = g.request_encoding if request else g.response_encoding
            try:
                self.data, cut = inflate(payload, encoding or "", editor.split[0].cap)
                self.usable = not cut
            except CompressionError:
                self.usable = False

    def _schema(self) -> Any:
        registry = self.editor.registry
        method = registry.method(self.editor.observer.path) if registry is not None else None
        if method is None:
            return None
        return method.request if self.request else method.response

    def _view(self) -> dict[str, Any] | None:
        if self.decoded is None and self.usable:
            kind = self._schema()
            if kind is not None and self.editor.registry is not None:
                try:
                    self.decoded = self.editor.registry.decode(self.data, kind)
                except Exception:  # third-party parsing of hostile bytes (see decode.py)
                    self.usable = False
        return self.decoded

    def matches(self, where: tuple[tuple[Pointer, Any], ...]) -> bool:
        if not self.usable:
            return False
        view = self._view()
        for pointer, want in where:
            got = (
                resolve(view, pointer) if view is not None else fieldedit.value(self.data, pointer)
            )
            if got != want:
                return False
        return True

    def set(self, values: tuple[tuple[Pointer, Any], ...]) -> str | None:
        """Set the fields; an error note (the message unchanged) or None."""
        if not self.usable:
            return "not edited: the message could not be read"
        view = self._view()
        try:
            if view is not None:
                for pointer, value in values:
                    _assign(view, pointer, value)
                registry, kind = self.editor.registry, self._schema()
                assert registry is not None
                self.data = registry.encode(view, kind)
            else:
                for pointer, value in values:
                    self.data = fieldedit.assign(self.data, pointer, value)
        except (SchemaError, fieldedit.FieldError, TypeError, ValueError) as e:
            self.decoded = None
            return f"not edited: {e}"
        self.changed = True
        return None

    def out(self) -> bytes:
        if not self.changed:
            return frame(self.flags, self.original)
        return frame(self.flags & ~COMPRESSED, self.data)


def _assign(view: dict[str, Any], pointer: Pointer, value: Any) -> None:
    for token in pointer[:-1]:
        nxt = view.get(token)
        if not isinstance(nxt, dict):
            nxt = view[token] = {}
        view = nxt
    view[pointer[-1]] = value
