"""Why a rule did or did not fire, for ``tapproxy rules explain`` and ``-v``.

``explain`` evaluates a request (and optionally a response) on a fresh copy
of the rule set whose random source always lets ``percent`` rules through
and whose ``times`` counters are zero, then gives each rule a verdict: it
matched (and what it did, and how often: its ``percent``), which condition
failed and on what value, or that an earlier terminal rule ended the chain
before it. When a ``percent`` rule matched, the request is evaluated again
with no ``percent`` rule acting, so both outcomes can be shown. Body edits
are applied one by one to the sample bodies, so each edit's effect shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.http1.events import Fields
from proxy.rules.actions import EDIT_FAILURES, Action
from proxy.rules.engine import RuleSet
from proxy.rules.facts import Facts, RequestInfo
from proxy.rules.match import Phase
from proxy.rules.model import Rule
from proxy.rules.plans import RequestPlan, ResponsePlan, RuleHit


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: str
    source: str
    matched: bool
    detail: str  # the actions it ran, or why it did not match
    percent: float | None = None  # the rule acts on this share of matches (None: all)


@dataclass(frozen=True, slots=True)
class EditStep:
    """One body edit applied to the sample body: the body after it, or why not."""

    edit: str
    body: bytes
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    request: RequestPlan
    response: ResponsePlan | None
    verdicts: tuple[Verdict, ...]
    #: The request's plan when no ``percent`` rule acts (None: no such rule matched).
    otherwise: RequestPlan | None = None
    request_steps: tuple[EditStep, ...] = ()
    response_steps: tuple[EditStep, ...] = ()

    @property
    def chance(self) -> float:
        """The probability (0-1) that every matched ``percent`` rule acts."""
        p = 1.0
        for v in self.verdicts:
            if v.matched and v.percent is not None:
                p *= v.percent / 100
        return p


def explain(
    ruleset: RuleSet,
    info: RequestInfo,
    *,
    body: bytes = b"",
    status: int | None = None,
    response_fields: Fields = (),
    response_body: bytes = b"",
) -> Explanation:
    """Evaluate one exchange and say, rule by rule, what happened."""
    rs = ruleset.fresh(rng=lambda: 0.0)
    plan = rs.on_request(info)
    if plan.pending:
        plan = rs.complete_request(plan, body)
    rplan = None
    if status is not None:
        rplan = rs.on_response(plan, status, response_fields)
        if rplan.pending:
            rplan = rs.complete_response(rplan, response_body)
    facts = Facts(info, rs.max_body)
    facts.set_body(False, body)
    if status is not None:
        facts.status, facts.resp_fields = status, response_fields
        facts.set_body(True, response_body)
    hits = _hits(plan, rplan)
    ended_by = plan.terminal.rule if plan.terminal is not None else None
    ended_at = next((r.order for r in rs.rules if r.name == ended_by), len(rs.rules))
    verdicts = tuple(_verdict(r, hits, facts, status, ended_by, ended_at) for r in rs.rules)
    otherwise = None
    if any(v.matched and v.percent is not None and v.percent < 100 for v in verdicts):
        otherwise = ruleset.fresh(rng=lambda: NEVER).on_request(info)
        if otherwise.pending:
            otherwise = ruleset.fresh(rng=lambda: NEVER).complete_request(otherwise, body)
    return Explanation(
        plan,
        rplan,
        verdicts,
        otherwise,
        edit_steps(plan.body_edits, body),
        edit_steps(rplan.body_edits, response_body) if rplan is not None else (),
    )


#: A random draw no ``percent`` below 100 lets through (``rng() * 100 < percent``).
NEVER = 0.999999


def edit_steps(edits: Sequence[Action], body: bytes) -> tuple[EditStep, ...]:
    """Each body edit applied in turn to ``body`` (already decoded: a sample)."""
    steps = []
    for action in edits:
        try:
            body = action.apply_body(body)
            steps.append(EditStep(action.summary(), body))
        except EDIT_FAILURES as e:
            steps.append(EditStep(action.summary(), body, str(e)))
    return tuple(steps)


def _hits(plan: RequestPlan, rplan: ResponsePlan | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    responses: tuple[RuleHit, ...] = rplan.hits if rplan is not None else ()
    for hit in plan.hits + responses:
        out.setdefault(hit.rule, []).extend(hit.actions)
    return out


def _verdict(
    rule: Rule,
    hits: dict[str, list[str]],
    facts: Facts,
    status: int | None,
    ended_by: str | None,
    ended_at: int,
) -> Verdict:
    source = str(rule.source)
    if rule.name in hits:
        actions = ", ".join(hits[rule.name]) or "matched"
        return Verdict(rule.name, source, True, actions, rule.percent)
    for part in rule.match.parts:
        if status is None and part.phase >= Phase.RESPONSE:
            return Verdict(
                rule.name, source, False, f"needs a response to decide: {part.describe()}"
            )
        if not part.test(facts):
            seen = part.observed(facts)
            return Verdict(
                rule.name, source, False, part.describe() + (f" (got {seen})" if seen else "")
            )
    if rule.order > ended_at:
        return Verdict(rule.name, source, False, f"not reached: '{ended_by}' ended the chain")
    if rule.percent == 0:
        return Verdict(rule.name, source, False, "percent is 0")
    return Verdict(rule.name, source, False, "matched, but only acts on the response")
