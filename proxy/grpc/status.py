"""A call's outcome: ``grpc-status``, ``grpc-message`` and ``grpc-status-details-bin``.

PROTOCOL-HTTP2.md "Responses": the status is in the trailers, or in the
response headers of a trailers-only response. ``grpc-message`` is
percent-encoded UTF-8; ``grpc-status-details-bin`` is base64 (padding
optional, as every ``-bin`` metadata value) of a ``google.rpc.Status``
message, ``{code = 1; message = 2; repeated google.protobuf.Any details =
3}`` with ``Any {type_url = 1; value = 2}``; it is read here with the wire
reader (the schema is fixed and tiny), its ``details`` values schemalessly.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from proxy.grpc import schemaless
from proxy.grpc.wire import WireError, WireType, fields
from proxy.http1.events import Fields

#: The codes' names (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
CODES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)  # fmt: skip
CODE_OF = {name: i for i, name in enumerate(CODES)}


@dataclass(frozen=True, slots=True)
class CallStatus:
    code: int | None  # None: no grpc-status, or not a number
    message: str | None
    details: dict[str, Any] | None  # the decoded google.rpc.Status
    raw_code: str | None = None  # grpc-status as sent, when it is not a number

    @property
    def name(self) -> str | None:
        if self.code is None:
            return None
        return CODES[self.code] if 0 <= self.code < len(CODES) else f"CODE_{self.code}"


def field_value(block: Fields, name: bytes) -> bytes | None:
    for k, v in block:
        if k.lower() == name:
            return v
    return None


def status_of(block: Fields) -> CallStatus | None:
    """The status in a header or trailer block; None when it has no ``grpc-status``."""
    raw = field_value(block, b"grpc-status")
    if raw is None:
        return None
    text = raw.decode("latin-1").strip()
    # ASCII digits only: str.isdigit() is also true of "²" and other digits int() refuses
    code = int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None
    message = field_value(block, b"grpc-message")
    details = field_value(block, b"grpc-status-details-bin")
    return CallStatus(
        code,
        None if message is None else percent_decoded(message),
        None if details is None else details_of(details),
        None if code is not None else text,
    )


def percent_decoded(value: bytes) -> str:
    """grpc-message: percent-encoded UTF-8 (invalid sequences replaced, never an error)."""
    return unquote_to_bytes(value).decode("utf-8", "replace")


def unbase64(value: bytes) -> bytes:
    """A ``-bin`` metadata value: base64, with or without padding."""
    text = value.strip()
    return base64.b64decode(text + b"=" * (-len(text) % 4), validate=False)


def details_of(value: bytes) -> dict[str, Any]:
    """``google.rpc.Status`` decoded (or ``{"error": ...}`` when it is not one)."""
    try:
        data = unbase64(value)
        out: dict[str, Any] = {"details": []}
        for f in fields(data):
            if f.number == 1 and f.wire == WireType.VARINT:
                assert isinstance(f.value, int)
                out["code"] = f.value
            elif f.number == 2 and f.wire == WireType.LEN:
                assert isinstance(f.value, tuple)
                out["message"] = data[f.value[0] : f.value[1]].decode("utf-8", "replace")
            elif f.number == 3 and f.wire == WireType.LEN:
                assert isinstance(f.value, tuple)
                out["details"].append(_any(data[f.value[0] : f.value[1]]))
        return out
    except (WireError, binascii.Error, ValueError) as e:
        return {"error": f"grpc-status-details-bin: {e}"}


def _any(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(data):
        if f.wire != WireType.LEN:
            continue
        assert isinstance(f.value, tuple)
        chunk = data[f.value[0] : f.value[1]]
        if f.number == 1:
            out["type_url"] = chunk.decode("utf-8", "replace")
        elif f.number == 2:
            out["value"] = base64.b64encode(chunk).decode("ascii")
            try:
                out["fields"] = schemaless.decode(chunk)
            except WireError as e:
                out["decode_error"] = str(e)
    return out
