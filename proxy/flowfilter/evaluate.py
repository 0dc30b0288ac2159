"""Syntax trees to predicates over a ``Subject``.

Each test is compiled once into a closure; ``&``/``|`` short-circuit left
to right, so a cheap test written first spares a body scan. Regexes are
case-insensitive (as mitmproxy's). URL, host, method and addresses are
matched as text; header lines, content types and bodies as bytes, with the
regex encoded as UTF-8 (``IGNORECASE`` then folds ASCII letters only).

Regexes run on the third-party ``regex`` module in its ``re``-compatible
mode (``V0``), for one reason: its searches take a timeout, and the
standard ``re`` has none, so one catastrophic regex (``(x|xx)+y``: 0.3 s
on 28 characters with ``re``, x1.6 with each more) typed into the web UI
would stall the proxy's event loop. An evaluation gets ``MATCH_BUDGET``
seconds of searching in all; past it the flow does not match
(``Filter.matches``). Bodies are also cut to ``SCAN_LIMIT`` bytes
(``proxy.flowfilter.bodies``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import AnyStr

import regex

from proxy.flowfilter.bodies import scannable
from proxy.flowfilter.errors import FilterError
from proxy.flowfilter.nodes import And, Node, Not, Or, Term
from proxy.flowfilter.subject import HTTP_KINDS, Fields, Kind, Side, Subject, content_types

_SIDES: tuple[Side, ...] = ("request", "response")
#: Seconds of regex searching one evaluation may take (``Filter.matches``).
MATCH_BUDGET = 0.1


class OutOfTime(Exception):
    """The evaluation used up its budget (a pathological regex)."""


class Context:
    """One evaluation: the subject, with its header lines and decoded bodies
    computed at most once however many tests read them, and the deadline
    every regex search of the evaluation shares."""

    __slots__ = ("_bodies", "_lines", "deadline", "subject")

    def __init__(self, subject: Subject, budget: float = MATCH_BUDGET) -> None:
        self.subject = subject
        self.deadline = time.monotonic() + budget
        self._lines: dict[Side, bytes] = {}
        self._bodies: dict[Side, bytes | None] = {}

    def search(self, rx: regex.Pattern[AnyStr], text: AnyStr) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime
        try:
            return rx.search(text, timeout=left) is not None
        except TimeoutError:
            raise OutOfTime from None

    def headers(self, side: Side) -> Fields | None:
        s = self.subject
        return s.request_headers if side == "request" else s.response_headers

    def lines(self, side: Side) -> bytes:
        """The side's header lines, ``Name: value``, joined by LF (searched
        with ``MULTILINE``: ``^`` and ``$`` are each line's ends)."""
        lines = self._lines.get(side)
        if lines is None:
            lines = self._lines[side] = b"\n".join(
                k + b": " + v for k, v in self.headers(side) or ()
            )
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
    flags = regex.DOTALL if t.name[0] == "b" else regex.MULTILINE if t.name[0] == "h" else 0
    return _BYTES[t.name](_regex(t, t.value.encode("utf-8", "surrogatepass"), flags))


def _regex(t: Term, pattern: AnyStr, flags: int = 0) -> regex.Pattern[AnyStr]:
    try:
        return regex.compile(pattern, regex.V0 | regex.IGNORECASE | flags)
    except (regex.error, OverflowError, RecursionError, ValueError) as e:
        raise _regex_error(t, pattern, e) from None


def _regex_error(t: Term, pattern: str | bytes, e: Exception) -> FilterError:
    """The error of a regex that does not compile, at its column. ``re`` says
    where the problem starts (``regex`` often says where it noticed: the
    end), so its message is preferred when it refuses the pattern too."""
    try:
        re.compile(pattern)
    except re.error as plain:
        e = plain
    except (OverflowError, RecursionError, ValueError):
        pass
    pos = getattr(e, "pos", None)
    # The offset within a bare value is exact; quoting shifts it, so a quoted
    # value points at its opening quote.
    col = t.value_column + (pos or 0) if pos is not None and not t.quoted else t.value_column
    why = getattr(e, "msg", None) or str(e)
    return FilterError(f"invalid regex after '~{t.name}' at column {col}: {why}", col)


def _opt(get: Callable[[Subject], str | None]) -> Callable[[regex.Pattern[str]], Predicate]:
    def make(rx: regex.Pattern[str]) -> Predicate:
        def test(c: Context) -> bool:
            text = get(c.subject)
            return text is not None and c.search(rx, text)

        return test

    return make


_TEXT: dict[str, Callable[[regex.Pattern[str]], Predicate]] = {
    "u": _opt(lambda s: s.url),
    "d": _opt(lambda s: s.host),
    "m": _opt(lambda s: s.method),
    "src": _opt(lambda s: s.client),
    "dst": _opt(lambda s: s.server),
}


def _header(sides: tuple[Side, ...]) -> Callable[[regex.Pattern[bytes]], Predicate]:
    def make(rx: regex.Pattern[bytes]) -> Predicate:
        return lambda c: any(c.search(rx, c.lines(side)) for side in sides)

    return make


def _ctype(sides: tuple[Side, ...]) -> Callable[[regex.Pattern[bytes]], Predicate]:
    def make(rx: regex.Pattern[bytes]) -> Predicate:
        return lambda c: any(
            c.search(rx, v) for side in sides for v in content_types(c.headers(side))
        )

    return make


def _body(sides: tuple[Side, ...]) -> Callable[[regex.Pattern[bytes]], Predicate]:
    def make(rx: regex.Pattern[bytes]) -> Predicate:
        def test(c: Context) -> bool:
            for side in sides:
                data = c.body(side)
                if data and c.search(rx, data):
                    return True
            return False

        return test

    return make


_BYTES: dict[str, Callable[[regex.Pattern[bytes]], Predicate]] = {
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
