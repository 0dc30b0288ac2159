"""Which recorded request a live request matches, and why the closest did not.

A request is reduced to a *key*: method, origin (scheme, host, port; left
out with ``ignore_host``), path, the query parameters as a sorted list
(those in ``ignore_params`` left out), and the values of the selected header
fields (``use_headers`` minus ``ignore_headers``). The body is compared
separately, after the key: JSON bodies as canonical JSON with the
``ignore_json`` paths removed, others byte for byte. A live request whose
body is not known (``None``) matches on its key alone.

When nothing matches, ``closest`` finds the recorded request with the
fewest differing parts and says which, and which option would ignore each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from proxy.replay.format import Fields, RecordedRequest

#: Header fields compared unless ignored: they choose the representation asked for.
DEFAULT_HEADERS = ("content-type",)


@dataclass(frozen=True, slots=True)
class MatchOptions:
    ignore_params: frozenset[str] = frozenset()
    use_headers: tuple[str, ...] = DEFAULT_HEADERS
    ignore_headers: frozenset[str] = frozenset()  # lower case
    ignore_json: tuple[tuple[str, ...], ...] = ()  # paths, "*" matching any key or index
    ignore_host: bool = False

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(h for h in self.use_headers if h not in self.ignore_headers)


def json_path(text: str) -> tuple[str, ...]:
    """``a.b.0.c``, ``$.a.b`` or a JSON Pointer ``/a/b`` as path steps."""
    if text.startswith("/"):
        return tuple(s.replace("~1", "/").replace("~0", "~") for s in text[1:].split("/"))
    return tuple(s for s in text.removeprefix("$").split(".") if s)


@dataclass(frozen=True, slots=True)
class Key:
    method: str
    origin: str
    path: str
    params: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, tuple[str, ...]], ...]


def _header_values(fields: Fields, name: str) -> tuple[str, ...]:
    raw = name.encode("latin-1")
    return tuple(v.decode("latin-1").strip() for k, v in fields if k.lower() == raw)


def key_of(method: bytes, url: str, fields: Fields, opts: MatchOptions) -> Key:
    parts = urlsplit(url)
    origin = ""
    if not opts.ignore_host:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin = f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"
    params = tuple(
        sorted(
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in opts.ignore_params
        )
    )
    headers = tuple((h, _header_values(fields, h)) for h in opts.headers)
    return Key(method.decode("latin-1").upper(), origin, parts.path or "/", params, headers)


def _drop(doc: Any, path: tuple[str, ...]) -> None:
    if not path:
        return
    step, rest = path[0], path[1:]
    if isinstance(doc, dict):
        keys = list(doc) if step == "*" else [step] if step in doc else []
        for k in keys:
            if rest:
                _drop(doc[k], rest)
            else:
                del doc[k]
    elif isinstance(doc, list):
        indexes = range(len(doc)) if step == "*" else [int(step)] if step.isdigit() else []
        for i in sorted((i for i in indexes if i < len(doc)), reverse=True):
            if rest:
                _drop(doc[i], rest)
            else:
                del doc[i]


def body_key(body: bytes, opts: MatchOptions) -> bytes:
    """The body as compared: canonical JSON without the ignored paths, or the bytes."""
    stripped = body.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return body
        for path in opts.ignore_json:
            _drop(doc, path)
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return body


def request_key(r: RecordedRequest, opts: MatchOptions) -> Key:
    return key_of(r.method, r.url, r.headers, opts)


# -- why not ------------------------------------------------------------------------


def differences(
    live: Key, live_body: bytes | None, rec: Key, rec_body: bytes, opts: MatchOptions
) -> list[str]:
    """What differs between a live request and a recorded one, with the option to ignore it."""
    out = []
    if live.method != rec.method:
        out.append(f"method {live.method} (recorded {rec.method})")
    if live.origin != rec.origin:
        out.append(f"host {live.origin} (recorded {rec.origin}; --server-replay-ignore-host)")
    if live.path != rec.path:
        out.append(f"path {live.path} (recorded {rec.path})")
    if live.params != rec.params:
        out.extend(_param_differences(dict(live.params), dict(rec.params)))
    for (name, mine), (_, theirs) in zip(live.headers, rec.headers, strict=True):
        if mine != theirs:
            out.append(
                f"header {name}: {', '.join(mine) or '(none)'} (recorded "
                f"{', '.join(theirs) or '(none)'}; --server-replay-ignore-headers {name})"
            )
    if live_body is not None and live_body != rec_body:
        hint = "; --server-replay-ignore-json PATH" if rec_body[:1] in (b"{", b"[") else ""
        out.append(f"body {_clip(live_body)} (recorded {_clip(rec_body)}{hint})")
    return out


def _clip(body: bytes, keep: int = 60) -> str:
    """A body as compared, short: text as is, else its size."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(body)} bytes)"
    return text if len(text) <= keep else f"{text[:keep]}... ({len(body)} bytes)"


def _param_differences(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    out = []
    for name in sorted(set(mine) | set(theirs)):
        if mine.get(name) != theirs.get(name):
            out.append(
                f"query parameter {name}: {mine.get(name, '(absent)')!r} (recorded "
                f"{theirs.get(name, '(absent)')!r}; --server-replay-ignore-params {name})"
            )
    return out
