"""Pre-selecting the rules that could match a request.

With a thousand rules, most of them for other hosts or paths, testing each
one costs a thousand Python calls per request. The index files every rule
under keys its top-level ``host`` and ``path`` matchers imply, and answers
"which rules could match" with a few dict lookups and at most one regex:

* host: an exact host, a ``*.suffix`` (looked up for each dot of the
  request host), or, for globs and regexes, one alternation regex over
  every such rule's host pattern, searched once per request;
* path, within each host bucket: a trie of the path segments an exact
  path, a prefix or a glob's literal start require;
* for rules with neither: a header they require (by name, and by value
  when exact), else their methods.

The index is conservative: it may return rules that then fail their full
match, never omit one that would match. Rules it cannot key (no host, a
host inside ``any``/``not``, a regex with backreferences) are always
candidates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from proxy.http1.events import Fields
from proxy.rules.match import Field, Text
from proxy.rules.model import Rule
from proxy.rules.textmatch import StrPred


def segments(path: str) -> list[str]:
    """``/v1/users`` -> ``["v1", "users"]``; ``/`` -> ``[""]``."""
    return path.split("/", _DEPTH)[1:]


_DEPTH = 8  # deeper keys buy nothing in practice


class _Node:
    __slots__ = ("children", "rules")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.rules: list[Rule] = []


class _PathIndex:
    """Rules of one host bucket in a trie of path segments.

    A rule sits at the node of the complete segments its path pattern
    requires (``/api/v1/`` -> api, v1; a prefix ``/api/v1`` -> api, since
    ``/api/v10`` also starts with it), so a lookup walks the request path's
    segments and collects the rules met on the way.
    """

    __slots__ = ("anywhere", "root")

    def __init__(self) -> None:
        self.anywhere: list[Rule] = []
        self.root = _Node()

    def add(self, rule: Rule, keys: Iterable[tuple[str, ...]] | None) -> None:
        if keys is None:
            self.anywhere.append(rule)
            return
        for key in keys:
            node = self.root
            for seg in key[:_DEPTH]:
                node = node.children.setdefault(seg, _Node())
            node.rules.append(rule)

    def lookup(self, path: list[str], out: list[list[Rule]]) -> None:
        if self.anywhere:
            out.append(self.anywhere)
        node: _Node | None = self.root
        for seg in path:
            assert node is not None
            if node.rules:
                out.append(node.rules)
            node = node.children.get(seg)
            if node is None:
                return
        if node is not None and node.rules:
            out.append(node.rules)


class _FieldIndex:
    """Rules with no host or path condition, by a header or method they require.

    Any ``headers`` condition other than ``absent`` needs the header to be
    present, and an exact value needs that value: such rules are filed under
    ``(name, value)`` or ``(name, None)``; failing that, under their methods.
    """

    __slots__ = ("by_header", "by_method", "names")

    def __init__(self) -> None:
        self.by_header: dict[tuple[str, str | None], list[Rule]] = {}
        self.by_method: dict[str, list[Rule]] = {}
        # The names of ``by_header``: a request's field values are decoded
        # only for these (no header map is built to find none of them).
        self.names: set[str] = set()

    def add(self, rule: Rule) -> bool:
        """File the rule if it has a usable condition; False if it has none."""
        for m in rule.on_request:
            if isinstance(m, Field) and m.label == "header" and m.want:
                pred = m.pred
                exact = pred is not None and not (pred.prefixes or pred.suffixes or pred.regex)
                values = pred.exact if exact and pred is not None and not pred.regexes else (None,)
                for v in values:
                    self.by_header.setdefault((m.name, v), []).append(rule)
                self.names.add(m.name)
                return True
        for m in rule.on_request:
            if isinstance(m, Text) and m.label == "method":
                for method in m.pred.exact:
                    self.by_method.setdefault(method, []).append(rule)
                return True
        return False

    def lookup(self, method: str, fields: Fields, out: list[list[Rule]]) -> None:
        if self.by_header:
            by_header, wanted = self.by_header, self.names
            for raw, value in fields:
                name = raw.decode("latin-1").lower()  # as Facts.headers names it
                if name not in wanted:
                    continue  # no rule requires it: its value is never decoded
                # A repeated name finds its bucket again: candidates() dedupes.
                hit = by_header.get((name, None))
                if hit:
                    out.append(hit)
                hit = by_header.get((name, value.decode("latin-1")))
                if hit:
                    out.append(hit)
        if self.by_method:
            hit = self.by_method.get(method)
            if hit:
                out.append(hit)


class RuleIndex:
    """``candidates(facts)``: the rules worth testing, in file order."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.exact: dict[str, _PathIndex] = {}
        self.suffix: dict[str, _PathIndex] = {}
        self.anyhost = _PathIndex()
        self.patterned = _PathIndex()
        self.fields = _FieldIndex()
        hosts = [(rule, _top_text(rule, "host")) for rule in rules]
        sources = [p.source for _, p in hosts if p and not _plain(p) and p.source is not None]
        self.host_regex = _compile(sources)  # None when empty or not combinable
        for rule, pred in hosts:  # in file order, so every bucket list stays sorted
            keys = _path_keys(rule)
            if pred is not None and _plain(pred):
                for h in pred.exact:
                    self.exact.setdefault(h, _PathIndex()).add(rule, keys)
                for s in pred.suffixes:
                    self.suffix.setdefault(s, _PathIndex()).add(rule, keys)
            elif pred is not None and pred.source is not None and self.host_regex is not None:
                self.patterned.add(rule, keys)
            elif pred is not None or keys is not None or not self.fields.add(rule):
                self.anyhost.add(rule, keys)

    def candidates(
        self, host: str, path: str, method: str, fields: Fields
    ) -> tuple[Rule, ...] | list[Rule]:
        """``host`` and ``path`` as matchers see them (``Facts.host``, ``Facts.path``),
        ``method`` and ``fields`` as received."""
        seg = segments(path)
        found: list[list[Rule]] = []
        self.anyhost.lookup(seg, found)
        self.fields.lookup(method, fields, found)
        bucket = self.exact.get(host)
        if bucket is not None:
            bucket.lookup(seg, found)
        if self.suffix:
            dot = host.find(".")
            while dot >= 0:
                bucket = self.suffix.get(host[dot:])
                if bucket is not None:
                    bucket.lookup(seg, found)
                dot = host.find(".", dot + 1)
        if self.host_regex is not None and self.host_regex.search(host):
            self.patterned.lookup(seg, found)
        if not found:
            return ()
        if len(found) == 1:
            return found[0]
        return sorted({r.order: r for group in found for r in group}.values(), key=_order)


def _order(rule: Rule) -> int:
    return rule.order


def _compile(sources: list[str]) -> re.Pattern[str] | None:
    if not sources:
        return None
    try:
        return re.compile("|".join(f"(?:{s})" for s in sources), re.IGNORECASE)
    except re.error:
        return None


def _plain(pred: StrPred) -> bool:
    """Only exact hosts and ``*.suffix`` globs: indexable by dict lookups."""
    if pred.regex is not None or pred.regexes or pred.prefixes:
        return False
    return all(s.startswith(".") for s in pred.suffixes)


def _top_text(rule: Rule, label: str) -> StrPred | None:
    for m in rule.on_request:
        if isinstance(m, Text) and m.label == label:
            return m.pred
    return None


def _path_keys(rule: Rule) -> set[tuple[str, ...]] | None:
    """Trie keys for the rule's top-level path patterns; None: any path."""
    pred = _top_text(rule, "path")
    if pred is None:
        return None
    keys: set[tuple[str, ...]] = set()
    for p in pred.patterns:
        literal = p.text
        if p.kind == "glob":
            wild = [i for i in (literal.find("*"), literal.find("?")) if i >= 0]
            literal = literal[: min(wild, default=len(literal))]
        if not literal.startswith("/") or p.kind not in ("exact", "prefix", "glob"):
            return None
        parts = tuple(segments(literal))
        keys.add(parts if p.kind == "exact" else parts[:-1])  # a prefix's last part may be partial
    return keys
