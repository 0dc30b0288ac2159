"""The loaded form of a rule: matchers by phase, actions, terminal, faults, log.

Everything here is built once by the loader and never changes; the mutable
per-rule state (``times`` counters) lives in the ``RuleSet``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proxy.http1.events import Fields
from proxy.rules.actions import Action
from proxy.rules.grpcspec import GrpcSpec
from proxy.rules.match import All, Matcher


@dataclass(frozen=True, slots=True)
class Source:
    """Where a rule was defined."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class RespondSpec:
    """Answer without the upstream: ``respond``, ``block`` with a status, fault ``abort``."""

    status: int
    fields: Fields = ()
    body: bytes = b""
    file: Path | None = None
    kind: str = "respond"


@dataclass(frozen=True, slots=True)
class MapLocalSpec:
    """Serve a file, or a folder mapped by the request path."""

    file: Path | None = None
    folder: Path | None = None
    strip_prefix: str = ""  # removed from the path before it is looked up in folder
    index: str = "index.html"
    fallthrough: bool = False  # missing file: go upstream (True) or answer 404
    fields: Fields = ()


@dataclass(frozen=True, slots=True)
class CloseSpec:
    """End the connection: ``block: {close: true}`` (FIN), ``reset`` (RST) or ``hang``."""

    kind: str  # "close", "reset" or "hang"
    h2_error: str | None = None  # reset of an HTTP/2 stream: this error code's name


@dataclass(frozen=True, slots=True)
class MapRemoteSpec:
    """Marker: the rule's ``MapRemote`` edit is the chain's terminal action."""

    action: Action


TerminalSpec = RespondSpec | MapLocalSpec | CloseSpec | MapRemoteSpec


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A rule's ``fault``; ``terminal`` is an abort, reset or hang, else None."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth: int | None = None  # bytes per second
    close_after: int | None = None  # body bytes, then close
    terminal: RespondSpec | CloseSpec | None = None

    def summary(self) -> list[str]:
        """The non-terminal faults, for the flow log (terminals are told apart)."""
        out = []
        if self.delay_ms or self.jitter_ms:
            out.append(f"fault delay {self.delay_ms:g}ms±{self.jitter_ms:g}")
        if self.bandwidth is not None:
            out.append(f"fault bandwidth {self.bandwidth}B/s")
        if self.close_after is not None:
            out.append(f"fault close_after {self.close_after}B")
        return out


DETAIL_LEVELS = ("summary", "headers", "full")


@dataclass(frozen=True, slots=True)
class LogSpec:
    """Tag a flow, raise its log detail, capture its bodies to a folder."""

    tags: tuple[str, ...] = ()
    detail: str | None = None
    capture: Path | None = None

    def summary(self) -> str:
        parts = [f"tags={','.join(self.tags)}"] if self.tags else []
        parts += [f"detail={self.detail}"] if self.detail else []
        parts += [f"capture={self.capture}"] if self.capture else []
        return " ".join(["log", *parts])


@dataclass(frozen=True, slots=True)
class Rule:
    """One HTTP rule, matchers split by the phase that can decide them."""

    order: int
    name: str
    source: Source
    match: All  # everything, for explain
    on_request: tuple[Matcher, ...]
    on_request_body: tuple[Matcher, ...]
    on_response: tuple[Matcher, ...]
    on_response_body: tuple[Matcher, ...]
    percent: float | None = None
    times: int | None = None
    request: tuple[Action, ...] = ()
    response: tuple[Action, ...] = ()
    terminal: TerminalSpec | None = None
    response_terminal: MapLocalSpec | None = None
    request_fault: FaultSpec | None = None
    response_fault: FaultSpec | None = None
    log: LogSpec | None = None
    grpc: GrpcSpec | None = None  # gRPC message actions (the status answer is ``terminal``)

    # Derived once, so evaluating a matching rule does no string work.
    where: str = field(init=False, compare=False)
    request_notes: tuple[str, ...] = field(init=False, compare=False)
    response_notes: tuple[str, ...] = field(init=False, compare=False)
    response_phase: bool = field(init=False, compare=False)  # decided by the response
    acts_on_response: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        log = (self.log.summary(),) if self.log else ()
        req_fault = tuple(self.request_fault.summary()) if self.request_fault else ()
        req_fault += self.grpc.summary() if self.grpc else ()
        resp_fault = tuple(self.response_fault.summary()) if self.response_fault else ()
        response_phase = bool(self.on_response or self.on_response_body)
        acts = bool(self.response or self.response_terminal or self.response_fault)
        derived = {
            "where": str(self.source),
            "request_notes": tuple(a.summary() for a in self.request) + req_fault + log,
            "response_notes": tuple(a.summary() for a in self.response) + resp_fault,
            "response_phase": response_phase,
            "acts_on_response": acts or response_phase,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)
