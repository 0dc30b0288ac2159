"""JSON Pointer (RFC 6901), JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7396).

``apply_patch`` works on a document the caller has just parsed and owns: it
changes it in place and returns the new root. When an operation fails (a
``test`` that does not hold, a missing path) it raises ``PatchError`` and the
caller drops the half-patched document, keeping the original bytes: a patch
applies completely or not at all (RFC 6902 §5).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

OPS: Final = ("add", "remove", "replace", "move", "copy", "test")
_INDEX = re.compile(r"0|[1-9][0-9]*")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()


class PatchError(Exception):
    """A patch operation cannot be applied; the message names it."""


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """Split a JSON Pointer into unescaped reference tokens (RFC 6901 §3-4)."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"JSON Pointer {pointer!r} must be empty or start with '/'")
    if re.search(r"~(?![01])", pointer):
        raise ValueError(f"JSON Pointer {pointer!r}: '~' must be followed by 0 or 1")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


def resolve(doc: Any, pointer: str | tuple[str, ...]) -> Any:
    """The value a pointer refers to, or ``MISSING``."""
    tokens = parse_pointer(pointer) if isinstance(pointer, str) else pointer
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                return MISSING
            doc = doc[token]
        elif isinstance(doc, list):
            if not _INDEX.fullmatch(token) or int(token) >= len(doc):
                return MISSING
            doc = doc[int(token)]
        else:
            return MISSING
    return doc


def json_equal(a: Any, b: Any) -> bool:
    """Equality per RFC 6902 §4.6: ``true`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 §2: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass(frozen=True, slots=True)
class PatchOp:
    """One RFC 6902 operation, its pointers already parsed."""

    op: str
    path: tuple[str, ...]
    value: Any = None
    source: tuple[str, ...] = ()  # the "from" member of move and copy

    def __str__(self) -> str:
        return f"{self.op} /{'/'.join(self.path)}"


def apply_patch(doc: Any, ops: Sequence[PatchOp]) -> Any:
    """Apply ``ops`` in order to ``doc`` (changed in place); return the new root."""
    for i, op in enumerate(ops):
        try:
            doc = _apply_one(doc, op)
        except PatchError as e:
            raise PatchError(f"operation {i} ({op}): {e}") from None
    return doc


def _apply_one(doc: Any, op: PatchOp) -> Any:
    if op.op == "add":
        return _add(doc, op.path, copy.deepcopy(op.value))
    if op.op == "remove":
        _remove(doc, op.path)
        return doc
    if op.op == "replace":
        _get(doc, op.path)
        if not op.path:
            return copy.deepcopy(op.value)
        parent, key = _parent(doc, op.path)
        parent[key] = copy.deepcopy(op.value)
        return doc
    if op.op == "test":
        if not json_equal(_get(doc, op.path), op.value):
            raise PatchError("test failed: value differs")
        return doc
    value = _get(doc, op.source)
    if op.op == "move":
        if op.path[: len(op.source)] == op.source and op.path != op.source:
            raise PatchError("cannot move a value into one of its children")
        _remove(doc, op.source)
        return _add(doc, op.path, value)
    return _add(doc, op.path, copy.deepcopy(value))  # copy


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    value = resolve(doc, path)
    if value is MISSING:
        raise PatchError("path does not exist")
    return value


def _parent(doc: Any, path: tuple[str, ...]) -> tuple[Any, Any]:
    """The container holding the last token, and that token as a key or index."""
    parent = resolve(doc, path[:-1])
    token = path[-1]
    if isinstance(parent, dict):
        return parent, token
    if isinstance(parent, list):
        if token == "-":
            return parent, len(parent)
        if not _INDEX.fullmatch(token):
            raise PatchError(f"'{token}' is not an array index")
        return parent, int(token)
    raise PatchError("parent does not exist or is not a container")


def _add(doc: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    parent, key = _parent(doc, path)
    if isinstance(parent, list):
        if key > len(parent):
            raise PatchError("array index out of range")
        parent.insert(key, value)
    else:
        parent[key] = value
    return doc


def _remove(doc: Any, path: tuple[str, ...]) -> None:
    if not path:
        raise PatchError("cannot remove the whole document")
    _get(doc, path)
    parent, key = _parent(doc, path)
    del parent[key]
