"""The syntax tree of a filter expression, and its canonical text.

Two trees are equal when they mean the same expression written the same
way after normalisation: a bare word is ``~u word``, nested ``&`` (and
nested ``|``) are flattened, and positions are not compared. ``str`` gives
the canonical text: explicit ``&``, the fewest parentheses, values bare
when they can be; it parses back to an equal tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.flowfilter.lexer import quote


@dataclass(frozen=True, slots=True)
class Term:
    """One filter, ``~name`` with its argument (None for a filter without one)."""

    name: str
    value: str | int | None = None
    column: int = field(default=0, compare=False)  # of the ``~`` (or the bare word)
    value_column: int = field(default=0, compare=False)  # of the value's first character
    quoted: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        if self.value is None:
            return f"~{self.name}"
        value = str(self.value) if isinstance(self.value, int) else quote(self.value)
        return f"~{self.name} {value}"


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node

    def __str__(self) -> str:
        inner = self.operand
        text = str(inner)
        return f"!({text})" if isinstance(inner, And | Or) else f"!{text}"


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]  # two or more, none an ``And``

    def __str__(self) -> str:
        return " & ".join(f"({o})" if isinstance(o, Or) else str(o) for o in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]  # two or more, none an ``Or``

    def __str__(self) -> str:
        return " | ".join(str(o) for o in self.operands)


Node = Term | Not | And | Or


def conjoin(nodes: list[Node]) -> Node:
    """``a & b & ...`` with nested ``And`` flattened (one node: itself)."""
    flat: list[Node] = []
    for n in nodes:
        flat.extend(n.operands if isinstance(n, And) else (n,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def disjoin(nodes: list[Node]) -> Node:
    """``a | b | ...`` with nested ``Or`` flattened (one node: itself)."""
    flat: list[Node] = []
    for n in nodes:
        flat.extend(n.operands if isinstance(n, Or) else (n,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def walk(node: Node) -> list[Term]:
    """The tests of a tree, left to right."""
    if isinstance(node, Term):
        return [node]
    if isinstance(node, Not):
        return walk(node.operand)
    return [t for o in node.operands for t in walk(o)]
