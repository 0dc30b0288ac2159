"""Reading YAML as position-carrying nodes, and small typed accessors.

The loader never calls ``yaml.safe_load``: it composes the node graph
(``yaml.compose`` with the safe loader) so that every value keeps the line
and column it came from, and checks shapes itself. Each accessor reports a
problem to the ``Doc`` and returns ``None``, so one pass finds every error.

Aliases are allowed, but a value built from them is bounded in depth and
size (no "billion laughs", no recursion error on ``&a [*a]``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from proxy.rules.errors import RuleError

Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_C = yaml.constructor.SafeConstructor()
_T = "tag:yaml.org,2002:"
MAX_DEPTH = 64
MAX_NODES = 100_000
JSON = (
    Any  # a JSON-compatible value: dict[str, JSON] | list[JSON] | str | int | float | bool | None
)


@dataclass
class Doc:
    """One file being loaded: its name, its folder and the errors found so far."""

    file: str
    base: Path
    errors: list[RuleError] = field(default_factory=list)

    def error(self, node: Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        col = node.start_mark.column + 1 if node is not None else 1
        self.errors.append(RuleError(self.file, line, col, path, message))

    def where(self, node: Node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"


Entries = dict[str, tuple[Node, Node]]


def compose(doc: Doc, text: str) -> Node | None:
    """Parse ``text`` into a node graph, or report the YAML syntax error."""
    try:
        node: Node | None = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        msg = " ".join(p for p in (e.context, e.problem) if p) or "invalid YAML"
        doc.errors.append(RuleError(doc.file, line, col, "", f"YAML syntax: {msg}"))
        return None
    except yaml.YAMLError as e:
        doc.errors.append(RuleError(doc.file, 1, 1, "", f"YAML: {e}"))
        return None
    return node


def kind_of(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return {"null": "null", "bool": "a boolean", "int": "an integer", "float": "a number"}.get(
        node.tag.removeprefix(_T), "a string"
    )


def mapping(doc: Doc, node: Node, path: str, what: str = "a mapping") -> Entries | None:
    """The entries of a mapping with string keys; duplicates are errors."""
    if not isinstance(node, MappingNode):
        doc.error(node, path, f"expected {what}, got {kind_of(node)}")
        return None
    out: Entries = {}
    for knode, vnode in node.value:
        if not isinstance(knode, ScalarNode) or knode.tag == _T + "null":
            doc.error(knode, path, "keys must be strings")
            continue
        key = str(knode.value)
        if key in out:
            first = out[key][0].start_mark.line + 1
            doc.error(knode, path, f"duplicate key '{key}' (first at line {first})")
            continue
        out[key] = (knode, vnode)
    return out


_HINTS = {"equals": "exact", "equal": "exact", "is": "exact", "starts_with": "prefix"}


def suggest(word: str, choices: Sequence[str]) -> str:
    """A did-you-mean for a misspelt key, or ""."""
    hint = _HINTS.get(word)
    if hint in choices:
        return f" (did you mean '{hint}'?)"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(
    doc: Doc,
    entries: Entries,
    node: Node,
    path: str,
    allowed: Sequence[str],
    required: Sequence[str] = (),
    what: str = "key",
) -> bool:
    """Report unknown keys (with a did-you-mean) and missing required ones."""
    ok = True
    for key, (knode, _) in entries.items():
        if key not in allowed:
            doc.error(
                knode,
                path,
                f"unknown {what} '{key}'{suggest(key, allowed)}; "
                f"expected one of {', '.join(allowed)}",
            )
            ok = False
    for key in required:
        if key not in entries:
            doc.error(node, path, f"missing required key '{key}'")
            ok = False
    return ok


def items(node: Node, path: str) -> list[tuple[Node, str]]:
    """A list's items with their paths; a single value counts as a list of one."""
    if isinstance(node, SequenceNode):
        return [(n, f"{path}[{i}]") for i, n in enumerate(node.value)]
    return [(node, path)]


def string(doc: Doc, node: Node, path: str, what: str = "a string") -> str | None:
    """A scalar as written (``1`` and ``yes`` read as text where text is expected)."""
    if not isinstance(node, ScalarNode) or node.tag == _T + "null":
        doc.error(node, path, f"expected {what}, got {kind_of(node)}")
        return None
    return str(node.value)


def nonempty(doc: Doc, node: Node, path: str, what: str = "a non-empty string") -> str | None:
    s = string(doc, node, path, what)
    if s == "":
        doc.error(node, path, f"expected {what}")
        return None
    return s


def integer(doc: Doc, node: Node, path: str, lo: int, hi: int | None = None) -> int | None:
    """An integer in ``lo..hi`` (booleans are not integers here)."""
    if not isinstance(node, ScalarNode) or node.tag != _T + "int":
        doc.error(node, path, f"expected an integer, got {kind_of(node)}")
        return None
    try:
        value = int(_C.construct_yaml_int(node))
    except (ValueError, TypeError):
        doc.error(node, path, f"invalid integer {node.value!r}")
        return None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        doc.error(node, path, f"expected an integer {bound}, got {value}")
        return None
    return value


def number(doc: Doc, node: Node, path: str, lo: float, hi: float | None = None) -> float | None:
    """A finite number in ``lo..hi``."""
    if not isinstance(node, ScalarNode) or node.tag not in (_T + "int", _T + "float"):
        doc.error(node, path, f"expected a number, got {kind_of(node)}")
        return None
    try:
        raw = (
            _C.construct_yaml_int(node) if node.tag == _T + "int" else _C.construct_yaml_float(node)
        )
        value = float(raw)
    except (ValueError, TypeError, OverflowError):
        doc.error(node, path, f"invalid number {node.value!r}")
        return None
    if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
        bound = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
        doc.error(node, path, f"expected a number {bound}, got {node.value}")
        return None
    return value


def boolean(doc: Doc, node: Node, path: str) -> bool | None:
    if not isinstance(node, ScalarNode) or node.tag != _T + "bool":
        doc.error(node, path, f"expected true or false, got {kind_of(node)}")
        return None
    return bool(_C.construct_yaml_bool(node))


def json_value(doc: Doc, node: Node, path: str) -> tuple[bool, JSON]:
    """Convert a node to a JSON-compatible value: ``(ok, value)``."""
    budget = [MAX_NODES]
    try:
        return True, _to_json(node, 0, budget)
    except _BadValue as e:
        doc.error(e.node, path, e.message)
        return False, None


class _BadValue(Exception):
    def __init__(self, node: Node, message: str) -> None:
        self.node, self.message = node, message


def _to_json(node: Node, depth: int, budget: list[int]) -> JSON:
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        raise _BadValue(node, "value nested too deeply or too large")
    if isinstance(node, MappingNode):
        out: dict[str, JSON] = {}
        for k, v in node.value:
            if not isinstance(k, ScalarNode) or k.tag == _T + "null":
                raise _BadValue(k, "JSON object keys must be strings")
            out[str(k.value)] = _to_json(v, depth + 1, budget)
        return out
    if isinstance(node, SequenceNode):
        return [_to_json(v, depth + 1, budget) for v in node.value]
    assert isinstance(node, ScalarNode)
    return _scalar_json(node)


def _scalar_json(node: ScalarNode) -> JSON:
    tag = node.tag.removeprefix(_T)
    try:
        if tag == "null":
            return None
        if tag == "bool":
            return bool(_C.construct_yaml_bool(node))
        if tag == "int":
            return int(_C.construct_yaml_int(node))
        if tag == "float":
            value = float(_C.construct_yaml_float(node))
            if math.isfinite(value):
                return value
            raise _BadValue(node, "NaN and infinity are not JSON numbers")
    except (ValueError, TypeError, OverflowError) as e:
        raise _BadValue(node, f"invalid {tag} {node.value!r}") from e
    return str(node.value)
