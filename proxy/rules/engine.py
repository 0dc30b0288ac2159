"""``RuleSet``: evaluating rules for a request, its response, a TCP connection.

Rules run in file order. Edits (headers, URL, body) add up over every
matching rule; the first matching rule with a terminal action (respond,
map_local, map_remote, block, fault abort/reset/hang) ends the chain.

Evaluation is resumable so bodies are buffered only when a rule needs one:
``on_request`` decides everything the head can decide. If a candidate rule
has a body matcher the plan comes back ``pending`` (and ``needs_body``);
the caller buffers the body and calls ``complete_request(plan, body)``,
which resumes at that rule. The response phase works the same way and
starts from the request plan, so a rule's ``percent`` is drawn and its
``times`` counted once per exchange, in the phase that decides it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from proxy.http1.events import Fields
from proxy.rules import body as codec
from proxy.rules import model, tcp
from proxy.rules.facts import UNSET, Facts, RequestInfo, match_host, normalize_path
from proxy.rules.index import RuleIndex
from proxy.rules.match import Matcher
from proxy.rules.parse_tcp import TcpRule
from proxy.rules.plans import Decision, RequestPlan, ResponsePlan
from proxy.rules.run import Run
from proxy.rules.sserules import SsePlan, SseRule
from proxy.rules.wsrules import WsPlan, WsRule

Random = Callable[[], float]
Plan = TypeVar("Plan", RequestPlan, ResponsePlan)


@dataclass(frozen=True, slots=True)
class _Resume:
    """Where a pending evaluation stopped."""

    facts: Facts
    entries: tuple[tuple[model.Rule, bool], ...]  # (rule, already decided)
    position: int
    run: Run


@dataclass(frozen=True, slots=True)
class TcpPlan:
    """Transformers for both directions of one connection, and the rules used."""

    upstream: tcp.Transformer  # client -> server
    downstream: tcp.Transformer  # server -> client
    matched: tuple[str, ...]


class RuleSet:
    """Loaded rules plus their run-time state (``times`` counters)."""

    def __init__(
        self,
        rules: Sequence[model.Rule] = (),
        tcp_rules: Sequence[TcpRule] = (),
        *,
        rng: Random = random.random,
        max_body: int = codec.DEFAULT_LIMIT,
        files: Sequence[Path] = (),
        ws_rules: Sequence[WsRule] = (),
        sse_rules: Sequence[SseRule] = (),
    ) -> None:
        self.rules = tuple(rules)
        self.tcp_rules = tuple(tcp_rules)
        self.ws_rules = tuple(ws_rules)
        self.sse_rules = tuple(sse_rules)
        self.rng = rng
        self.max_body = max_body
        self.files = tuple(files)
        self.index = RuleIndex(self.rules)
        self.counts = [0] * len(self.rules)
        self.nothing = Decision(max_body=max_body)
        self.no_response = ResponsePlan(self.nothing)

    def __len__(self) -> int:
        return len(self.rules) + len(self.tcp_rules) + len(self.ws_rules) + len(self.sse_rules)

    def fresh(self, rng: Random | None = None) -> RuleSet:
        """The same rules with counters at zero (``explain``, tests)."""
        return RuleSet(
            self.rules,
            self.tcp_rules,
            rng=rng or self.rng,
            max_body=self.max_body,
            files=self.files,
            ws_rules=self.ws_rules,
            sse_rules=self.sse_rules,
        )

    # -- request ---------------------------------------------------------

    def candidates(self, host: str, path: str, method: str, fields: Fields) -> Sequence[model.Rule]:
        """The rules the index says could match a request (``host`` without its
        port, as received; ``path`` percent-encoded, without the query).

        Empty: ``on_request`` would plan nothing (``inert``), so the caller may
        skip describing the request at all; else pass them to ``on_request``.
        """
        if not self.rules:
            return ()
        return self.index.candidates(match_host(host), normalize_path(path), method, fields)

    def on_request(
        self, info: RequestInfo, candidates: Sequence[model.Rule] | None = None
    ) -> RequestPlan:
        """Decide what the request head allows; see the module doc.

        ``candidates``: what ``candidates()`` said for this request, if asked already.
        """
        if not self.rules:
            return RequestPlan(self.nothing, info)
        facts = Facts(info, self.max_body)
        if candidates is None:
            candidates = self.index.candidates(facts.host, facts.path, info.method, info.fields)
        if not candidates:
            return RequestPlan(self.nothing, info)
        entries = tuple((r, False) for r in candidates)
        return self._request(facts, entries, 0, Run())

    def inert(self, plan: RequestPlan) -> bool:
        """Nothing matched and nothing waits for the response: the exchange can go
        on as if no rules were loaded (its response phase would be a no-op too)."""
        return plan.decision is self.nothing and plan.state is None

    def complete_request(self, plan: RequestPlan, body: bytes | None) -> RequestPlan:
        """Resume a pending plan with the buffered body (``None``: over --max-body)."""
        state = plan.state
        if not plan.pending or not isinstance(state, _Resume):
            return plan
        facts = state.facts.copy()
        facts.set_body(False, body)
        plan = self._request(facts, state.entries, state.position, state.run.copy())
        if body is None and plan.body_edits:
            plan = _warn(plan, "request body edits skipped (over --max-body)")
        return plan

    def _request(
        self, facts: Facts, entries: tuple[tuple[model.Rule, bool], ...], start: int, run: Run
    ) -> RequestPlan:
        for i in range(start, len(entries)):
            rule = entries[i][0]
            if not _holds(rule.on_request, facts):
                continue
            if rule.on_request_body:
                if facts.req_body is UNSET:
                    resume = _Resume(facts, entries, i, run)
                    return RequestPlan(run.decision(facts, self.max_body, True), facts.info, resume)
                if not _holds(rule.on_request_body, facts):
                    continue
            if rule.response_phase:
                run.later.append((rule, False))
                continue
            if self._chance(rule) and run.fire_request(rule, facts, self.rng):
                break
        if not run.hits and not run.later and not facts.warnings:
            return RequestPlan(self.nothing, facts.info)
        return RequestPlan(run.decision(facts, self.max_body, False), facts.info, run)

    # -- response --------------------------------------------------------

    def on_response(self, request: RequestPlan, status: int, fields: Fields) -> ResponsePlan:
        """Decide the response phase for the exchange ``request`` planned."""
        state = request.state
        if not isinstance(state, Run) or not state.later:
            log = request.decision.log
            return self.no_response if not log else ResponsePlan(replace(self.nothing, log=log))
        facts = (
            state.facts.copy() if state.facts is not None else Facts(request.info, self.max_body)
        )
        facts.status, facts.resp_fields = status, fields
        facts.warnings = []  # the request's warnings are in the request plan
        run = Run()
        run.log = request.decision.log  # the response plan's log covers the whole exchange
        return self._response(facts, tuple(state.later), 0, run)

    def complete_response(self, plan: ResponsePlan, body: bytes | None) -> ResponsePlan:
        """Resume a pending response plan with the buffered body."""
        state = plan.state
        if not plan.pending or not isinstance(state, _Resume):
            return plan
        facts = state.facts.copy()
        facts.set_body(True, body)
        plan = self._response(facts, state.entries, state.position, state.run.copy())
        if body is None and plan.body_edits:
            plan = _warn(plan, "response body edits skipped (over --max-body)")
        return plan

    def _response(
        self, facts: Facts, entries: tuple[tuple[model.Rule, bool], ...], start: int, run: Run
    ) -> ResponsePlan:
        for i in range(start, len(entries)):
            rule, decided = entries[i]
            if not decided:
                if not _holds(rule.on_response, facts):
                    continue
                if rule.on_response_body:
                    if facts.resp_body is UNSET:
                        resume = _Resume(facts, entries, i, run)
                        return ResponsePlan(run.decision(facts, self.max_body, True), resume)
                    if not _holds(rule.on_response_body, facts):
                        continue
                if not self._chance(rule):
                    continue
            if run.fire_response(rule, facts, self.rng, decided):
                break
        if not run.hits and not facts.warnings and not run.log:
            return self.no_response
        return ResponsePlan(run.decision(facts, self.max_body, False))

    # -- shared ----------------------------------------------------------

    def _chance(self, rule: model.Rule) -> bool:
        """``percent`` then ``times``: a rule counts only the matches it acted on."""
        if rule.percent is not None and not self.rng() * 100 < rule.percent:
            return False
        if rule.times is not None:
            if self.counts[rule.order] >= rule.times:
                return False
            self.counts[rule.order] += 1
        return True

    # -- tcp -------------------------------------------------------------

    def tcp_for(self, host: str, port: int, mode: str = "regular", client_ip: str = "") -> TcpPlan:
        """Fresh transformers for a new connection to ``host:port``."""
        stages: dict[str, list[tcp.Stage]] = {"upstream": [], "downstream": []}
        matched: list[str] = []
        for rule in self.tcp_rules:
            if not rule.stages or not rule.matches(host, port, mode, client_ip):
                continue  # a rule with only a route has nothing to do to the bytes
            if rule.percent is not None and not self.rng() * 100 < rule.percent:
                continue
            matched.append(rule.name)
            for direction in sorted(rule.directions):
                stages[direction] += [factory(self.rng) for _, factory in rule.stages]
        return TcpPlan(
            tcp.Transformer(stages["upstream"]),
            tcp.Transformer(stages["downstream"]),
            tuple(matched),
        )

    def ws_for(self, host: str, path: str) -> WsPlan:
        """The WebSocket message rules for a connection upgraded at ``host`` ``path``."""
        return WsPlan(tuple(r for r in self.ws_rules if r.for_connection(host, path)))

    def sse_for(self, host: str, path: str) -> SsePlan | None:
        """The event rules for a ``text/event-stream`` response to ``host`` ``path``."""
        rules = tuple(r for r in self.sse_rules if r.for_response(host, path))
        return SsePlan(rules) if rules else None

    def route_for(self, host: str, port: int, mode: str) -> str | None:
        """The route the first matching ``route:`` rule chooses ("direct" or a
        next proxy's URL), or None when no rule chooses one."""
        for rule in self.tcp_rules:
            if rule.route is not None and rule.matches(host, port, mode, ""):
                return rule.route
        return None


def _holds(matchers: tuple[Matcher, ...], facts: Facts) -> bool:
    """All matchers hold (a plain loop: measurably faster than all() on a generator)."""
    for m in matchers:  # noqa: SIM110
        if not m.test(facts):
            return False
    return True


def _warn(plan: Plan, warning: str) -> Plan:
    decision = replace(plan.decision, warnings=(*plan.decision.warnings, warning))
    return replace(plan, decision=decision)
