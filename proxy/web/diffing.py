"""Two flows compared part by part (``GET /api/diff``), as unified diffs.

Each part is turned into lines first, the way a person reads it: the request
line, headers one per line (in their order: a reordering shows), bodies as
the details pane shows them (JSON pretty-printed, so a changed field is one
line), then ``difflib.unified_diff``. An empty string means equal.
"""

from __future__ import annotations

import difflib
import hashlib
from typing import Any

from proxy.web.bodyview import render
from proxy.web.store import StoredFlow

#: Lines compared per part at most (difflib is quadratic in the worst case).
MAX_LINES = 20_000


def _unified(a: list[str], b: list[str], names: tuple[str, str]) -> str:
    if a == b:
        return ""
    lines = difflib.unified_diff(a[:MAX_LINES], b[:MAX_LINES], *names, lineterm="")
    return "\n".join(lines)


def _headers(record: dict[str, Any], part: str) -> list[str]:
    message = record.get(part) or {}
    return [f"{k}: {v}" for k, v in message.get("headers", [])]


def _body(flow: StoredFlow, side: str) -> list[str]:
    data = flow.body(side)
    if data is None:
        message = flow.record.get(side) or {}
        size = message.get("body_size", 0)
        return [f"({size} bytes, not stored)"] if size else []
    view = render(flow.record, side, data, truncated=False)
    if view["view"] == "image":
        return [f"(image, {len(data)} bytes, sha-1 {_sha1(data)})"]
    return str(view["text"]).splitlines()


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _line(record: dict[str, Any]) -> list[str]:
    request = record.get("request") or {}
    return [f"{request.get('method', '')} {request.get('url', '')}"]


def _status(record: dict[str, Any]) -> list[str]:
    response = record.get("response")
    if not response:
        return [f"(no response: {record.get('error') or 'none'})"]
    return [f"{response.get('status')} {response.get('reason', '')}"]


def flows(a: StoredFlow, b: StoredFlow) -> dict[str, dict[str, str]]:
    names = (f"a/{a.id}", f"b/{b.id}")
    ra, rb = a.record, b.record
    return {
        "request": {
            "line": _unified(_line(ra), _line(rb), names),
            "headers": _unified(_headers(ra, "request"), _headers(rb, "request"), names),
            "body": _unified(_body(a, "request"), _body(b, "request"), names),
        },
        "response": {
            "status": _unified(_status(ra), _status(rb), names),
            "headers": _unified(_headers(ra, "response"), _headers(rb, "response"), names),
            "body": _unified(_body(a, "response"), _body(b, "response"), names),
        },
    }
