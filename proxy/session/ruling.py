"""Turning rule plans into messages: the glue between ``proxy.rules`` and the session.

The rule engine decides (pure); the session acts. These helpers translate
between the codec's types (bytes, heads, framing) and the engine's (text
URLs, edited field lists, terminal actions), so ``proxy.session.http``
only sequences the steps.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, replace

from proxy.grpc.schema import SchemaRegistry
from proxy.http1 import Framing, RequestHead, ResponseHead
from proxy.http1.events import KIND_LENGTH
from proxy.http1.writer import framed_fields, response_head
from proxy.rules import EditedRequest, RequestInfo, Respond, RuleHit
from proxy.session.responses import reason_phrase
from proxy.session.target import Target


@dataclass(frozen=True, slots=True)
class RulesNote:
    """What rules did to one flow, for its record ("why didn't my rule fire?").

    ``hits`` has one entry per rule, its actions from both phases in order (a
    rule decided on the request that also edits the response is noted by each
    phase); ``seen`` keeps the phases' hits as they came, so none is noted twice.
    """

    hits: tuple[RuleHit, ...] = ()
    warnings: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    detail: str | None = None
    seen: tuple[RuleHit, ...] = ()

    def plus(
        self,
        hits: tuple[RuleHit, ...],
        warnings: tuple[str, ...],
        tags: tuple[str, ...] = (),
        detail: str | None = None,
    ) -> RulesNote:
        fresh = tuple(h for h in hits if h not in self.seen)
        merged = list(self.hits)
        for hit in fresh:
            for i, old in enumerate(merged):
                if (old.rule, old.source) == (hit.rule, hit.source):
                    merged[i] = RuleHit(old.rule, old.source, old.actions + hit.actions)
                    break
            else:
                merged.append(hit)
        return RulesNote(
            tuple(merged),
            self.warnings + warnings,
            self.tags + tuple(t for t in tags if t not in self.tags),
            detail or self.detail,
            self.seen + fresh,
        )


def request_info(
    head: RequestHead,
    target: Target,
    path: str,
    query: bytes,
    client_ip: str,
    mode: str,
    schemas: SchemaRegistry | None = None,
) -> RequestInfo:
    """``path``: the target's path, decoded, and ``query`` what follows its ``?``."""
    return RequestInfo(
        scheme=target.scheme,
        host=target.host,
        port=target.port,
        method=head.method.decode("latin-1"),
        path=path,
        query=query.decode("latin-1"),
        fields=head.fields,
        client_ip=client_ip,
        mode=mode,
        schemas=schemas,
    )


def with_fields(edited: EditedRequest, fields: tuple[tuple[bytes, bytes], ...]) -> EditedRequest:
    return replace(edited, fields=fields)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def expects_continue(head: RequestHead) -> bool:
    """An HTTP/1.1 request whose client waits for 100 Continue before its body."""
    return head.version == b"1.1" and any(
        k.lower() == b"expect" and v.strip().lower() == b"100-continue" for k, v in head.fields
    )


def pins_host(edited: EditedRequest) -> bool:
    """A rule set Host itself (or map_remote keep_host): it goes out as the rule left it."""
    return edited.host_pinned


def edited_head(
    head: RequestHead, edited: EditedRequest, body: bytes | None
) -> tuple[RequestHead, Target]:
    """The request as rules left it; ``body`` (if buffered) fixes the framing.

    A buffered body goes out whole, so an ``Expect: 100-continue`` (answered
    by the proxy while buffering) is not forwarded.
    """
    target = Target(edited.scheme, edited.host, edited.port, edited.target.encode("latin-1"))
    fields = edited.fields
    framing = head.framing
    if body is not None:
        framing = Framing(KIND_LENGTH, len(body))
        fields = tuple(
            (k, v)
            for k, v in fields
            if not (k.lower() == b"expect" and v.strip().lower() == b"100-continue")
        )
    new = RequestHead(edited.method.encode("latin-1"), head.target, head.version, fields, framing)
    return new, target


def head_only(request: RequestHead, forward: RequestHead) -> bool:
    """The client asked HEAD, a rule sent another method: its response has no body."""
    return request.method == b"HEAD" and forward.method != b"HEAD"


def respond_bytes(respond: Respond, max_body: int) -> bytes:
    """A whole response for a ``respond``/``map_local``/``block``/abort terminal.

    A file body is read here (rules point at local mock files); one larger
    than ``max_body`` is refused with 500 rather than loaded whole.
    """
    body = respond.body
    fields = list(respond.fields)
    if respond.file is not None:
        try:
            size = respond.file.stat().st_size
            if size > max_body:
                raise OSError(f"{respond.file} is larger than --max-body ({size} bytes)")
            body = respond.file.read_bytes()
        except OSError as e:
            msg = f"rule {respond.rule}: cannot serve {respond.file}: {e}\n".encode()
            return response_head(b"1.1", 500, b"Internal Server Error", [
                (b"Content-Type", b"text/plain; charset=utf-8"),
                (b"Content-Length", b"%d" % len(msg)),
            ]) + msg  # fmt: skip
        if not any(k.lower() == b"content-type" for k, _ in fields):
            ctype = mimetypes.guess_type(respond.file.name)[0] or "application/octet-stream"
            fields.append((b"Content-Type", ctype.encode()))
    fields = framed_fields(fields, Framing(KIND_LENGTH, len(body)))
    return response_head(b"1.1", respond.status, reason_phrase(respond.status), fields) + body


def edited_response(head: ResponseHead, status: int, fields: tuple[tuple[bytes, bytes], ...],
                    body: bytes | None) -> ResponseHead:  # fmt: skip
    """The response as rules left it; ``body`` (if buffered) fixes the framing."""
    framing = head.framing if body is None else Framing(KIND_LENGTH, len(body))
    reason = head.reason if status == head.status else reason_phrase(status)
    return replace(head, status=status, reason=reason, fields=fields, framing=framing, index=None)
