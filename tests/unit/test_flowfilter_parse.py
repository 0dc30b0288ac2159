"""The filter language's syntax: precedence, quoting, canonical text, and
errors that name the exact column (docs/filters.md)."""

from __future__ import annotations

import pytest

from proxy.flowfilter import FilterError, parse
from proxy.flowfilter.lexer import quote, tokenize
from proxy.flowfilter.nodes import And, Not, Or, Term


def u(value: str) -> Term:
    return Term("u", value)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("foo", "~u foo"),
        ("~u foo", "~u foo"),
        ("~d example.com & ~m POST", "~d example.com & ~m POST"),
        ("a | b & c", "~u a | ~u b & ~u c"),  # & binds tighter than |
        ("(a | b) & c", "(~u a | ~u b) & ~u c"),
        ("!a & b", "!~u a & ~u b"),  # ! binds tightest
        ("!(a & b)", "!(~u a & ~u b)"),
        ("!!a", "!!~u a"),
        ("a b", "~u a & ~u b"),  # juxtaposition is AND...
        ("a | b c", "(~u a | ~u b) & ~u c"),  # ...binding loosest, as in mitmproxy
        ("a b | c", "~u a & (~u b | ~u c)"),
        ("a & (b & c)", "~u a & ~u b & ~u c"),  # nested & flattened
        ("((a))", "~u a"),
        ("~c 404", "~c 404"),
        ("~c 0200", "~c 200"),
        ("~all", "~all"),
        ("~websocket|~grpc", "~websocket | ~grpc"),
        ("~e&!~marked", "~e & !~marked"),
        ("  ~tcp  ", "~tcp"),
    ],
)
def test_canonical_text(text: str, canonical: str) -> None:
    f = parse(text)
    assert str(f) == canonical
    assert parse(canonical) == f


def test_precedence_trees() -> None:
    assert parse("a | b & c").tree == Or((u("a"), And((u("b"), u("c")))))
    assert parse("!a | b").tree == Or((Not(u("a")), u("b")))
    assert parse("a | b c").tree == And((Or((u("a"), u("b"))), u("c")))
    assert parse("a & b | c & d").tree == Or((And((u("a"), u("b"))), And((u("c"), u("d")))))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"a b"', "a b"),
        ("'a b'", "a b"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'it\'s'", "it's"),
        (r'"\d+\.json"', r"\d+\.json"),  # other backslashes stay: regexes need no doubling
        (r'"\\\\"', "\\\\"),  # an escaped backslash each: the regex of one backslash
        (r"\d+", r"\d+"),  # a bare word keeps every backslash
        ('"a|b (c)"', "a|b (c)"),
        ('"&"', "&"),
        ("''", ""),
        ('"~u"', "~u"),  # a quoted value is never a filter name
        ("a!b", "a!b"),  # ! only starts a token
        ("caf\u00e9", "caf\u00e9"),
    ],
)
def test_values(text: str, value: str) -> None:
    tree = parse("~h " + text).tree
    assert tree == Term("h", value)
    assert parse(str(parse("~h " + text))) == parse("~h " + text)


@pytest.mark.parametrize(
    "value", ["", "a b", '"', "'", "\\", '\\"', "a\\", "(x)", "!x", "~x", "a|b", "\t", "\x00"]
)
def test_quote_reads_back(value: str) -> None:
    [tok, _end] = tokenize(quote(value))
    assert tok.value == value


def test_bare_word_stops_at_operators() -> None:
    assert parse("a&b").tree == And((u("a"), u("b")))
    assert parse("a|b").tree == Or((u("a"), u("b")))
    assert parse("(a)").tree == u("a")
    assert parse("~d x.test)|y".replace(")", "")).tree == Or((Term("d", "x.test"), u("y")))


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("", 1, "expected an expression at column 1"),
        ("   ", 4, "expected an expression at column 4"),
        ("~u foo &", 9, "expected an expression after '&' at column 9"),
        ("~u a & | b", 8, "expected an expression after '&' at column 8, found '|'"),
        ("a |", 4, "expected an expression after '|' at column 4"),
        ("!", 2, "expected an expression after '!' at column 2"),
        ("& a", 1, "expected an expression at column 1, found '&'"),
        ("(a", 3, "expected ')' at column 3 to close the '(' at column 1"),
        ("(a b", 5, "expected ')' at column 5 to close the '(' at column 1"),
        ("a)", 2, "unexpected ')' at column 2"),
        ("()", 2, "expected an expression after '(' at column 2"),
        ("~x", 1, "unknown filter '~x' at column 1"),
        ("a ~replay", 3, "unknown filter '~replay' at column 3"),
        ("~ufoo", 1, "unknown filter '~ufoo' at column 1"),
        ("~", 1, "expected a filter name after '~' at column 1"),
        ("~u", 3, "expected a regex after '~u' at column 3, found the end"),
        ("~u ~d x", 4, "expected a regex after '~u' at column 4, found '~d'"),
        ("~d (a|b)", 4, "expected a regex after '~d' at column 4, found '('"),
        ("~c", 3, "expected a status code after '~c' at column 3"),
        ("~c 2xx", 4, "expected a status code (an integer) at column 4, found '2xx'"),
        ("~c 1234567890", 4, "expected a status code (an integer) at column 4"),
        ('~u "abc', 4, 'unterminated string: the " at column 4 is never closed'),
        ("~u 'a\\'", 4, "unterminated string: the ' at column 4 is never closed"),
        ("~u a[b", 5, "invalid regex after '~u' at column 5: unterminated character set"),
        ("x ~m GE(T", 10, "expected ')' at column 10 to close the '(' at column 8"),
        ("~h ab)c", 6, "unexpected ')' at column 6"),
        ('~b "a[b"', 4, "invalid regex after '~b' at column 4"),  # quoted: its opening quote
        ("~hq x*+*", 8, "invalid regex after '~hq' at column 8: multiple repeat"),
    ],
)
def test_errors_name_the_column(text: str, column: int, message: str) -> None:
    with pytest.raises(FilterError) as info:
        parse(text)
    assert info.value.column == column
    assert message in str(info.value)
    assert info.value.expression == text
    pointer = info.value.pointer().splitlines()
    assert pointer[1].index("^") - 2 == column - 1


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(FilterError, match="nested deeper than 64 levels at column 65"):
        parse("(" * 200 + "a" + ")" * 200)
    with pytest.raises(FilterError, match="nested deeper"):
        parse("!" * 1000 + "a")
    assert str(parse("!" * 10 + "a")) == "!" * 10 + "~u a"


def test_needs_bodies() -> None:
    assert not parse("~u a & ~h b | ~t json").needs_bodies
    for text in ("~b x", "~bq x", "a | !~bs x", "(~c 200 ~bs x)"):
        assert parse(text).needs_bodies, text


def test_filters_compare_by_meaning_of_text() -> None:
    assert parse("a b") == parse("~u a & ~u b")
    assert hash(parse("a b")) == hash(parse("(~u a)&(~u b)"))
    assert parse("a") != parse("~d a")
    assert repr(parse("a")) == "Filter('~u a')"
