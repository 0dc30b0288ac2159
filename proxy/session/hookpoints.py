"""Where an HTTP exchange offers itself to lifecycle hooks, and what verdicts do to it.

``HookPoints`` emits the notices subscribers asked for (``STARTED``,
``RESPONSE``, ``ERROR``, ``TUNNEL``), and at the two holdable points
(``REQUEST``, ``RESPONSE_HEAD``) a ``Hook`` with ``hold`` after which the
exchange waits. A verdict's edits are applied here, from our own parse: a
new URL becomes a new target (Host follows it, as for a rule's
``rewrite_url``), new headers replace the old ones and the framing stays
ours (RFC 9112 §6), a reply is framed by its length.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from proxy.flow.hooks import HookKind, Reply, RequestEdit, ResponseEdit
from proxy.http1 import BodyData, Framing, ResponseHead
from proxy.http1.events import KIND_CHUNKED, KIND_LENGTH
from proxy.http1.writer import framed_fields, response_head
from proxy.layers.commands import CLIENT, Command, Hook, SendData
from proxy.session import ruling
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange
from proxy.session.responses import reason_phrase
from proxy.session.target import DEFAULT_PORTS, Target


class HookPoints:
    __slots__ = ("body", "hold", "max_body", "notify", "preview", "switch")

    def __init__(self, config: SessionConfig) -> None:
        self.notify = config.hooks.notify
        self.hold = config.hooks.hold
        self.body = config.hooks.request_body and HookKind.REQUEST in config.hooks.hold
        self.max_body = config.max_body
        self.preview = config.preview_bytes
        self.switch = config.hooks.switch

    # Each test asks whether a set is empty before looking a kind up in it:
    # an enum member's hash is a Python call (3.11), and with nothing armed
    # (the common case) every exchange would pay for a few of them.
    def notice(self, kind: HookKind, ex: Exchange, out: list[Command]) -> None:
        notify, switch = self.notify, self.switch
        if (notify and kind in notify) or (
            switch is not None and switch.notify and kind in switch.notify
        ):
            out.append(Hook(kind, ex))

    def holds(self, kind: HookKind, ex: Exchange, out: list[Command]) -> bool:
        """Offer ``ex`` at a holdable point, once; True: it now waits for the verdict."""
        hold, switch = self.hold, self.switch
        if not (hold and kind in hold) and not (
            switch is not None and switch.kinds and kind in switch.kinds
        ):
            return False
        if kind in ex.hooked:
            return False
        ex.hooked.add(kind)
        ex.held = kind
        out.append(Hook(kind, ex, hold=True))
        return True

    def _wants_body(self) -> bool:
        switch = self.switch
        if switch is not None and switch.request_body and HookKind.REQUEST in switch.kinds:
            return True
        return self.body

    def collects(self, ex: Exchange, out: list[Command]) -> bool:
        """Before the REQUEST hook, buffer the request body when a subscriber asked
        to see it whole (True: wait for it; ``body_event`` takes it)."""
        if not self.body and (self.switch is None or not self.switch.request_body):
            return False  # nobody asked for bodies (as _wants_body, without the call)
        if HookKind.REQUEST in ex.hooked or ex.prepared_body is not None:
            return False
        if not self._wants_body():
            return False
        framing = ex.forward.framing
        if ex.req_buffer is not None or not (
            framing.kind is KIND_CHUNKED or (framing.kind is KIND_LENGTH and framing.length > 0)
        ):
            return False
        ex.req_buffer = bytearray()
        ex.hook_body = True
        if ruling.expects_continue(ex.request):  # the client waits for it (RFC 9110 §10.1.1)
            out.append(SendData(CLIENT, ruling.CONTINUE))
        return True

    def body_event(self, ex: Exchange, event: object) -> bool:
        """One body event while buffering for the hook; True: offer the request now.

        Whole, the body goes upstream framed by its length, without the
        ``Expect`` we answered (as for rules, ``ruling.edited_head``); over
        ``--max-body`` the buffered part goes first and the rest streams.
        """
        assert ex.req_buffer is not None
        if isinstance(event, BodyData):
            ex.count_request(event.data, self.preview)
            ex.req_buffer += event.data
            if len(ex.req_buffer) <= self.max_body:
                return False
            ex.overflow = True
        else:
            body = bytes(ex.req_buffer)
            fields = tuple(
                (k, v) for k, v in ex.forward.fields
                if not (k.lower() == b"expect" and v.strip().lower() == b"100-continue")
            )  # fmt: skip
            framing = Framing(KIND_LENGTH, len(body))
            ex.forward = replace(ex.forward, fields=fields, framing=framing, index=None)
            ex.prepared_body = body
        ex.hook_body = False
        return True


def edit_request(ex: Exchange, edit: RequestEdit) -> None:
    """Apply a verdict's request edits to what will be forwarded; a new body is
    framed by its length (it replaces one buffered whole, ``collects``)."""
    head = ex.forward
    if edit.method is not None:
        head = replace(head, method=edit.method, index=None)
    if edit.headers is not None:
        head = replace(head, fields=tuple(edit.headers), index=None)
    if edit.url is not None:
        ex.target = target_of(edit.url)
        ex.url = ex.target.url
    if edit.body is not None:
        if ex.prepared_body is None:
            raise ValueError("a new body for a request whose body was not offered whole")
        head = replace(head, framing=Framing(KIND_LENGTH, len(edit.body)), index=None)
        ex.request_body_edited = edit.body != ex.prepared_body or ex.request_body_edited
        ex.prepared_body = edit.body
    ex.forward = head


def target_of(url: str) -> Target:
    """An absolute http(s) URL as a target; ValueError when it is not one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    port = parts.port or DEFAULT_PORTS[scheme]
    return Target(scheme, parts.hostname, port, path.encode("latin-1"))


def edit_response(head: ResponseHead, edit: ResponseEdit) -> ResponseHead:
    """The response head with a verdict's edits; its framing stays ours."""
    status = head.status if edit.status is None else edit.status
    fields = head.fields if edit.headers is None else tuple(edit.headers)
    reason = head.reason if status == head.status else reason_phrase(status)
    return replace(head, status=status, reason=reason, fields=fields, index=None)


def reply_bytes(reply: Reply) -> bytes:
    """A whole HTTP/1.1 response for a hook's ``Reply``, framed by its length."""
    fields = framed_fields(reply.headers, Framing(KIND_LENGTH, len(reply.body)))
    reason = reason_phrase(reply.status) if reply.reason is None else reply.reason
    return response_head(b"1.1", reply.status, reason, fields) + reply.body
