"""Properties of the filter language (hypothesis): the canonical text parses
back to the same filter, and the operators mean what boolean logic says."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.flowfilter import FilterError, Kind, parse
from proxy.flowfilter.nodes import Node, Not, Term, conjoin, disjoin
from proxy.flowfilter.operators import OPERATORS, Arg
from proxy.flowfilter.subject import FlowSubject, Side

NAMES = sorted(OPERATORS)


@st.composite
def terms(draw: st.DrawFn) -> Term:
    op = OPERATORS[draw(st.sampled_from(NAMES))]
    if op.arg is Arg.NONE:
        return Term(op.name)
    if op.arg is Arg.INT:
        return Term(op.name, draw(st.integers(0, 999)))
    # Any text, as a regex that compiles (for str and for bytes): quoting is
    # exercised with every character, backslashes and quotes included.
    text = draw(st.text(st.characters(codec="utf-8"), max_size=12))
    return Term(op.name, re.escape(text))


def trees() -> st.SearchStrategy[Node]:
    return st.recursive(
        terms(),
        lambda inner: st.one_of(
            inner.map(Not),
            st.lists(inner, min_size=2, max_size=3).map(conjoin),
            st.lists(inner, min_size=2, max_size=3).map(disjoin),
        ),
        max_leaves=12,
    )


@settings(max_examples=400)
@given(trees())
def test_canonical_text_round_trips(tree: Node) -> None:
    text = str(tree)
    f = parse(text)
    assert f.tree == tree
    assert str(f) == text


@given(st.text(alphabet="ab~u &|!()'\"\\ c", max_size=20))
def test_any_input_parses_or_fails_with_a_column(text: str) -> None:
    try:
        f = parse(text)
    except FilterError as e:  # nothing else may escape
        column = e.column
        assert 1 <= column <= len(text) + 1
        assert f"column {column}" in str(e)
    else:
        assert parse(str(f)) == f


# Evaluation: small alphabets so that tests sometimes match and sometimes not.
LEAVES = [
    "~u a", "~u ^http://b", "~d b", "~m get", "~c 200", "~c 404", "~h x", "~hq 'x: a'",
    "~hs y", "~t json", "~bq a", "~bs b", "~b ab", "~e", "~marked", "~http", "~tcp",
    "~websocket", "~s", "~q", "~a", "~all", "ab",
]  # fmt: skip


@st.composite
def subjects(draw: st.DrawFn) -> FlowSubject:
    word = st.text(alphabet="abxy", max_size=4)
    fields = st.lists(
        st.tuples(st.sampled_from([b"x", b"y", b"Content-Type"]), word.map(str.encode)), max_size=3
    )
    has_response = draw(st.booleans())
    bodies = {
        "request": draw(st.none() | word.map(str.encode)),
        "response": draw(st.none() | word.map(str.encode)),
    }

    def read(side: Side) -> bytes | None:
        return bodies[side]

    return FlowSubject(
        kind=draw(st.sampled_from(list(Kind))),
        url=draw(st.none() | word.map(lambda w: "http://" + w)),
        host=draw(st.none() | word),
        method=draw(st.sampled_from([None, "GET", "POST"])),
        status=draw(st.sampled_from([200, 404])) if has_response else None,
        request_headers=tuple(draw(fields)),
        response_headers=tuple(draw(fields)) if has_response else None,
        error=draw(st.sampled_from([None, "upstream: refused"])),
        marked=draw(st.booleans()),
        read_body=read,
    )


leaf = st.sampled_from(LEAVES)


def m(text: str, s: FlowSubject) -> bool:
    return parse(text).matches(s)


@given(leaf, leaf, subjects())
def test_boolean_laws(a: str, b: str, s: FlowSubject) -> None:
    x, y = m(a, s), m(b, s)
    assert m(f"!!({a})", s) == x
    assert m(f"!({a})", s) == (not x)
    assert m(f"({a}) & ({b})", s) == (x and y)
    assert m(f"({a}) | ({b})", s) == (x or y)
    assert m(f"({a}) ({b})", s) == (x and y)  # juxtaposition
    assert m(f"!(({a}) & ({b}))", s) == m(f"!({a}) | !({b})", s)  # De Morgan
    assert m(f"!(({a}) | ({b}))", s) == m(f"!({a}) & !({b})", s)


@given(trees(), subjects())
def test_canonical_text_means_the_same(tree: Node, s: FlowSubject) -> None:
    f = parse(str(tree))
    assert parse(str(f)).matches(s) == f.matches(s)
    assert parse(f"!({f})").matches(s) == (not f.matches(s))
