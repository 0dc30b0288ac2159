"""Reading and setting protobuf fields by number, without a schema.

A field path is JSON Pointer tokens that are field numbers (``/4/1``: field
1 of the message in field 4). Reading gives the last occurrence (protobuf's
"last one wins" for singular fields): a varint or fixed value as an int, a
length-delimited one as text when it is UTF-8, else bytes. Setting replaces
every occurrence of the field with one record: an int (or bool) as a
varint, a float as a double (fixed64), text as UTF-8; inner fields of a
nested message are set in its bytes, which are then re-written whole.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from proxy.grpc.wire import MAX_FIELD, WireError, WireType, encode_field, fields


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class FieldError(ValueError):
    """A path or value that cannot be set without the schema."""


def _number(token: str) -> int:
    if not token.isdigit() or not 1 <= int(token) <= MAX_FIELD:
        raise FieldError(f"without a schema, field paths are field numbers (got {token!r})")
    return int(token)


def value(data: bytes, pointer: tuple[str, ...]) -> Any:
    """The field's value, or ``MISSING``."""
    try:
        number = _number(pointer[0])
        found = [f for f in fields(data) if f.number == number]
    except (FieldError, WireError):
        return MISSING
    if not found:
        return MISSING
    last = found[-1]
    if last.wire != WireType.LEN:
        return last.value
    assert isinstance(last.value, tuple)
    chunk = data[last.value[0] : last.value[1]]
    if len(pointer) > 1:
        return value(chunk, pointer[1:])
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        return chunk


def assign(data: bytes, pointer: tuple[str, ...], new: Any) -> bytes:
    """``data`` with the field at ``pointer`` set to ``new``."""
    try:
        records = fields(data)
    except WireError as e:
        raise FieldError(f"not a protobuf message: {e}") from None
    number = _number(pointer[0])
    keep = b"".join(data[f.start : f.end] for f in records if f.number != number)
    if len(pointer) > 1:
        inner = b""
        for f in records:
            if f.number == number and f.wire == WireType.LEN:
                assert isinstance(f.value, tuple)
                inner = data[f.value[0] : f.value[1]]
        return keep + encode_field(number, WireType.LEN, assign(inner, pointer[1:], new))
    return keep + _record(number, new)


def _record(number: int, new: Any) -> bytes:
    if isinstance(new, int):  # bool too
        if not -(1 << 63) <= int(new) < 1 << 64:
            raise FieldError(f"{new} does not fit a varint")
        return encode_field(number, WireType.VARINT, int(new))
    if isinstance(new, float):
        raw = int.from_bytes(struct.pack("<d", new), "little")
        return encode_field(number, WireType.I64, raw)
    if isinstance(new, str):
        return encode_field(number, WireType.LEN, new.encode("utf-8"))
    raise FieldError(
        f"without a schema a field is set to a number or text (got {type(new).__name__})"
    )
