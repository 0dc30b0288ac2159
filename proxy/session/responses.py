"""Responses the proxy itself answers with (errors, tunnel established)."""

from __future__ import annotations

from http import HTTPStatus

from proxy.http1 import ResponseHead, ResponseParser

CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Error"


def error_response(status: int, message: str, close: bool = True, extra: bytes = b"") -> bytes:
    """A short text/plain response whose body says what failed and where."""
    body = f"{status} {reason_phrase(status).decode()}: {message}\n".encode()
    head = (
        b"HTTP/1.1 %d %s\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n"
        b"%s%s\r\n"
    ) % (
        status,
        reason_phrase(status),
        len(body),
        extra,
        b"Connection: close\r\n" if close else b"",
    )
    return head + body


def read_back(data: bytes) -> tuple[ResponseHead, bytes]:
    """A whole response the proxy made, as our codec reads it: its head and body.

    Records describe the proxy's own answers the same way as the server's.
    """
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.feed(data)
    head = parser.next_event()
    assert isinstance(head, ResponseHead), "the proxy made a malformed response"
    return head, data[data.index(b"\r\n\r\n") + 4 :]
