"""``Run``: what one evaluation has collected so far, turned into a plan.

Kept apart from the engine's control flow: ``fire_*`` applies one matching
rule (edits stack, the first terminal ends the chain), ``decision`` freezes
the result. A pending plan keeps its ``Run``; resuming works on a copy.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.rules import model
from proxy.rules.actions import Action
from proxy.rules.facts import Facts
from proxy.rules.grpcspec import MessageActions
from proxy.rules.maplocal import resolve_map_local
from proxy.rules.plans import (
    CloseConnection,
    Decision,
    LogDirective,
    MapRemote,
    Respond,
    RuleHit,
    Terminal,
)

NO_FAULTS = Decision().faults
NO_LOG = Decision().log


class Run:
    """Accumulated hits, edits, faults, log settings and response-phase rules."""

    __slots__ = (
        "body", "facts", "faults", "grpc", "head", "hits", "later", "log", "terminal", "warnings",
    )  # fmt: skip

    def __init__(self) -> None:
        self.hits: list[RuleHit] = []
        self.head: list[Action] = []
        self.body: list[Action] = []
        self.terminal: Terminal | None = None
        self.faults = NO_FAULTS
        self.log = NO_LOG
        self.warnings: list[str] = []
        self.later: list[tuple[model.Rule, bool]] = []  # (rule, decided in the request phase)
        self.facts: Facts | None = None
        self.grpc = MessageActions()

    def copy(self) -> Run:
        other = Run()
        other.hits, other.head, other.body = list(self.hits), list(self.head), list(self.body)
        other.terminal, other.faults, other.log = self.terminal, self.faults, self.log
        other.warnings, other.later = list(self.warnings), list(self.later)
        other.grpc = self.grpc
        return other

    def fire_request(self, rule: model.Rule, facts: Facts, rng: Callable[[], float]) -> bool:
        """Apply a matching rule's request side; True when it ended the chain."""
        self._edits(rule.request)
        if rule.grpc is not None:
            self.grpc = self.grpc.plus(rule.grpc)
        notes = rule.request_notes
        if rule.request_fault is not None:
            self._fault(rule.request_fault, rng)
        spec = rule.terminal or (rule.request_fault.terminal if rule.request_fault else None)
        if spec is not None:
            notes += (self._terminal(spec, rule, facts),)
        if rule.log is not None:
            self._log(rule.log)
        if rule.acts_on_response:
            self.later.append((rule, True))
        self.hits.append(RuleHit(rule.name, rule.where, notes))
        return self.terminal is not None

    def fire_response(
        self, rule: model.Rule, facts: Facts, rng: Callable[[], float], decided: bool
    ) -> bool:
        """Apply a matching rule's response side; True when it ended the chain.

        ``decided``: the rule matched in the request phase, which already
        applied its ``log`` settings.
        """
        self._edits(rule.response)
        notes = rule.response_notes
        if rule.response_fault is not None:
            self._fault(rule.response_fault, rng)
        spec = rule.response_terminal or (
            rule.response_fault.terminal if rule.response_fault else None
        )
        if spec is not None:
            notes += (self._terminal(spec, rule, facts),)
        if not decided and rule.log is not None:
            self._log(rule.log)
            notes += (rule.log.summary(),)
        self.hits.append(RuleHit(rule.name, rule.where, notes))
        return self.terminal is not None

    def _edits(self, actions: tuple[Action, ...]) -> None:
        for action in actions:
            (self.body if action.body else self.head).append(action)

    def _fault(self, fault: model.FaultSpec, rng: Callable[[], float]) -> None:
        jitter = (2 * rng() - 1) * fault.jitter_ms if fault.jitter_ms else 0.0
        delay = max(0.0, fault.delay_ms + jitter) / 1000
        if delay or fault.bandwidth is not None or fault.close_after is not None:
            self.faults = self.faults.plus(delay, fault.bandwidth, fault.close_after)

    def _terminal(self, spec: model.TerminalSpec, rule: model.Rule, facts: Facts) -> str:
        if isinstance(spec, model.RespondSpec):
            self.terminal = Respond(
                spec.status, spec.fields, spec.body, spec.file, spec.kind, rule.name
            )
            if spec.kind == "grpc_status":
                return "grpc status " + dict(spec.fields)[b"grpc-status"].decode()
            return f"{'fault ' if spec.kind == 'abort' else ''}{spec.kind} {spec.status}"
        if isinstance(spec, model.MapLocalSpec):
            self.terminal, note = resolve_map_local(spec, facts.info.path, rule.name)
            if self.terminal is None:
                self.warnings.append(note)
            return note
        if isinstance(spec, model.CloseSpec):
            self.terminal = CloseConnection(spec.kind, rule.name, spec.h2_error)
            return f"block {spec.kind}" if spec.kind == "close" else f"fault {spec.kind}"
        self.head.append(spec.action)
        self.terminal = MapRemote(spec.action.summary().removeprefix("map_remote "), rule.name)
        return spec.action.summary()

    def _log(self, spec: model.LogSpec) -> None:
        """Tags add up, the highest detail wins, the first capture folder wins."""
        old = self.log
        tags = old.tags + tuple(t for t in spec.tags if t not in old.tags)
        levels = model.DETAIL_LEVELS
        detail = old.detail
        if spec.detail and (detail is None or levels.index(spec.detail) > levels.index(detail)):
            detail = spec.detail
        self.log = LogDirective(tags, detail, old.capture or spec.capture)

    def decision(self, facts: Facts, max_body: int, pending: bool) -> Decision:
        self.facts = facts
        return Decision(
            hits=tuple(self.hits),
            head_edits=tuple(self.head),
            body_edits=tuple(self.body),
            terminal=self.terminal,
            faults=self.faults,
            log=self.log,
            warnings=tuple(facts.warnings + self.warnings),
            pending=pending,
            max_body=max_body,
            grpc=self.grpc,
        )
