"""Responses the proxy itself answers with (errors, tunnel established)."""

from __future__ import annotations

from http import HTTPStatus

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
