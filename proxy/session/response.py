"""A response's path from the server's bytes to the client.

The response is parsed with our codec, its head rebuilt (hop-by-hop fields
out, framing from our parse, our HTTP version), the rule phase consulted,
and the body relayed, re-chunked for HTTP/1.1 clients or read until close for
HTTP/1.0 ones, at the pace rule faults allow. A pooled connection that failed
before any response byte is retried once on a fresh one (RFC 9112 §9.3.1).
"""

from __future__ import annotations

from dataclasses import replace

from proxy.flow.hooks import HookKind, Kill, Reply, ResponseEdit, Verdict
from proxy.http1 import NO_BODY, BodyData, EndOfMessage, ProtocolError, ResponseHead
from proxy.http1.events import KIND_TUNNEL
from proxy.layers.commands import (
    Command,
    PauseReading,
    ResumeReading,
    StartTunnel,
)
from proxy.session import grpcout
from proxy.session.endings import Endings
from proxy.session.exchange import Exchange
from proxy.session.hookpoints import HookPoints, edit_response
from proxy.session.replies import Replies
from proxy.session.rulephase import Answer, CloseBy, ResponseOutcome, RulePhase, SendResponse
from proxy.session.sequencer import Sequencer
from proxy.session.sse import SseObserver, is_event_stream, with_rules


class ResponsePath:
    __slots__ = ("endings", "hooks", "replies", "rules", "s", "sse")

    def __init__(
        self, session: Sequencer, endings: Endings, rules: RulePhase | None, hooks: HookPoints
    ) -> None:
        self.s = session
        self.endings = endings
        self.rules = rules
        self.hooks = hooks
        self.replies = Replies(session, endings, hooks)  # a hook's answers
        self.sse: SseObserver | None = None  # the events of a text/event-stream response

    def pump(self, out: list[Command]) -> list[Command]:
        """Take the server's parsed events for the current exchange."""
        s = self.s
        responses = s.server.responses
        ex = s.ex
        try:
            while responses is not None and ex is not None and s.ex is ex and not ex.held:
                event = responses.next_event()
                if event is None:
                    break
                if isinstance(event, ResponseHead):
                    self._head(ex, event, out)
                elif isinstance(event, BodyData):
                    self._body(ex, event.data, out)
                else:
                    assert isinstance(event, EndOfMessage)
                    self._end(ex, event, out)
        except ProtocolError as e:
            if ex is not None and s.ex is ex:
                self._server_error(ex, e, out)
        return out

    def _server_error(self, ex: Exchange, e: ProtocolError, out: list[Command]) -> None:
        server = self.s.server
        if ex.reused and ex.retryable and ex.response is None and not ex.response_started:
            # A pooled connection the server had already closed: try once more
            # on a fresh connection (RFC 9112 §9.3.1 allows retrying idempotent
            # or unsent requests).
            ex.reused = False
            server.release(out, reusable=False)
            assert ex.target is not None
            server.open(server.key_for(ex.target, ex), out, reuse=False)
            return
        ex.error = f"upstream: {e.message}"
        self.endings.fail(ex, 502, f"upstream {ex.url}: {e.message}", out)

    def _head(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        if head.informational:
            self.s.client_side.informational(ex, head, out)
            return
        if head.status == 101 and not ex.upgrade:
            raise ProtocolError(502, "101 Switching Protocols without an upgrade request")
        config = self.s.config
        ex.response_head_at = config.clock()
        ex.upstream_head = head
        self.sse = (
            SseObserver(ex.id, config.mode, config.preview_bytes)
            if is_event_stream(head.fields)
            else None
        )
        if ex.grpc is not None:
            ex.grpc.response_head(head.fields)
        if ex.plan is not None and head.status != 101:
            assert self.rules is not None
            outcome = self.rules.on_response(ex, head)
            if outcome is not None:
                self._carry_out(ex, outcome, out)
            return
        self._deliver(ex, head, None, False, out)

    def _deliver(
        self,
        ex: Exchange,
        head: ResponseHead,
        body: bytes | None,
        head_only: bool,
        out: list[Command],
    ) -> None:
        """Send the response head (and a body the rules edited), unless a hook holds it.

        The parts of a ``SendResponse``, passed apart: without rules, none is made.
        """
        if self.hooks.holds(HookKind.RESPONSE_HEAD, ex, out):
            ex.held_response = (head, body, head_only, False)
            conn = self.s.server.pausable
            if conn is not None:  # the rest of the response waits on the server
                out.insert(len(out) - 1, PauseReading(conn))
            return
        if head_only:
            self.send_head(ex, replace(head, framing=NO_BODY), out)
            ex.resp_buffer = bytearray()  # the upstream's body is read and dropped
            return
        self.s.client_side.send_head(ex, head, out)
        if self.sse is not None:  # an event stream: event rules, if any
            with_rules(self.sse, ex, head, self.s.config)
        if body:
            self._to_client(ex, body, out)
        elif head.framing.kind is KIND_TUNNEL:
            self._tunnel(ex, out)

    def resume(self, ex: Exchange, verdict: Verdict, out: list[Command]) -> None:
        """The held response head's verdict."""
        held, ex.held_response = ex.held_response, None
        assert held is not None
        if isinstance(verdict, Reply):
            self.replies.send(ex, verdict, out)
            return
        if isinstance(verdict, Kill):
            self.endings.kill(ex, out)
            return
        head, body, head_only, ended = held
        if isinstance(verdict.edit, ResponseEdit):
            head = edit_response(head, verdict.edit)
        conn = self.s.server.pausable
        if conn is not None:
            # Before the response goes on: a 101 ends the list with StartTunnel,
            # and the tunnel must read the server (it was paused while held).
            out.append(ResumeReading(conn))
        self._deliver(ex, head, body, head_only, out)
        if self.s.ex is not ex or self.s.tunnel is ex:
            return
        if ended:
            self._complete(ex, out)
        else:
            self.pump(out)

    def _tunnel(self, ex: Exchange, out: list[Command]) -> None:
        s = self.s
        assert s.server.responses is not None and s.server.conn is not None
        self.hooks.notice(HookKind.TUNNEL, ex, out)
        out.append(
            StartTunnel(
                s.server.conn,
                to_server=s.client_side.requests.take_remaining(),
                to_client=s.server.responses.take_remaining(),
            )
        )
        s.tunnel, s.ex = ex, None

    def send_head(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        self.s.client_side.send_head(ex, head, out)

    def _carry_out(self, ex: Exchange, outcome: ResponseOutcome, out: list[Command]) -> None:
        """Act on the rule phase's decision about a response."""
        if isinstance(outcome, SendResponse):
            self._deliver(ex, outcome.head, outcome.body, outcome.head_only, out)
        elif isinstance(outcome, Answer):
            self.endings.answer(ex, outcome.data, out)
        elif isinstance(outcome, CloseBy):
            self.endings.close_by_rule(ex, outcome, out)

    def _body(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        ex.count_upstream(data, self.s.config.preview_bytes)
        if ex.grpc is not None:
            grpcout.drain(ex, self.s.config, out)
        sse = self.sse
        if sse is not None:
            sse.feed(data, self.s.config.clock())
            sse.drain(out)
            if sse.plan is not None:  # what event rules let through, so far
                data = sse.take()
                if not data:
                    return
        if ex.resp_buffer is not None:
            assert self.rules is not None
            outcome = self.rules.response_body(ex, data)
            if outcome is not None:
                self._carry_out(ex, outcome, out)
        elif ex.grpc_edit is not None:
            self._edited(ex, ex.grpc_edit.response(data), out)
        else:
            self._to_client(ex, data, out)

    def _edited(self, ex: Exchange, pieces: list[tuple[bytes, float]], out: list[Command]) -> None:
        """gRPC messages as rules left them; a delayed one (and all after it) waits."""
        for piece, delay in pieces:
            if delay:
                ex.next_at = max(ex.next_at or 0.0, self.s.config.clock()) + delay
            if piece:
                self._to_client(ex, piece, out)

    def _to_client(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        if ex.cut_after is not None:
            left = ex.cut_after - ex.sent_body
            if len(data) >= left:
                self.endings.cut(ex, data[:left], out)
                return
        self.s.client_side.body(ex, data, out)

    def _end(self, ex: Exchange, event: EndOfMessage, out: list[Command]) -> None:
        assert ex.response is not None
        ex.trailers = event.trailers  # for the record: a gRPC call's status is there
        if ex.resp_buffer is not None:
            assert self.rules is not None
            self._carry_out(ex, self.rules.response_end(ex), out)
            if ex.held_response is not None:  # a hook holds the edited response
                ex.held_response = (*ex.held_response[:3], True)
                return
            if self.s.ex is not ex or ex.waiting:
                return  # ended by the rule's outcome, or a hang
            if event.trailers:  # the edited body's trailers (a gRPC call's status)
                self.s.client_side.end(ex, event.trailers, out)
        else:
            if ex.grpc_edit is not None:
                self._edited(ex, [(ex.grpc_edit.rest(False), 0.0)], out)
            rest = self.sse.rest() if self.sse is not None and self.sse.plan else b""
            if rest:
                self._to_client(ex, rest, out)  # an event left unfinished
            self.s.client_side.end(ex, event.trailers, out)
        self._complete(ex, out)

    def _complete(self, ex: Exchange, out: list[Command]) -> None:
        """The response went out whole."""
        if not ex.request_done:
            # The server answered before the request body was complete: the
            # rest of that body can't be relayed, so both connections end.
            ex.close_client = True
        self.endings.finish(ex, out)
