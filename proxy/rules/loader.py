"""Loading rule files: ``load_rules(paths) -> RuleSet`` or ``RulesError``.

A path may be a file or a folder (every ``*.yaml`` in it, sorted by name).
Rules from all files run in the order given. Each file is a mapping with
``version: 1`` and optional ``rules`` (HTTP) and ``tcp`` lists; relative
paths inside a file (mock bodies, map_local folders) are relative to it.

The loader collects every error of every file before raising, each with
its ``file:line:column`` and document path.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from yaml.nodes import Node

from proxy.rules import body as codec
from proxy.rules import model
from proxy.rules import parse_actions as pa
from proxy.rules import parse_terminals as pt
from proxy.rules.actions import Action
from proxy.rules.engine import RuleSet
from proxy.rules.errors import RuleError, RulesError
from proxy.rules.match import Phase
from proxy.rules.parse_grpc import parse_grpc_section
from proxy.rules.parse_match import parse_match
from proxy.rules.parse_sse import parse_sse_rule
from proxy.rules.parse_tcp import TcpRule, parse_tcp_rule
from proxy.rules.parse_ws import parse_ws_rule
from proxy.rules.sserules import SseRule
from proxy.rules.wsrules import WsRule
from proxy.rules.yamlnodes import Doc, check_keys, compose, integer, items, mapping, nonempty

TOP_KEYS = ("version", "rules", "tcp", "websocket", "sse")
RULE_KEYS = (
    "name",
    "match",
    "request",
    "response",
    "respond",
    "map_local",
    "map_remote",
    "block",
    "fault",
    "log",
    "grpc",
)
TERMINALS = ("respond", "map_local", "map_remote", "block")
_EFFECTS = ("request", "response", *TERMINALS, "fault", "log", "grpc")
_RESPONSE_KEYS = "status, response_headers, content_type, response_body"


@dataclass(frozen=True, slots=True)
class SourceText:
    """One rules file's name and content (the watcher reads files itself)."""

    path: Path
    text: str


def expand(paths: Sequence[Path]) -> list[Path]:
    """Files to load: folders become their ``*.yaml`` files, sorted."""
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    return out


def read_sources(paths: Sequence[Path]) -> tuple[list[SourceText], list[RuleError]]:
    sources, errors = [], []
    for p in expand(paths):
        try:
            sources.append(SourceText(p, p.read_bytes().decode("utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            errors.append(RuleError(str(p), 1, 1, "", f"cannot read: {e}"))
    return sources, errors


def load_rules(
    paths: Sequence[Path],
    *,
    rng: Callable[[], float] = random.random,
    max_body: int = codec.DEFAULT_LIMIT,
) -> RuleSet:
    """Load and check rule files; raise ``RulesError`` listing every problem."""
    sources, errors = read_sources(paths)
    if errors:
        raise RulesError(errors)
    return load_sources(sources, rng=rng, max_body=max_body)


def load_sources(
    sources: Sequence[SourceText],
    *,
    rng: Callable[[], float] = random.random,
    max_body: int = codec.DEFAULT_LIMIT,
) -> RuleSet:
    rules: list[model.Rule] = []
    tcp_rules: list[TcpRule] = []
    ws_rules: list[WsRule | SseRule] = []  # the websocket: and sse: sections
    errors: list[RuleError] = []
    names: dict[str, str] = {}
    for src in sources:
        doc = Doc(str(src.path), src.path.parent.resolve())
        _parse_file(doc, src.text, rules, tcp_rules, names, ws_rules)
        errors += sorted(doc.errors, key=lambda e: (e.line, e.column))
    if errors:
        raise RulesError(errors)
    files = [s.path for s in sources]
    ws = [r for r in ws_rules if isinstance(r, WsRule)]
    sse = [r for r in ws_rules if isinstance(r, SseRule)]
    return RuleSet(
        rules, tcp_rules, rng=rng, max_body=max_body, files=files, ws_rules=ws, sse_rules=sse
    )


def _parse_file(
    doc: Doc,
    text: str,
    rules: list[model.Rule],
    tcp_rules: list[TcpRule],
    names: dict[str, str],
    ws_rules: list[WsRule | SseRule],
) -> None:
    root = compose(doc, text)
    if root is None:
        if not doc.errors:
            doc.error(None, "", "empty file; expected a mapping with 'version: 1'")
        return
    entries = mapping(doc, root, "", "a mapping with 'version: 1'")
    if entries is None:
        return
    check_keys(doc, entries, root, "", TOP_KEYS, ("version",))
    if "version" in entries:
        version = integer(doc, entries["version"][1], "version", 1, None)
        if version is not None and version != 1:
            doc.error(
                entries["version"][1], "version", f"unsupported version {version}; expected 1"
            )
    for key in ("rules", "tcp"):
        if key in entries:
            _parse_list(doc, entries[key][1], key, rules, tcp_rules, names)
    for key in ("websocket", "sse"):
        if key in entries:
            _parse_stream_list(doc, entries[key][1], key, ws_rules, names)


def _parse_stream_list(
    doc: Doc, node: Node, key: str, out: list[WsRule | SseRule], names: dict[str, str]
) -> None:
    """The ``websocket:`` and ``sse:`` sections (``proxy.rules.parse_ws``, ``parse_sse``)."""
    if node.tag.endswith(":null"):
        return
    if not node.tag.endswith(":seq"):
        what = "WebSocket" if key == "websocket" else "event"
        doc.error(node, key, f"expected a list of {what} rules")
        return
    for item, path in items(node, key):
        name = _rule_name(doc, item, path, names)
        order = sum(1 for r in out if isinstance(r, WsRule) == (key == "websocket"))
        parse = parse_ws_rule if key == "websocket" else parse_sse_rule
        rule = parse(doc, item, path, order, name)
        if rule is not None:
            out.append(rule)


def _parse_list(
    doc: Doc,
    node: Node,
    key: str,
    rules: list[model.Rule],
    tcp_rules: list[TcpRule],
    names: dict[str, str],
) -> None:
    if node.tag.endswith(":null"):
        return  # "rules:" with nothing under it: an empty list
    if not node.tag.endswith(":seq"):
        doc.error(node, key, f"expected a list of {'TCP ' if key == 'tcp' else ''}rules")
        return
    for item, path in items(node, key):
        name = _rule_name(doc, item, path, names)
        if key == "rules":
            rule = parse_rule(doc, item, path, len(rules), name)
            if rule is not None:
                rules.append(rule)
        else:
            tcp_rule = parse_tcp_rule(doc, item, path, len(tcp_rules), name)
            if tcp_rule is not None:
                tcp_rules.append(tcp_rule)


def _rule_name(doc: Doc, node: Node, path: str, names: dict[str, str]) -> str:
    """The rule's ``name`` (unique over all files), or ``file:line``."""
    default = f"{Path(doc.file).name}:{node.start_mark.line + 1}"
    entries = mapping(doc, node, path, "a rule mapping")
    if entries is None or "name" not in entries:
        return default
    name_node = entries["name"][1]
    name = nonempty(doc, name_node, f"{path}.name", "a rule name")
    if name is None:
        return default
    where = doc.where(name_node)
    if name in names:
        doc.error(
            name_node, f"{path}.name", f"duplicate rule name '{name}' (first at {names[name]})"
        )
    names[name] = names.get(name, where)
    return name


def parse_rule(doc: Doc, node: Node, path: str, order: int, name: str) -> model.Rule | None:
    """One HTTP rule; ``None`` after reporting its errors."""
    entries = mapping(doc, node, path, "a rule mapping")
    if entries is None:
        return None
    before = len(doc.errors)
    check_keys(doc, entries, node, path, RULE_KEYS)  # then check the known keys too
    parsed = parse_match(doc, entries["match"][1] if "match" in entries else None, f"{path}.match")
    request: list[Action] = []
    response: list[Action] = []
    serve = None
    if "request" in entries:
        got = pa.parse_action_list(doc, entries["request"][1], f"{path}.request", response=False)
        request = got[0] if got else []
    if "response" in entries:
        got = pa.parse_action_list(doc, entries["response"][1], f"{path}.response", response=True)
        response, serve = got if got else ([], None)
    terminal = _terminal(doc, entries, node, path)
    fault = (
        pt.parse_fault(doc, entries["fault"][1], f"{path}.fault") if "fault" in entries else None
    )
    log = pt.parse_log(doc, entries["log"][1], f"{path}.log") if "log" in entries else None
    grpc = (
        parse_grpc_section(doc, entries["grpc"][1], f"{path}.grpc") if "grpc" in entries else None
    )
    if grpc is not None and grpc[0] is not None:
        if terminal is not None:
            doc.error(
                node, path, "a rule answers once: grpc.status or one of " + ", ".join(TERMINALS)
            )
        terminal = grpc[0]
    if parsed is None or len(doc.errors) > before:
        return None
    parts = parsed.matcher.parts
    response_phase = any(p.phase >= Phase.RESPONSE for p in parts)
    fault_spec, fault_phase = fault if fault else (None, None)
    fault_on_response = fault_phase == "response" or (fault_phase is None and response_phase)
    rule = model.Rule(
        order=order,
        name=name,
        source=model.Source(doc.file, node.start_mark.line + 1),
        match=parsed.matcher,
        on_request=tuple(p for p in parts if p.phase == Phase.REQUEST),
        on_request_body=tuple(p for p in parts if p.phase == Phase.REQUEST_BODY),
        on_response=tuple(p for p in parts if p.phase == Phase.RESPONSE),
        on_response_body=tuple(p for p in parts if p.phase == Phase.RESPONSE_BODY),
        percent=parsed.percent,
        times=parsed.times,
        request=tuple(request),
        response=tuple(response),
        terminal=terminal,
        response_terminal=replace(serve, fallthrough=True) if serve else None,
        request_fault=None if fault_on_response else fault_spec,
        response_fault=fault_spec if fault_on_response else None,
        log=log,
        grpc=grpc[1] if grpc is not None and grpc[1] else None,
    )
    return rule if _consistent(doc, node, path, rule, entries) else None


def _terminal(
    doc: Doc, entries: dict[str, tuple[Node, Node]], node: Node, path: str
) -> model.TerminalSpec | None:
    present = [k for k in TERMINALS if k in entries]
    if len(present) > 1:
        doc.error(
            node,
            path,
            f"a rule has at most one of {', '.join(TERMINALS)} (got {', '.join(present)})",
        )
        return None
    if not present:
        return None
    key = present[0]
    vnode, sub = entries[key][1], f"{path}.{key}"
    if key == "respond":
        return pt.parse_respond(doc, vnode, sub)
    if key == "map_local":
        return pt.parse_map_local(doc, vnode, sub)
    if key == "block":
        return pt.parse_block(doc, vnode, sub)
    action = pt.parse_map_remote(doc, vnode, sub)
    return None if action is None else model.MapRemoteSpec(action)


def _consistent(
    doc: Doc, node: Node, path: str, rule: model.Rule, entries: dict[str, tuple[Node, Node]]
) -> bool:
    """Cross-field checks: phases, dead edits, one terminal, doing something."""
    problems = []
    if rule.response_phase:
        for key in ("request", "grpc", *TERMINALS):
            if key in entries:
                problems.append(f"'{key}' cannot depend on response matchers ({_RESPONSE_KEYS})")
        if rule.request_fault is not None:
            problems.append("a request-phase fault cannot depend on response matchers")
    answers = isinstance(rule.terminal, model.RespondSpec | model.MapLocalSpec | model.CloseSpec)
    if answers and rule.request_fault and rule.request_fault.terminal:
        problems.append("a rule cannot both answer and abort/reset/hang")
    if answers and rule.request:
        problems.append(
            "request edits have no effect when the rule answers itself (respond, map_local, block)"
        )
    if rule.response_terminal and rule.response_fault and rule.response_fault.terminal:
        problems.append("a rule cannot both serve a file and abort/reset/hang the response")
    if not any(k in entries for k in _EFFECTS):
        problems.append(f"the rule does nothing; add one of {', '.join(_EFFECTS)}")
    for message in problems:
        doc.error(node, path, message)
    return not problems
