"""How an exchange ends: completed, failed, answered by the proxy, or closed by a rule.

Every ending does the same four things in its own way: say what the client
gets (if anything), hand the flow's record on (``Hook(DONE)``), decide
whether the server connection may be reused, and either close the client
connection or go on with its next pipelined request.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.flow.hooks import HookKind
from proxy.flow.record import TlsInfo
from proxy.http1.events import KIND_CLOSE, KIND_LENGTH, KIND_NONE
from proxy.layers.commands import Command, Hook
from proxy.session import auth, grpcout
from proxy.session.exchange import Exchange
from proxy.session.hookpoints import HookPoints
from proxy.session.messages import wants_close
from proxy.session.responses import error_response, read_back
from proxy.session.rulephase import CloseBy
from proxy.session.sequencer import Sequencer

EMPTY_LENGTH = (KIND_LENGTH, 0)  # Content-Length: 0


class Endings:
    __slots__ = ("hooks", "s")

    def __init__(self, session: Sequencer, hooks: HookPoints) -> None:
        self.s = session
        self.hooks = hooks

    def done(self, ex: Exchange, out: list[Command]) -> None:
        """The exchange's last gRPC messages (if any), then its record."""
        if ex.grpc is not None:
            grpcout.drain(ex, self.s.config, out)
        out.append(self.record(ex))

    def record(self, ex: Exchange) -> Hook:
        """The exchange's final record, as the ``DONE`` hook."""
        config = self.s.config
        if ex.capture is not None:
            sizes = (ex.request_size, ex.response_size)
            ex.captured = ex.capture.finish(sizes, config.preview_bytes, config.capture.budget)
            if ex.captured is not None and ex.request_body_edited and ex.prepared_body:
                forwarded = ex.prepared_body[: config.capture.max_body]  # as a rule sent it
                ex.captured = replace(ex.captured, forwarded=forwarded)
            ex.capture = None
        tls = None
        if config.client_tls is not None or ex.server_tls is not None:
            intercepted = config.client_tls is not None
            tls = TlsInfo(intercepted, config.client_tls, ex.server_tls, config.keylog)
        return Hook(HookKind.DONE, ex.finish(config.mode, self.s.client, config.clock(), tls=tls))

    def own_response(self, ex: Exchange, data: bytes) -> bytes:
        """Record a response the proxy made (an error, a local page, a rule's or
        hook's answer) and return the bytes to send: its head alone when the
        client asked HEAD (RFC 9110 §9.3.2: no body; Content-Length stays, as
        the size the body would have, §8.6)."""
        if ex.request.method == b"HEAD":
            data = data[: data.index(b"\r\n\r\n") + 4]
        ex.response, body = read_back(data)
        ex.by_proxy = True
        ex.response_size = len(body)
        ex.response_preview = body[: self.s.config.preview_bytes]
        if ex.capture is not None:
            ex.capture.response = bytearray()  # the client got this body, not the server's
            ex.capture.add(body, False)
        return data

    # -- the normal end -----------------------------------------------------------
    def finish(self, ex: Exchange, out: list[Command]) -> None:
        """The response went out whole."""
        s = self.s
        assert ex.response is not None
        responses = s.server.responses
        reusable = (
            ex.request_done
            and not s.server.closing
            and not (responses is not None and responses.buffered)
            and ex.response.framing.kind is not KIND_CLOSE
            and not ex.server_closes
        )
        s.ex = None
        self.hooks.notice(HookKind.RESPONSE, ex, out)
        self.done(ex, out)
        if ex.close_client or s.client_side.eof:
            s.server.release(out, reusable=reusable)
            self._close(out)
            return
        if not reusable:
            s.server.release(out, reusable=False)
        s.pump_client(out)

    def fail(
        self, ex: Exchange, status: int, message: str, out: list[Command], server_open: bool = True
    ) -> list[Command]:
        """End with an error: a response if none started, else a close."""
        if ex.error is None:
            ex.error = message
        if not ex.response_started:
            data = self.own_response(ex, error_response(status, message))
            self.s.client_side.send_whole(ex, data, out, paced=False)
        s = self.s
        s.ex = None
        self.hooks.notice(HookKind.ERROR, ex, out)
        self.done(ex, out)
        if server_open:
            s.server.release(out, reusable=False)
        else:
            s.server.key = None
        self._close(out, abort=ex.response_started)
        return out

    def quietly(self, ex: Exchange, out: list[Command]) -> list[Command]:
        """End without a word to the client (a rule's hang, when its timeout comes)."""
        self.s.ex = None
        self.done(ex, out)
        self.s.server.release(out, reusable=False)
        self._close(out)
        return out

    def kill(self, ex: Exchange, out: list[Command]) -> None:
        """A hook killed the flow: the client connection is reset."""
        ex.error = "killed by a hook"
        self.s.ex = None
        self.hooks.notice(HookKind.ERROR, ex, out)
        self.done(ex, out)
        self.s.server.release(out, reusable=False, abort=True)
        self._close(out, abort=True)

    # -- answered by the proxy ------------------------------------------------------
    def unauthorized(self, ex: Exchange, out: list[Command]) -> None:
        """407: the client may retry with credentials on the same connection."""
        message = "proxy authentication required"
        answer = error_response(407, message, close=False, extra=auth.CHALLENGE)
        ex.error = f"client: {message}"
        self.s.client_side.send_whole(ex, self.own_response(ex, answer), out, paced=False)
        self.s.ex = None
        self.done(ex, out)
        self._next_or_close(ex, out)

    def answer_locally(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """A request for a name the proxy answers itself (http://tapproxy.ca/)."""
        self.s.client_side.send_whole(ex, self.own_response(ex, data), out, paced=False)
        self.s.ex = None
        self.done(ex, out)
        self._next_or_close(ex, out)

    def _next_or_close(self, ex: Exchange, out: list[Command]) -> None:
        """After an answer to a request whose body nobody read: go on only if it had none."""
        if ex.request.framing.kind is KIND_NONE and not wants_close(ex.request):
            self.s.client_side.requests.next_event()  # its EndOfMessage
            ex.request_done = True
        else:  # an unread body, or the client asked to close
            self._close(out)

    def answer(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """Answer the client ourselves (a rule's respond, map_local, block, abort).

        In the response phase the upstream's response is abandoned, so its
        connection is not reused. A request body no rule read is still on the
        client connection, which therefore ends after the answer.
        """
        data = self.own_response(ex, data)
        ex.response_started = True
        self.s.client_side.send_whole(ex, data, out, paced=True)
        self.answered(ex, out)

    def answered(self, ex: Exchange, out: list[Command]) -> None:
        """The proxy's answer went to the client: record it, then go on or close."""
        s = self.s
        response_phase = ex.response_head_at is not None
        framing = ex.request.framing
        if response_phase:
            complete = ex.request_done
        elif ex.req_buffer is not None:
            complete = not ex.overflow
        elif framing.kind is KIND_NONE or (framing.kind, framing.length) == EMPTY_LENGTH:
            s.client_side.requests.next_event()  # the head's EndOfMessage (no body, or length 0)
            complete = True
        else:
            complete = False
        s.ex = None
        self.done(ex, out)
        if response_phase:
            s.server.release(out, reusable=False)
        if not complete or s.client_side.eof or wants_close(ex.request):
            self._close(out)
            return
        s.pump_client(out)

    # -- closed by a rule -------------------------------------------------------------
    def close_by_rule(self, ex: Exchange, outcome: CloseBy, out: list[Command]) -> None:
        """block close, fault reset, fault hang."""
        ex.error = f"rule {outcome.rule}: {outcome.kind}"
        if outcome.kind == "hang":
            # Say nothing; the response timeout ends it (recorded then).
            ex.waiting = True
            ex.request_done = True
            if outcome.response is not None:
                # The upstream's response keeps coming: read and drop it (see rulephase.hung).
                ex.response = outcome.response
                ex.resp_buffer = bytearray()
            return
        s = self.s
        s.ex = None
        self.done(ex, out)
        if s.server.key is not None:
            s.server.release(out, reusable=False)
        self._close(out, abort=outcome.kind == "reset", code=outcome.h2_error)

    def cut(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """A ``close_after`` fault: send the allowed bytes, then close the client.

        The bytes keep the response's framing (chunks for a chunked response), so
        the client sees a body cut short, not raw bytes where a chunk size belongs.
        """
        s = self.s
        s.client_side.body(ex, data, out)
        ex.error = f"closed after {ex.cut_after} body bytes by a rule"
        s.ex = None
        self.done(ex, out)
        s.server.release(out, reusable=False)
        self._close(out)

    def _close(self, out: list[Command], abort: bool = False, code: str | None = None) -> None:
        self.s.closed = True
        self.s.client_side.close(out, abort, code)
