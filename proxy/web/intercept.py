"""Breakpoints: flows that match a filter wait for the user at request or response.

``Breakpoints`` is a hook subscriber (``proxy.server.hooks``) whose holdable
points are armed through a ``HoldSwitch`` only while a breakpoint is set, so
a proxy with the UI and no breakpoint never stops a flow. A flow that
matches is held: its connection reads no more from the side that would feed
it (``proxy.flow.hooks``), it shows as held in the list, and the user edits
it and resumes it, answers it, or kills it (docs/api.md, "Breakpoints"). A
flow nobody resumes goes on unchanged after ``timeout`` seconds and its
record says so; one whose client left meanwhile is forgotten at its end.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from proxy.flow.hooks import (
    HoldSwitch,
    HookKind,
    Kill,
    LiveFlow,
    LiveMessage,
    MessageEdit,
    Proceed,
    Reply,
    RequestEdit,
    ResponseEdit,
    Verdict,
)
from proxy.flow.record import FlowRecord
from proxy.http1.events import Fields
from proxy.server.hooks import Resume

#: A compiled breakpoint filter: does this flow (or WebSocket message), at this point, match?
Matcher = Callable[[LiveFlow | LiveMessage, HookKind], bool]
#: Compiles a filter expression (raises ``ValueError`` subclasses with ``column``).
Compiler = Callable[[str], Matcher]

_DONE = frozenset({HookKind.DONE})
PHASES = {
    HookKind.REQUEST: "request",
    HookKind.RESPONSE_HEAD: "response",
    HookKind.WS_MESSAGE: "message",
}


class EditError(ValueError):
    """An edit the held flow cannot take (named in the API's 400)."""


@dataclass(frozen=True, slots=True)
class BreakpointSpec:
    filter: str = ""
    request: bool = True
    response: bool = False
    messages: bool = False  # WebSocket messages, each way
    timeout: float = 300.0


class _Held:
    __slots__ = ("flow", "kind", "resume", "since", "timer")

    def __init__(
        self, flow: LiveFlow | LiveMessage, kind: HookKind, resume: Resume, timer: asyncio.Handle
    ) -> None:
        self.flow, self.kind, self.resume, self.timer = flow, kind, resume, timer
        self.since = time.time()


class Breakpoints:
    def __init__(
        self,
        compile_filter: Compiler,
        timeout: float,
        changed: Callable[[str, str | None], None] = lambda _id, _phase: None,
        switch: HoldSwitch | None = None,
    ) -> None:
        self.switch = switch or HoldSwitch()
        self.compile_filter = compile_filter
        self.spec = BreakpointSpec(timeout=timeout)
        self.changed = changed  # (flow id, phase or None when it went on): the live list
        self._matcher: Matcher | None = None
        self._held: dict[str, _Held] = {}

    @property
    def holds(self) -> frozenset[HookKind]:
        return self.switch.kinds

    @property
    def kinds(self) -> frozenset[HookKind]:
        """The armed points; ``DONE`` too while a flow is held (to forget it if it ends)."""
        return self.switch.kinds | _DONE if self._held else self.switch.kinds

    # -- setting it -------------------------------------------------------------------
    def set(self, spec: BreakpointSpec) -> None:
        """Arm (or, with an empty filter, disarm) the breakpoint; a bad filter raises."""
        matcher = self.compile_filter(spec.filter) if spec.filter.strip() else None
        self.spec, self._matcher = spec, matcher
        kinds = set()
        if matcher is not None and spec.request:
            kinds.add(HookKind.REQUEST)
        if matcher is not None and spec.response:
            kinds.add(HookKind.RESPONSE_HEAD)
        if matcher is not None and spec.messages:
            kinds.add(HookKind.WS_MESSAGE)
        self.switch.kinds = frozenset(kinds)
        self.switch.request_body = HookKind.REQUEST in kinds  # the body can be edited

    # -- the subscriber ---------------------------------------------------------------
    def on_hook(self, kind: HookKind, flow: object, resume: Resume | None) -> bool:
        if kind is HookKind.DONE:
            if self._held and isinstance(flow, FlowRecord):
                self._forget(flow.id)
                for held_id, held in list(self._held.items()):  # its connection's messages
                    if isinstance(held.flow, LiveMessage) and held.flow.flow == flow.id:
                        self._forget(held_id)
            return False
        matcher = self._matcher
        if resume is None or matcher is None:
            return False
        live: LiveFlow | LiveMessage = flow  # type: ignore[assignment]  # at the holdable points
        try:
            if not matcher(live, kind):
                return False
        except Exception:  # a filter that cannot read this flow does not stop it
            return False
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.spec.timeout, self._expire, live.id)
        self._held[live.id] = _Held(live, kind, resume, timer)
        self.changed(live.id, PHASES[kind])
        return True

    def _expire(self, flow_id: str) -> None:
        held = self._held.get(flow_id)
        if held is not None:
            note = f"held {self.spec.timeout:g} s at a breakpoint: went on unchanged"
            self._finish(flow_id, Proceed(note=note))

    def _forget(self, flow_id: str) -> None:
        held = self._held.pop(flow_id, None)
        if held is not None:
            held.timer.cancel()
            self.changed(flow_id, None)

    def _finish(self, flow_id: str, verdict: Verdict) -> None:
        held = self._held.pop(flow_id)
        held.timer.cancel()
        self.changed(flow_id, None)
        held.resume(verdict)

    # -- what the API does ------------------------------------------------------------
    def held(self) -> list[dict[str, Any]]:
        return [held_json(flow_id, h) for flow_id, h in self._held.items()]

    def is_held(self, flow_id: str) -> bool:
        return flow_id in self._held

    def resume(self, flow_id: str, edit: dict[str, Any]) -> None:
        held = self._held.get(flow_id)
        if held is None:
            raise KeyError(flow_id)
        flow = held.flow
        if isinstance(flow, LiveMessage):
            verdict = Proceed(message_edit(flow, edit)) if edit else Proceed()
        elif held.kind is HookKind.REQUEST:
            verdict = Proceed(request_edit(flow, edit)) if edit else Proceed()
        else:
            verdict = Proceed(response_edit(edit)) if edit else Proceed()
        self._finish(flow_id, verdict)

    def reply(self, flow_id: str, answer: dict[str, Any]) -> None:
        if flow_id not in self._held:
            raise KeyError(flow_id)
        if self._held[flow_id].kind is HookKind.WS_MESSAGE:
            raise EditError("a WebSocket message has no answer: edit it, drop it, or kill")
        status = answer.get("status", 200)
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise EditError("status must be a number from 200 to 599")
        body = body_of(answer) or b""
        self._finish(flow_id, Reply(status, header_fields(answer.get("headers", [])), body))

    def kill(self, flow_id: str) -> None:
        if flow_id not in self._held:
            raise KeyError(flow_id)
        self._finish(flow_id, Kill())

    def close(self) -> None:
        """Shutdown: held flows go on as they are."""
        for flow_id in list(self._held):
            self._finish(flow_id, Proceed(note="the proxy stopped while it was held"))


def held_json(flow_id: str, h: _Held) -> dict[str, Any]:
    flow = h.flow
    out: dict[str, Any] = {"id": flow_id, "phase": PHASES[h.kind], "since": h.since}
    if isinstance(flow, LiveMessage):
        out.update(flow=flow.flow, url=flow.url, from_client=flow.from_client, text=flow.text)
        out["direction"] = "client" if flow.from_client else "server"
        return _with_body(out, flow.payload)
    out["method"] = flow.forward.method.decode("latin-1")
    out["url"] = flow.url
    head = flow.response_head if h.kind is HookKind.RESPONSE_HEAD else None
    fields = head.fields if head is not None else flow.forward.fields
    out["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in fields]
    out["status"] = head.status if head is not None else None
    out["reason"] = head.reason.decode("latin-1") if head is not None else None
    return _with_body(out, flow.body if head is None else None)


def _with_body(out: dict[str, Any], body: bytes | None) -> dict[str, Any]:
    out["body"] = out["body_b64"] = None
    if body is not None:
        try:
            out["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            out["body_b64"] = base64.b64encode(body).decode()
    return out


def header_fields(raw: Any) -> Fields:
    """An API edit's ``[[name, value], ...]`` as fields; ``EditError`` when it is not that."""
    if not isinstance(raw, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in raw
    ):
        raise EditError('headers must be a list of ["name", "value"] pairs')
    try:
        return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in raw)
    except UnicodeEncodeError as e:
        raise EditError(f"header text must be Latin-1: {e}") from None


def body_of(edit: dict[str, Any]) -> bytes | None:
    """An API edit's ``body`` (text) or ``body_b64``; None when it gives neither."""
    if edit.get("body_b64") is not None:
        try:
            return base64.b64decode(edit["body_b64"], validate=True)
        except ValueError as e:
            raise EditError(f"body_b64: {e}") from None
    if edit.get("body") is not None:
        if not isinstance(edit["body"], str):
            raise EditError("body must be text (or use body_b64)")
        return edit["body"].encode("utf-8")
    return None


def request_edit(flow: LiveFlow, edit: dict[str, Any]) -> RequestEdit:
    method = edit.get("method")
    if method is not None and (not isinstance(method, str) or not method.isalpha()):
        raise EditError("method must be a token such as GET")
    url = edit.get("url")
    if url is not None and (
        not isinstance(url, str) or urlsplit(url).scheme.lower() not in ("http", "https")
    ):
        raise EditError("url must be an absolute http:// or https:// URL")
    if url == flow.url:
        url = None
    headers = header_fields(edit["headers"]) if edit.get("headers") is not None else None
    body = body_of(edit)
    if body is not None and flow.body is None:
        raise EditError("this request's body was not held whole: it cannot be edited")
    if body is not None and body == flow.body:
        body = None
    return RequestEdit(method.upper().encode() if method else None, url or None, headers, body)


def message_edit(flow: LiveMessage, edit: dict[str, Any]) -> MessageEdit:
    if edit.get("drop"):
        return MessageEdit(drop=True)
    payload = body_of(edit)
    if payload is not None and flow.text:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise EditError("a text message must stay UTF-8 (RFC 6455 §5.6)") from None
    return MessageEdit(payload if payload != flow.payload else None)


def response_edit(edit: dict[str, Any]) -> ResponseEdit:
    status = edit.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise EditError("status must be a number from 100 to 599")
    headers = header_fields(edit["headers"]) if edit.get("headers") is not None else None
    return ResponseEdit(status, headers)
