"""Building matchers from a rule's ``match`` mapping, with positioned errors.

Every key of a ``match`` mapping must hold; a list inside a key means "any
of". Strings are exact unless they contain ``*`` or ``?`` (then a glob), or
are written as ``{prefix: ...}``, ``{glob: ...}`` or ``{regex: ...}``.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from yaml.nodes import MappingNode, Node, SequenceNode

from proxy.rules import match as m
from proxy.rules.facts import Facts
from proxy.rules.jsonpatch import parse_pointer
from proxy.rules.parse_grpc import parse_grpc_match
from proxy.rules.patterns import patterns
from proxy.rules.textmatch import Pattern, StrPred, check_regex
from proxy.rules.yamlnodes import (
    Doc,
    boolean,
    check_keys,
    integer,
    items,
    json_value,
    mapping,
    nonempty,
    number,
    string,
)

MATCH_KEYS = (
    "scheme", "host", "port", "method", "path", "query", "headers", "client", "mode",
    "body", "status", "response_headers", "content_type", "response_body",
    "not", "any", "percent", "times", "grpc",
)  # fmt: skip
STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
MAX_NESTING = 16


@dataclass(frozen=True, slots=True)
class ParsedMatch:
    matcher: m.All
    percent: float | None
    times: int | None


def parse_match(doc: Doc, node: Node | None, path: str) -> ParsedMatch | None:
    """The top-level ``match`` of a rule (absent: matches everything)."""
    if node is None:
        return ParsedMatch(m.All([]), None, None)
    entries = mapping(doc, node, path)
    if entries is None:
        return None
    before = len(doc.errors)
    parts = _conditions(doc, node, path, 0)
    percent = times = None
    if "percent" in entries:
        percent = number(doc, entries["percent"][1], f"{path}.percent", 0, 100)
    if "times" in entries:
        times = integer(doc, entries["times"][1], f"{path}.times", 1)
    if parts is None or len(doc.errors) > before:
        return None
    return ParsedMatch(m.All(parts), percent, times)


def _conditions(doc: Doc, node: Node, path: str, depth: int) -> list[m.Matcher] | None:
    entries = mapping(doc, node, path)
    if entries is None:
        return None
    if depth > MAX_NESTING:
        doc.error(node, path, f"match nested deeper than {MAX_NESTING} levels")
        return None
    ok = check_keys(doc, entries, node, path, MATCH_KEYS, what="matcher")
    out: list[m.Matcher] = []
    for key, (knode, vnode) in entries.items():
        sub = f"{path}.{key}"
        if key in ("percent", "times"):
            if depth:
                doc.error(knode, sub, f"'{key}' is only allowed at the top level of match")
                ok = False
            continue
        if key not in MATCH_KEYS:
            continue
        matcher = _PARSERS[key](doc, vnode, sub, depth)
        if matcher is None:
            ok = False
        else:
            out.append(matcher)
    return out if ok else None


Parser = Callable[[Doc, Node, str, int], m.Matcher | None]


def _text(
    label: str,
    get: Callable[[Facts], str],
    kinds: tuple[str, ...],
    cost: int,
    fold: bool = False,
    segment: str | None = None,
    phase: m.Phase = m.Phase.REQUEST,
) -> Parser:
    def parse(doc: Doc, node: Node, path: str, depth: int) -> m.Matcher | None:
        pats = patterns(doc, node, path, kinds, fold)
        if pats is None:
            return None
        pred = StrPred(pats, ignore_case=fold, segment=segment)
        return m.Text(label, get, pred, cost, phase)

    return parse


def _method(doc: Doc, node: Node, path: str, depth: int) -> m.Matcher | None:
    values: list[Pattern] = []
    for item, sub in items(node, path):
        text = string(doc, item, sub)
        if text is None:
            return None
        if not _TOKEN.fullmatch(text):
            doc.error(item, sub, f"'{text}' is not a method token")
            return None
        if text != text.upper() and text.upper() in STANDARD_METHODS:
            doc.error(item, sub, f"methods are case-sensitive; did you mean '{text.upper()}'?")
            return None
        values.append(Pattern("exact", text))
    return m.Text("method", _get_method, StrPred(values), 1)


def _numbers(label: str, get: Callable[[Facts], int], lo: int, hi: int, phase: m.Phase) -> Parser:
    def parse(doc: Doc, node: Node, path: str, depth: int) -> m.Matcher | None:
        values: set[int] = set()
        ranges: list[tuple[int, int]] = []
        for item, sub in items(node, path):
            if item.tag.endswith(":int"):
                n = integer(doc, item, sub, lo, hi)
                if n is None:
                    return None
                values.add(n)
                continue
            r = _range(doc, item, sub, lo, hi)
            if r is None:
                return None
            ranges.append(r)
        text = " or ".join([str(v) for v in sorted(values)] + [f"{a}-{b}" for a, b in ranges])
        return m.Numbers(label, get, frozenset(values), tuple(ranges), phase, text)

    return parse


def _range(doc: Doc, node: Node, path: str, lo: int, hi: int) -> tuple[int, int] | None:
    """``"5xx"`` or ``"500-599"`` (inclusive)."""
    text = string(doc, node, path, "a number, 'Nxx' or 'A-B'") or ""
    if mx := re.fullmatch(r"([1-5])xx", text.lower()):
        return int(mx.group(1)) * 100, int(mx.group(1)) * 100 + 99
    if mr := re.fullmatch(r"\s*([0-9]{1,5})\s*-\s*([0-9]{1,5})\s*", text):
        a, b = int(mr.group(1)), int(mr.group(2))
        if lo <= a <= b <= hi:
            return a, b
    if text:
        doc.error(node, path, f"expected a number, 'Nxx' or 'A-B' within {lo}-{hi}, got '{text}'")
    return None


def _fields(label: str, get: Callable[[Facts], dict[str, list[str]]], phase: m.Phase) -> Parser:
    def parse(doc: Doc, node: Node, path: str, depth: int) -> m.Matcher | None:
        entries = mapping(doc, node, path, f"a mapping of {label} names to conditions")
        if entries is None:
            return None
        parts: list[m.Matcher] = []
        for name, (_, vnode) in entries.items():
            sub = f"{path}.{name}"
            lname = name.lower() if label != "query" else name
            field = _field(doc, vnode, sub, label, lname, get, phase)
            if field is None:
                return None
            parts.append(field)
        return m.All(parts)

    return parse


_FIELD_KINDS = ("exact", "prefix", "glob", "regex", "present", "absent")


def _field(
    doc: Doc,
    node: Node,
    path: str,
    label: str,
    name: str,
    get: Callable[[Facts], dict[str, list[str]]],
    phase: m.Phase,
) -> m.Matcher | None:
    if isinstance(node, MappingNode):
        entries = mapping(doc, node, path)
        if entries is None or not check_keys(
            doc, entries, node, path, _FIELD_KINDS, what="matcher"
        ):
            return None
        for flag in ("present", "absent"):
            if flag in entries:
                if len(entries) != 1:
                    doc.error(node, path, f"write '{flag}: true' alone")
                    return None
                value = boolean(doc, entries[flag][1], f"{path}.{flag}")
                if value is None:
                    return None
                return m.Field(label, get, name, None, (flag == "present") == value, phase)
    pats = patterns(doc, node, path, _FIELD_KINDS[:4])
    if pats is None:
        return None
    return m.Field(label, get, name, StrPred(pats), True, phase)


def _client(doc: Doc, node: Node, path: str, depth: int) -> m.Matcher | None:
    nets: list[m.Network] = []
    for item, sub in items(node, path):
        text = nonempty(doc, item, sub, "an address or CIDR network")
        if text is None:
            return None
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError as e:
            doc.error(item, sub, f"invalid network: {e}")
            return None
    return m.Client(nets)


def _body(response: bool) -> Parser:
    def parse(doc: Doc, node: Node, path: str, depth: int) -> m.Matcher | None:
        alternatives: list[m.Matcher] = []
        for item, sub in items(node, path):
            one = _body_all(doc, item, sub, response)
            if one is None:
                return None
            alternatives.append(one)
        return alternatives[0] if len(alternatives) == 1 else m.AnyOf(alternatives)

    return parse


def _body_all(doc: Doc, node: Node, path: str, response: bool) -> m.Matcher | None:
    entries = mapping(doc, node, path, "a mapping with contains, regex or json")
    if entries is None or not check_keys(doc, entries, node, path, ("contains", "regex", "json")):
        return None
    before = len(doc.errors)
    parts: list[m.Matcher] = []
    for key, (_, vnode) in entries.items():
        sub = f"{path}.{key}"
        if key == "json":
            parts.extend(_body_json(doc, vnode, sub, response) or [])
            continue
        text = string(doc, vnode, sub)
        if text is None:
            continue
        if key == "contains":
            parts.append(m.BodyText(response, text.encode(), None, f"contains {text!r}"))
        elif (error := check_regex(text, as_bytes=True)) is not None:
            doc.error(vnode, sub, error)
        else:
            regex = re.compile(text.encode())
            parts.append(m.BodyText(response, None, regex, f"matches {text!r}"))
    return m.All(parts) if len(doc.errors) == before else None


def _body_json(doc: Doc, node: Node, path: str, response: bool) -> list[m.Matcher] | None:
    entries = mapping(doc, node, path, "a mapping of JSON Pointers to values")
    if entries is None:
        return None
    out: list[m.Matcher] = []
    for pointer, (knode, vnode) in entries.items():
        try:
            parse_pointer(pointer)
        except ValueError as e:
            doc.error(knode, path, str(e))
            continue
        ok, value = json_value(doc, vnode, f"{path}.{pointer}")
        if ok:
            out.append(m.BodyJson(response, pointer, value))
    return out


def _not(doc: Doc, node: Node, path: str, depth: int) -> m.Matcher | None:
    parts = _conditions(doc, node, path, depth + 1)
    return None if parts is None else m.Not(m.All(parts))


def _any(doc: Doc, node: Node, path: str, depth: int) -> m.Matcher | None:
    if not isinstance(node, SequenceNode) or not node.value:
        doc.error(node, path, "expected a non-empty list of match mappings")
        return None
    alternatives: list[m.Matcher] = []
    for item, sub in items(node, path):
        parts = _conditions(doc, item, sub, depth + 1)
        if parts is None:
            return None
        alternatives.append(m.All(parts))
    return m.AnyOf(alternatives)


def _get_method(f: Facts) -> str:
    return f.info.method


def _get_scheme(f: Facts) -> str:
    return f.info.scheme.lower()


def _get_mode(f: Facts) -> str:
    return f.info.mode


def _get_port(f: Facts) -> int:
    return f.info.port


def _get_status(f: Facts) -> int:
    return f.status


def _get_content_type(f: Facts) -> str:
    return f.content_type


_PARSERS: dict[str, Parser] = {
    "scheme": _text("scheme", _get_scheme, ("exact",), 1, fold=True),
    "host": _text("host", operator.attrgetter("host"), ("exact", "glob", "regex"), 2, fold=True),
    "port": _numbers("port", _get_port, 1, 65535, m.Phase.REQUEST),
    "method": _method,
    "path": _text(
        "path", operator.attrgetter("path"), ("exact", "prefix", "glob", "regex"), 2, segment="/"
    ),
    "query": _fields("query", operator.attrgetter("query"), m.Phase.REQUEST),
    "headers": _fields("header", operator.attrgetter("headers"), m.Phase.REQUEST),
    "client": _client,
    "mode": _text("mode", _get_mode, ("exact", "glob"), 1),
    "body": _body(False),
    "status": _numbers("status", _get_status, 100, 599, m.Phase.RESPONSE),
    "response_headers": _fields(
        "response header", operator.attrgetter("resp_headers"), m.Phase.RESPONSE
    ),
    "content_type": _text(
        "content_type",
        _get_content_type,
        ("exact", "glob", "regex"),
        2,
        fold=True,
        phase=m.Phase.RESPONSE,
    ),
    "response_body": _body(True),
    "not": _not,
    "any": _any,
    "grpc": parse_grpc_match,
}
