"""Comparing a response with the recorded one: status, header fields, body.

Header fields are compared by name (case-insensitive, values in order),
leaving out those that change on every response or only frame the message
(``DEFAULT_IGNORED_HEADERS``) and any the user names. Bodies are compared as
sent (content codings kept): two JSON documents structurally, path by path
(``$.items[3].price: 10 -> 12``) with the ``ignore_json`` paths left out;
text as a short unified diff; anything else by size and SHA-256.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from proxy.replay.format import Fields
from proxy.replay.match import _drop

#: Fields that differ on every response, or frame it (the body comparison covers those).
DEFAULT_IGNORED_HEADERS = frozenset(
    {"date", "content-length", "transfer-encoding", "connection", "keep-alive", "age"}
)
#: Lines of a text body diff kept in the report.
MAX_DIFF_LINES = 40
#: JSON differences listed per body.
MAX_JSON_DIFFERENCES = 50


@dataclass(frozen=True, slots=True)
class DiffOptions:
    ignore_headers: frozenset[str] = DEFAULT_IGNORED_HEADERS  # lower case
    ignore_json: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class Seen:
    """A response as received (or recorded)."""

    status: int
    headers: Fields
    body: bytes


@dataclass(slots=True)
class Differences:
    status: str | None = None
    headers: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.status or self.headers or self.body)

    def lines(self) -> list[str]:
        return ([self.status] if self.status else []) + self.headers + self.body


def _by_name(fields: Fields, ignored: frozenset[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in fields:
        name = k.decode("latin-1").lower()
        if name not in ignored:
            out.setdefault(name, []).append(v.decode("latin-1"))
    return out


def header_differences(recorded: Fields, got: Fields, ignored: frozenset[str]) -> list[str]:
    a, b = _by_name(recorded, ignored), _by_name(got, ignored)
    out = []
    for name in sorted(set(a) | set(b)):
        if name not in b:
            out.append(f"header {name}: missing (recorded {', '.join(a[name])!r})")
        elif name not in a:
            out.append(f"header {name}: added {', '.join(b[name])!r}")
        elif a[name] != b[name]:
            out.append(f"header {name}: {', '.join(a[name])!r} -> {', '.join(b[name])!r}")
    return out


def _json(body: bytes) -> tuple[bool, Any]:
    if body.lstrip()[:1] not in (b"{", b"["):
        return False, None
    try:
        return True, json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False, None


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def json_differences(a: Any, b: Any, path: str = "$") -> list[str]:
    """Where two JSON documents differ, as ``path: recorded -> got`` lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}"
            if k not in b:
                out.append(f"{p}: removed (recorded {_short(a[k])})")
            elif k not in a:
                out.append(f"{p}: added {_short(b[k])}")
            else:
                out.extend(json_differences(a[k], b[k], p))
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            p = f"{path}[{i}]"
            if i >= len(b):
                out.append(f"{p}: removed (recorded {_short(a[i])})")
            elif i >= len(a):
                out.append(f"{p}: added {_short(b[i])}")
            else:
                out.extend(json_differences(a[i], b[i], p))
        return out
    if a != b or type(a) is not type(b):
        return [f"{path}: {_short(a)} -> {_short(b)}"]
    return []


def _text(body: bytes) -> str | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if "\x00" not in text else None


def body_differences(recorded: bytes, got: bytes, opts: DiffOptions) -> list[str]:
    a_json, a = _json(recorded)
    b_json, b = _json(got)
    if a_json and b_json:
        for path in opts.ignore_json:
            _drop(a, path)
            _drop(b, path)
        found = json_differences(a, b)
        if len(found) > MAX_JSON_DIFFERENCES:
            found = [*found[:MAX_JSON_DIFFERENCES], f"... {len(found)} JSON differences in all"]
        return [f"body JSON {d}" for d in found]
    if recorded == got:
        return []
    ta, tb = _text(recorded), _text(got)
    if ta is not None and tb is not None:
        diff = list(
            difflib.unified_diff(
                ta.splitlines(), tb.splitlines(), "recorded", "got", lineterm="", n=1
            )
        )
        if len(diff) > MAX_DIFF_LINES:
            diff = [*diff[:MAX_DIFF_LINES], f"... ({len(diff)} diff lines in all)"]
        return ["body text differs:\n" + "\n".join(diff)]
    return [
        f"body differs: {len(recorded)} bytes sha256 {hashlib.sha256(recorded).hexdigest()[:16]} "
        f"-> {len(got)} bytes sha256 {hashlib.sha256(got).hexdigest()[:16]}"
    ]


def compare(recorded: Seen, got: Seen, opts: DiffOptions) -> Differences:
    d = Differences()
    if recorded.status != got.status:
        d.status = f"status {recorded.status} -> {got.status}"
    d.headers = header_differences(recorded.headers, got.headers, opts.ignore_headers)
    d.body = body_differences(recorded.body, got.body, opts)
    return d
