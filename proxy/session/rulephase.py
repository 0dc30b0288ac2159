"""Where rules step into an exchange: the request phase and the response phase.

``RulePhase`` only runs when rules are loaded. Each phase asks the rule
engine for a plan, asks for the body to be buffered if (and only if) the
plan needs it, up to ``--max-body`` (beyond, the body streams untouched and
the record carries a warning), then turns the plan into an *outcome* for the
session to carry out: forward (edited or not), answer, close, delay, or send
this response head. It keeps its state on the ``Exchange`` and calls nothing
back: the session sequences, the rule phase decides.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from proxy.grpc.content import Protocol
from proxy.grpc.edit import GrpcEditor
from proxy.http1 import NO_BODY, BodyData, ResponseHead
from proxy.http1.events import KIND_CHUNKED, KIND_CLOSE, KIND_NONE
from proxy.rules import CloseConnection, LogDirective, RequestPlan, Respond, ResponsePlan, RuleHit
from proxy.session import ruling
from proxy.session.capture import BodyCapture
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request on, as ``ex.forward``/``ex.target`` now say."""


FORWARD = Forward()  # it carries nothing: one for every exchange


@dataclass(frozen=True, slots=True)
class Collect:
    """Buffer the request body for the rules; ``send_continue``: answer 100 first."""

    send_continue: bool


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the client with this whole response (respond, map_local, block, abort)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseBy:
    """A rule closes the exchange: ``close``, ``reset`` or ``hang``."""

    kind: str
    rule: str
    response: ResponseHead | None = None  # decided on this response (response phase)
    h2_error: str | None = None  # reset: the code an HTTP/2 stream is reset with


@dataclass(frozen=True, slots=True)
class Delay:
    seconds: float


@dataclass(frozen=True, slots=True)
class SendResponse:
    """Send ``head`` to the client, then ``body`` if given.

    ``head_only``: the client asked HEAD but a rule sent another method
    upstream; it gets the head (Content-Length as metadata, RFC 9110 §9.3.2)
    and the upstream's body is read and dropped.
    """

    head: ResponseHead
    body: bytes | None = None
    head_only: bool = False


@dataclass(frozen=True, slots=True)
class Silent:
    """Nothing to send: a response-phase hang, or a HEAD client's head already sent."""


RequestOutcome = Forward | Collect | Answer | CloseBy | Delay
ResponseOutcome = SendResponse | Answer | CloseBy | Silent


class RulePhase:
    """Rule decisions for the exchanges of one session."""

    __slots__ = ("client_ip", "config")

    def __init__(self, config: SessionConfig, client_ip: str) -> None:
        self.config = config
        self.client_ip = client_ip

    # -- request phase ----------------------------------------------------------
    def on_request(self, ex: Exchange) -> RequestOutcome:
        """Plan the request (its head is in ``ex``)."""
        assert self.config.rules is not None and ex.target is not None
        rules = self.config.rules()
        if rules is None or not rules.rules:  # none for HTTP (maybe TCP ones only)
            return FORWARD
        head, target = ex.request, ex.target
        path, _, query = target.path.partition(b"?")
        text_path, method = path.decode("latin-1"), head.method.decode("latin-1")
        # No candidate in the index: nothing can match, so the request is not
        # described for the rules at all (the common case).
        candidates = rules.candidates(target.host, text_path, method, head.fields)
        if not candidates:
            return FORWARD
        info = ruling.request_info(
            head, target, text_path, query, self.client_ip, self.config.mode,
            self.config.grpc.registry,
        )  # fmt: skip
        plan = rules.on_request(info, candidates)
        if rules.inert(plan):  # its response phase is skipped too
            return FORWARD
        ex.ruleset, ex.plan = rules, plan
        if plan.pending or plan.needs_body:
            framing = head.framing
            if framing.kind is KIND_CHUNKED or framing.length > 0:
                ex.req_buffer = bytearray()
                # The client waits for 100 before sending the body we need
                # (RFC 9110 §10.1.1); the upstream gets the body whole, without Expect.
                return Collect(ruling.expects_continue(head))
            ex.plan = rules.complete_request(plan, b"")
        return self._ruled_request(ex)

    def request_body(self, ex: Exchange, event: object) -> RequestOutcome | None:
        """One body event of a request the rules must see whole; None: keep collecting."""
        assert ex.req_buffer is not None and ex.plan is not None and ex.ruleset is not None
        if isinstance(event, BodyData):
            ex.count_request(event.data, self.config.preview_bytes)
            ex.req_buffer += event.data
            if len(ex.req_buffer) <= self.config.max_body:
                return None
            ex.overflow = True  # streamed untouched, with a warning
            ex.plan = ex.ruleset.complete_request(ex.plan, None)
            self._edits_skipped(ex, ex.plan, "request")
        else:
            ex.plan = ex.ruleset.complete_request(ex.plan, bytes(ex.req_buffer))
        return self._ruled_request(ex)

    def _ruled_request(self, ex: Exchange) -> RequestOutcome:
        plan = ex.plan
        assert plan is not None
        self.note(ex, plan.hits, plan.warnings, plan.log)
        term = plan.terminal
        if isinstance(term, Respond):
            return Answer(ruling.respond_bytes(term, self.config.max_body))
        if isinstance(term, CloseConnection):
            return CloseBy(term.kind, term.rule, None, term.h2_error)
        buffered = ex.req_buffer is not None and not ex.overflow
        if plan.head_edits or term is not None or buffered:
            self._edit_request(ex, plan, buffered)
        grpc = self.config.grpc
        if plan.decision.grpc and ex.grpc is not None and ex.grpc.protocol is Protocol.GRPC:
            ex.grpc_edit = GrpcEditor(plan.decision.grpc, ex.grpc, grpc.registry, grpc.max_message)
        if plan.faults.delay > 0:
            return Delay(plan.faults.delay)
        return FORWARD

    def _edit_request(self, ex: Exchange, plan: RequestPlan, buffered: bool) -> None:
        edited = plan.apply_head()
        body = None
        if buffered:
            assert ex.req_buffer is not None
            received = bytes(ex.req_buffer)
            result = plan.apply_body(received, edited.fields)
            body = result.body
            ex.request_body_edited = body != received
            edited = ruling.with_fields(edited, result.fields)
            self.note(ex, (), result.warnings + edited.warnings, LogDirective())
        ex.forward, ex.target = ruling.edited_head(ex.request, edited, body)
        ex.keep_host = ruling.pins_host(edited)
        ex.url = ex.target.url
        ex.prepared_body = body

    # -- response phase -----------------------------------------------------------
    def on_response(self, ex: Exchange, head: ResponseHead) -> ResponseOutcome | None:
        """Plan the response; None: its body is being collected for the rules."""
        assert ex.ruleset is not None and ex.plan is not None
        rplan = ex.rplan = ex.ruleset.on_response(ex.plan, head.status, head.fields)
        if rplan.pending or rplan.needs_body:
            kind = head.framing.kind
            if kind is KIND_CHUNKED or kind is KIND_CLOSE or head.framing.length:
                ex.response = head
                ex.resp_buffer = bytearray()
                return None
            ex.rplan = ex.ruleset.complete_response(rplan, b"")
        return self._ruled_response(ex, head, None)

    def response_body(self, ex: Exchange, data: bytes) -> ResponseOutcome | None:
        """Response body bytes while collecting; None: keep collecting."""
        assert ex.resp_buffer is not None and ex.rplan is not None and ex.ruleset is not None
        if ex.response_started or hung(ex):
            return None  # a HEAD client's response (head sent), or a hang: the body is dropped
        ex.resp_buffer += data
        if len(ex.resp_buffer) <= self.config.max_body:
            return None
        # Too big for rules: sent on untouched, with a warning in the record.
        ex.rplan = ex.ruleset.complete_response(ex.rplan, None)
        self._edits_skipped(ex, ex.rplan, "response")
        buffered, ex.resp_buffer = bytes(ex.resp_buffer), None
        assert ex.response is not None
        outcome = self._ruled_response(ex, ex.response, None)
        if isinstance(outcome, SendResponse) and not outcome.head_only:
            return SendResponse(outcome.head, buffered)
        return outcome

    def response_end(self, ex: Exchange) -> ResponseOutcome:
        """The collected response is complete: plan and edit it."""
        assert ex.resp_buffer is not None and ex.rplan is not None and ex.ruleset is not None
        if hung(ex):
            return Silent()  # the client still hears nothing (a response-phase hang)
        body, ex.resp_buffer = bytes(ex.resp_buffer), None
        if ex.response_started:
            return Silent()  # a HEAD client's response: sent already, the body dropped
        ex.rplan = ex.ruleset.complete_response(ex.rplan, body)
        assert ex.response is not None
        outcome = self._ruled_response(ex, ex.response, body)
        if isinstance(outcome, SendResponse) and outcome.head_only:
            return SendResponse(replace(outcome.head, framing=NO_BODY))
        return outcome

    def _ruled_response(
        self, ex: Exchange, head: ResponseHead, body: bytes | None
    ) -> ResponseOutcome:
        rplan = ex.rplan
        assert rplan is not None
        self.note(ex, rplan.hits, rplan.warnings, rplan.log)
        term = rplan.terminal
        if isinstance(term, Respond):
            ex.server_closes = True  # the upstream's body is abandoned
            return Answer(ruling.respond_bytes(term, self.config.max_body))
        if isinstance(term, CloseConnection):
            return CloseBy(term.kind, term.rule, head, term.h2_error)
        sent, body = self._edit_response(ex, rplan, head, body)
        faults = rplan.faults
        if faults.delay:
            ex.next_at = self.config.clock() + faults.delay
        ex.rate = faults.bandwidth
        ex.cut_after = faults.close_after
        head_only = ruling.head_only(ex.request, ex.forward) and sent.framing.kind is not (
            KIND_NONE
        )
        return SendResponse(sent, None if head_only else body, head_only)

    def _edit_response(
        self, ex: Exchange, rplan: ResponsePlan, head: ResponseHead, body: bytes | None
    ) -> tuple[ResponseHead, bytes | None]:
        fields = head.fields
        status = head.status
        if rplan.head_edits:
            edited = rplan.apply_head(status, fields)
            status, fields = edited.status, edited.fields
            self.note(ex, (), edited.warnings, LogDirective())
        if body is not None and rplan.body_edits:
            result = rplan.apply_body(body, fields)
            body, fields = result.body, result.fields
            self.note(ex, (), result.warnings, LogDirective())
        if body is None and not rplan.head_edits:
            return head, None
        # A buffered body is always re-framed by its length (it may have changed).
        return ruling.edited_response(head, status, fields, body), body

    # -- shared ---------------------------------------------------------------------
    def note(
        self,
        ex: Exchange,
        hits: tuple[RuleHit, ...],
        warnings: tuple[str, ...],
        log: LogDirective,
    ) -> None:
        """Add what rules did to the exchange's record (and start a capture if asked)."""
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
            self.note(ex, (), (warning,), LogDirective())


def hung(ex: Exchange) -> bool:
    """A response-phase ``hang``: the exchange waits for a timeout, the client for nothing."""
    return ex.waiting and ex.response_head_at is not None
