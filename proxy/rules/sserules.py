"""Server-sent event rules (the ``sse:`` section), loaded, and their run.

A rule chooses responses by the request's host and path, and events by type
(``event``), a regex on the data and JSON Pointer conditions on JSON data
(as body rules). A matching event is rewritten (``replace`` on the data, or
``json_patch``) or dropped; ``times`` limits a rule to its first N matches
per response. Parsing is ``proxy.rules.parse_sse``; the response path
carries verdicts out (``proxy.session.sseedit``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from proxy.rules.jsonpatch import MISSING, PatchError, PatchOp, apply_patch, json_equal, resolve
from proxy.rules.model import Source
from proxy.rules.textmatch import StrPred


@dataclass(frozen=True, slots=True)
class SseRule:
    order: int
    name: str
    source: Source
    host: StrPred | None = None
    path: StrPred | None = None
    events: frozenset[str] = frozenset()  # event types (empty: any)
    text: re.Pattern[str] | None = None
    json: tuple[tuple[tuple[str, ...], Any], ...] = ()
    replace: tuple[re.Pattern[str], str] | None = None
    json_patch: tuple[PatchOp, ...] = ()
    drop: bool = False
    times: int | None = None
    actions: tuple[str, ...] = field(default=(), compare=False)

    def for_response(self, host: str, path: str) -> bool:
        if self.host is not None and not self.host(host.lower()):
            return False
        return self.path is None or self.path(path)

    def matches(self, event: str, data: str) -> bool:
        if self.events and event not in self.events:
            return False
        if self.text is not None and self.text.search(data) is None:
            return False
        if self.json:
            try:
                doc = json.loads(data)
            except ValueError:
                return False
            for pointer, expected in self.json:
                value = resolve(doc, pointer)
                if value is MISSING or not json_equal(value, expected):
                    return False
        return True


@dataclass(slots=True)
class SseVerdict:
    data: str | None = None  # rewritten (None: as it came)
    drop: bool = False
    rules: list[str] = field(default_factory=list)

    @property
    def action(self) -> str | None:
        return "dropped" if self.drop else "replaced" if self.data is not None else None


class SsePlan:
    """The event rules of one response, with their ``times`` counters."""

    __slots__ = ("counts", "rules")

    def __init__(self, rules: tuple[SseRule, ...]) -> None:
        self.rules = rules
        self.counts = [0] * len(rules)

    def decide(self, event: str, data: str) -> SseVerdict:
        verdict = SseVerdict()
        for i, rule in enumerate(self.rules):
            current = data if verdict.data is None else verdict.data
            if not rule.matches(event, current):
                continue
            if rule.times is not None:
                if self.counts[i] >= rule.times:
                    continue
                self.counts[i] += 1
            verdict.rules.append(rule.name)
            if rule.replace is not None:
                regex, template = rule.replace
                verdict.data = regex.sub(template, current)
            if rule.json_patch:
                try:
                    doc = apply_patch(json.loads(current), rule.json_patch)
                    verdict.data = json.dumps(doc, separators=(",", ":"))
                except (ValueError, PatchError):
                    pass  # not JSON, or the patch does not apply: as it came
            verdict.drop = verdict.drop or rule.drop
        return verdict


def sse_summary(rule: SseRule) -> tuple[str, ...]:
    out: list[str] = []
    if rule.replace is not None:
        out.append(f"replace {rule.replace[0].pattern!r}")
    if rule.json_patch:
        out.append("json_patch " + ", ".join(str(op) for op in rule.json_patch))
    if rule.drop:
        out.append("drop")
    return tuple(out)
