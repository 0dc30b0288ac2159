"""The ``sse:`` section: rules on server-sent events (``proxy.rules.sserules``).

```yaml
sse:
  - name: calm-prices
    match: {host: api.example.test, path: {prefix: /events}, event: quote,
            json: {/symbol: ACME}, times: 10}
    json_patch: [{op: replace, path: /price, value: 0}]
  - match: {text: {contains: heartbeat}}
    drop: true
```

Matching and the edits are those of WebSocket text messages
(``proxy.rules.parse_ws``), on an event's data (its ``data`` lines joined
with LF).
"""

from __future__ import annotations

from dataclasses import replace

from yaml.nodes import Node

from proxy.rules.model import Source
from proxy.rules.parse_ws import KINDS, json_conditions, patch_ops, replace_spec, text_regex
from proxy.rules.patterns import patterns
from proxy.rules.sserules import SseRule, sse_summary
from proxy.rules.textmatch import StrPred
from proxy.rules.yamlnodes import Doc, boolean, check_keys, integer, items, mapping, string

ACTIONS = ("replace", "json_patch", "drop")
SSE_RULE_KEYS = ("name", "match", *ACTIONS)
SSE_MATCH_KEYS = ("host", "path", "event", "text", "json", "times")


def parse_sse_rule(doc: Doc, node: Node, path: str, order: int, name: str) -> SseRule | None:
    entries = mapping(doc, node, path, "an event rule mapping")
    if entries is None or not check_keys(doc, entries, node, path, SSE_RULE_KEYS):
        return None
    before = len(doc.errors)
    if not any(k in entries for k in ACTIONS):
        doc.error(node, path, f"an event rule needs at least one of {', '.join(ACTIONS)}")
    values: dict[str, object] = {}
    if "match" in entries:
        _match(doc, entries["match"][1], f"{path}.match", values)
    if "replace" in entries:
        values["replace"] = replace_spec(doc, entries["replace"][1], f"{path}.replace")
    if "json_patch" in entries:
        values["json_patch"] = patch_ops(doc, entries["json_patch"][1], f"{path}.json_patch")
    if "drop" in entries:
        values["drop"] = boolean(doc, entries["drop"][1], f"{path}.drop")
    if len(doc.errors) > before:
        return None
    values = {k: v for k, v in values.items() if v is not None}
    rule = SseRule(order, name, Source(doc.file, node.start_mark.line + 1), **values)  # type: ignore[arg-type]
    return replace(rule, actions=sse_summary(rule))


def _match(doc: Doc, node: Node, path: str, values: dict[str, object]) -> None:
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(doc, entries, node, path, SSE_MATCH_KEYS):
        return
    for key, (_, vnode) in entries.items():
        sub = f"{path}.{key}"
        if key in ("host", "path"):
            pats = patterns(doc, vnode, sub, KINDS, fold=key == "host")
            if pats is not None:
                segment = "/" if key == "path" else None
                values[key] = StrPred(pats, ignore_case=key == "host", segment=segment)
        elif key == "event":
            names = [string(doc, item, s) for item, s in items(vnode, sub)]
            if all(n is not None for n in names):
                values["events"] = frozenset(n for n in names if n is not None)
        elif key == "text":
            values["text"] = text_regex(doc, vnode, sub)
        elif key == "json":
            values["json"] = json_conditions(doc, vnode, sub)
        else:
            values["times"] = integer(doc, vnode, sub, 1)
