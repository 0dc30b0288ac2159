"""The protobuf wire format: varints, tags and fields, read and written.

https://protobuf.dev/programming-guides/encoding/: a message is a sequence
of (tag, value) records; the tag is ``field_number << 3 | wire_type``.
Every read is bounds-checked and raises ``WireError`` (never IndexError):
the bytes come from the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

MAX_VARINT_BYTES = 10
MAX_FIELD = (1 << 29) - 1


class WireError(ValueError):
    """The bytes are not a protobuf message."""


class WireType(IntEnum):
    VARINT = 0
    I64 = 1
    LEN = 2
    SGROUP = 3
    EGROUP = 4
    I32 = 5


@dataclass(frozen=True, slots=True)
class Field:
    """One record of a message: for LEN, ``value`` is the (start, end) of its bytes."""

    number: int
    wire: WireType
    value: int | tuple[int, int]
    start: int  # where the tag begins
    end: int  # where the record ends


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = 0
    shift = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= end:
            raise WireError(f"truncated varint at {pos}")
        b = data[pos + i]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result >> 64:
                raise WireError(f"varint over 64 bits at {pos}")
            return result, pos + i + 1
        shift += 7
    raise WireError(f"varint longer than {MAX_VARINT_BYTES} bytes at {pos}")


def read_field(data: bytes, pos: int, end: int) -> Field:
    """The record at ``pos`` (a group start is returned with an empty value)."""
    tag, at = read_varint(data, pos, end)
    number, wire = tag >> 3, tag & 7
    if number < 1 or number > MAX_FIELD:
        raise WireError(f"field number {number} at {pos}")
    if wire == WireType.VARINT:
        value, at = read_varint(data, at, end)
        return Field(number, WireType.VARINT, value, pos, at)
    if wire == WireType.I64 or wire == WireType.I32:
        size = 8 if wire == WireType.I64 else 4
        if at + size > end:
            raise WireError(f"truncated fixed{size * 8} at {pos}")
        value = int.from_bytes(data[at : at + size], "little")
        return Field(number, WireType(wire), value, pos, at + size)
    if wire == WireType.LEN:
        length, at = read_varint(data, at, end)
        if length > end - at:
            raise WireError(f"length {length} beyond the end at {pos}")
        return Field(number, WireType.LEN, (at, at + length), pos, at + length)
    if wire == WireType.SGROUP or wire == WireType.EGROUP:
        return Field(number, WireType(wire), (at, at), pos, at)
    raise WireError(f"wire type {wire} at {pos}")


def fields(data: bytes, start: int = 0, end: int | None = None) -> list[Field]:
    """Every top-level record of ``data[start:end]`` (groups are flat records here)."""
    stop = len(data) if end is None else end
    out: list[Field] = []
    pos = start
    while pos < stop:
        field = read_field(data, pos, stop)
        out.append(field)
        pos = field.end
    return out


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32/int64 negatives are ten-byte varints
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_field(number: int, wire: WireType, value: int | bytes) -> bytes:
    """One record: ``value`` is an int for VARINT/I64/I32, bytes for LEN."""
    tag = encode_varint(number << 3 | wire)
    if wire == WireType.VARINT:
        assert isinstance(value, int)
        return tag + encode_varint(value)
    if wire == WireType.I64 or wire == WireType.I32:
        assert isinstance(value, int)
        return tag + value.to_bytes(8 if wire == WireType.I64 else 4, "little")
    assert isinstance(value, bytes)
    return tag + encode_varint(len(value)) + value
