"""What the rule engine tells the session to do: plans, terminals, faults.

A plan is a frozen record of a decision: which rules matched and what they
do. It is also the flow log's "why" (``hits``). Applying a plan is pure:
``apply_head`` returns a new head, ``apply_body`` new bytes and fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.http1.events import Fields
from proxy.rules import body as codec
from proxy.rules.actions import EDIT_FAILURES, Action, Head
from proxy.rules.bodyedit import BodyResult, apply_body_edits
from proxy.rules.facts import DEFAULT_PORTS, RequestInfo, make_url
from proxy.rules.grpcspec import MessageActions


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule that matched, where it is defined and what it did."""

    rule: str
    source: str  # "file:line"
    actions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer the client ourselves (respond, map_local, block, fault abort).

    ``file`` (when set) is the body to stream; else ``body``. The IO layer
    adds framing (Content-Length) from what it sends.
    """

    status: int
    fields: Fields = ()
    body: bytes = b""
    file: Path | None = None
    kind: str = "respond"
    rule: str = ""


@dataclass(frozen=True, slots=True)
class MapRemote:
    """The request goes upstream to another origin (see ``apply_head`` for where)."""

    url: str
    rule: str = ""
    kind: str = "map_remote"


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """``close``: FIN without an answer; ``reset``: RST; ``hang``: keep open, say nothing."""

    kind: str
    rule: str = ""
    h2_error: str | None = None  # reset: the HTTP/2 error code (RFC 9113 §7) for a stream


Terminal = Respond | MapRemote | CloseConnection


@dataclass(frozen=True, slots=True)
class Faults:
    """Non-terminal faults, added up over matching rules."""

    delay: float = 0.0  # seconds to wait before sending (jitter already drawn)
    bandwidth: int | None = None  # bytes per second for the body (lowest wins)
    close_after: int | None = None  # close after this many body bytes (lowest wins)

    def __bool__(self) -> bool:
        return bool(self.delay) or self.bandwidth is not None or self.close_after is not None

    def plus(self, delay: float, bandwidth: int | None, close_after: int | None) -> Faults:
        return Faults(
            self.delay + delay, _low(self.bandwidth, bandwidth), _low(self.close_after, close_after)
        )


def _low(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True, slots=True)
class LogDirective:
    """Log settings from rules: tags add up, the highest detail wins, first capture wins."""

    tags: tuple[str, ...] = ()
    detail: str | None = None
    capture: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.tags) or self.detail is not None or self.capture is not None


@dataclass(frozen=True, slots=True)
class EditedRequest:
    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: str
    fields: Fields
    warnings: tuple[str, ...] = ()
    host_pinned: bool = False  # a rule set Host itself (or keep_host): forward it as is

    @property
    def url(self) -> str:
        return make_url(self.scheme, self.host, self.port, self.path, self.query)

    @property
    def target(self) -> str:
        """origin-form request target (RFC 9112 §3.2.1)."""
        return self.path + ("?" + self.query if self.query else "")


@dataclass(frozen=True, slots=True)
class EditedResponse:
    status: int
    fields: Fields
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """What the matching rules decided for one phase (shared when nothing matched)."""

    hits: tuple[RuleHit, ...] = ()
    head_edits: tuple[Action, ...] = ()
    body_edits: tuple[Action, ...] = ()
    terminal: Terminal | None = None
    faults: Faults = Faults()
    log: LogDirective = LogDirective()
    warnings: tuple[str, ...] = ()
    pending: bool = False  # body matchers wait for the body: call RuleSet.complete_*
    max_body: int = codec.DEFAULT_LIMIT
    grpc: MessageActions = field(
        default_factory=MessageActions
    )  # gRPC message actions (proxy.grpc.edit)


class _PlanView:
    """Read access to a plan's ``Decision``, and what follows from it."""

    __slots__ = ()
    decision: Decision

    @property
    def hits(self) -> tuple[RuleHit, ...]:
        """Matching rules in order, with the actions each ran (for the flow log)."""
        return self.decision.hits

    @property
    def matched(self) -> tuple[str, ...]:
        return tuple(h.rule for h in self.decision.hits)

    @property
    def head_edits(self) -> tuple[Action, ...]:
        return self.decision.head_edits

    @property
    def body_edits(self) -> tuple[Action, ...]:
        return self.decision.body_edits

    @property
    def terminal(self) -> Terminal | None:
        return self.decision.terminal

    @property
    def faults(self) -> Faults:
        return self.decision.faults

    @property
    def log(self) -> LogDirective:
        """Log settings; a response plan's include those of its request plan."""
        return self.decision.log

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.decision.warnings

    @property
    def pending(self) -> bool:
        return self.decision.pending

    @property
    def needs_body(self) -> bool:
        """Buffer the body (up to --max-body) before forwarding it."""
        d = self.decision
        if d.pending:
            return True
        forwards = d.terminal is None or isinstance(d.terminal, MapRemote)
        return bool(d.body_edits) and forwards

    def apply_body(self, body: bytes, fields: Fields) -> BodyResult:
        """Body edits on ``body`` (as received, with its ``fields``)."""
        return apply_body_edits(self.decision.body_edits, body, fields, self.decision.max_body)


@dataclass(frozen=True, slots=True)
class RequestPlan(_PlanView):
    """The request phase: edits, terminal, faults; ``state`` is the engine's."""

    decision: Decision
    info: RequestInfo
    state: Any = field(default=None, compare=False, repr=False)

    def apply_head(self) -> EditedRequest:
        """Method, URL and fields after every head edit, in rule order."""
        info = self.info
        edits = self.decision.head_edits
        if not edits:
            return EditedRequest(
                info.method, info.scheme, info.host, info.port, info.path, info.query, info.fields
            )
        head = Head(
            info.method,
            info.scheme,
            info.host,
            info.port,
            info.path,
            info.query,
            0,
            list(info.fields),
        )
        warnings = _apply(edits, head)
        if (head.host, head.port) != (info.host, info.port) and not head.host_pinned:
            default = DEFAULT_PORTS.get(head.scheme) == head.port
            hostport = (head.host if default else f"{head.host}:{head.port}").encode()
            head.fields = [
                (k, hostport) if k.lower() == b"host" else (k, v) for k, v in head.fields
            ]
        return EditedRequest(
            head.method,
            head.scheme,
            head.host,
            head.port,
            head.path,
            head.query,
            tuple(head.fields),
            warnings,
            head.host_pinned,
        )


@dataclass(frozen=True, slots=True)
class ResponsePlan(_PlanView):
    """The response phase, from ``RuleSet.on_response``."""

    decision: Decision = Decision()
    state: Any = field(default=None, compare=False, repr=False)

    def apply_head(self, status: int, fields: Fields) -> EditedResponse:
        """Status and fields after every head edit, in rule order."""
        head = Head(status=status, fields=list(fields))
        warnings = _apply(self.decision.head_edits, head)
        return EditedResponse(head.status, tuple(head.fields), warnings)


def _apply(edits: Sequence[Action], head: Head) -> tuple[str, ...]:
    warnings: list[str] = []
    for edit in edits:
        try:
            edit.apply(head)
        except EDIT_FAILURES as e:
            warnings.append(str(e))
    return tuple(warnings)
