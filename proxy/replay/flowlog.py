"""A flow log record (docs/flow-log.md), with its body files, as a recorded flow.

A body is whole when the record's preview holds it, or when a body file
(``--capture-bodies``) does; otherwise the recorded body is the preview and
is marked truncated (its ``size`` is the size on the wire). Records that
are not HTTP exchanges (tunnels, TCP relays, refusals without a request)
are recorded too, without bodies.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

from proxy.replay.format import (
    Body,
    Fields,
    Json,
    Offsets,
    RecordedFlow,
    RecordedRequest,
    RecordedResponse,
)


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def _fields(headers: Any) -> Fields:
    return tuple((str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in headers or ())


def _version(message: Json) -> bytes:
    return str(message.get("http_version", "HTTP/1.1")).removeprefix("HTTP/").encode("latin-1")


def _body(message: Json, log_dir: Path | None) -> Body:
    size = int(message.get("body_size") or 0)
    name = message.get("body_file")
    if isinstance(name, str):
        path = Path(name)
        if not path.is_absolute() and not path.exists() and log_dir is not None:
            path = log_dir / path
        try:
            return Body(path.read_bytes(), size)
        except OSError:
            pass  # fall back on the preview, marked truncated by its size
    preview = message.get("body_preview")
    if not preview:
        return Body(b"", size)
    text = str(preview.get("data", ""))
    data = base64.b64decode(text) if preview.get("encoding") == "base64" else text.encode("utf-8")
    return Body(data, size)


def _request(message: Json | None, log_dir: Path | None) -> RecordedRequest | None:
    if message is None:
        return None
    return RecordedRequest(
        str(message["method"]).encode("latin-1"), str(message["url"]),
        _fields(message.get("headers")), _body(message, log_dir), _version(message),
    )  # fmt: skip


def _response(message: Json | None, log_dir: Path | None) -> RecordedResponse | None:
    if message is None:
        return None
    return RecordedResponse(
        int(message["status"]), str(message.get("reason", "")).encode("latin-1"),
        _fields(message.get("headers")), _body(message, log_dir), _version(message),
    )  # fmt: skip


def _seconds(ms: Any) -> float | None:
    return None if ms is None else float(ms) / 1000


def flow_from_log(rec: Json, log_dir: Path | None) -> RecordedFlow | None:
    """None for the log's records that are not flows (capture statistics, rule errors)."""
    if "id" not in rec or "start" not in rec:
        return None
    start = epoch(str(rec["start"]))
    request = rec.get("request")
    response = rec.get("response")
    t = rec.get("timings_ms") or {}
    client, server = rec.get("client"), rec.get("server")
    return RecordedFlow(
        id=str(rec["id"]),
        start=start,
        end=epoch(str(rec["end"])) if rec.get("end") else start,
        request=_request(request, log_dir),
        response=_response(response, log_dir),
        protocol="http/" + _version(request).decode() if request else "http/1.1",
        kind=str(rec.get("kind", "http")),
        mode=str(rec.get("mode", "regular")),
        client=(str(client["ip"]), int(client["port"])) if client else None,
        server=(str(server["ip"]), int(server["port"])) if server else None,
        forwarded=_request((request or {}).get("forwarded"), None),
        upstream=_response((response or {}).get("upstream"), None),
        source=str((response or {}).get("source", "upstream")),
        offsets=Offsets(
            _seconds(t.get("connected")),
            _seconds(t.get("request_done")),
            _seconds(t.get("response_head")),
            _seconds(t.get("response_done")),
        ),
        error=rec.get("error"),
        tls=bool((rec.get("tls") or {}).get("intercepted")),
    )
