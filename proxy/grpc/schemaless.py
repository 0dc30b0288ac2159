"""A protobuf message decoded without its schema: field numbers and guesses.

Without the ``.proto`` only the wire is known (``proxy.grpc.wire``): field
numbers and wire types. A length-delimited field may be a string, a nested
message, packed scalars or bytes; the guess, in that order, is:

* text: valid UTF-8 of printable characters (and tab, CR, LF);
* a nested message: its bytes parse as a whole as records (checked flat
  first, so a failed guess costs one pass, not a recursion), at most
  ``MAX_DEPTH`` deep;
* packed varints, offered beside the bytes when every byte parses so;
* else bytes, in base64.

Hostile input (huge lengths, truncated varints, deep nesting) gives a
``WireError`` at the top level, or bytes/truncation below it; never another
exception. Output is bounded by ``MAX_NODES`` fields.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from proxy.grpc.wire import Field, WireError, WireType, fields, read_varint

MAX_DEPTH = 32
MAX_NODES = 10_000
MAX_PACKED = 1_000

Json = dict[str, Any]


class _Budget:
    __slots__ = ("left", "spent")

    def __init__(self, nodes: int) -> None:
        self.left = nodes
        self.spent = False


def decode(data: bytes, max_nodes: int = MAX_NODES) -> list[Json]:
    """The message's fields as a JSON-ready tree; raises ``WireError`` if ``data``
    is not a message. A tree cut at ``max_nodes`` ends with ``{"truncated": true}``."""
    records = fields(data)
    _check_groups(records)
    budget = _Budget(max_nodes)
    tree = _tree(data, records, 0, budget)
    if budget.spent:
        tree.append({"truncated": True})
    return tree


def _check_groups(records: list[Field]) -> None:
    """Groups (deprecated, but legal) must open and close in order."""
    stack: list[int] = []
    for f in records:
        if f.wire == WireType.SGROUP:
            stack.append(f.number)
        elif f.wire == WireType.EGROUP and (not stack or stack.pop() != f.number):
            raise WireError(f"unmatched end of group {f.number} at {f.start}")
    if stack:
        raise WireError(f"group {stack[-1]} not closed")


def _tree(data: bytes, records: list[Field], depth: int, budget: _Budget) -> list[Json]:
    out: list[Json] = []
    stack: list[tuple[int, list[Json]]] = []
    for f in records:
        if budget.left <= 0:
            budget.spent = True
            break
        budget.left -= 1
        if f.wire == WireType.SGROUP:
            stack.append((f.number, out))
            out = []
            continue
        if f.wire == WireType.EGROUP:
            number, parent = stack.pop()
            parent.append({"n": number, "type": "group", "value": out})
            out = parent
            continue
        out.append(_node(data, f, depth, budget))
    while stack:  # cut by the budget inside a group
        number, parent = stack.pop()
        parent.append({"n": number, "type": "group", "value": out})
        out = parent
    return out


def _node(data: bytes, f: Field, depth: int, budget: _Budget) -> Json:
    value = f.value
    if f.wire == WireType.VARINT:
        assert isinstance(value, int)
        node: Json = {"n": f.number, "type": "varint", "value": value}
        if value >= 1 << 63:
            node["signed"] = value - (1 << 64)
        return node
    if f.wire == WireType.I64 or f.wire == WireType.I32:
        assert isinstance(value, int)
        wide = f.wire == WireType.I64
        raw = value.to_bytes(8 if wide else 4, "little")
        real = struct.unpack("<d" if wide else "<f", raw)[0]
        kind = "fixed64" if wide else "fixed32"
        return {"n": f.number, "type": kind, "value": value, "float": _float(real)}
    assert isinstance(value, tuple)
    return _length_delimited(data, f.number, value[0], value[1], depth, budget)


def _float(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def _length_delimited(
    data: bytes, number: int, start: int, end: int, depth: int, budget: _Budget
) -> Json:
    chunk = data[start:end]
    text = _text(chunk)
    if text is not None:
        return {"n": number, "type": "string", "value": text}
    if depth + 1 < MAX_DEPTH:
        inner = _records(data, start, end)
        if inner is not None:
            return {"n": number, "type": "message", "value": _tree(data, inner, depth + 1, budget)}
    node: Json = {"n": number, "type": "bytes", "value": base64.b64encode(chunk).decode("ascii")}
    packed = _packed(chunk)
    if packed is not None:
        node["packed"] = packed
    return node


def _text(chunk: bytes) -> str | None:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return text
    return None


def _records(data: bytes, start: int, end: int) -> list[Field] | None:
    """``data[start:end]`` as records, if it parses whole (a flat check)."""
    if start == end:
        return None
    try:
        records = fields(data, start, end)
        _check_groups(records)
    except WireError:
        return None
    return records


def _packed(chunk: bytes) -> list[int] | None:
    values: list[int] = []
    pos = 0
    try:
        while pos < len(chunk) and len(values) < MAX_PACKED:
            value, pos = read_varint(chunk, pos, len(chunk))
            values.append(value)
    except WireError:
        return None
    return values if pos == len(chunk) and values else None
