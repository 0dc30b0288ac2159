"""gRPC messages in HAR entries: the decoded messages as the bodies' text.

HAR has no place for messages of a call, and a gRPC body is binary
length-prefixed protobuf, unreadable as text. So a call's entry gets its
messages, decoded (protobuf JSON with a schema, the schemaless tree
without), as a JSON array in ``request.postData.text`` and
``response.content.text``, with a comment saying so, and the call's summary
in ``_tapproxy.grpc``. Message records come before their call's record
(docs/flow-log.md), so ``GrpcMessages`` keeps each open call's messages
until its entry is built: at most ``MAX_MESSAGES`` and ``MAX_BYTES`` of JSON
per call (the rest is counted in ``_tapproxy.grpc_messages_omitted``), and
``MAX_OPEN`` calls left unclaimed.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

Json = dict[str, Any]
MAX_MESSAGES = 10_000
MAX_BYTES = 16 * 1024 * 1024
MAX_OPEN = 1024
COMMENT = "gRPC messages decoded by tapproxy (a JSON array; docs/grpc.md)"


class _Pending:
    __slots__ = ("bytes", "omitted", "request", "response")

    def __init__(self) -> None:
        self.request: list[Any] = []
        self.response: list[Any] = []
        self.bytes = 0
        self.omitted = 0


def shown(m: Json) -> Any:
    """One message as the HAR shows it: decoded, else its fields, else why not."""
    if "decoded" in m:
        return m["decoded"]
    if "fields" in m:
        return {"fields": m["fields"]}
    return {"error": m.get("error"), "raw_base64": m.get("raw", {}).get("data")}


class GrpcMessages:
    """``grpc_message`` records held for their call's HAR entry."""

    def __init__(self) -> None:
        self._open: OrderedDict[str, _Pending] = OrderedDict()

    def add(self, rec: Json) -> None:
        m = rec["grpc_message"]
        flow = str(m["flow"])
        pending = self._open.get(flow)
        if pending is None:
            pending = self._open[flow] = _Pending()
            if len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)
        value = shown(m)
        size = len(json.dumps(value, ensure_ascii=False))
        if len(pending.request) + len(pending.response) >= MAX_MESSAGES or (
            pending.bytes + size > MAX_BYTES
        ):
            pending.omitted += 1
            return
        pending.bytes += size
        (pending.request if m["direction"] == "request" else pending.response).append(value)

    def attach(self, rec: Json, entry: Json) -> None:
        """Put the call's messages on its entry (an ``http`` record with ``grpc``)."""
        pending = self._open.pop(str(rec.get("id")), None) or _Pending()
        custom = entry.setdefault("_tapproxy", {})
        custom["grpc"] = rec["grpc"]
        if pending.omitted:
            custom["grpc_messages_omitted"] = pending.omitted
        request = entry["request"]
        post = request.get("postData") or {"mimeType": _type(request.get("headers", []))}
        post.pop("encoding", None)
        post.pop("params", None)
        post["text"] = json.dumps(pending.request, ensure_ascii=False)
        post["comment"] = COMMENT
        request["postData"] = post
        content = entry["response"].get("content")
        if content is not None and rec.get("response") is not None:
            content.pop("encoding", None)
            content["text"] = json.dumps(pending.response, ensure_ascii=False)
            content["comment"] = COMMENT


def _type(headers: list[Json]) -> str:
    for h in headers:
        if str(h.get("name", "")).lower() == "content-type":
            return str(h.get("value", ""))
    return "application/grpc"
