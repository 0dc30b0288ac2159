"""Records for requests the proxy refused before an exchange began.

A malformed or over-limit head (400, 414, 431, 505), one that never
completed (the head timeout, 408), or a client that left in the middle of
one: each gets a record saying why, with the client's address and a bounded
preview of the bytes refused (``FlowRecord.refused``), so that every
connection that sent bytes leaves a trace. A TLS ClientHello or an HTTP/2
preface sent to a plain HTTP/1.1 listener is named as such, since that is a
client set up for something else, not a malformed request.
"""

from __future__ import annotations

from proxy.flow.hooks import HookKind
from proxy.flow.record import (
    Address,
    FlowRecord,
    Message,
    Refused,
    RequestInfo,
    ResponseInfo,
    Source,
)
from proxy.layers.commands import CLIENT, CloseConnection, Command, Hook, SendData
from proxy.session.codec import RequestSource
from proxy.session.config import SessionConfig
from proxy.session.responses import error_response, read_back
from proxy.tls.clienthello import looks_like_tls

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def explain(data: bytes, message: str) -> str:
    """The parser's reason, or what the client evidently meant to speak."""
    if looks_like_tls(data):
        return (
            "a TLS ClientHello on a plain HTTP listener: send plain HTTP to the proxy "
            "(an https:// URL goes through CONNECT), or use a reverse listener with --mitm"
        )
    if data.startswith(H2_PREFACE[:16]):
        return "an HTTP/2 connection preface: this listener speaks HTTP/1.1"
    return message


def refusal(
    config: SessionConfig,
    client: Address,
    requests: RequestSource,
    error: str,
    answer: bytes | None,
) -> FlowRecord:
    """The record of a refused or unfinished request head; ``answer``: what the client got."""
    now = config.clock()
    data, size = requests.refused(config.preview_bytes)
    request = None
    line = requests.pending_line
    if line is not None:  # the request line came; the rest never did, or was bad
        method, target, version = line
        request = RequestInfo(method, target.decode("latin-1"), Message((), 0, b"", version))
    return FlowRecord(
        config.new_id(), "http", config.mode, now, now, client, None,
        request=request, response=answer_info(answer, config.preview_bytes), error=error,
        refused=Refused(data, size) if size else None,
    )  # fmt: skip


def answer_info(answer: bytes | None, preview: int) -> ResponseInfo | None:
    """The proxy's own answer, for the record."""
    if answer is None:
        return None
    head, body = read_back(answer)
    message = Message(head.fields, len(body), body[:preview], head.version)
    return ResponseInfo(head.status, head.reason, message, source=Source.PROXY)


def refuse_connection(config: SessionConfig, client: Address) -> list[Command]:
    """Over --max-connections: the newest connection is told and closed, so
    the ones already served keep working (docs/limits.md); recorded too."""
    message = "too many client connections"
    now = config.clock()
    answer = error_response(503, message)
    record = FlowRecord(
        config.new_id(), "http", config.mode, now, now, client, None,
        response=answer_info(answer, config.preview_bytes), error=f"refused: {message}",
    )  # fmt: skip
    return [SendData(CLIENT, answer), Hook(HookKind.DONE, record), CloseConnection(CLIENT)]
