"""Running addons on live flows: a hook subscriber that holds, calls, and resumes.

``AddonHost`` subscribes to the two holdable points and to ``DONE``
(``proxy.server.hooks``). At ``REQUEST`` and ``RESPONSE_HEAD`` it holds the
flow, calls every addon's hook in order (awaiting the async ones in a task,
so the loop keeps serving other flows), and resumes with what they did: a
kill, an answer, edits, or nothing. At ``DONE`` it calls ``error`` (for a
flow that failed) and ``done`` with the final record. ``save`` hooks run as
the recording's filter (``proxy.replay.writer.SaveFilter``). Each message
record (``MESSAGE``) goes to ``websocket_message`` or ``grpc_message`` with
the flow and the message, observe-only (``proxy.addons.messages``), and
with an addon that has ``tcp_message`` at start, each read a TCP relay
passes on (``DATA``) to it.

An addon that raises is reported once per hook and loaded version, with its
traceback, and the flow goes on as if that addon had not been there: a
broken addon never breaks the proxy. Files are checked for changes at most
once a second, when a flow passes.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from proxy.addons.api import Flow, Headers, Request, Response
from proxy.addons.loader import Script
from proxy.addons.messages import Message, message_of, tcp_message_of
from proxy.addons.verdicts import recorded_flow, request_verdict, response_verdict
from proxy.flow.hooks import HookKind, LiveFlow, Proceed, Verdict
from proxy.flow.record import FlowSource
from proxy.flow.tcpdata import TcpData
from proxy.replay.format import RecordedFlow
from proxy.replay.fromrecord import recorded
from proxy.replay.server import known_body
from proxy.server.hooks import Resume

Call = tuple[Script, Callable[..., Any]]


def addon_flow(f: RecordedFlow, options: Mapping[str, Any], record: Any = None) -> Flow:
    """A finished (recorded) flow as addons see it; a body is there when whole."""
    req = f.request
    assert req is not None
    request = Request(
        req.method.decode("latin-1"), req.url, Headers.of(req.headers),
        None if req.body.truncated else req.body.data,
    )  # fmt: skip
    response = None
    if f.response is not None:
        r = f.response
        body = None if r.body.truncated else r.body.data
        response = Response(r.status, r.reason.decode("latin-1"), Headers.of(r.headers), body)
    return Flow(f.id, request, options, response, f.error, record)


class AddonHost:
    BASE = frozenset({HookKind.REQUEST, HookKind.RESPONSE_HEAD, HookKind.DONE, HookKind.MESSAGE})
    holds = frozenset({HookKind.REQUEST, HookKind.RESPONSE_HEAD})
    request_body = True  # request() sees the whole body (up to --max-body)

    def __init__(
        self, scripts: Sequence[Script], options: Mapping[str, Any], check_every: float = 1.0
    ) -> None:
        self.scripts = list(scripts)
        self.options = options
        # TCP relays report their reads only when asked: an addon with
        # tcp_message when the proxy starts (one added by a reload is not called).
        self.tcp = any(s.hooks["tcp_message"] for s in self.scripts)
        self.kinds = self.BASE | {HookKind.DATA} if self.tcp else self.BASE
        self._reads: dict[tuple[str, bool], int] = {}  # reads so far, per relay and direction
        self.check_every = check_every
        self._checked = time.monotonic()
        self._live: dict[str, Flow] = {}  # flows between their request and their end
        self._reported: set[tuple[str, str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0

    # -- calling hooks ----------------------------------------------------------------
    def _calls(self, hook: str) -> list[Call]:
        return [(s, fn) for s in self.scripts for fn in s.hooks[hook]]

    def _failed(self, script: Script, hook: str) -> None:
        self.failures += 1
        key = (str(script.path), hook, script.generation)
        if key in self._reported:
            return
        self._reported.add(key)
        print(
            f"tapproxy: addon {script.path} failed in {hook}() (reported once; the flow goes on "
            f"without it):\n{traceback.format_exc()}",
            file=sys.stderr,
            flush=True,
        )

    def _call(self, script: Script, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            self._failed(script, hook)
            return None

    def run(self, hook: str, flow: Flow, then: Callable[[], None]) -> bool:
        """Call ``hook`` of every addon, then ``then``; True when that happens later."""
        calls = self._calls(hook)
        for i, (script, fn) in enumerate(calls):
            result = self._call(script, hook, fn, flow)
            if inspect.isawaitable(result):
                coro = self._rest(result, script, calls[i + 1 :], hook, flow, then)
                task = asyncio.get_running_loop().create_task(coro)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return True
        then()
        return False

    async def _rest(
        self, first: Awaitable[Any], script: Script, calls: list[Call], hook: str, flow: Flow,
        then: Callable[[], None],
    ) -> None:  # fmt: skip
        try:
            await first
        except Exception:
            self._failed(script, hook)
        for script, fn in calls:
            result = self._call(script, hook, fn, flow)
            if inspect.isawaitable(result):
                try:
                    await result
                except Exception:
                    self._failed(script, hook)
        then()

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return
        self._checked = now
        for script in self.scripts:
            script.reload_if_changed()

    # -- the hook subscriber ------------------------------------------------------------
    def on_hook(self, kind: HookKind, flow: FlowSource, resume: Resume | None) -> bool:
        self._maybe_reload()
        if kind is HookKind.DONE:
            self._done(flow)
            return False
        if kind is HookKind.MESSAGE:
            self._message(flow)
            return False
        if kind is HookKind.DATA:
            if isinstance(flow, TcpData):
                self._tcp(flow)
            return False
        if resume is None:
            return False
        live: LiveFlow = flow  # type: ignore[assignment]  # holdable points give live flows
        if kind is HookKind.REQUEST:
            return self._request(live, resume)
        return self._response(live, resume)

    def _answer(self, resume: Resume, verdict: Callable[[], Verdict]) -> Callable[[], None]:
        def then() -> None:
            try:
                v = verdict()
            except Exception:  # an addon left something we cannot send (a bad URL...)
                traceback.print_exc(file=sys.stderr)
                v = Proceed()
            resume(v)

        return then

    def _messages(self) -> bool:
        return bool(self._calls("websocket_message") or self._calls("grpc_message"))

    def _request(self, live: LiveFlow, resume: Resume) -> bool:
        wanted = self._calls("request")
        if not wanted and not self._messages():
            return False
        head = live.forward
        request = Request(
            head.method.decode("latin-1"), live.url, Headers.of(head.fields), known_body(live)
        )
        f = self._live[live.id] = Flow(live.id, request, self.options)
        if not wanted:
            return False  # kept for its messages' hooks
        before = (request.method, request.url, list(request.headers.fields))
        body = request.content if live.body is not None else None  # replaceable when buffered
        self.run("request", f, self._answer(resume, lambda: request_verdict(f, before, body)))
        return True

    def _response(self, live: LiveFlow, resume: Resume) -> bool:
        head = live.response_head
        if head is None or not self._calls("response"):
            return False
        f = self._live.get(live.id)
        if f is None:
            request = Request(live.forward.method.decode("latin-1"), live.url,
                              Headers.of(live.forward.fields))  # fmt: skip
            f = self._live[live.id] = Flow(live.id, request, self.options)
        original = Response(head.status, head.reason.decode("latin-1"), Headers.of(head.fields))
        f.response = original
        before = (original.status_code, list(original.headers.fields))
        self.run("response", f, self._answer(resume, lambda: response_verdict(f, original, before)))
        return True

    def _done(self, flow: FlowSource) -> None:
        flow_id = getattr(flow, "id", "")
        live = self._live.pop(flow_id, None)
        if self.tcp:
            self._reads.pop((flow_id, True), None)
            self._reads.pop((flow_id, False), None)
        wants_error, wants_done = self._calls("error"), self._calls("done")
        if not wants_error and not wants_done:
            return
        record = flow.to_record()
        if record.request is None:
            return  # a refusal before any request: nothing an addon can look at
        f = addon_flow(recorded(record), self.options, record)
        if live is not None:
            f.metadata = live.metadata
        if record.error is not None and wants_error:
            self.run("error", f, lambda: None)
        self.run("done", f, lambda: None)

    def _message(self, flow: FlowSource) -> None:
        """A WebSocket or gRPC message: its hook, observe-only (no verdict)."""
        if not self._messages():
            return
        found = message_of(flow.to_record())
        if found is None:
            return
        hook, message = found
        f = self._live.get(message.flow_id) or Flow(message.flow_id, Request("", "", Headers()),
                                                     self.options)  # fmt: skip
        self._observe(hook, f, message)

    def _tcp(self, d: TcpData) -> None:
        key = (d.flow, d.from_client)
        index = self._reads.get(key, 0)
        self._reads[key] = index + 1
        f = self._live.get(d.flow)
        if f is None:
            request = Request("", f"tcp://{d.host}:{d.port}", Headers())
            f = self._live[d.flow] = Flow(d.flow, request, self.options)
        self._observe("tcp_message", f, tcp_message_of(d, index))

    def _observe(self, hook: str, flow: Flow, message: Message) -> None:
        calls = self._calls(hook)
        for i, (script, fn) in enumerate(calls):
            result = self._call(script, hook, fn, flow, message)
            if inspect.isawaitable(result):  # the rest after it, in order, in a task
                task = asyncio.get_running_loop().create_task(
                    self._observe_rest(result, script, calls[i + 1 :], hook, flow, message)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return

    async def _observe_rest(
        self, first: Awaitable[Any], script: Script, calls: list[Call], hook: str, flow: Flow,
        message: Message,
    ) -> None:  # fmt: skip
        try:
            await first
        except Exception:
            self._failed(script, hook)
        for script, fn in calls:
            result = self._call(script, hook, fn, flow, message)
            if inspect.isawaitable(result):
                try:
                    await result
                except Exception:
                    self._failed(script, hook)

    # -- the recording's filter ---------------------------------------------------------
    def save(self, flow: RecordedFlow) -> RecordedFlow | None:
        """``save`` hooks: change what is recorded, or return False to leave the flow out."""
        if flow.request is None or not self._calls("save"):
            return flow
        f = addon_flow(flow, self.options)
        for script, fn in self._calls("save"):
            result = self._call(script, "save", fn, f)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                print(f"tapproxy: addon {script.path}: save() must not be async", file=sys.stderr)
                continue
            if result is False:
                return None
        return recorded_flow(flow, f)
