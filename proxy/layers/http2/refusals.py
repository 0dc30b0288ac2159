"""Records of what the HTTP/2 layer refused: a malformed request, a broken connection.

Every client that sent bytes leaves a record (principle 7): a stream whose
header block is malformed gets one naming the rule it broke, with the
request's pseudo-headers as far as they went; a connection that broke the
protocol (or flooded us) gets one naming why it was closed.
"""

from __future__ import annotations

from h2.errors import ErrorCodes

from proxy.flow.record import Address, FlowRecord, Message, RequestInfo
from proxy.layers.http2.link import ClientLink
from proxy.session.config import SessionConfig
from proxy.session.refusals import answer_info
from proxy.session.responses import error_response

Headers = list[tuple[bytes, bytes]]


def refuse_stream(
    link: ClientLink,
    config: SessionConfig,
    client: Address,
    stream: int,
    headers: Headers,
    error: str,
    status: int = 400,
) -> FlowRecord:
    """A request refused on its stream (RFC 9113 §8.1.1 for a malformed one): a
    response that says why, then the stream is reset so nothing more of it is
    read; its record."""
    answer = error_response(status, error, close=False)
    block = [(b":status", b"%d" % status), (b"content-type", b"text/plain; charset=utf-8")]
    link.headers(stream, block)
    link.data(stream, answer[answer.index(b"\r\n\r\n") + 4 :])
    link.end(stream)
    link.reset(stream, ErrorCodes.NO_ERROR)  # a body still coming is not read
    return malformed(config, client, headers, error, answer)


def malformed(
    config: SessionConfig, client: Address, headers: Headers, error: str, answer: bytes
) -> FlowRecord:
    """A stream refused for its header block; ``answer``: the response it got (HTTP/1 form)."""
    pseudo = {k: v for k, v in headers if k.startswith(b":")}
    now = config.clock()
    request = RequestInfo(
        pseudo.get(b":method", b""),
        pseudo.get(b":path", b"").decode("latin-1"),
        Message(tuple((k, v) for k, v in headers if not k.startswith(b":")), 0, b"", b"2.0"),
    )
    return FlowRecord(
        config.new_id(), "http", config.mode, now, now, client, None,
        request=request, response=answer_info(answer, config.preview_bytes),
        error=f"client: malformed HTTP/2 request: {error}",
    )  # fmt: skip


def broken(config: SessionConfig, client: Address, message: str, who: str) -> FlowRecord:
    """A connection closed for breaking the protocol (``who``: "client"), flooding,
    or a state the proxy's HTTP/2 engine refused (``who``: "proxy")."""
    now = config.clock()
    return FlowRecord(
        config.new_id(), "http", config.mode, now, now, client, None,
        error=f"{who}: HTTP/2 protocol error: {message}",
    )  # fmt: skip


def code_name(code: int) -> str:
    """An HTTP/2 error code's name (RFC 9113 §7), for records."""
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"error {code}"
