"""gRPC messages in HAR entries: the decoded messages as the bodies' text.

HAR has no place for messages of a call, and a gRPC body is binary
length-prefixed protobuf, unreadable as text. So a call's entry gets its
messages, decoded (protobuf JSON with a schema, the schemaless tree
without), as a JSON array in ``request.postData.text`` and
``response.content.text``, with a comment saying so, and the call's summary
in ``_tapproxy.grpc``. ``GrpcMessages`` holds each open call's messages
until its entry is built, bounded as ``har_held`` says (what was left out is
counted in ``_tapproxy.grpc_messages_omitted``).
"""

from __future__ import annotations

import json
from typing import Any

from proxy.sinks.har_held import HeldByFlow

Json = dict[str, Any]
COMMENT = "gRPC messages decoded by tapproxy (a JSON array; docs/grpc.md)"


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
        self._flows = HeldByFlow()

    def add(self, rec: Json) -> None:
        m = rec["grpc_message"]
        value = shown(m)
        size = len(json.dumps(value, ensure_ascii=False))
        self._flows.held(str(m["flow"])).keep(str(m["direction"]), value, size)

    def attach(self, rec: Json, entry: Json) -> None:
        """Put the call's messages on its entry (an ``http`` record with ``grpc``)."""
        held = self._flows.claim(str(rec.get("id")))
        custom = entry.setdefault("_tapproxy", {})
        custom["grpc"] = rec["grpc"]
        if held.omitted:
            custom["grpc_messages_omitted"] = held.omitted
        sent = [value for direction, value in held.messages if direction == "request"]
        got = [value for direction, value in held.messages if direction != "request"]
        request = entry["request"]
        post = request.get("postData") or {"mimeType": _type(request.get("headers", []))}
        post.pop("encoding", None)
        post.pop("params", None)
        post["text"] = json.dumps(sent, ensure_ascii=False)
        post["comment"] = COMMENT
        request["postData"] = post
        content = entry["response"].get("content")
        if content is not None and rec.get("response") is not None:
            content.pop("encoding", None)
            content["text"] = json.dumps(got, ensure_ascii=False)
            content["comment"] = COMMENT


def _type(headers: list[Json]) -> str:
    for h in headers:
        if str(h.get("name", "")).lower() == "content-type":
            return str(h.get("value", ""))
    return "application/grpc"
