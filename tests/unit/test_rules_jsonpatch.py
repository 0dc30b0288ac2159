"""JSON Patch (RFC 6902 Appendix A), Merge Patch (RFC 7396 Appendix A), Pointer (RFC 6901)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from proxy.rules.jsonpatch import (
    MISSING,
    PatchError,
    PatchOp,
    apply_patch,
    json_equal,
    merge_patch,
    parse_pointer,
    resolve,
)


def ops(*raw: dict[str, Any]) -> list[PatchOp]:
    return [
        PatchOp(o["op"], parse_pointer(o["path"]), o.get("value"), parse_pointer(o.get("from", "")))
        for o in raw
    ]


RFC6902 = [
    # A.1 .. A.16 (the ones that succeed)
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    (
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    (
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"foo": 1}, [{"op": "copy", "from": "/foo", "path": "/bar"}], {"foo": 1, "bar": 1}),
    ({"foo": 1}, [{"op": "replace", "path": "", "value": [1]}], [1]),
    ([1, 2], [{"op": "add", "path": "/2", "value": 3}], [1, 2, 3]),
]


@pytest.mark.parametrize(("doc", "patch", "expected"), RFC6902)
def test_rfc6902_examples(doc: Any, patch: list[dict[str, Any]], expected: Any) -> None:
    assert apply_patch(copy.deepcopy(doc), ops(*patch)) == expected


FAILING = [
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "test failed"),  # A.14
    (
        {"foo": "bar"},
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],
        "parent does not exist",
    ),  # A.12
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], "test failed"),  # A.15
    ({"a": 1}, [{"op": "remove", "path": "/b"}], "does not exist"),
    ({"a": [1]}, [{"op": "add", "path": "/a/5", "value": 1}], "out of range"),
    ({"a": [1]}, [{"op": "add", "path": "/a/01", "value": 1}], "not an array index"),
    ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}], "into one of its children"),
    ({"a": 1}, [{"op": "remove", "path": ""}], "whole document"),
    ({"a": True}, [{"op": "test", "path": "/a", "value": 1}], "test failed"),
    ({"a": [1]}, [{"op": "replace", "path": "/a/-", "value": 1}], "does not exist"),
]


@pytest.mark.parametrize(("doc", "patch", "message"), FAILING)
def test_rfc6902_errors(doc: Any, patch: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(PatchError, match=message):
        apply_patch(copy.deepcopy(doc), ops(*patch))


def test_patch_values_are_copied_not_shared() -> None:
    patch = ops(
        {"op": "add", "path": "/a", "value": {"x": []}}, {"op": "add", "path": "/a/x/-", "value": 1}
    )
    apply_patch({}, patch)
    assert patch[0].value == {"x": []}


RFC7396 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7396)
def test_rfc7396_examples(target: Any, patch: Any, expected: Any) -> None:
    before = json.dumps(target)
    assert merge_patch(target, patch) == expected
    assert json.dumps(target) == before  # the target is not changed in place


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("", {"foo": ["bar", "baz"], "": 0, "a/b": 1, "m~n": 8}),
        ("/foo", ["bar", "baz"]),
        ("/foo/0", "bar"),
        ("/", 0),
        ("/a~1b", 1),
        ("/m~0n", 8),
        ("/foo/2", MISSING),
        ("/foo/-", MISSING),
        ("/x/y", MISSING),
    ],
)
def test_rfc6901_resolve(pointer: str, expected: Any) -> None:
    doc = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "m~n": 8}
    assert resolve(doc, pointer) == expected or resolve(doc, pointer) is expected


@pytest.mark.parametrize("bad", ["a", "/a~2", "/~"])
def test_bad_pointers(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_pointer(bad)


def test_json_equality_follows_rfc6902() -> None:
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal(True, 1)
    assert not json_equal("1", 1)
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
