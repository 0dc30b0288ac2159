"""One human line per flow: time, client, method, URL, status, size, duration."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO

from proxy.flow.grpcinfo import MESSAGE_KIND, GrpcCall
from proxy.flow.record import FlowRecord
from proxy.flow.wsinfo import SSE_EVENT_KIND, WS_MESSAGE_KIND
from proxy.sinks.marks import marks
from proxy.sinks.streamlines import human_size, stream_line
from proxy.words import plural

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
#: The record kind of a rules reload error (proxy/server/app.py), not a flow.
NOT_A_FLOW = "rules_error"
_STREAM_KINDS = frozenset({WS_MESSAGE_KIND, SSE_EVENT_KIND})
_COLOURS = {2: "\x1b[32m", 3: "\x1b[36m", 4: "\x1b[33m", 5: "\x1b[31m"}


def format_line(r: FlowRecord, colour: bool, verbose: bool) -> str:
    ts = time.strftime("%H:%M:%S", time.localtime(r.start))
    client = f"{r.client[0]}:{r.client[1]}"
    ms = (r.end - r.start) * 1000
    if r.request is None:
        tunnel = r.tunnel
        moved = (
            f"up {human_size(tunnel.bytes_up)} down {human_size(tunnel.bytes_down)}"
            if tunnel
            else ""
        )
        server = f"{r.server[0]}:{r.server[1]}" if r.server else "-"
        line = f"{ts} {client} {r.kind.upper()} {server} {moved} {ms:.0f}ms"
    else:
        method = r.request.method.decode("latin-1")
        if r.response is not None:
            status = str(r.response.status)
            size = human_size(r.response.message.body_size)
            if colour:
                status = _COLOURS.get(r.response.status // 100, "") + status + _RESET
        elif r.tunnel is not None:
            # A CONNECT or upgrade that became a tunnel: its bytes each way.
            status = "up " + human_size(r.tunnel.bytes_up)
            size = "down " + human_size(r.tunnel.bytes_down)
        else:
            status, size = "---", "-"
        extra = f" [{r.kind}]" if r.kind != "http" else ""
        if isinstance(r.grpc, GrpcCall):
            extra += grpc_summary(r.grpc)
        extra += marks(r.rules)
        line = f"{ts} {client} {method} {r.request.url} {status} {size} {ms:.0f}ms{extra}"
    if r.error:
        err = f" << {r.error}"
        line += (_COLOURS[5] + err + _RESET) if colour else err
    # A log rule's detail raises this flow's console detail (docs/rules.md).
    detail = r.rules.detail if r.rules is not None else None
    verbose = verbose or detail in ("headers", "full")
    if verbose and r.rules is not None:
        for name, source, actions in r.rules.matched:
            line += f"\n    rule {name} ({source}): {', '.join(actions) or 'matched'}"
        for warning in r.rules.warnings:
            line += f"\n    rule warning: {warning}"
    if verbose and r.request is not None:
        parts = [line]
        for k, v in r.request.message.headers:
            parts.append(f"    > {k.decode('latin-1')}: {v.decode('latin-1')}")
        if r.response is not None:
            for k, v in r.response.message.headers:
                parts.append(f"    < {k.decode('latin-1')}: {v.decode('latin-1')}")
        if detail == "full":
            for arrow, msg in ((">", r.request.message), ("<", r.response and r.response.message)):
                if msg and msg.preview:
                    text = msg.preview.decode("utf-8", "replace")
                    parts.append(f"    {arrow} body ({plural(msg.body_size, 'byte')}): {text!r}")
        line = "\n".join(parts)
    if colour:
        line = line.replace(ts, _DIM + ts + _RESET, 1)
    return line


def grpc_summary(call: GrpcCall) -> str:
    """`` [grpc OK 1>2<]``: the call's status and its messages each way."""
    status = call.status
    name = "no-status" if status is None else (status.name or f"status {status.raw}")
    if status is not None and status.message:
        name += f" {status.message!r}"
    return f" [{call.protocol} {name} {call.requests}> {call.responses}<]"


class ConsoleSink:
    def __init__(
        self,
        stream: IO[str],
        verbose: bool = False,
        only: Callable[[FlowRecord], bool] | None = None,
    ) -> None:
        self.stream = stream
        self.verbose = verbose
        self.only = only  # --view-filter: only the records it keeps have a line
        self.colour = stream.isatty()

    def prepare(self, records: Sequence[FlowRecord]) -> list[bytes]:
        """One console line per flow (pure: runs on the event loop).

        A ``rules_error`` record is not a flow: the reload already printed its
        notice once, so it has no console line (it stays in the flow log); nor
        has a gRPC message (its call's line counts it). WebSocket messages and
        server-sent events have a line each with ``-v``.
        """
        if self.only is not None:
            records = [r for r in records if self.only(r)]
        if self.verbose:
            streams = [r for r in records if r.kind in _STREAM_KINDS]
            if streams:
                return [self._line(r) for r in records if r.kind != NOT_A_FLOW]
        return [
            (format_line(r, self.colour, self.verbose) + "\n").encode("utf-8", "surrogatepass")
            for r in records
            if r.kind != NOT_A_FLOW and r.kind != MESSAGE_KIND and r.kind not in _STREAM_KINDS
        ]

    def _line(self, r: FlowRecord) -> bytes:
        if r.kind in _STREAM_KINDS:
            line = stream_line(r)
        elif r.kind == MESSAGE_KIND:
            return b""
        else:
            line = format_line(r, self.colour, self.verbose)
        return (line + "\n").encode("utf-8", "surrogatepass")

    def write_prepared(self, lines: list[bytes]) -> None:
        try:
            self.stream.write(b"".join(lines).decode("utf-8", "surrogatepass"))
            self.stream.flush()
        except OSError:
            pass

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        self.write_prepared(self.prepare(records))

    def write_dropped(self, count: int) -> None:
        lost = plural(count, "flow record")
        print(f"tapproxy: {lost} dropped (sinks too slow)", file=sys.stderr)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.flush()
