"""``--server-replay``: answer requests from recordings, in the server's place.

A ``REQUEST`` hook subscriber (``proxy.server.hooks``): at the point where
a request would go upstream it holds the flow and resumes it with a
``Reply`` carrying the recorded status, reason, header fields and body, after
the recorded delay (scaled by ``speed``; 0 answers at once). So a replayed
request never opens a server connection. A request that matches nothing is
answered ``404`` with the closest recorded request and why it differs, or,
with ``extra="forward"``, let through to the network.

Recorded responses to the same request are served in recorded order, each
once; with ``reuse`` the last one keeps answering. The subscriber asks for
the request body before the hook (``request_body``), so a request is matched
on its key (method, URL, selected fields; ``proxy.replay.match``) and its
body; a body over ``--max-body`` streams and is matched by key alone.

A reply carries the recorded trailer fields (a gRPC call's ``grpc-status``),
and a recorded WebSocket (kind ``websocket``) is answered with a ``101``
and its recorded messages (``Reply.websocket``, played by
``proxy.layers.websocket.replayed``): the ``Sec-WebSocket-Accept`` is made
for the live request's key (RFC 6455 §4.2.2) and no extension is accepted,
so the recorded payloads go uncompressed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy.flow.hooks import HookKind, LiveFlow, Reply, ScriptedMessage
from proxy.flow.record import FlowSource
from proxy.http1 import FramingKind
from proxy.replay.format import RecordedFlow
from proxy.replay.match import Key, MatchOptions, body_key, differences, key_of, request_key
from proxy.server.hooks import Resume


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    match: MatchOptions = field(default_factory=MatchOptions)
    reuse: bool = False
    forward_unmatched: bool = False  # --server-replay-extra forward
    speed: float = 1.0  # recorded delays divided by this; 0: no delay


@dataclass(slots=True)
class _Entry:
    flow: RecordedFlow
    key: Key
    body: bytes
    served: int = 0


def known_body(live: LiveFlow) -> bytes | None:
    """The request body when whole: buffered for the hook, or none at all."""
    if live.body is not None:
        return live.body
    framing = live.forward.framing
    if framing.kind is FramingKind.NONE or (
        framing.kind is FramingKind.LENGTH and framing.length == 0
    ):
        return b""
    return None  # over --max-body: it streams, and matching goes by the key


def _replayable(f: RecordedFlow) -> bool:
    if f.request is None or f.response is None:
        return False
    return f.kind == "http" or (f.kind == "websocket" and f.response.status == 101)


#: RFC 6455 §1.3: the GUID the accept value is made with.
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Fields of a recorded 101 made anew for the live handshake.
_WS_OWN = {b"sec-websocket-accept", b"sec-websocket-extensions"}


def ws_accept(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip() + WS_GUID).digest())


def _field(fields: tuple[tuple[bytes, bytes], ...], name: bytes) -> bytes:
    return next((v for k, v in fields if k.lower() == name), b"")


def _clean(reason: bytes) -> bytes:
    """A reason phrase safe on a status line (RFC 9112 §4: no CR or LF)."""
    return bytes(b for b in reason if b not in b"\r\n")


class ServerReplay:
    """The recordings' responses by request key; a hook subscriber."""

    kinds = frozenset({HookKind.REQUEST})
    holds = frozenset({HookKind.REQUEST})
    request_body = True  # offered once the body is whole: it is matched too

    def __init__(self, flows: Iterable[RecordedFlow], options: ReplayOptions) -> None:
        self.options = options
        self.by_key: dict[Key, list[_Entry]] = {}
        self.entries: list[_Entry] = []
        for f in flows:
            if not _replayable(f):
                continue
            assert f.request is not None
            entry = _Entry(
                f,
                request_key(f.request, options.match),
                body_key(f.request.body.data, options.match),
            )
            self.entries.append(entry)
            self.by_key.setdefault(entry.key, []).append(entry)
        self.answered = 0
        self.missed = 0
        self.forwarded = 0

    # -- matching -------------------------------------------------------------------
    def find(self, method: bytes, url: str, fields: tuple[tuple[bytes, bytes], ...],
             body: bytes | None = None) -> _Entry | str:  # fmt: skip
        """The recorded exchange to answer with, or why there is none."""
        opts = self.options.match
        key = key_of(method, url, fields, opts)
        wanted = None if body is None else body_key(body, opts)
        same = [e for e in self.by_key.get(key, ()) if wanted is None or e.body == wanted]
        for entry in same:
            if not entry.served:
                entry.served += 1
                return entry
        if same and self.options.reuse:
            same[-1].served += 1
            return same[-1]
        head = f"no recorded response for {method.decode('latin-1')} {url}"
        if same:
            return (
                f"{head}: the recordings answered it {len(same)} time(s) and each recorded "
                "response is served once (--server-replay-reuse keeps serving the last)"
            )
        return head + self._closest(key, wanted)

    def _closest(self, key: Key, body: bytes | None) -> str:
        if not self.entries:
            return ": the recordings hold no replayable HTTP exchange"
        opts = self.options.match
        scored = []
        for i, e in enumerate(self.entries):
            why = differences(key, body, e.key, e.body, opts)
            same_path = e.key.path == key.path
            scored.append((len(why), not same_path, i, why))
        _, _, i, why = min(scored)
        f = self.entries[i].flow
        assert f.request is not None
        lines = [
            f"\nclosest recorded request: {f.request.method.decode('latin-1')} "
            f"{f.request.url} (flow {f.id})",
            "it differs in:",
            *(f"  - {w}" for w in why),
        ]
        return "\n".join(lines)

    # -- the hook -------------------------------------------------------------------
    def on_hook(self, kind: HookKind, flow: FlowSource, resume: Resume | None) -> bool:
        if resume is None:
            return False
        live: LiveFlow = flow  # type: ignore[assignment]  # at REQUEST a flow is live
        head = live.forward
        found = self.find(head.method, live.url, head.fields, known_body(live))
        if isinstance(found, str):
            self.missed += 1
            if self.options.forward_unmatched:
                self.forwarded += 1
                return False
            body = (f"tapproxy server replay: {found}\n").encode()
            resume(Reply(404, ((b"Content-Type", b"text/plain; charset=utf-8"),), body))
            return True
        self.answered += 1
        reply = self.reply(found.flow, live.request.fields)
        delay = self.delay(found.flow)
        if delay <= 0:
            resume(reply)
        else:
            asyncio.get_running_loop().call_later(delay, resume, reply)
        return True

    @staticmethod
    def reply(f: RecordedFlow, asked: tuple[tuple[bytes, bytes], ...] = ()) -> Reply:
        """The recorded response; ``asked``: the live request's fields (a WebSocket key)."""
        r = f.response
        assert r is not None
        if f.kind != "websocket":
            return Reply(r.status, r.headers, r.body.data, _clean(r.reason), r.trailers)
        fields = [(k, v) for k, v in r.headers if k.lower() not in _WS_OWN]
        fields.append((b"Sec-WebSocket-Accept", ws_accept(_field(asked, b"sec-websocket-key"))))
        script = tuple(ScriptedMessage(m.from_client, m.data, m.text) for m in f.messages)
        return Reply(101, tuple(fields), b"", _clean(r.reason), websocket=script)

    def delay(self, f: RecordedFlow) -> float:
        """How long the server took: from the request's end to the response's end."""
        if self.options.speed <= 0:
            return 0.0
        o = f.offsets
        end = o.response_done if o.response_done is not None else o.response_head
        if f.kind == "websocket":  # the 101's delay: the session's messages go by order
            end = o.response_head
        if end is None:
            return 0.0
        return max(0.0, end - (o.request_done or 0.0)) / self.options.speed

    def summary(self) -> str:
        return (
            f"server replay: {self.answered} answered from {len(self.entries)} recorded, "
            f"{self.missed} unmatched ({self.forwarded} forwarded)"
        )


def warn_truncated(flows: Iterable[RecordedFlow], name: str) -> None:
    cut = sum(1 for f in flows if f.response is not None and f.response.body.truncated)
    if cut:
        print(
            f"tapproxy: {name}: {cut} recorded response bodies were cut at --capture-max-body; "
            "they are replayed as recorded (short)",
            file=sys.stderr,
        )
