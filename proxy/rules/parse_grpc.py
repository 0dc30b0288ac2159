"""gRPC in rules: the ``grpc`` match key and the rule's ``grpc`` section.

```yaml
match: {grpc: {service: demo.Echo, method: [Unary, Bidi]}}   # or grpc: true (any call)
match: {grpc: {method: Pay, message: {/amount: 0}}}  # the first request message's fields
grpc:
  status: {code: UNAVAILABLE, message: "try later"}   # answer: trailers-only response
  request:  [{set: {/text: bye}, where: {/text: hello}}]
  response: [{drop: true, index: 0}, {delay: {ms: 200}}]
```

A call is a request whose content type is ``application/grpc`` (+format)
or gRPC-Web; service and method come from its path
(``/pkg.Service/Method``, PROTOCOL-HTTP2.md). The status answer follows
PROTOCOL-HTTP2.md "Trailers-Only": HTTP 200, ``content-type:
application/grpc``, ``grpc-status`` and a percent-encoded ``grpc-message``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from yaml.nodes import Node, ScalarNode

from proxy.grpc.firstmessage import MessageView, first_message
from proxy.grpc.status import CODE_OF, CODES
from proxy.rules import match as m
from proxy.rules.facts import Facts
from proxy.rules.grpcspec import GrpcSpec, MessageAction, Pointer
from proxy.rules.jsonpatch import parse_pointer
from proxy.rules.model import RespondSpec
from proxy.rules.patterns import patterns
from proxy.rules.textmatch import Pattern, StrPred
from proxy.rules.yamlnodes import (
    Doc,
    boolean,
    check_keys,
    integer,
    items,
    json_value,
    mapping,
    number,
    string,
)

_KINDS = ("exact", "prefix", "glob", "regex")
_GRPC_TYPE = StrPred([Pattern("prefix", "application/grpc")], ignore_case=True)
ACTIONS = ("set", "drop", "delay")


def _service(f: Facts) -> str:
    parts = f.info.path.split("/")
    return parts[1] if len(parts) == 3 else ""


def _method(f: Facts) -> str:
    parts = f.info.path.split("/")
    return parts[2] if len(parts) == 3 else ""


def _headers(f: Facts) -> dict[str, list[str]]:
    return f.headers


def parse_grpc_match(doc: Doc, node: Node, path: str, depth: int) -> m.Matcher | None:
    """``grpc: true``, or ``{service: ..., method: ...}`` (patterns, any of a list)."""
    parts: list[m.Matcher] = [
        m.Field("header", _headers, "content-type", _GRPC_TYPE, True, m.Phase.REQUEST)
    ]
    if isinstance(node, ScalarNode):
        if boolean(doc, node, path) is not True:
            doc.error(node, path, "grpc: true, or a mapping with service and/or method")
            return None
        return m.All(parts)
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(
        doc, entries, node, path, ("service", "method", "message")
    ):
        return None
    if "message" in entries:
        conditions = _pointers(doc, entries["message"][1], f"{path}.message")
        if conditions is None:
            return None
        parts.append(MessageFields(conditions))
    for key, get in (("service", _service), ("method", _method)):
        if key in entries:
            pats = patterns(doc, entries[key][1], f"{path}.{key}", _KINDS)
            if pats is None:
                return None
            parts.append(m.Text(f"grpc {key}", get, StrPred(pats), 2))
    return m.All(parts)


class MessageFields(m.Matcher):
    """The first request message has these field values (decided with the body,
    like ``body`` matchers: the request is buffered, up to --max-body)."""

    __slots__ = ("conditions",)

    def __init__(self, conditions: tuple[tuple[Pointer, Any], ...]) -> None:
        super().__init__("grpc message", m.Phase.REQUEST_BODY, cost=5)
        self.conditions = conditions

    def _message(self, f: Facts) -> MessageView | None:
        body = f.body(False)
        if body is None:
            return None
        encoding = f.headers.get("grpc-encoding", [None])[0]
        return first_message(body, f.info.path, encoding, f.info.schemas, f.max_body)

    def test(self, f: Facts) -> bool:
        message = self._message(f)
        if message is None:
            return False
        return all(message.value(p) == want for p, want in self.conditions)

    def describe(self) -> str:
        return "grpc message " + ", ".join(f"/{'/'.join(p)} is {v!r}" for p, v in self.conditions)

    def observed(self, f: Facts) -> str:
        message = self._message(f)
        if message is None:
            return "no whole message"
        return ", ".join(f"/{'/'.join(p)}={message.value(p)!r}" for p, _ in self.conditions)


def parse_grpc_section(
    doc: Doc, node: Node, path: str
) -> tuple[RespondSpec | None, GrpcSpec] | None:
    """The status answer (the rule's terminal) and the message actions."""
    entries = mapping(doc, node, path)
    keys = ("status", "request", "response")
    if entries is None or not check_keys(doc, entries, node, path, keys):
        return None
    before = len(doc.errors)
    status = _status(doc, entries["status"][1], f"{path}.status") if "status" in entries else None
    actions: dict[str, tuple[MessageAction, ...]] = {}
    for side in ("request", "response"):
        if side in entries:
            actions[side] = _actions(doc, entries[side][1], f"{path}.{side}", side)
    if len(doc.errors) > before:
        return None
    if status is not None and actions.get("request"):
        doc.error(
            node, path, "request message actions have no effect when the rule answers with a status"
        )
        return None
    return status, GrpcSpec(actions.get("request", ()), actions.get("response", ()))


def _status(doc: Doc, node: Node, path: str) -> RespondSpec | None:
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(doc, entries, node, path, ("code", "message")):
        return None
    if "code" not in entries:
        doc.error(node, path, "a grpc status needs a code (a name such as UNAVAILABLE, or 0-16)")
        return None
    knode = entries["code"][1]
    code: int | None
    if isinstance(knode, ScalarNode) and knode.tag.endswith(":int"):
        code = integer(doc, knode, f"{path}.code", 0, 99)
    else:
        name = string(doc, knode, f"{path}.code")
        code = CODE_OF.get((name or "").upper()) if name is not None else None
        if code is None and name is not None:
            doc.error(
                knode, f"{path}.code", f"unknown gRPC status {name!r}; one of {', '.join(CODES)}"
            )
    message = string(doc, entries["message"][1], f"{path}.message") if "message" in entries else ""
    if code is None or message is None:
        return None
    fields = [(b"content-type", b"application/grpc"), (b"grpc-status", str(code).encode())]
    if message:
        # PROTOCOL-HTTP2.md: grpc-message is percent-encoded UTF-8 (space stays readable)
        fields.append(
            (b"grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode())
        )
    return RespondSpec(200, tuple(fields), b"", kind="grpc_status")


def _actions(doc: Doc, node: Node, path: str, side: str) -> tuple[MessageAction, ...]:
    out: list[MessageAction] = []
    for item, sub in items(node, path):
        action = _action(doc, item, sub, side)
        if action is not None:
            out.append(action)
    if not out and not doc.errors:
        doc.error(node, path, "expected a list of message actions (set, drop, delay)")
    return tuple(out)


def _action(doc: Doc, node: Node, path: str, side: str) -> MessageAction | None:
    entries = mapping(doc, node, path)
    if entries is None or not check_keys(doc, entries, node, path, (*ACTIONS, "where", "index")):
        return None
    present = [k for k in ACTIONS if k in entries]
    if len(present) != 1:
        doc.error(node, path, f"a message action has exactly one of {', '.join(ACTIONS)}")
        return None
    kind = present[0]
    vnode, sub = entries[kind][1], f"{path}.{kind}"
    where = _pointers(doc, entries["where"][1], f"{path}.where") if "where" in entries else ()
    index = integer(doc, entries["index"][1], f"{path}.index", 0) if "index" in entries else None
    if where is None or ("index" in entries and index is None):
        return None
    if kind == "set":
        values = _pointers(doc, vnode, sub)
        return None if values is None else MessageAction("set", values, where=where, index=index)
    if kind == "drop":
        if boolean(doc, vnode, sub) is not True:
            doc.error(vnode, sub, "drop: true")
            return None
        return MessageAction("drop", where=where, index=index)
    if side != "response":
        doc.error(vnode, sub, "delay applies to response messages (the server's)")
        return None
    delay = mapping(doc, vnode, sub)
    if delay is None or not check_keys(doc, delay, vnode, sub, ("ms",)) or "ms" not in delay:
        if delay is not None and "ms" not in delay:
            doc.error(vnode, sub, "delay: {ms: N}")
        return None
    ms = number(doc, delay["ms"][1], f"{sub}.ms", 0, 600_000)
    return None if ms is None else MessageAction("delay", delay_ms=ms, where=where, index=index)


def _pointers(doc: Doc, node: Node, path: str) -> tuple[tuple[Pointer, Any], ...] | None:
    """``{/json/pointer: value}``: field paths of the decoded message (names with
    a schema, field numbers without) and the values wanted or set."""
    entries = mapping(doc, node, path)
    if entries is None:
        return None
    out: list[tuple[Pointer, Any]] = []
    for key, (knode, vnode) in entries.items():
        try:
            pointer = parse_pointer(key)
        except ValueError as e:
            doc.error(knode, f"{path}.{key}", str(e))
            return None
        if not pointer:
            doc.error(knode, f"{path}.{key}", "a field path such as /name or /1")
            return None
        ok, value = json_value(doc, vnode, f"{path}.{key}")
        if not ok:
            return None
        out.append((pointer, value))
    if not out:
        doc.error(node, path, "expected at least one /field: value")
        return None
    return tuple(out)
