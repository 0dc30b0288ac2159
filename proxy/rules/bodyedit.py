"""Applying body edits: decode the content coding, edit, re-encode, fix fields.

The edited body is re-encoded with the codings it arrived with; if that is
impossible it is sent as identity and Content-Encoding is removed. A body
that cannot be decoded is left exactly as it was, with a warning.
Content-Length, when present, is updated (the HTTP writer re-frames anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.http1.events import Fields
from proxy.rules import body as codec
from proxy.rules.actions import EDIT_FAILURES, Action


@dataclass(frozen=True, slots=True)
class BodyResult:
    """The body to send and the fields that go with it."""

    body: bytes
    fields: Fields
    changed: bool
    warnings: tuple[str, ...] = ()


def apply_body_edits(
    edits: Sequence[Action], body: bytes, fields: Fields, limit: int = codec.DEFAULT_LIMIT
) -> BodyResult:
    if not edits:
        return BodyResult(body, fields, False)
    codings = codec.codings_of(fields)
    try:
        data = codec.decode(body, codings, limit)
    except codec.CodecError as e:
        return BodyResult(body, fields, False, (f"body edits skipped: {e}",))
    warnings: list[str] = []
    new = data
    for edit in edits:
        try:
            new = edit.apply_body(new)
        except EDIT_FAILURES as e:
            warnings.append(f"{edit.summary()}: {e}")
    if new == data:
        return BodyResult(body, fields, False, tuple(warnings))
    try:
        out = codec.encode(new, codings)
    except codec.CodecError as e:
        warnings.append(f"body sent as identity: {e}")
        out, fields = new, tuple((k, v) for k, v in fields if k.lower() != b"content-encoding")
    return BodyResult(out, _with_length(fields, len(out)), True, tuple(warnings))


def _with_length(fields: Fields, length: int) -> Fields:
    value = str(length).encode()
    return tuple((k, value) if k.lower() == b"content-length" else (k, v) for k, v in fields)
