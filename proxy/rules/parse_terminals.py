"""Building terminals (respond, map_local, map_remote, block), faults and log.

Header names and values are checked with ``check_field_safe`` here, at load
time, so no rule can put CR, LF or NUL into a head (response splitting).
Framing fields (Content-Length, Transfer-Encoding) are the proxy's to
compute and cannot be edited by rules. Paths are relative to the rules file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from yaml.nodes import MappingNode, Node, ScalarNode

from proxy.http1.fields import check_field_safe
from proxy.rules import actions as a
from proxy.rules import model
from proxy.rules.facts import DEFAULT_PORTS
from proxy.rules.yamlnodes import (
    Doc,
    Entries,
    boolean,
    check_keys,
    integer,
    items,
    json_value,
    mapping,
    nonempty,
    number,
    string,
)

FRAMING = (b"content-length", b"transfer-encoding")


def header_pairs(doc: Doc, node: Node, path: str) -> list[tuple[bytes, bytes]]:
    entries = mapping(doc, node, path, "a mapping of header names to values") or {}
    out = []
    for name, (knode, vnode) in entries.items():
        value = string(doc, vnode, f"{path}.{name}")
        pair = safe_field(doc, knode, f"{path}.{name}", name, value)
        if pair is not None:
            out.append(pair)
    return out


def safe_field(
    doc: Doc, node: Node, path: str, name: str, value: str | None
) -> tuple[bytes, bytes] | None:
    if value is None:
        return None
    bname, bvalue = name.encode("utf-8"), value.encode("utf-8")
    try:
        check_field_safe(bname, bvalue)
    except ValueError as e:
        doc.error(node, path, f"unsafe header: {e}")
        return None
    if bname.lower() in FRAMING:
        doc.error(node, path, f"'{name}' is computed by the proxy and cannot be edited")
        return None
    return bname, bvalue


def local_path(
    doc: Doc, node: Node, path: str, folder: bool = False, must_exist: bool = True
) -> Path | None:
    """A path relative to the rules file, checked to exist when asked."""
    text = nonempty(doc, node, path, "a path")
    if text is None:
        return None
    what = "folder" if folder else "file"
    try:
        p = (doc.base / text).resolve()
        exists = p.is_dir() if folder else p.is_file()
    except (OSError, ValueError) as e:  # a name too long, a NUL byte (found by fuzzing)
        doc.error(node, path, f"unusable {what} path {text[:80]!r}: {e}")
        return None
    if must_exist and not exists:
        doc.error(node, path, f"{what} not found: {p}")
        return None
    return p


def parse_respond(doc: Doc, node: Node, path: str) -> model.RespondSpec | None:
    entries = mapping(doc, node, path)
    keys = ("status", "headers", "body", "file", "json")
    if entries is None or not check_keys(doc, entries, node, path, keys):
        return None
    if sum(k in entries for k in ("body", "file", "json")) > 1:
        doc.error(node, path, "use only one of body, file, json")
        return None
    status = (
        integer(doc, entries["status"][1], f"{path}.status", 200, 599)
        if "status" in entries
        else 200
    )
    fields = (
        header_pairs(doc, entries["headers"][1], f"{path}.headers") if "headers" in entries else []
    )
    body, file = b"", None
    if "body" in entries:
        body = (string(doc, entries["body"][1], f"{path}.body") or "").encode()
    elif "file" in entries:
        file = local_path(doc, entries["file"][1], f"{path}.file")
    elif "json" in entries:
        ok, value = json_value(doc, entries["json"][1], f"{path}.json")
        body = a.dump_json(value) if ok else b""
        if not any(k.lower() == b"content-type" for k, _ in fields):
            fields.append((b"content-type", b"application/json"))
    return None if status is None else model.RespondSpec(status, tuple(fields), body, file)


def parse_map_local(doc: Doc, node: Node, path: str) -> model.MapLocalSpec | None:
    entries = mapping(doc, node, path)
    keys = ("file", "dir", "strip_prefix", "index", "missing", "headers")
    if entries is None or not check_keys(doc, entries, node, path, keys):
        return None
    if ("file" in entries) == ("dir" in entries):
        doc.error(node, path, "expected exactly one of file, dir")
        return None
    file = folder = None
    if "file" in entries:
        file = local_path(doc, entries["file"][1], f"{path}.file", must_exist=False)
    else:
        folder = local_path(doc, entries["dir"][1], f"{path}.dir", folder=True)
    strip = (
        string(doc, entries["strip_prefix"][1], f"{path}.strip_prefix")
        if "strip_prefix" in entries
        else ""
    )
    index = (
        nonempty(doc, entries["index"][1], f"{path}.index") if "index" in entries else "index.html"
    )
    missing = (
        string(doc, entries["missing"][1], f"{path}.missing") if "missing" in entries else "404"
    )
    if missing not in ("404", "upstream"):
        doc.error(entries["missing"][1], f"{path}.missing", "expected 404 or upstream")
    fields = (
        header_pairs(doc, entries["headers"][1], f"{path}.headers") if "headers" in entries else []
    )
    if (file is None and folder is None) or strip is None or index is None:
        return None
    return model.MapLocalSpec(
        file, folder, strip.rstrip("/"), index, missing == "upstream", tuple(fields)
    )


def parse_map_remote(doc: Doc, node: Node, path: str) -> a.MapRemote | None:
    keep_host = False
    url_node = node
    if not isinstance(node, ScalarNode):
        entries = mapping(doc, node, path)
        if entries is None or not check_keys(
            doc, entries, node, path, ("to", "keep_host"), ("to",)
        ):
            return None
        url_node = entries["to"][1]
        if "keep_host" in entries:
            keep_host = bool(boolean(doc, entries["keep_host"][1], f"{path}.keep_host"))
    url = nonempty(doc, url_node, path, "a URL like http://host:port")
    if url is None:
        return None
    try:
        parts = urlsplit(url)  # ValueError for an unbalanced [ ] (IPv6 literal)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        doc.error(url_node, path, f"expected an http(s) URL without query, got '{url}'")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port or parts.query:
        doc.error(url_node, path, f"expected an http(s) URL without query, got '{url}'")
        return None
    return a.MapRemote(parts.scheme, parts.hostname, port, parts.path.rstrip("/"), keep_host)


def parse_block(doc: Doc, node: Node, path: str) -> model.TerminalSpec | None:
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(doc, entries, node, path, ("status", "body", "close")):
        return None
    if "close" in entries:
        if len(entries) > 1 or not boolean(doc, entries["close"][1], f"{path}.close"):
            doc.error(node, path, "write 'close: true' alone to close without an answer")
            return None
        return model.CloseSpec("close")
    status = (
        integer(doc, entries["status"][1], f"{path}.status", 200, 599)
        if "status" in entries
        else 403
    )
    body = string(doc, entries["body"][1], f"{path}.body") if "body" in entries else ""
    if status is None or body is None:
        return None
    return model.RespondSpec(
        status, ((b"content-type", b"text/plain"),), body.encode(), None, "block"
    )


FAULT_KEYS = ("phase", "delay", "bandwidth", "abort", "reset", "hang", "close_after")


def parse_fault(doc: Doc, node: Node, path: str) -> tuple[model.FaultSpec, str | None] | None:
    """A ``fault`` mapping and its explicit phase (None: decided by the rule)."""
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(doc, entries, node, path, FAULT_KEYS):
        return None
    before = len(doc.errors)
    phase = string(doc, entries["phase"][1], f"{path}.phase") if "phase" in entries else None
    if phase not in (None, "request", "response"):
        doc.error(entries["phase"][1], f"{path}.phase", "expected request or response")
    delay = _params(doc, entries, "delay", path, {"ms": True, "jitter_ms": False})
    bandwidth = _params(doc, entries, "bandwidth", path, {"bytes_per_second": True})
    abort = _params(doc, entries, "abort", path, {"status": True})
    close_after = _params(doc, entries, "close_after", path, {"bytes": True})
    terminals = [k for k in ("abort", "reset", "hang") if k in entries]
    if len(terminals) > 1:
        doc.error(node, path, f"use only one of abort, reset, hang (got {', '.join(terminals)})")
    terminal: model.RespondSpec | model.CloseSpec | None = None
    if abort:
        body = f"fault injected by rule: {int(abort['status'])}\n".encode()
        terminal = model.RespondSpec(
            int(abort["status"]), ((b"content-type", b"text/plain"),), body, None, "abort"
        )
    if "reset" in entries:
        terminal = _reset(doc, entries["reset"][1], f"{path}.reset") or terminal
    if "hang" in entries and boolean(doc, entries["hang"][1], f"{path}.hang"):
        terminal = model.CloseSpec("hang")
    if len(doc.errors) > before:
        return None
    spec = model.FaultSpec(
        delay_ms=delay.get("ms", 0.0),
        jitter_ms=delay.get("jitter_ms", 0.0),
        bandwidth=int(bandwidth["bytes_per_second"]) if bandwidth else None,
        close_after=int(close_after["bytes"]) if close_after else None,
        terminal=terminal,
    )
    return spec, phase


H2_ERRORS = (
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
    "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
    "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
)  # fmt: skip  # RFC 9113 §7


def _reset(doc: Doc, node: Node, path: str) -> model.CloseSpec | None:
    """``reset: true``, or ``reset: {h2_error: NAME}`` for the code an HTTP/2 stream gets."""
    if not isinstance(node, MappingNode):
        return model.CloseSpec("reset") if boolean(doc, node, path) else None
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(doc, entries, node, path, ("h2_error",)):
        return None
    name = (
        string(doc, entries["h2_error"][1], f"{path}.h2_error") if "h2_error" in entries else None
    )
    if name is not None and name not in H2_ERRORS:
        doc.error(
            entries["h2_error"][1], f"{path}.h2_error", f"expected one of {', '.join(H2_ERRORS)}"
        )
        return None
    return model.CloseSpec("reset", name)


_INTEGERS: dict[str, tuple[int, int | None]] = {
    "status": (200, 599),
    "bytes": (0, None),
    "bytes_per_second": (1, None),
}


def _params(
    doc: Doc, entries: Entries, key: str, path: str, wanted: dict[str, bool]
) -> dict[str, float]:
    """Numeric parameters of one fault or toxic, ``{name: required}``."""
    if key not in entries:
        return {}
    node, sub = entries[key][1], f"{path}.{key}"
    sub_entries = mapping(doc, node, sub)
    required = [k for k, req in wanted.items() if req]
    if sub_entries is None or not check_keys(doc, sub_entries, node, sub, list(wanted), required):
        return {}
    out: dict[str, float] = {}
    for name, (_, vnode) in sub_entries.items():
        if name in _INTEGERS:
            value: float | None = integer(doc, vnode, f"{sub}.{name}", *_INTEGERS[name])
        else:
            value = number(doc, vnode, f"{sub}.{name}", 0)
        if value is not None:
            out[name] = value
    return out


def parse_log(doc: Doc, node: Node, path: str) -> model.LogSpec | None:
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(doc, entries, node, path, ("tags", "detail", "capture")):
        return None
    tags: list[str] = []
    if "tags" in entries:
        for item, sub in items(entries["tags"][1], f"{path}.tags"):
            if (tag := nonempty(doc, item, sub, "a tag")) is not None:
                tags.append(tag)
    detail = string(doc, entries["detail"][1], f"{path}.detail") if "detail" in entries else None
    if detail is not None and detail not in model.DETAIL_LEVELS:
        doc.error(
            entries["detail"][1],
            f"{path}.detail",
            f"expected one of {', '.join(model.DETAIL_LEVELS)}",
        )
        return None
    capture = None
    if "capture" in entries:
        capture = local_path(
            doc, entries["capture"][1], f"{path}.capture", folder=True, must_exist=False
        )
        if capture is None:
            return None
    return model.LogSpec(tuple(tags), detail, capture)
