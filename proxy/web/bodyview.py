"""A body made readable for the details pane (``GET /api/flows/ID/view/SIDE``).

The content coding is undone first (gzip, deflate, br, zstd: RFC 9110 §8.4,
capped like the rules' decoding), then the body is shown by what it is:
JSON pretty-printed, forms as name = value lines, XML and HTML as text,
images by reference (the page loads the raw body), gRPC and other protobuf
as the schemaless field tree, other text as it is, and binary as a hex dump.
The decision is made on the declared type first and the bytes second, and
never runs what it shows.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from proxy.grpc import schemaless
from proxy.rules.body import CodecError, decode

#: The most text one view returns (the raw body is there for the rest).
MAX_TEXT = 1 << 20
#: The most bytes shown as a hex dump.
MAX_HEX = 64 << 10
#: The most a coded body may grow to when decoded for viewing.
MAX_DECODED = 16 << 20

_SIDE_MESSAGE = {
    "request": ("request",),
    "request_sent": ("request", "forwarded"),
    "response": ("response",),
    "response_upstream": ("response", "upstream"),
}


def _message(record: dict[str, Any], side: str) -> dict[str, Any]:
    node: Any = record
    for key in _SIDE_MESSAGE.get(side, ()):
        node = node.get(key) if isinstance(node, dict) else None
    if node is None and side.endswith(("_sent", "_upstream")):
        return _message(record, side.split("_", 1)[0])  # unchanged: as received
    return node if isinstance(node, dict) else {}


def header(record: dict[str, Any], side: str, name: str) -> str | None:
    for k, v in _message(record, side).get("headers", []):
        if k.lower() == name:
            return str(v)
    return None


def content_type(record: dict[str, Any], side: str) -> str | None:
    return header(record, side, "content-type")


def _decoded(record: dict[str, Any], side: str, data: bytes) -> tuple[bytes, str | None]:
    coding = header(record, side, "content-encoding")
    if not coding:
        return data, None
    codings = [c.strip().lower() for c in coding.split(",") if c.strip().lower() != "identity"]
    try:
        return decode(data, codings, MAX_DECODED), None
    except CodecError as e:
        return data, f"shown as received: {e}"


def render(
    record: dict[str, Any], side: str, data: bytes | None, truncated: bool
) -> dict[str, Any]:
    mime = (content_type(record, side) or "").split(";", 1)[0].strip().lower()
    out: dict[str, Any] = {"view": "empty", "text": "", "mime": mime, "truncated": truncated}
    if not data:
        return out
    body, note = _decoded(record, side, data) if not truncated else (data, None)
    if note:
        out["note"] = note
    view, text = _classify(mime, body)
    out["view"], out["text"] = view, text[:MAX_TEXT]
    if len(text) > MAX_TEXT:
        out["truncated"] = True
    return out


def _classify(mime: str, body: bytes) -> tuple[str, str]:
    if mime.startswith("image/"):
        return "image", ""
    if mime.startswith("application/grpc") or mime in ("application/protobuf",
                                                         "application/x-protobuf"):  # fmt: skip
        return _protobuf(mime, body)
    text = _text(body)
    if "json" in mime or (not mime and text is not None and text.lstrip()[:1] in ("{", "[")):
        pretty = _json(text)
        if pretty is not None:
            return "json", pretty
    if mime == "application/x-www-form-urlencoded" and text is not None:
        pairs = parse_qsl(text, keep_blank_values=True)
        return "form", "\n".join(f"{k} = {v}" for k, v in pairs)
    if text is not None:
        if "html" in mime:
            return "html", text
        if "xml" in mime:
            return "xml", text
        return "text", text
    return "hex", hexdump(body[:MAX_HEX])


def _text(body: bytes) -> str | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ch in text[:4096] for ch in "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f"):
        return None
    return text


def _json(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return None


def _protobuf(mime: str, body: bytes) -> tuple[str, str]:
    """gRPC bodies are length-prefixed messages (5-byte headers); plain protobuf is one."""
    messages: list[Any] = []
    if mime.startswith("application/grpc"):
        at = 0
        while at + 5 <= len(body):
            size = int.from_bytes(body[at + 1 : at + 5], "big")
            chunk = body[at + 5 : at + 5 + size]
            messages.append(_tree(chunk) if body[at] == 0 else {"compressed": len(chunk)})
            at += 5 + size
        view = "grpc"
    else:
        messages.append(_tree(body))
        view = "protobuf"
    return view, json.dumps(messages, indent=2, ensure_ascii=False)


def _tree(data: bytes) -> Any:
    try:
        return schemaless.decode(data)
    except Exception as e:  # not a message: say so, show the bytes
        return {"undecodable": str(e), "hex": data[:256].hex()}


def hexdump(data: bytes) -> str:
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        shown = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}  {hexes:<47}  {shown}")
    return "\n".join(lines)
