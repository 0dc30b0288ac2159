"""``parse``: an expression to a ``Filter``, the object every caller holds."""

from __future__ import annotations

from proxy.flowfilter.errors import FilterError
from proxy.flowfilter.evaluate import MATCH_BUDGET, Context, OutOfTime, compile_tree
from proxy.flowfilter.nodes import Node, walk
from proxy.flowfilter.operators import OPERATORS
from proxy.flowfilter.parser import parse_tree
from proxy.flowfilter.subject import Subject


class Filter:
    """A parsed, compiled expression.

    ``matches(subject)`` evaluates it; ``needs_bodies`` says whether it reads
    bodies at all (callers skip loading them when not); ``str`` is the
    canonical text, which parses back to an equal filter. Filters are equal
    when their canonical texts are. ``timeouts`` counts the evaluations that
    ran out of time (a pathological regex), for callers to say so.
    """

    __slots__ = ("_predicate", "needs_bodies", "timeouts", "tree")

    def __init__(self, tree: Node) -> None:
        self.tree = tree
        self._predicate = compile_tree(tree)
        self.needs_bodies = any(OPERATORS[t.name].reads_body for t in walk(tree))
        self.timeouts = 0

    def matches(self, subject: Subject, budget: float = MATCH_BUDGET) -> bool:
        """Whether ``subject`` matches. The regex searches of one evaluation
        share ``budget`` seconds; an evaluation that runs out of it is a
        non-match (whatever ``!`` surrounds the test), counted in ``timeouts``:
        a flow is then left out of a view, not caught by a breakpoint."""
        try:
            return self._predicate(Context(subject, budget))
        except OutOfTime:
            self.timeouts += 1
            return False

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
