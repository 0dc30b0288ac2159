"""Where rules step into an exchange: the request phase and the response phase.

``HttpSession`` inherits these steps; they only run when rules are loaded.
Each phase asks the rule engine for a plan, buffers the body if (and only
if) the plan needs it, up to ``--max-body`` (beyond, the body streams
untouched and the record carries a warning), then carries the plan out: a
terminal answer or close, head and body edits, and faults (delays, a
bandwidth limit, a cut after N body bytes). What matched and what ran goes
into the flow record.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from proxy.http1 import NO_BODY, BodyData, Framing, FramingKind, ResponseHead
from proxy.http1.writer import chunk
from proxy.rules import CloseConnection, LogDirective, RequestPlan, Respond, ResponsePlan, RuleHit
from proxy.session import ruling
from proxy.session.capture import BodyCapture
from proxy.session.commands import CloseClient, Command, FlowDone, SendClient, Wait
from proxy.session.exchange import Exchange
from proxy.session.messages import wants_close

EMPTY = Framing(FramingKind.LENGTH, 0)  # Content-Length: 0

if TYPE_CHECKING:
    from proxy.flow.record import Address
    from proxy.http1 import RequestParser, ResponseParser
    from proxy.session.config import SessionConfig


class RuleSteps:
    if TYPE_CHECKING:
        config: SessionConfig
        client: Address
        requests: RequestParser
        responses: ResponseParser | None
        ex: Exchange | None
        closed: bool
        server_key: tuple[str, int, str | None] | None
        server_ready: bool

        def _dispatch(self, ex: Exchange, out: list[Command]) -> None: ...
        def _release(self, out: list[Command], reusable: bool) -> None: ...
        def _record(self, ex: Exchange) -> Exchange: ...
        def _note_response(self, ex: Exchange, data: bytes) -> None: ...
        def _pump_client(self, out: list[Command]) -> list[Command]: ...
        def _send_response_head(
            self, ex: Exchange, head: ResponseHead, out: list[Command]
        ) -> None: ...
        def _body_to_client(self, ex: Exchange, data: bytes, out: list[Command]) -> None: ...
        def _emit(self, ex: Exchange, data: bytes, out: list[Command]) -> None: ...
        def _finish(self, ex: Exchange, out: list[Command]) -> None: ...
        def _count_request(self, ex: Exchange, data: bytes) -> None: ...

        _client_eof: bool

    # -- request phase ----------------------------------------------------------
    def _rules_request(self, ex: Exchange, out: list[Command]) -> bool:
        """Plan the request; True when the exchange is handled or waits (body, delay)."""
        assert self.config.rules is not None and ex.target is not None
        rules = self.config.rules()
        if rules is None or not rules.rules:  # none for HTTP (maybe TCP ones only)
            return False
        head = ex.request
        info = ruling.request_info(head, ex.target, self.client[0], self.config.mode)
        plan = rules.on_request(info)
        if rules.inert(plan):  # the common case; its response phase is skipped too
            return False
        ex.ruleset, ex.plan = rules, plan
        if plan.pending or plan.needs_body:
            framing = head.framing
            if framing.kind is FramingKind.CHUNKED or framing.length > 0:
                ex.req_buffer = bytearray()  # _pump_client collects it
                if ruling.expects_continue(head):
                    # The client waits for this before sending the body we need
                    # (RFC 9110 §10.1.1); the upstream gets the body whole, without Expect.
                    out.append(SendClient(ruling.CONTINUE))
                return True
            ex.plan = rules.complete_request(plan, b"")
        return self._ruled_request(ex, out)

    def _collect_request(self, ex: Exchange, event: object, out: list[Command]) -> None:
        """One body event of a request the rules must see whole."""
        assert ex.req_buffer is not None and ex.plan is not None and ex.ruleset is not None
        if isinstance(event, BodyData):
            self._count_request(ex, event.data)
            ex.req_buffer += event.data
            if len(ex.req_buffer) <= self.config.max_body:
                return
            ex.overflow = True  # streamed untouched, with a warning
            ex.plan = ex.ruleset.complete_request(ex.plan, None)
            self._edits_skipped(ex, ex.plan, "request")
        else:
            ex.plan = ex.ruleset.complete_request(ex.plan, bytes(ex.req_buffer))
        if not self._ruled_request(ex, out):
            self._dispatch(ex, out)

    def _ruled_request(self, ex: Exchange, out: list[Command]) -> bool:
        """Carry out a final request plan; True when nothing should be sent now."""
        plan = ex.plan
        assert plan is not None
        self._note_rules(ex, plan.hits, plan.warnings, plan.log)
        term = plan.terminal
        if isinstance(term, Respond):
            self._answer(ex, ruling.respond_bytes(term, self.config.max_body), out)
            return True
        if isinstance(term, CloseConnection):
            self._close_by_rule(ex, term.kind, term.rule, out)
            return True
        buffered = ex.req_buffer is not None and not ex.overflow
        if plan.head_edits or term is not None or buffered:
            edited = plan.apply_head()
            body = None
            if buffered:
                assert ex.req_buffer is not None
                result = plan.apply_body(bytes(ex.req_buffer), edited.fields)
                body = result.body
                edited = ruling.with_fields(edited, result.fields)
                self._note_rules(ex, (), result.warnings + edited.warnings, LogDirective())
            ex.forward, ex.target = ruling.edited_head(ex.request, edited, body)
            ex.keep_host = ruling.pins_host(edited)
            ex.url = ex.target.url
            ex.prepared_body = body
        if plan.faults.delay > 0:
            ex.waiting = True
            out.append(Wait(plan.faults.delay))
            return True
        return False

    def resume(self) -> list[Command]:
        """A rule's request delay is over: send the request on."""
        ex = self.ex
        out: list[Command] = []
        if ex is not None and ex.waiting and ex.response is None:
            ex.waiting = False
            self._dispatch(ex, out)
            self._pump_client(out)
        return out

    # -- response phase -----------------------------------------------------------
    def _rules_response(
        self, ex: Exchange, head: ResponseHead, out: list[Command]
    ) -> ResponseHead | None:
        """Plan the response; the head to send now, or None (handled or buffering)."""
        assert ex.ruleset is not None and ex.plan is not None
        rplan = ex.rplan = ex.ruleset.on_response(ex.plan, head.status, head.fields)
        if rplan.pending or rplan.needs_body:
            kind = head.framing.kind
            if kind is FramingKind.CHUNKED or kind is FramingKind.CLOSE or head.framing.length:
                ex.response = head
                ex.resp_buffer = bytearray()
                return None
            rplan = ex.rplan = ex.ruleset.complete_response(rplan, b"")
        ruled = self._ruled_response(ex, head, None, out)
        if ruled is None:
            return None
        sent = ruled[0]
        if ruling.head_only(ex.request, ex.forward) and sent.framing.kind is not FramingKind.NONE:
            self._head_without_body(ex, sent, out)
            return None
        return sent

    def _head_without_body(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        """The client asked HEAD but a rule's set_method sent another method upstream:
        the client gets the head only (its Content-Length as metadata, RFC 9110 §9.3.2);
        the upstream's body is read and dropped (``resp_buffer`` with the head sent)."""
        self._send_response_head(ex, replace(head, framing=NO_BODY), out)
        ex.resp_buffer = bytearray()

    def _ruled_response(
        self, ex: Exchange, head: ResponseHead, body: bytes | None, out: list[Command]
    ) -> tuple[ResponseHead, bytes | None] | None:
        """Carry out a final response plan: the head (and body) to send, or None."""
        rplan = ex.rplan
        assert rplan is not None
        self._note_rules(ex, rplan.hits, rplan.warnings, rplan.log)
        term = rplan.terminal
        if isinstance(term, Respond):
            ex.server_closes = True  # the upstream's body is abandoned
            self._answer(ex, ruling.respond_bytes(term, self.config.max_body), out)
            return None
        if isinstance(term, CloseConnection):
            self._close_by_rule(ex, term.kind, term.rule, out, head)
            return None
        fields = head.fields
        status = head.status
        if rplan.head_edits:
            edited = rplan.apply_head(status, fields)
            status, fields = edited.status, edited.fields
            self._note_rules(ex, (), edited.warnings, LogDirective())
        if body is not None and rplan.body_edits:
            result = rplan.apply_body(body, fields)
            body, fields = result.body, result.fields
            self._note_rules(ex, (), result.warnings, LogDirective())
        faults = rplan.faults
        if faults.delay:
            ex.next_at = self.config.clock() + faults.delay
        ex.rate = faults.bandwidth
        ex.cut_after = faults.close_after
        if body is None and not rplan.head_edits:
            return head, None
        # A buffered body is always re-framed by its length (it may have changed).
        return ruling.edited_response(head, status, fields, body), body

    def _collect_response(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        assert ex.resp_buffer is not None and ex.rplan is not None and ex.ruleset is not None
        if ex.response_started or self._hung(ex):
            return  # a HEAD client's response (head sent), or a hang: the body is dropped
        ex.resp_buffer += data
        if len(ex.resp_buffer) <= self.config.max_body:
            return
        # Too big for rules: send it on untouched, with a warning in the record.
        ex.rplan = ex.ruleset.complete_response(ex.rplan, None)
        self._edits_skipped(ex, ex.rplan, "response")
        buffered, ex.resp_buffer = bytes(ex.resp_buffer), None
        assert ex.response is not None
        ruled = self._ruled_response(ex, ex.response, None, out)
        if ruled is None:
            return
        if ruling.head_only(ex.request, ex.forward):
            self._head_without_body(ex, ruled[0], out)
            return
        self._send_response_head(ex, ruled[0], out)
        self._body_to_client(ex, buffered, out)

    def _ruled_response_body(self, ex: Exchange, out: list[Command]) -> bool:
        """The buffered response is complete: plan, edit, send. False: exchange ended."""
        assert ex.resp_buffer is not None and ex.rplan is not None and ex.ruleset is not None
        if self._hung(ex):
            return False  # the client still hears nothing (a response-phase hang)
        body, ex.resp_buffer = bytes(ex.resp_buffer), None
        if ex.response_started:
            return True  # a HEAD client's response: sent already, the body dropped
        ex.rplan = ex.ruleset.complete_response(ex.rplan, body)
        assert ex.response is not None
        ruled = self._ruled_response(ex, ex.response, body, out)
        if ruled is None:
            return False
        head, edited = ruled
        if ruling.head_only(ex.request, ex.forward):
            self._send_response_head(ex, replace(head, framing=NO_BODY), out)
            return self.ex is ex
        self._send_response_head(ex, head, out)
        if edited:
            self._body_to_client(ex, edited, out)
        return self.ex is ex

    # -- shared ---------------------------------------------------------------------
    def _note_rules(
        self,
        ex: Exchange,
        hits: tuple[RuleHit, ...],
        warnings: tuple[str, ...],
        log: LogDirective,
    ) -> None:
        if not hits and not warnings and not log:
            return
        if log.capture is not None and (ex.capture is None or not ex.capture.every):
            ex.capture = BodyCapture(str(log.capture), self.config.capture.max_body, every=True)
        note = ex.rules_note or ruling.RulesNote()
        ex.rules_note = note.plus(hits, warnings, log.tags, log.detail)

    def _edits_skipped(self, ex: Exchange, plan: RequestPlan | ResponsePlan, side: str) -> None:
        """A body over --max-body: say that its edits were skipped.

        ``complete_*(plan, None)`` warns only when it resumed a pending plan (a
        body matcher); a plan that needed the body just for its edits does not.
        """
        if plan.needs_body and not any("max-body" in w for w in plan.warnings):
            warning = f"{side} body edits skipped (over --max-body)"
            self._note_rules(ex, (), (warning,), LogDirective())

    def _answer(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """Answer the client ourselves (a rule's respond, map_local, block, abort).

        In the response phase the upstream's response is abandoned, so its
        connection is not reused. A request body no rule read is still on the
        client connection, which therefore ends after the answer.
        """
        response_phase = ex.response_head_at is not None
        self._note_response(ex, data)
        ex.response_started = True
        self._emit(ex, data, out)
        if response_phase:
            complete = ex.request_done
        elif ex.req_buffer is not None:
            complete = not ex.overflow
        elif ex.request.framing.kind is FramingKind.NONE or ex.request.framing == EMPTY:
            self.requests.next_event()  # the head's EndOfMessage (no body, or length 0)
            complete = True
        else:
            complete = False
        self.ex = None
        out.append(FlowDone(self._record(ex)))
        if response_phase:
            self._release(out, reusable=False)
        if not complete or self._client_eof or wants_close(ex.request):
            self.closed = True
            out.append(CloseClient())
            return
        self._pump_client(out)

    def _close_by_rule(
        self,
        ex: Exchange,
        kind: str,
        rule: str,
        out: list[Command],
        response: ResponseHead | None = None,
    ) -> None:
        """block close, fault reset, fault hang; ``response``: decided on this response."""
        ex.error = f"rule {rule}: {kind}"
        if kind == "hang":
            # Say nothing; the response timeout ends it (recorded then).
            ex.waiting = True
            ex.request_done = True
            if response is not None:
                # The upstream's response keeps coming: read and drop it (see _hung).
                ex.response = response
                ex.resp_buffer = bytearray()
            return
        self.ex = None
        self.closed = True
        out.append(FlowDone(self._record(ex)))
        if self.server_key is not None:
            self._release(out, reusable=False)
        out.append(CloseClient(abort=kind == "reset"))

    @staticmethod
    def _hung(ex: Exchange) -> bool:
        """A response-phase ``hang``: the exchange waits for a timeout, the client for nothing."""
        return ex.waiting and ex.response_head_at is not None

    def _cut(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """A ``close_after`` fault: send the allowed bytes, then close the client.

        The bytes keep the response's framing (chunks for a chunked response), so
        the client sees a body cut short, not raw bytes where a chunk size belongs.
        """
        ex.sent_body += len(data)
        if data:
            assert ex.response is not None
            if ex.response.framing.kind is FramingKind.CHUNKED and ex.request.version == b"1.1":
                data = b"".join(chunk(data))
            self._emit(ex, data, out)
        ex.error = f"closed after {ex.cut_after} body bytes by a rule"
        self.ex = None
        self.closed = True
        out.append(FlowDone(self._record(ex)))
        self._release(out, reusable=False)
        out.append(CloseClient())
