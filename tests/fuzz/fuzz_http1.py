#!/usr/bin/env python3
"""Fuzz target ``http1``: RequestParser and ResponseParser (proxy/http1).

Run:  python tests/fuzz/fuzz_http1.py tests/fuzz/corpus/http1 -dict=tests/fuzz/dicts/http1.dict

Every input is parsed as requests and as responses, and for each side:

* only events or ``ProtocolError`` come out (status 400/414/431/501/505 for
  requests, 502 for responses), never another exception, and ``next_event``
  never loops forever;
* the events are coherent: heads carry token names and values without
  CR/LF/NUL or surrounding whitespace, a body matches its framing
  (Content-Length bytes exactly, none on a bodiless message), trailers only
  after a chunked body and never a forbidden one, nothing after a tunnel;
* differential: fed whole or in pieces, the same events (adjacent body data
  merged) and leftover bytes, accepted or refused alike (the same error
  status too with FUZZ_HTTP1_STRICT_STATUS=1: a message that breaks two
  rules may get the status of whichever the split shows first, which
  tests/unit/test_http1_parser.py allows);
* round trip: the complete messages, written back with proxy/http1/writer.py
  the way the proxy forwards them, parse again to the same heads (framing
  fields aside, which the writer recomputes), bodies and trailers;
* raw heads: a head that keeps its received bytes (``raw``, which the proxy
  forwards instead of a rebuild) has exactly what the writer writes for its
  fields in place, with canonical framing values and, for a response, an
  HTTP/1.1 status line.

Input layout. Seeds are raw HTTP bytes; the piece sizes are then taken from
the input's first three bytes (``size = byte % 23 + 1``), the parser gets
EOF at the end, default limits, and responses answer GET, HEAD, GET. An input
whose first byte has the high bit set (which no request or status line can
start with) instead starts with a 5-byte control header::

    byte 0   0x80 | flags: bit 0 feed EOF, bit 1 small limits,
             bits 2-3 number of requests the responses answer, minus 1
    byte 1   their methods, 2 bits each: GET, HEAD, POST, CONNECT
    byte 2-4 piece sizes, cycled: byte % 64 + 1

and the message is the rest.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fuzz_main, instrumented

with instrumented(__name__ == "__main__"):
    from proxy.http1 import (
        BodyData,
        EndOfMessage,
        Event,
        FramingKind,
        Limits,
        ProtocolError,
        RequestHead,
        RequestParser,
        ResponseHead,
        ResponseParser,
    )
    from proxy.http1.fields import TOKEN_RE
    from proxy.http1.parser import FORBIDDEN_TRAILERS
    from proxy.http1.writer import chunk, framed_fields, last_chunk, request_head, response_head

TARGET = "http1"
CONTROL = 0x80
HEADER = 5
METHODS = (b"GET", b"HEAD", b"POST", b"CONNECT")
RAW_METHODS = (b"GET", b"HEAD", b"GET")  # as tests/unit/test_http1_corpus.py
DEFAULT = Limits()
# As tests/unit/test_http1_parser.py's SMALL: every limit reachable in a short input.
SMALL = Limits(max_head=120, max_line=40, max_fields=4, max_chunk_line=12, max_trailer=30)
# Written-back heads gain ": " per field; limits are not what the round trip checks.
ROOMY = Limits(
    max_head=1 << 24, max_line=1 << 24, max_fields=1 << 20, max_chunk_line=1 << 16,
    max_trailer=1 << 24,
)  # fmt: skip
REQUEST_STATUSES = frozenset({400, 414, 431, 501, 505})
RESPONSE_STATUSES = frozenset({502})
FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding"})
_OWS = b" \t"
# FUZZ_HTTP1_STRICT_STATUS=1: the error status must not depend on the split either.
STRICT_STATUS = os.environ.get("FUZZ_HTTP1_STRICT_STATUS") == "1"


@dataclass(frozen=True, slots=True)
class Plan:
    message: bytes
    sizes: tuple[int, ...]  # piece sizes, used in turn until the message is fed
    methods: tuple[bytes, ...]  # what the responses answer
    eof: bool
    limits: Limits


def plan_of(data: bytes) -> Plan:
    if data[:1] and data[0] & CONTROL:
        head = data[:HEADER].ljust(HEADER, b"\0")
        flags, picks = head[0], head[1]
        count = 1 + (flags >> 2 & 3)
        methods = tuple(METHODS[picks >> (2 * i) & 3] for i in range(count))
        sizes = tuple(b % 64 + 1 for b in head[2:5])
        return Plan(data[HEADER:], sizes, methods, bool(flags & 1), SMALL if flags & 2 else DEFAULT)
    sizes = tuple(b % 23 + 1 for b in data[:3]) or (1,)
    return Plan(data, sizes, RAW_METHODS, True, DEFAULT)


def pieces_of(message: bytes, sizes: tuple[int, ...]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(message):
        n = sizes[i % len(sizes)]
        out.append(message[pos : pos + n])
        pos += n
        i += 1
    return out


# -- running a parser ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    events: list[Event]  # adjacent BodyData merged
    status: int | None  # the ProtocolError's, or None
    leftover: bytes | None  # after a tunnel (take_remaining), else None
    buffered: int  # bytes received and not handed out, when no error


Parser = RequestParser | ResponseParser


def merge(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for e in events:
        if isinstance(e, BodyData) and out and isinstance(out[-1], BodyData):
            out[-1] = BodyData(out[-1].data + e.data)
        else:
            out.append(e)
    return out


def drain(parser: Parser, into: list[Event], budget: int) -> None:
    """Collect events until None; a parser that never stops is a hang."""
    for _ in range(budget):
        event = parser.next_event()
        if event is None:
            return
        into.append(event)
    raise AssertionError(f"next_event() still returning events after {budget} calls")


def run(make: Callable[[], Parser], pieces: list[bytes], eof: bool) -> Outcome:
    parser = make()
    events: list[Event] = []
    # No message is shorter than 2 bytes, and every event but EndOfMessage
    # after a body consumes at least one, so this many events is impossible.
    budget = 2 * sum(len(p) for p in pieces) + 8
    status = None
    try:
        for piece in pieces:
            parser.feed(piece)
            drain(parser, events, budget)
        if eof:
            parser.feed_eof()
            drain(parser, events, budget)
    except ProtocolError as e:
        status = e.status
        assert isinstance(status, int), e
    leftover = None
    last = events[-1] if events else None
    is_head = isinstance(last, RequestHead | ResponseHead)
    tunnel = is_head and last.framing.kind is FramingKind.TUNNEL  # type: ignore[union-attr]
    if status is None and tunnel:
        leftover = parser.take_remaining()
    buffered = parser.buffered if status is None else 0
    return Outcome(merge(events), status, leftover, buffered)


# -- event invariants -----------------------------------------------------------------


def check_fields(fields: tuple[tuple[bytes, bytes], ...], where: str) -> None:
    for name, value in fields:
        assert type(name) is bytes and type(value) is bytes, (where, name, value)
        assert TOKEN_RE.fullmatch(name), f"{where}: field name {name!r} is not a token"
        assert not any(c in value for c in b"\r\n\0"), f"{where}: {name!r} value {value!r}"
        assert value == value.strip(_OWS), f"{where}: {name!r} value {value!r} not OWS-stripped"


def check_raw(head: RequestHead | ResponseHead) -> None:
    """A head's kept bytes are what the writer writes for it (the proxy then
    forwards them as received: proxy/session/messages.py)."""
    raw = head.raw
    if raw is None:
        return
    for name, value in head.fields:
        if name.lower() == b"content-length":
            assert value == b"%d" % int(value), f"raw head with Content-Length {value!r}"
        elif name.lower() == b"transfer-encoding":
            assert value == b"chunked", f"raw head with Transfer-Encoding {value!r}"
    if isinstance(head, ResponseHead):
        assert head.version == b"1.1", f"raw head of an HTTP/{head.version!r} response"
        written = response_head(b"1.1", head.status, head.reason, head.fields)
        assert raw + b"\r\n\r\n" == written, f"raw head {raw[:200]!r} is not {written[:200]!r}"
    else:
        block = raw.partition(b"\r\n")[2]
        written = request_head(head.method, head.target, b"1.1", head.fields)
        rest = written.partition(b"\r\n")[2]
        assert rest == (block + b"\r\n\r\n" if block else b"\r\n"), (
            f"raw field block {block[:200]!r} is not the written {written[:200]!r}"
        )


def check_events(events: list[Event], response: bool) -> None:
    """The event stream is a sequence of well-formed messages."""
    state = "head"  # head, body, tunnel
    framing = None
    got = 0
    for e in events:
        assert state != "tunnel", f"{e!r} after a tunnel head"
        if isinstance(e, RequestHead | ResponseHead):
            assert state == "head", f"head {e!r} inside a message"
            assert isinstance(e, ResponseHead) == response, e
            assert e.version in (b"1.0", b"1.1"), e
            check_fields(e.fields, "head")
            check_raw(e)
            if isinstance(e, RequestHead):
                assert TOKEN_RE.fullmatch(e.method), e
                assert e.target and all(0x21 <= c <= 0x7E for c in e.target), e
            else:
                assert 100 <= e.status <= 999, e
                assert not any(c in e.reason for c in b"\r\n\0"), e
                if e.informational:
                    assert e.framing.kind is FramingKind.NONE, e
                    continue  # the final response for the same request follows
            framing = e.framing
            if framing.kind is FramingKind.TUNNEL:
                state = "tunnel"
            else:
                state, got = "body", 0
                assert framing.kind is not FramingKind.LENGTH or framing.length >= 0, e
        elif isinstance(e, BodyData):
            assert state == "body" and framing is not None, "body data outside a message"
            assert type(e.data) is bytes and e.data, f"empty or non-bytes BodyData {e!r}"
            assert framing.kind is not FramingKind.NONE, "body data on a bodiless message"
            got += len(e.data)
            if framing.kind is FramingKind.LENGTH:
                assert got <= framing.length, f"{got} body bytes for {framing}"
        else:
            assert isinstance(e, EndOfMessage), e
            assert state == "body" and framing is not None, "EndOfMessage outside a message"
            if framing.kind is FramingKind.LENGTH:
                assert got == framing.length, f"{got} body bytes for {framing}"
            if e.trailers:
                assert framing.kind is FramingKind.CHUNKED, f"trailers on {framing}"
                check_fields(e.trailers, "trailer")
                for name, _ in e.trailers:
                    assert name.lower() not in FORBIDDEN_TRAILERS, f"forbidden trailer {name!r}"
            state = "head"


# -- round trip through the writer -------------------------------------------------------


def complete(events: list[Event]) -> list[Event]:
    """The events of the messages that ended (through the last EndOfMessage)."""
    last = max((i for i, e in enumerate(events) if isinstance(e, EndOfMessage)), default=-1)
    return events[: last + 1]


def write_back(events: list[Event]) -> tuple[bytes, bool]:
    """Serialise events as the proxy forwards them; and whether the last body ends at EOF."""
    out: list[bytes] = []
    framing = None
    for e in events:
        if isinstance(e, RequestHead):
            framing = e.framing
            fields = framed_fields(e.fields, framing)
            out.append(request_head(e.method, e.target, e.version, fields))
        elif isinstance(e, ResponseHead):
            framing = e.framing
            fields = framed_fields(e.fields, framing)
            out.append(response_head(e.version, e.status, e.reason, fields))
        elif isinstance(e, BodyData):
            assert framing is not None
            out.extend(chunk(e.data) if framing.kind is FramingKind.CHUNKED else [e.data])
        elif framing is not None and framing.kind is FramingKind.CHUNKED:
            out.append(last_chunk(e.trailers))
    until_close = framing is not None and framing.kind is FramingKind.CLOSE
    return b"".join(out), until_close


def normal(events: list[Event]) -> list[object]:
    """Events with the framing fields (which the writer recomputes) left out."""
    out: list[object] = []
    for e in events:
        if isinstance(e, RequestHead | ResponseHead):
            fields = tuple((k, v) for k, v in e.fields if k.lower() not in FRAMING_FIELDS)
            if isinstance(e, RequestHead):
                out.append(("request", e.method, e.target, e.version, fields, e.framing))
            else:
                out.append(("response", e.version, e.status, e.reason, fields, e.framing))
        else:
            out.append(e)
    return out


# -- the target -----------------------------------------------------------------------------


def check_side(plan: Plan, response: bool) -> None:
    def make(limits: Limits = plan.limits) -> Parser:
        if not response:
            return RequestParser(limits)
        parser = ResponseParser(limits)
        for method in plan.methods:
            parser.expect(method)
        return parser

    allowed = RESPONSE_STATUSES if response else REQUEST_STATUSES
    side = "response" if response else "request"
    whole = run(make, [plan.message] if plan.message else [], plan.eof)
    split = run(make, pieces_of(plan.message, plan.sizes), plan.eof)
    for outcome in (whole, split):
        assert outcome.status is None or outcome.status in allowed, (side, outcome.status)
        check_events(outcome.events, response)
    # Differential: how the bytes were cut into reads changes nothing.
    # (Which status a message breaking several rules gets may depend on which
    # rule is seen first, as tests/unit/test_http1_parser.py allows; only
    # STRICT_STATUS compares statuses, acceptance is always compared.)
    assert (split.status is None) == (whole.status is None), (
        f"{side}: status {split.status} in pieces {list(plan.sizes)}, {whole.status} whole"
    )
    if STRICT_STATUS:
        assert split.status == whole.status, (
            f"{side}: status {split.status} in pieces {list(plan.sizes)}, {whole.status} whole"
        )
    if whole.status is None:
        assert split.events == whole.events, f"{side}: events differ in pieces {list(plan.sizes)}"
        assert split.leftover == whole.leftover, f"{side}: tunnel bytes differ"
        assert split.buffered == whole.buffered, f"{side}: buffered bytes differ"
    else:
        # Before the error, the same events; the last may be a body cut short.
        n = min(len(split.events), len(whole.events)) - 1
        assert split.events[:n] == whole.events[:n], f"{side}: events before the error differ"
    # Round trip: what the proxy would forward means the same to the next parser.
    done = complete(whole.events)
    if done:
        raw, until_close = write_back(done)
        again = run(lambda: make(ROOMY), [raw], until_close)
        assert normal(again.events[: len(done)]) == normal(done), f"{side}: round trip changed"
        assert again.status is None or len(again.events) >= len(done), (
            f"{side}: written-back messages refused with {again.status}: {raw[:200]!r}"
        )


def seed_name(data: bytes) -> str | None:
    """Name for a curated new seed (``run.py --curate``), or None to leave it out.

    tests/unit/test_http1_corpus.py allows only ``row-*`` (one per hazard row)
    and ``valid-*`` files here, and a ``valid-*`` seed must be accepted whole:
    so only raw messages (no control header) that parse to at least one
    complete message, with nothing left over, are kept.
    """
    if not data or data[0] & CONTROL:
        return None
    parser: Parser
    if data.startswith(b"HTTP/"):
        parser = ResponseParser()
        parser.expect(b"GET")
    else:
        parser = RequestParser()
    parser.feed(data)
    parser.feed_eof()
    ends = 0
    try:
        while (event := parser.next_event()) is not None:
            ends += isinstance(event, EndOfMessage)
    except ProtocolError:
        return None
    if not ends or parser.buffered:
        return None
    return f"valid-fuzz-{hashlib.sha1(data).hexdigest()[:12]}.bin"


def one_input(data: bytes) -> None:
    plan = plan_of(data)
    check_side(plan, response=False)
    check_side(plan, response=True)


if __name__ == "__main__":
    fuzz_main(one_input)
