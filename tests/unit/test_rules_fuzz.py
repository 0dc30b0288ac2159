"""Arbitrary YAML documents give a RuleSet or a RulesError, never another exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.rules import RequestInfo, RulesError, SourceText, load_sources
from proxy.rules.loader import RULE_KEYS
from proxy.rules.parse_actions import REQUEST_ACTIONS, RESPONSE_ACTIONS
from proxy.rules.parse_match import MATCH_KEYS
from proxy.rules.parse_tcp import TCP_MATCH_KEYS, TOXICS

WORDS = sorted(
    {*RULE_KEYS, *MATCH_KEYS, *REQUEST_ACTIONS, *RESPONSE_ACTIONS, *TOXICS, *TCP_MATCH_KEYS}
    | {
        "exact",
        "prefix",
        "glob",
        "regex",
        "present",
        "absent",
        "contains",
        "json",
        "status",
        "body",
        "file",
        "dir",
        "to",
        "ms",
        "jitter_ms",
        "bytes",
        "bytes_per_second",
        "abort",
        "reset",
        "hang",
        "delay",
        "op",
        "path",
        "value",
        "from",
        "with",
        "literal",
        "tags",
        "detail",
        "close",
        "phase",
        "version",
        "rules",
        "tcp",
        "window",
        "average_size",
        "missing",
        "headers",
    }
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["*.svc", "/v1", "5xx", "200-299", "GET", "get", "(", "\\1", "a\nb", "/a~2", "", "x" * 300]
    ),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=40,
)
RULE = st.dictionaries(st.sampled_from(WORDS), VALUES, max_size=5)
DOCS = st.fixed_dictionaries(
    {"version": st.one_of(st.just(1), VALUES)},
    optional={
        "rules": st.one_of(st.lists(RULE, max_size=4), VALUES),
        "tcp": st.lists(RULE, max_size=3),
    },
)
INFO = RequestInfo(
    "https", "api.svc", 443, "GET", "/v1/x", "a=1", ((b"host", b"api.svc"),), "10.0.0.1"
)


def check(text: str, path: Path = Path("/nonexistent/f.yaml")) -> None:
    try:
        rs = load_sources([SourceText(path, text)])
    except RulesError as e:
        assert e.errors and all(err.line >= 1 and err.column >= 1 for err in e.errors)
        return
    plan = rs.on_request(INFO)
    if plan.pending:
        plan = rs.complete_request(plan, b"{}")
    plan.apply_head()
    plan.apply_body(b"{}", ())
    rplan = rs.on_response(plan, 500, ())
    if rplan.pending:
        rplan = rs.complete_response(rplan, b"{}")
    rplan.apply_body(b"{}", ())
    rs.tcp_for("api.svc", 443).upstream.feed(0.0, b"data")


@settings(max_examples=300, deadline=None)
@given(DOCS)
def test_structured_documents(doc: dict[str, Any]) -> None:
    check(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("version: 1\nrules:-[]{}&*!|>'\"#%@`\t ?,abc")), max_size=120
    )
)
def test_arbitrary_text(text: str) -> None:
    check(text)


def test_known_nasty_documents() -> None:
    for text in [
        "version: 1\nrules: &a [*a]",
        "version: 1\nrules: [{match: &m {not: *m}, log: {}}]",
        "version: 1\nrules: [{match: {any: [&m {any: [*m]}]}, log: {}}]",
        "!!python/object:os.system ls",
        "version: !!binary aGVsbG8=",
        "version: 1\nrules: [{? [a]: b}]",
        "version: 1\nrules: [{log: {tags: 2001-12-14}}]",
        "version: 1\nrules: [{match: {port: 0x1F90}, log: {}}]",
        "version: 1\nrules: [{match: {port: 99999999999999999999999999}, log: {}}]",
        "\ufeffversion: 1",
        "version: 1\x00",
    ]:
        check(text)


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "rules" / "examples").glob("*.yaml"))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, child in items:
        out += _paths(child, (*prefix, key))
    return out


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXAMPLES), st.integers(min_value=0), VALUES)
def test_mutated_examples(path: Path, pick: int, value: Any) -> None:
    doc = yaml.safe_load(path.read_text())
    paths = _paths(doc)[1:]
    target = paths[pick % len(paths)]
    parent = doc
    for key in target[:-1]:
        parent = parent[key]
    parent[target[-1]] = value
    check(yaml.safe_dump(doc, allow_unicode=True), path)
