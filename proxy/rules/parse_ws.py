"""The ``websocket:`` section: rules on WebSocket messages (``proxy.rules.wsrules``).

```yaml
websocket:
  - name: zero-prices
    match: {host: "api.*", path: {prefix: /ws}, direction: downstream, opcode: text,
            text: {regex: '"price"'}, json: {/type: quote}, times: 3}
    replace: {regex: '"price":\\d+', with: '"price":0'}    # or json_patch: [...]
  - match: {text: {contains: ping}}
    drop: true
  - inject: {to: client, text: hello, when: open, every_ms: 1000, count: 3}
  - match: {text: {contains: bye}}
    close: {code: 4000, reason: "rule said so"}
```

Errors are reported with ``file:line:column`` like every other rule.
"""

from __future__ import annotations

import base64
import binascii
import re

from yaml.nodes import Node

from proxy.rules import parse_actions as pa
from proxy.rules.jsonpatch import PatchOp, parse_pointer
from proxy.rules.model import Source
from proxy.rules.patterns import patterns
from proxy.rules.textmatch import StrPred, check_regex, check_template
from proxy.rules.wsrules import DOWNSTREAM, UPSTREAM, WsInject, WsRule, summary
from proxy.rules.yamlnodes import (
    Doc,
    Entries,
    boolean,
    check_keys,
    integer,
    items,
    json_value,
    mapping,
    number,
    string,
)

ACTIONS = ("replace", "json_patch", "drop", "delay", "inject", "close")
WS_RULE_KEYS = ("name", "match", *ACTIONS)
WS_MATCH_KEYS = ("host", "path", "direction", "opcode", "text", "json", "times")
KINDS = ("exact", "prefix", "glob", "regex")


def parse_ws_rule(doc: Doc, node: Node, path: str, order: int, name: str) -> WsRule | None:
    entries = mapping(doc, node, path, "a WebSocket rule mapping")
    if entries is None or not check_keys(doc, entries, node, path, WS_RULE_KEYS):
        return None
    before = len(doc.errors)
    if not any(k in entries for k in ACTIONS):
        doc.error(node, path, f"a WebSocket rule needs at least one of {', '.join(ACTIONS)}")
    rule = WsRule(order, name, Source(doc.file, node.start_mark.line + 1))
    if "match" in entries:
        rule = _match(doc, entries["match"][1], f"{path}.match", rule) or rule
    rule = _actions(doc, entries, path, rule)
    if len(doc.errors) > before:
        return None
    if rule.inject is not None and rule.inject.on == "open" and rule.acts:
        doc.error(node, path, "an 'when: open' inject goes in a rule of its own")
        return None
    return WsRule(**{f: getattr(rule, f) for f in _FIELDS}, actions=summary(rule))


_FIELDS = tuple(f for f in WsRule.__dataclass_fields__ if f != "actions")


def _match(doc: Doc, node: Node, path: str, rule: WsRule) -> WsRule | None:
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(doc, entries, node, path, WS_MATCH_KEYS):
        return None
    values: dict[str, object] = {}
    for key, (_, vnode) in entries.items():
        sub = f"{path}.{key}"
        if key in ("host", "path"):
            pats = patterns(doc, vnode, sub, KINDS, fold=key == "host")
            if pats is not None:
                segment = "/" if key == "path" else None
                values[key] = StrPred(pats, ignore_case=key == "host", segment=segment)
        elif key == "direction":
            values["directions"] = choice_of(doc, vnode, sub, (UPSTREAM, DOWNSTREAM))
        elif key == "opcode":
            values["opcodes"] = choice_of(doc, vnode, sub, ("text", "binary"))
        elif key == "text":
            values["text"] = text_regex(doc, vnode, sub)
        elif key == "json":
            values["json"] = json_conditions(doc, vnode, sub)
        else:
            values["times"] = integer(doc, vnode, sub, 1)
    return _with(rule, values)


def _with(rule: WsRule, values: dict[str, object]) -> WsRule:
    fields = {f: getattr(rule, f) for f in _FIELDS}
    fields.update({k: v for k, v in values.items() if v is not None})
    return WsRule(**fields)


def choice_of(doc: Doc, node: Node, path: str, allowed: tuple[str, ...]) -> frozenset[str] | None:
    out: set[str] = set()
    for item, sub in items(node, path):
        value = string(doc, item, sub)
        if value is None:
            return None
        if value not in allowed:
            doc.error(item, sub, f"'{value}': expected one of {', '.join(allowed)}")
            return None
        out.add(value)
    return frozenset(out)


def text_regex(doc: Doc, node: Node, path: str) -> re.Pattern[str] | None:
    """``{regex: ...}`` or ``{contains: ...}``: searched in a text message."""
    entries = mapping(doc, node, path, "a mapping with regex or contains")
    if entries is None or not check_keys(doc, entries, node, path, ("regex", "contains")):
        return None
    if len(entries) != 1:
        doc.error(node, path, "expected exactly one of regex, contains")
        return None
    ((kind, (_, vnode)),) = entries.items()
    text = string(doc, vnode, f"{path}.{kind}")
    if text is None:
        return None
    if kind == "contains":
        return re.compile(re.escape(text))
    error = check_regex(text)
    if error is not None:
        doc.error(vnode, f"{path}.{kind}", error)
        return None
    return re.compile(text)


def json_conditions(
    doc: Doc, node: Node, path: str
) -> tuple[tuple[tuple[str, ...], object], ...] | None:
    """JSON Pointer (RFC 6901) to value, as in body rules."""
    entries = mapping(doc, node, path, "a mapping of JSON Pointers to values")
    if entries is None:
        return None
    out: list[tuple[tuple[str, ...], object]] = []
    for pointer, (knode, vnode) in entries.items():
        try:
            tokens = parse_pointer(pointer)
        except ValueError as e:
            doc.error(knode, path, str(e))
            continue
        ok, value = json_value(doc, vnode, f"{path}.{pointer}")
        if ok:
            out.append((tokens, value))
    return tuple(out)


def _actions(doc: Doc, entries: Entries, path: str, rule: WsRule) -> WsRule:
    values: dict[str, object] = {}
    for key in ACTIONS:
        if key not in entries:
            continue
        vnode, sub = entries[key][1], f"{path}.{key}"
        if key == "replace":
            values["replace"] = replace_spec(doc, vnode, sub)
        elif key == "json_patch":
            values["json_patch"] = patch_ops(doc, vnode, sub)
        elif key == "drop":
            values["drop"] = boolean(doc, vnode, sub)
        elif key == "delay":
            values["delay_ms"] = _ms(doc, vnode, sub)
        elif key == "inject":
            values["inject"] = _inject(doc, vnode, sub)
        else:
            values["close"] = _close(doc, vnode, sub)
    return _with(rule, values)


def replace_spec(doc: Doc, node: Node, path: str) -> tuple[re.Pattern[str], str] | None:
    entries = mapping(doc, node, path, "a mapping with regex and with")
    if entries is None or not check_keys(
        doc, entries, node, path, ("regex", "with"), ("regex", "with")
    ):
        return None
    text = string(doc, entries["regex"][1], f"{path}.regex")
    template = string(doc, entries["with"][1], f"{path}.with")
    if text is None or template is None:
        return None
    error = check_regex(text)
    if error is not None:
        doc.error(entries["regex"][1], f"{path}.regex", error)
        return None
    regex = re.compile(text)
    error = check_template(template, regex)
    if error is not None:
        doc.error(entries["with"][1], f"{path}.with", error)
        return None
    return regex, template


def patch_ops(doc: Doc, node: Node, path: str) -> tuple[PatchOp, ...] | None:
    ops: list[PatchOp] = []
    for item, sub in items(node, path):
        op = pa._patch_op(doc, item, sub)
        if op is None:
            return None
        ops.append(op)
    return tuple(ops)


def _ms(doc: Doc, node: Node, path: str) -> float | None:
    entries = mapping(doc, node, path, "a mapping with ms")
    if entries is None or not check_keys(doc, entries, node, path, ("ms",), ("ms",)):
        return None
    return number(doc, entries["ms"][1], f"{path}.ms", 0, 3_600_000)


_INJECT_KEYS = ("to", "text", "binary", "when", "delay_ms", "every_ms", "count")


def _inject(doc: Doc, node: Node, path: str) -> WsInject | None:
    entries = mapping(doc, node, path, "a mapping with to and text or binary")
    if entries is None or not check_keys(doc, entries, node, path, _INJECT_KEYS, ("to",)):
        return None
    to = string(doc, entries["to"][1], f"{path}.to")
    if to not in ("client", "server"):
        doc.error(entries["to"][1], f"{path}.to", "expected client or server")
        return None
    if ("text" in entries) == ("binary" in entries):
        doc.error(node, path, "expected one of text, binary (base64)")
        return None
    payload = _payload(doc, entries, path)
    # "when", not "on": YAML 1.1 readers take a bare ``on`` key for true
    on = string(doc, entries["when"][1], f"{path}.when") if "when" in entries else "match"
    if on not in ("match", "open"):
        doc.error(entries["when"][1], f"{path}.when", "expected match or open")
        return None
    nums = {
        k: number(doc, entries[k][1], f"{path}.{k}", 0, 86_400_000)
        for k in ("delay_ms", "every_ms")
        if k in entries
    }
    count = integer(doc, entries["count"][1], f"{path}.count", 1) if "count" in entries else None
    if on == "match" and ("every_ms" in entries or "count" in entries):
        doc.error(node, path, "every_ms and count are for 'when: open' injections")
        return None
    if payload is None:
        return None
    every = nums.get("every_ms")
    return WsInject(to, payload, "text" in entries, on, nums.get("delay_ms") or 0.0, every, count)


def _payload(doc: Doc, entries: Entries, path: str) -> bytes | None:
    if "text" in entries:
        text = string(doc, entries["text"][1], f"{path}.text")
        return None if text is None else text.encode("utf-8")
    data = string(doc, entries["binary"][1], f"{path}.binary")
    if data is None:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        doc.error(entries["binary"][1], f"{path}.binary", "expected base64")
        return None


def _close(doc: Doc, node: Node, path: str) -> tuple[int, str] | None:
    """``{code: N, reason: ...}``: a code an endpoint may send (RFC 6455 §7.4)."""
    entries = mapping(doc, node, path, "a mapping with code")
    if entries is None or not check_keys(doc, entries, node, path, ("code", "reason"), ("code",)):
        return None
    code = integer(doc, entries["code"][1], f"{path}.code", 1000, 4999)
    if code is not None and (code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000):
        doc.error(entries["code"][1], f"{path}.code", f"{code} may not be sent (RFC 6455 §7.4)")
        return None
    reason = string(doc, entries["reason"][1], f"{path}.reason") if "reason" in entries else ""
    if reason is not None and len(reason.encode("utf-8")) > 123:
        doc.error(entries["reason"][1], f"{path}.reason", "at most 123 bytes (RFC 6455 §5.5)")
        return None
    return None if code is None or reason is None else (code, reason)
