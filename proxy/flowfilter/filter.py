"""``parse``: an expression to a ``Filter``, the object every caller holds."""

from __future__ import annotations

from proxy.flowfilter.errors import FilterError
from proxy.flowfilter.evaluate import Context, compile_tree
from proxy.flowfilter.nodes import Node, walk
from proxy.flowfilter.operators import OPERATORS
from proxy.flowfilter.parser import parse_tree
from proxy.flowfilter.subject import Subject


class Filter:
    """A parsed, compiled expression.

    ``matches(subject)`` evaluates it; ``needs_bodies`` says whether it reads
    bodies at all (callers skip loading them when not); ``str`` is the
    canonical text, which parses back to an equal filter. Filters are equal
    when their canonical texts are.
    """

    __slots__ = ("_predicate", "needs_bodies", "tree")

    def __init__(self, tree: Node) -> None:
        self.tree = tree
        self._predicate = compile_tree(tree)
        self.needs_bodies = any(OPERATORS[t.name].reads_body for t in walk(tree))

    def matches(self, subject: Subject) -> bool:
        return self._predicate(Context(subject))

    def __str__(self) -> str:
        return str(self.tree)

    def __repr__(self) -> str:
        return f"Filter({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and self.tree == other.tree

    def __hash__(self) -> int:
        return hash(self.tree)


def parse(expression: str) -> Filter:
    """The filter of ``expression``; ``FilterError`` (``.column``, 1-based) if
    it is not one. An empty expression is an error: callers that mean "no
    filter" say so with None."""
    tree = parse_tree(expression)
    try:
        return Filter(tree)
    except FilterError as e:  # a regex that does not compile
        e.expression = expression
        raise
