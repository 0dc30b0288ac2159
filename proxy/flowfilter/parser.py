"""Filter expressions to syntax trees, by recursive descent.

The grammar, loosest binding first, as mitmproxy's (docs/filters.md)::

    expression := disjunction disjunction*      juxtaposition: all must hold
    disjunction := conjunction ('|' conjunction)*
    conjunction := negation ('&' negation)*
    negation := '!' negation | primary
    primary := '(' expression ')' | '~' name [value] | value
    value := bare word | "quoted" | 'quoted'

A lone value is ``~u value``. Juxtaposition binds loosest, as in mitmproxy
(its parser ANDs a sequence of whole ``|`` expressions): ``a | b c`` is
``(a | b) & c``. Every error names the column where the expression went wrong.
"""

from __future__ import annotations

from proxy.flowfilter.errors import FilterError
from proxy.flowfilter.lexer import Tok, Token, tokenize
from proxy.flowfilter.nodes import Node, Not, Term, conjoin, disjoin
from proxy.flowfilter.operators import OPERATORS, Arg

#: Nesting of parentheses and ``!`` allowed (the evaluator recurses as deep).
MAX_DEPTH = 64
_STARTS = frozenset({Tok.LPAREN, Tok.NOT, Tok.FILTER, Tok.WORD, Tok.QUOTED})
_MAX_CODE_DIGITS = 9


def parse_tree(text: str) -> Node:
    """The tree of ``text``; ``FilterError`` (with the column) when it is not one."""
    try:
        parser = _Parser(tokenize(text))
        node = parser.expression(0)
        tok = parser.peek()
        if tok.kind is Tok.RPAREN:
            raise FilterError(f"unexpected ')' at column {tok.column}: no '(' to close", tok.column)
        return node
    except FilterError as e:
        e.expression = text
        raise


def _describe(tok: Token) -> str:
    if tok.kind is Tok.END:
        return "the end"
    if tok.kind is Tok.FILTER:
        return f"'~{tok.value}'"
    return f"'{tok.value}'" if tok.kind is not Tok.QUOTED else "a quoted string"


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind is not Tok.END:
            self.i += 1
        return tok

    def expression(self, depth: int) -> Node:
        parts = [self.disjunction(depth, None)]
        while self.peek().kind in _STARTS:
            parts.append(self.disjunction(depth, None))
        return conjoin(parts)

    def disjunction(self, depth: int, after: Token | None) -> Node:
        parts = [self.conjunction(depth, after)]
        while self.peek().kind is Tok.OR:
            parts.append(self.conjunction(depth, self.take()))
        return disjoin(parts)

    def conjunction(self, depth: int, after: Token | None) -> Node:
        parts = [self.negation(depth, after)]
        while self.peek().kind is Tok.AND:
            parts.append(self.negation(depth, self.take()))
        return conjoin(parts)

    def negation(self, depth: int, after: Token | None) -> Node:
        tok = self.peek()
        if tok.kind is Tok.NOT:
            self._check_depth(tok, depth)
            return Not(self.negation(depth + 1, self.take()))
        return self.primary(depth, after)

    def primary(self, depth: int, after: Token | None) -> Node:
        tok = self.take()
        if tok.kind is Tok.LPAREN:
            self._check_depth(tok, depth)
            node = self.expression(depth + 1) if self.peek().kind in _STARTS else None
            close = self.take()
            if node is None:
                raise FilterError(
                    f"expected an expression after '(' at column {close.column}", close.column
                )
            if close.kind is not Tok.RPAREN:
                raise FilterError(
                    f"expected ')' at column {close.column} to close the '(' at column "
                    f"{tok.column}",
                    close.column,
                )
            return node
        if tok.kind is Tok.FILTER:
            return self.test(tok)
        if tok.kind in (Tok.WORD, Tok.QUOTED):
            return Term("u", tok.value, tok.column, tok.column, tok.kind is Tok.QUOTED)
        where = f"after '{after.value}' " if after is not None else ""
        found = "" if tok.kind is Tok.END else f", found {_describe(tok)}"
        raise FilterError(
            f"expected an expression {where}at column {tok.column}{found}", tok.column
        )

    def test(self, tok: Token) -> Term:
        op = OPERATORS.get(tok.value)
        if op is None:
            raise FilterError(
                f"unknown filter '~{tok.value}' at column {tok.column} (known: "
                f"{', '.join('~' + n for n in sorted(OPERATORS))})",
                tok.column,
            )
        if op.arg is Arg.NONE:
            return Term(op.name, None, tok.column)
        value = self.take()
        if value.kind not in (Tok.WORD, Tok.QUOTED):
            what = "a status code" if op.arg is Arg.INT else "a regex"
            hint = "" if value.kind is Tok.END else " (quote a regex holding spaces, ( ) & | or !)"
            raise FilterError(
                f"expected {what} after '~{op.name}' at column {value.column}, found "
                f"{_describe(value)}{hint}",
                value.column,
            )
        quoted = value.kind is Tok.QUOTED
        if op.arg is Arg.INT:
            return Term(op.name, _code(value), tok.column, value.column, quoted)
        return Term(op.name, value.value, tok.column, value.column, quoted)

    def _check_depth(self, tok: Token, depth: int) -> None:
        if depth >= MAX_DEPTH:
            raise FilterError(
                f"expression nested deeper than {MAX_DEPTH} levels at column {tok.column}",
                tok.column,
            )


def _code(tok: Token) -> int:
    text = tok.value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_CODE_DIGITS:
        raise FilterError(
            f"expected a status code (an integer) at column {tok.column}, found '{tok.value}'",
            tok.column,
        )
    return int(text)
