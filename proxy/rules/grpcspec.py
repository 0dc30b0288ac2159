"""A rule's ``grpc`` section, loaded: a status answer and per-message actions.

The status answer becomes the rule's terminal (a ``RespondSpec``: a
trailers-only gRPC response). Message actions apply to each message of one
direction of a matching call, in order, as the messages stream
(``proxy.grpc.edit`` carries them out):
``set`` fields, ``drop`` the message, ``delay`` it; ``where`` and ``index``
choose the messages an action applies to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Pointer = tuple[str, ...]  # a JSON Pointer's tokens (RFC 6901)


@dataclass(frozen=True, slots=True)
class MessageAction:
    kind: str  # "set", "drop" or "delay"
    values: tuple[tuple[Pointer, Any], ...] = ()  # set: field path -> new value
    delay_ms: float = 0.0
    where: tuple[tuple[Pointer, Any], ...] = ()  # the decoded message has these values
    index: int | None = None  # only the message with this index (from 0)

    def summary(self, direction: str) -> str:
        what = {
            "set": "set " + ", ".join("/" + "/".join(p) for p, _ in self.values),
            "drop": "drop",
            "delay": f"delay {self.delay_ms:g}ms",
        }[self.kind]
        scope = f" #{self.index}" if self.index is not None else ""
        scope += (
            " where " + ", ".join("/" + "/".join(p) for p, _ in self.where) if self.where else ""
        )
        return f"grpc {direction} {what}{scope}"


@dataclass(frozen=True, slots=True)
class GrpcSpec:
    request: tuple[MessageAction, ...] = ()
    response: tuple[MessageAction, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.request or self.response)

    def summary(self) -> tuple[str, ...]:
        return tuple(a.summary("request") for a in self.request) + tuple(
            a.summary("response") for a in self.response
        )


@dataclass(frozen=True, slots=True)
class MessageActions:
    """The message actions of every matching rule, in rule order (on a plan)."""

    request: tuple[MessageAction, ...] = ()
    response: tuple[MessageAction, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.request or self.response)

    def plus(self, spec: GrpcSpec) -> MessageActions:
        return MessageActions(self.request + spec.request, self.response + spec.response)
