"""Building the edit actions of ``request:`` and ``response:`` lists.

Each list item is a mapping with exactly one action key. Regexes and their
replacement templates are checked here, at load time, so a typo in a group
reference is reported with its position instead of on the first request.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from yaml.nodes import Node, ScalarNode

from proxy.rules import actions as a
from proxy.rules import model
from proxy.rules import parse_terminals as pt
from proxy.rules.jsonpatch import OPS, PatchOp, parse_pointer
from proxy.rules.textmatch import check_regex, check_template
from proxy.rules.yamlnodes import (
    Doc,
    check_keys,
    integer,
    items,
    json_value,
    mapping,
    nonempty,
    string,
)

REQUEST_ACTIONS = (
    "set_header", "add_header", "remove_header", "rewrite_url", "rewrite_path",
    "set_query", "set_method", "replace_body", "json_merge", "json_patch",
)  # fmt: skip
RESPONSE_ACTIONS = (
    "set_header", "add_header", "remove_header", "set_status",
    "replace_body", "json_merge", "json_patch", "map_local",
)  # fmt: skip
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
ActionParser = Callable[[Doc, Node, str], list[a.Action]]


def parse_action_list(
    doc: Doc, node: Node, path: str, response: bool
) -> tuple[list[a.Action], model.MapLocalSpec | None] | None:
    """A ``request:`` or ``response:`` list; each item has exactly one action key."""
    allowed = RESPONSE_ACTIONS if response else REQUEST_ACTIONS
    out: list[a.Action] = []
    serve: model.MapLocalSpec | None = None
    before = len(doc.errors)
    for item, sub in items(node, path):
        entries = mapping(doc, item, sub, "an action mapping")
        if entries is None or not check_keys(doc, entries, item, sub, allowed, what="action"):
            continue
        if len(entries) != 1:
            doc.error(item, sub, "write one action per list item")
            continue
        ((key, (_, vnode)),) = entries.items()
        if key == "map_local":
            serve = pt.parse_map_local(doc, vnode, f"{sub}.map_local")
        else:
            out.extend(_ACTIONS[key](doc, vnode, f"{sub}.{key}"))
    return None if len(doc.errors) > before else (out, serve)


def _set_header(doc: Doc, node: Node, path: str) -> list[a.Action]:
    return [a.SetHeader(k, v) for k, v in pt.header_pairs(doc, node, path)]


def _add_header(doc: Doc, node: Node, path: str) -> list[a.Action]:
    return [a.AddHeader(k, v) for k, v in pt.header_pairs(doc, node, path)]


def _remove_header(doc: Doc, node: Node, path: str) -> list[a.Action]:
    out: list[a.Action] = []
    for item, sub in items(node, path):
        name = nonempty(doc, item, sub, "a header name")
        if name is not None and pt.safe_field(doc, item, sub, name, ""):
            out.append(a.RemoveHeader(name.lower().encode()))
    return out


def _regex_and_template(
    doc: Doc, node: Node, path: str, literal: bool = False
) -> tuple[str, str] | None:
    keys = ("regex", "literal", "with") if literal else ("regex", "with")
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(doc, entries, node, path, keys, ("with",)):
        return None
    if ("regex" in entries) == ("literal" in entries):
        doc.error(
            node,
            path,
            "expected exactly one of regex, literal" if literal else "missing required key 'regex'",
        )
        return None
    kind = "regex" if "regex" in entries else "literal"
    pattern = string(doc, entries[kind][1], f"{path}.{kind}")
    template = string(doc, entries["with"][1], f"{path}.with")
    if pattern is None or template is None:
        return None
    if kind == "literal":
        return re.escape(pattern), template.replace("\\", "\\\\")
    if (error := check_regex(pattern)) is not None:
        doc.error(entries[kind][1], f"{path}.{kind}", error)
        return None
    if (error := check_template(template, re.compile(pattern))) is not None:
        doc.error(entries["with"][1], f"{path}.with", error)
        return None
    return pattern, template


def _rewrite(cls: type[a.RewriteUrl] | type[a.RewritePath]) -> ActionParser:
    def parse(doc: Doc, node: Node, path: str) -> list[a.Action]:
        pair = _regex_and_template(doc, node, path)
        return [] if pair is None else [cls(re.compile(pair[0]), pair[1])]

    return parse


def _set_query(doc: Doc, node: Node, path: str) -> list[a.Action]:
    entries = mapping(doc, node, path, "a mapping of parameter names to values") or {}
    out: list[a.Action] = []
    for name, (_, vnode) in entries.items():
        if isinstance(vnode, ScalarNode) and vnode.tag.endswith(":null"):
            out.append(a.SetQuery(name, None))
        elif (value := string(doc, vnode, f"{path}.{name}")) is not None:
            out.append(a.SetQuery(name, value))
    return out


def _set_method(doc: Doc, node: Node, path: str) -> list[a.Action]:
    method = string(doc, node, path)
    if method is not None and not _TOKEN.fullmatch(method):
        doc.error(node, path, f"'{method}' is not a method token")
        return []
    return [] if method is None else [a.SetMethod(method)]


def _set_status(doc: Doc, node: Node, path: str) -> list[a.Action]:
    status = integer(doc, node, path, 200, 599)
    return [] if status is None else [a.SetStatus(status)]


def _replace_body(doc: Doc, node: Node, path: str) -> list[a.Action]:
    pair = _regex_and_template(doc, node, path, literal=True)
    if pair is None:
        return []
    if (error := check_regex(pair[0], as_bytes=True)) is not None:
        doc.error(node, path, error)  # valid as text, not for bytes (\u, \N)
        return []
    return [a.ReplaceBody(re.compile(pair[0].encode()), pair[1].encode())]


def _json_merge(doc: Doc, node: Node, path: str) -> list[a.Action]:
    ok, value = json_value(doc, node, path)
    return [a.JsonMerge(value)] if ok else []


def _json_patch(doc: Doc, node: Node, path: str) -> list[a.Action]:
    ops: list[PatchOp] = []
    for item, sub in items(node, path):
        op = _patch_op(doc, item, sub)
        if op is None:
            return []
        ops.append(op)
    return [a.JsonPatch(tuple(ops))]


def _patch_op(doc: Doc, node: Node, path: str) -> PatchOp | None:
    entries = mapping(doc, node, path, "a JSON Patch operation")
    if entries is None or not check_keys(
        doc, entries, node, path, ("op", "path", "value", "from"), ("op", "path")
    ):
        return None
    op = string(doc, entries["op"][1], f"{path}.op")
    if op not in OPS:
        doc.error(
            entries["op"][1], f"{path}.op", f"unknown op '{op}'; expected one of {', '.join(OPS)}"
        )
        return None
    need = (
        "value" if op in ("add", "replace", "test") else "from" if op in ("move", "copy") else None
    )
    if need and need not in entries:
        doc.error(node, path, f"'{op}' needs '{need}' (RFC 6902 §4)")
        return None
    pointers = [
        _pointer(doc, entries[k][1], f"{path}.{k}") for k in ("path", "from") if k in entries
    ]
    if any(p is None for p in pointers):
        return None
    ok, value = (
        json_value(doc, entries["value"][1], f"{path}.value")
        if "value" in entries
        else (True, None)
    )
    source = pointers[1] if len(pointers) > 1 else ()
    return PatchOp(op, pointers[0] or (), value, source or ()) if ok else None


def _pointer(doc: Doc, node: Node, path: str) -> tuple[str, ...] | None:
    text = string(doc, node, path, "a JSON Pointer")
    if text is None:
        return None
    try:
        return parse_pointer(text)
    except ValueError as e:
        doc.error(node, path, str(e))
        return None


_ACTIONS: dict[str, ActionParser] = {
    "set_header": _set_header,
    "add_header": _add_header,
    "remove_header": _remove_header,
    "rewrite_url": _rewrite(a.RewriteUrl),
    "rewrite_path": _rewrite(a.RewritePath),
    "set_query": _set_query,
    "set_method": _set_method,
    "set_status": _set_status,
    "replace_body": _replace_body,
    "json_merge": _json_merge,
    "json_patch": _json_patch,
}
