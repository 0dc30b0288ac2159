"""Runtime matchers: small objects with ``test(facts) -> bool``.

Each matcher knows its ``phase`` (what must be known to decide it: the
request head, the request body, the response head or the response body) and
a ``cost`` so a rule checks cheap set lookups before regexes. Matchers are
pure predicates, so reordering the conjuncts of a rule never changes its
meaning. ``describe`` and ``observed`` feed ``tapproxy rules explain``.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any

from proxy.rules.facts import UNSET, Facts
from proxy.rules.jsonpatch import MISSING, json_equal, resolve
from proxy.rules.textmatch import StrPred


class Phase(enum.IntEnum):
    """When a matcher can be decided, in the order the data arrives."""

    REQUEST = 0
    REQUEST_BODY = 1
    RESPONSE = 2
    RESPONSE_BODY = 3


class Matcher:
    """Base: a predicate over ``Facts``."""

    __slots__ = ("cost", "label", "phase")

    def __init__(self, label: str, phase: Phase = Phase.REQUEST, cost: int = 1) -> None:
        self.label, self.phase, self.cost = label, phase, cost

    def test(self, f: Facts) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        return self.label

    def observed(self, f: Facts) -> str:
        return ""


class Text(Matcher):
    """A string attribute of the exchange (host, path, method...) against patterns."""

    __slots__ = ("get", "pred")

    def __init__(
        self,
        label: str,
        get: Callable[[Facts], str],
        pred: StrPred,
        cost: int,
        phase: Phase = Phase.REQUEST,
    ) -> None:
        super().__init__(label, phase, cost)
        self.get, self.pred = get, pred

    def test(self, f: Facts) -> bool:
        return self.pred(self.get(f))

    def describe(self) -> str:
        return f"{self.label} is {self.pred.text}"

    def observed(self, f: Facts) -> str:
        return repr(self.get(f))


class Numbers(Matcher):
    """An integer (port, status) in a set of values or inclusive ranges."""

    __slots__ = ("get", "ranges", "text", "values")

    def __init__(
        self,
        label: str,
        get: Callable[[Facts], int],
        values: frozenset[int],
        ranges: tuple[tuple[int, int], ...],
        phase: Phase,
        text: str,
    ) -> None:
        super().__init__(label, phase)
        self.get, self.values, self.ranges, self.text = get, values, ranges, text

    def test(self, f: Facts) -> bool:
        n = self.get(f)
        return n in self.values or any(lo <= n <= hi for lo, hi in self.ranges)

    def describe(self) -> str:
        return f"{self.label} is {self.text}"

    def observed(self, f: Facts) -> str:
        return str(self.get(f))


class Field(Matcher):
    """A header or query parameter: present, absent, or some value matching."""

    __slots__ = ("get", "name", "pred", "want")

    def __init__(
        self,
        label: str,
        get: Callable[[Facts], dict[str, list[str]]],
        name: str,
        pred: StrPred | None,
        want: bool,
        phase: Phase,
    ) -> None:
        super().__init__(label, phase, cost=3)
        self.get, self.name, self.pred, self.want = get, name, pred, want

    def test(self, f: Facts) -> bool:
        values = self.get(f).get(self.name)
        if self.pred is None:  # present (want) or absent (not want)
            return (values is not None) == self.want
        return values is not None and any(self.pred(v) for v in values)

    def describe(self) -> str:
        if self.pred is None:
            return f"{self.label} '{self.name}' is {'present' if self.want else 'absent'}"
        return f"{self.label} '{self.name}' is {self.pred.text}"

    def observed(self, f: Facts) -> str:
        return repr(self.get(f).get(self.name, []))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Client(Matcher):
    """The client address is inside one of the networks (CIDR)."""

    __slots__ = ("networks",)

    def __init__(self, networks: Sequence[Network]) -> None:
        super().__init__("client", cost=4)
        self.networks = tuple(networks)

    def test(self, f: Facts) -> bool:
        ip = f.client
        return ip is not None and any(ip in n for n in self.networks)

    def describe(self) -> str:
        return "client in " + " or ".join(str(n) for n in self.networks)

    def observed(self, f: Facts) -> str:
        return repr(f.info.client_ip)


class BodyText(Matcher):
    """The decoded body contains a byte string or matches a bytes regex."""

    __slots__ = ("needle", "regex", "response", "text")

    def __init__(
        self, response: bool, needle: bytes | None, regex: re.Pattern[bytes] | None, text: str
    ) -> None:
        phase = Phase.RESPONSE_BODY if response else Phase.REQUEST_BODY
        super().__init__("response_body" if response else "body", phase, cost=6)
        self.response, self.needle, self.regex, self.text = response, needle, regex, text

    def test(self, f: Facts) -> bool:
        data = f.body(self.response)
        if data is None:
            return False
        if self.needle is not None:
            return self.needle in data
        return self.regex is not None and self.regex.search(data) is not None

    def describe(self) -> str:
        return f"{self.label} {self.text}"

    def observed(self, f: Facts) -> str:
        data = f.body(self.response)
        return "unavailable" if data is None else f"{len(data)} bytes"


class BodyJson(Matcher):
    """The body is JSON and the value at a JSON Pointer (RFC 6901) equals one given."""

    __slots__ = ("expected", "pointer", "response")

    def __init__(self, response: bool, pointer: str, expected: Any) -> None:
        phase = Phase.RESPONSE_BODY if response else Phase.REQUEST_BODY
        super().__init__("response_body" if response else "body", phase, cost=7)
        self.response, self.pointer, self.expected = response, pointer, expected

    def test(self, f: Facts) -> bool:
        doc = f.json(self.response)
        if doc is UNSET:
            return False
        value = resolve(doc, self.pointer)
        return value is not MISSING and json_equal(value, self.expected)

    def describe(self) -> str:
        return f"{self.label} JSON {self.pointer} == {self.expected!r}"

    def observed(self, f: Facts) -> str:
        doc = f.json(self.response)
        return "not JSON" if doc is UNSET else repr(resolve(doc, self.pointer))


class All(Matcher):
    """Every part holds (the body of a ``match`` mapping)."""

    __slots__ = ("parts",)

    def __init__(self, parts: Sequence[Matcher]) -> None:
        flat = [q for p in parts for q in (p.parts if isinstance(p, All) else (p,))]
        phase = max((p.phase for p in flat), default=Phase.REQUEST)
        super().__init__("all", phase, cost=max((p.cost for p in flat), default=0))
        self.parts: tuple[Matcher, ...] = tuple(sorted(flat, key=lambda p: (p.phase, p.cost)))

    def test(self, f: Facts) -> bool:
        for p in self.parts:  # noqa: SIM110 (a loop is faster than all() on a generator)
            if not p.test(f):
                return False
        return True

    def describe(self) -> str:
        return " and ".join(p.describe() for p in self.parts) or "always"


class AnyOf(Matcher):
    """At least one alternative holds."""

    __slots__ = ("parts",)

    def __init__(self, parts: Sequence[Matcher]) -> None:
        phase = max((p.phase for p in parts), default=Phase.REQUEST)
        super().__init__("any", phase, cost=sum(p.cost for p in parts))
        self.parts = tuple(parts)

    def test(self, f: Facts) -> bool:
        for p in self.parts:  # noqa: SIM110
            if p.test(f):
                return True
        return False

    def describe(self) -> str:
        return "any of (" + "; ".join(p.describe() for p in self.parts) + ")"


class Not(Matcher):
    """The inner match does not hold."""

    __slots__ = ("inner",)

    def __init__(self, inner: Matcher) -> None:
        super().__init__("not", inner.phase, inner.cost)
        self.inner = inner

    def test(self, f: Facts) -> bool:
        return not self.inner.test(f)

    def describe(self) -> str:
        return f"not ({self.inner.describe()})"
