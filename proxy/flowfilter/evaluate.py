"""Syntax trees to predicates over a ``Subject``.

Each test is compiled once into a closure; ``&``/``|`` short-circuit left
to right, so a cheap test written first spares a body scan. Regexes are
case-insensitive (as mitmproxy's). URL, host, method and addresses are
matched as text; header lines, content types and bodies as bytes, with the
regex encoded as UTF-8 (``IGNORECASE`` then folds ASCII letters only).

Python's ``re`` has no time limit: what bounds a pathological regex is the
length of what it scans (a URL, one header line, at most ``SCAN_LIMIT``
bytes of a body, see ``proxy.flowfilter.bodies``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import AnyStr

from proxy.flowfilter.bodies import scannable
from proxy.flowfilter.errors import FilterError
from proxy.flowfilter.nodes import And, Node, Not, Or, Term
from proxy.flowfilter.subject import HTTP_KINDS, Fields, Kind, Side, Subject, content_types

_SIDES: tuple[Side, ...] = ("request", "response")


class Context:
    """One evaluation: the subject, with its header lines and decoded bodies
    computed at most once however many tests read them."""

    __slots__ = ("_bodies", "_lines", "subject")

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self._lines: dict[Side, list[bytes]] = {}
        self._bodies: dict[Side, bytes | None] = {}

    def headers(self, side: Side) -> Fields | None:
        s = self.subject
        return s.request_headers if side == "request" else s.response_headers

    def lines(self, side: Side) -> list[bytes]:
        lines = self._lines.get(side)
        if lines is None:
            lines = self._lines[side] = [k + b": " + v for k, v in self.headers(side) or ()]
        return lines

    def body(self, side: Side) -> bytes | None:
        if side not in self._bodies:
            raw = self.subject.body(side)
            self._bodies[side] = None if raw is None else scannable(raw, self.headers(side) or ())
        return self._bodies[side]


Predicate = Callable[[Context], bool]

_ASSET = re.compile(
    rb"^\s*(text/javascript|application/(x-)?javascript|text/css|image/|font/|application/font)",
    re.IGNORECASE,
)


def compile_tree(node: Node) -> Predicate:
    """The predicate of ``node``; ``FilterError`` for a regex that does not compile."""
    if isinstance(node, Not):
        inner = compile_tree(node.operand)
        return lambda c: not inner(c)
    if isinstance(node, And):
        parts = [compile_tree(o) for o in node.operands]
        return lambda c: all(p(c) for p in parts)
    if isinstance(node, Or):
        parts = [compile_tree(o) for o in node.operands]
        return lambda c: any(p(c) for p in parts)
    return _test(node)


def _test(t: Term) -> Predicate:
    if isinstance(t.value, int):
        code = t.value
        return lambda c: c.subject.status == code
    if t.value is None:
        return _FLAGS[t.name]
    if t.name in _TEXT:
        return _TEXT[t.name](_regex(t, t.value))
    rx = _regex(t, t.value.encode("utf-8", "surrogatepass"), re.DOTALL if t.name[0] == "b" else 0)
    return _BYTES[t.name](rx)


def _regex(t: Term, pattern: AnyStr, flags: int = 0) -> re.Pattern[AnyStr]:
    try:
        return re.compile(pattern, re.IGNORECASE | flags)
    except (re.error, OverflowError, RecursionError) as e:
        pos = getattr(e, "pos", None)
        # The offset within a bare value is exact; quoting shifts it, so a
        # quoted value points at its opening quote.
        col = t.value_column + (pos or 0) if pos is not None and not t.quoted else t.value_column
        why = getattr(e, "msg", str(e))
        raise FilterError(f"invalid regex after '~{t.name}' at column {col}: {why}", col) from None


def _opt(get: Callable[[Subject], str | None]) -> Callable[[re.Pattern[str]], Predicate]:
    def make(rx: re.Pattern[str]) -> Predicate:
        def test(c: Context) -> bool:
            text = get(c.subject)
            return text is not None and rx.search(text) is not None

        return test

    return make


_TEXT: dict[str, Callable[[re.Pattern[str]], Predicate]] = {
    "u": _opt(lambda s: s.url),
    "d": _opt(lambda s: s.host),
    "m": _opt(lambda s: s.method),
    "src": _opt(lambda s: s.client),
    "dst": _opt(lambda s: s.server),
}


def _header(sides: tuple[Side, ...]) -> Callable[[re.Pattern[bytes]], Predicate]:
    def make(rx: re.Pattern[bytes]) -> Predicate:
        return lambda c: any(rx.search(line) for side in sides for line in c.lines(side))

    return make


def _ctype(sides: tuple[Side, ...]) -> Callable[[re.Pattern[bytes]], Predicate]:
    def make(rx: re.Pattern[bytes]) -> Predicate:
        return lambda c: any(rx.search(v) for side in sides for v in content_types(c.headers(side)))

    return make


def _body(sides: tuple[Side, ...]) -> Callable[[re.Pattern[bytes]], Predicate]:
    def make(rx: re.Pattern[bytes]) -> Predicate:
        def test(c: Context) -> bool:
            for side in sides:
                data = c.body(side)
                if data and rx.search(data):
                    return True
            return False

        return test

    return make


_BYTES: dict[str, Callable[[re.Pattern[bytes]], Predicate]] = {
    "h": _header(_SIDES),
    "hq": _header(("request",)),
    "hs": _header(("response",)),
    "t": _ctype(_SIDES),
    "tq": _ctype(("request",)),
    "ts": _ctype(("response",)),
    "b": _body(_SIDES),
    "bq": _body(("request",)),
    "bs": _body(("response",)),
}


def _kind(*kinds: Kind) -> Predicate:
    wanted = frozenset(kinds)
    return lambda c: c.subject.kind in wanted


_FLAGS: dict[str, Predicate] = {
    "all": lambda c: True,
    "a": lambda c: any(_ASSET.search(v) for v in content_types(c.subject.response_headers)),
    "e": lambda c: c.subject.error is not None,
    "marked": lambda c: c.subject.marked,
    "q": lambda c: c.subject.method is not None and c.subject.response_headers is None,
    "s": lambda c: c.subject.response_headers is not None,
    "http": _kind(*HTTP_KINDS),
    "grpc": _kind(Kind.GRPC),
    "websocket": _kind(Kind.WEBSOCKET),
    "sse": _kind(Kind.SSE),
    "tcp": _kind(Kind.TCP, Kind.TUNNEL),
    "tunnel": _kind(Kind.TUNNEL),
}
