"""WebSocket message rules (the ``websocket:`` section), loaded, and their run.

A rule chooses connections by the upgrade request's host and path, and
messages by direction (``upstream``: client to server; ``downstream``),
opcode (``text``/``binary``), a regex on the text and JSON Pointer
conditions on a JSON text (the syntax of body rules). A matching message
is acted on: ``replace`` (regex on the text) or ``json_patch`` (RFC 6902),
``drop``, ``delay``, ``inject`` a message (to the client or the server, at
the match or on a timer from the connection's start) and ``close`` with a
code (RFC 6455 §7.4). ``times`` limits a rule to its first N matches.

``WsPlan`` is one connection's view: the rules whose host and path match,
their counters, and ``decide`` for each complete message. Parsing is
``proxy.rules.parse_ws``; the layer that carries verdicts out is
``proxy.layers.websocket``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from proxy.rules.jsonpatch import MISSING, PatchError, PatchOp, apply_patch, json_equal, resolve
from proxy.rules.model import Source
from proxy.rules.textmatch import StrPred

UPSTREAM, DOWNSTREAM = "upstream", "downstream"


@dataclass(frozen=True, slots=True)
class WsInject:
    to: str  # "client" or "server"
    payload: bytes
    text: bool  # a text message (else binary)
    on: str = "match"  # "match" (after the matching message) or "open"
    delay_ms: float = 0.0  # after the match, or the first one after the start
    every_ms: float | None = None  # "open": again every so often
    count: int | None = None  # "open" with every_ms: this many (None: until the end)


@dataclass(frozen=True, slots=True)
class WsRule:
    order: int
    name: str
    source: Source
    host: StrPred | None = None
    path: StrPred | None = None
    directions: frozenset[str] = frozenset()  # empty: both
    opcodes: frozenset[str] = frozenset()  # empty: text and binary
    text: re.Pattern[str] | None = None
    json: tuple[tuple[tuple[str, ...], Any], ...] = ()
    replace: tuple[re.Pattern[str], str] | None = None
    json_patch: tuple[PatchOp, ...] = ()
    drop: bool = False
    delay_ms: float = 0.0
    inject: WsInject | None = None
    close: tuple[int, str] | None = None
    times: int | None = None
    actions: tuple[str, ...] = field(default=(), compare=False)  # summary, for records

    @property
    def on_messages(self) -> bool:
        """Acts on messages (an ``when: open`` inject alone does not)."""
        return self.inject is None or self.inject.on == "match" or self.acts

    @property
    def acts(self) -> bool:
        return bool(self.replace or self.json_patch or self.drop or self.delay_ms or self.close)

    def for_connection(self, host: str, path: str) -> bool:
        if self.host is not None and not self.host(host.lower()):
            return False
        return self.path is None or self.path(path)

    def matches(self, direction: str, text: bool, payload: bytes, doc: _Json) -> bool:
        if self.directions and direction not in self.directions:
            return False
        if self.opcodes and ("text" if text else "binary") not in self.opcodes:
            return False
        if self.text is not None and (
            not text or self.text.search(payload.decode("utf-8", "replace")) is None
        ):
            return False
        for pointer, expected in self.json:
            value = resolve(doc.get(payload), pointer)
            if value is MISSING or not json_equal(value, expected):
                return False
        return True


class _Json:
    """A message parsed as JSON once, however many rules look at it."""

    __slots__ = ("_done", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: Any = MISSING

    def get(self, payload: bytes) -> Any:
        if not self._done:
            self._done = True
            try:
                self._value = json.loads(payload)
            except ValueError:
                self._value = MISSING
        return self._value


@dataclass(slots=True)
class WsVerdict:
    """What the rules do to one message."""

    payload: bytes | None = None  # changed (None: as it came)
    drop: bool = False
    delay_ms: float = 0.0
    injects: list[WsInject] = field(default_factory=list)
    close: tuple[int, str] | None = None
    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # edits that could not apply

    @property
    def action(self) -> str | None:
        if self.drop:
            return "dropped"
        if self.payload is not None:
            return "replaced"
        if self.delay_ms:
            return "delayed"
        return None


class WsPlan:
    """The message rules of one connection, with their ``times`` counters."""

    __slots__ = ("counts", "rules")

    def __init__(self, rules: tuple[WsRule, ...]) -> None:
        self.rules = rules
        self.counts = [0] * len(rules)

    def holds(self, direction: str) -> bool:
        """Whether messages of ``direction`` wait whole for the rules."""
        return any(
            r.on_messages and (not r.directions or direction in r.directions) for r in self.rules
        )

    def on_open(self) -> list[tuple[str, WsInject]]:
        return [(r.name, r.inject) for r in self.rules if r.inject and r.inject.on == "open"]

    def decide(self, direction: str, text: bool, payload: bytes) -> WsVerdict:
        verdict = WsVerdict()
        doc = _Json()
        for i, rule in enumerate(self.rules):
            if not rule.on_messages or not rule.matches(direction, text, payload, doc):
                continue
            if rule.times is not None:
                if self.counts[i] >= rule.times:
                    continue
                self.counts[i] += 1
            verdict.rules.append(rule.name)
            self._act(rule, text, verdict, payload if verdict.payload is None else verdict.payload)
            if verdict.payload is not None and verdict.payload != payload:
                doc = _Json()  # later rules see the edited message
                payload = verdict.payload
        return verdict

    def _act(self, rule: WsRule, text: bool, verdict: WsVerdict, payload: bytes) -> None:
        if rule.replace is not None and text:
            regex, template = rule.replace
            verdict.payload = regex.sub(template, payload.decode("utf-8")).encode("utf-8")
        if rule.json_patch:
            try:
                doc = apply_patch(json.loads(payload), rule.json_patch)
                verdict.payload = json.dumps(doc, separators=(",", ":")).encode("utf-8")
            except (ValueError, PatchError) as e:
                verdict.notes.append(f"{rule.name}: json_patch not applied: {e}")
        if rule.drop:
            verdict.drop = True
        verdict.delay_ms += rule.delay_ms
        if rule.inject is not None and rule.inject.on == "match":
            verdict.injects.append(rule.inject)
        if rule.close is not None and verdict.close is None:
            verdict.close = rule.close


def summary(rule: WsRule) -> tuple[str, ...]:
    """What a rule does, in words (records, ``rules explain``)."""
    out: list[str] = []
    if rule.replace is not None:
        out.append(f"replace {rule.replace[0].pattern!r}")
    if rule.json_patch:
        out.append("json_patch " + ", ".join(str(op) for op in rule.json_patch))
    if rule.drop:
        out.append("drop")
    if rule.delay_ms:
        out.append(f"delay {rule.delay_ms:g}ms")
    if rule.inject is not None:
        i = rule.inject
        when = "at match" if i.on == "match" else "from open"
        every = f" every {i.every_ms:g}ms" if i.every_ms else ""
        out.append(f"inject to {i.to} {when}{every}")
    if rule.close is not None:
        out.append(f"close {rule.close[0]}")
    return tuple(out)
