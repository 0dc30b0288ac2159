"""HTTP/2 exchanges from one captured connection: one record per stream.

``H2Conversation`` is fed the reassembled (or decrypted) bytes of each
direction, cuts them into frames (``proxy.pcap.h2frames``) and follows the
streams (RFC 9113 §5.1, §8.1; each stream's state and the record it
becomes: ``proxy.pcap.h2stream``):

* header blocks (HEADERS, or PUSH_PROMISE, then CONTINUATION until
  END_HEADERS, §6.10) are decoded with one HPACK decoder per direction, fed
  every block in wire order, as the peer's decoder was (RFC 7541 §2.2). The
  dynamic table may grow to what the *other* side allowed in its SETTINGS
  (SETTINGS_HEADER_TABLE_SIZE, RFC 9113 §6.5.2), capped at ``TABLE_LIMIT``;
* a client's first header block on a stream is the request, the server's
  first final one the response (1xx ones are informational, §8.1); a later
  block with END_STREAM is a trailer section, decoded (the HPACK state
  needs it) and, as for HTTP/1, not recorded (but a gRPC call's status in
  it is, with its messages: ``proxy.pcap.grpccapture``);
* DATA is counted per stream and its first ``preview`` bytes kept;
  END_STREAM ends a side; a PUSH_PROMISE opens a pushed stream whose request
  is the promised header block (§8.4);
* a stream is emitted once both sides have ended, or when RST_STREAM ends it
  (with the error code, except for a server's NO_ERROR after a complete
  response, §8.1), or at the connection's end with what is missing.

After an ``Upgrade: h2c`` (RFC 7540 §3.2; RFC 9113 §3.1 keeps its framing)
the HTTP/1.1 request is stream 1, half-closed on the client side: its record
is the HTTP/1.1 request (``version`` "1.1") with the HTTP/2 response.

Damage: a framing error, an HPACK error, a capture gap or an undecryptable
record stops the decoding of the whole connection (the HPACK state of a
direction is lost with any byte of it, and both directions share the
streams): every open stream is emitted with the reason, or a record with no
request says it when none is open. Memory is bounded: at most one non-DATA
frame per direction (``FRAME_LIMIT``), header blocks up to
``HEADER_BLOCK_LIMIT``, ``MAX_STREAMS`` open streams, bodies as previews.
"""

from __future__ import annotations

import base64
import binascii
from typing import Protocol

from hpack import Decoder, HPACKError

from proxy.grpc.settings import GrpcSettings
from proxy.pcap.grpccapture import GrpcTap
from proxy.pcap.h2fields import Headers, response_status
from proxy.pcap.h2frames import (
    ACK,
    END_HEADERS,
    END_STREAM,
    DataChunk,
    Frame,
    FrameError,
    FrameReader,
    FrameType,
    error_name,
    settings,
)
from proxy.pcap.h2stream import H2Stream, Owner, keep, opened_by_request, stream_record
from proxy.pcap.http import END_REASONS
from proxy.pcap.records import CapturedExchange

HEADER_BLOCK_LIMIT = 1 << 18  # a header block and its decoded list (hpack's limit)
TABLE_LIMIT = 1 << 20  # largest HPACK dynamic table a peer may set up
MAX_STREAMS = 1024  # open streams per connection
SETTINGS_HEADER_TABLE_SIZE = 0x1


class Host(Owner, Protocol):
    """What a conversation needs from its connection (as ``proxy.pcap.http.Host``)."""

    def emit(self, record: CapturedExchange) -> None: ...


class _Side:
    """One direction: its frames, its HPACK decoder, the header block being assembled."""

    __slots__ = ("block", "block_end", "block_promised", "block_stream", "hpack", "reader")

    def __init__(self, preface: bool) -> None:
        self.reader = FrameReader(preface)
        self.hpack = Decoder(max_header_list_size=HEADER_BLOCK_LIMIT)
        self.block: bytearray | None = None
        self.block_stream = 0
        self.block_end = False  # END_STREAM on the HEADERS that began the block
        self.block_promised = 0  # PUSH_PROMISE: the promised stream


class H2Conversation:
    """HTTP/2 on one connection; fed per direction like ``proxy.pcap.http.HttpConversation``."""

    def __init__(
        self, host: Host, preview: int = 256, scheme: str = "http",
        upgraded: CapturedExchange | None = None, grpc: GrpcSettings | None = None,
    ) -> None:  # fmt: skip
        self.host = host
        self.grpc = GrpcTap(grpc, preview) if grpc is not None and grpc.enabled else None
        self.preview = preview
        self.scheme = scheme  # when a request has no :scheme
        self.client = _Side(preface=True)
        self.server = _Side(preface=False)
        self.streams: dict[int, H2Stream] = {}
        self.last_client = 0  # highest stream the client opened (§5.1.1)
        self.last_pushed = 0
        self.stopped: str | None = None
        self.done = False
        if upgraded is not None:
            self._upgrade(upgraded)

    def _upgrade(self, upgraded: CapturedExchange) -> None:
        """Stream 1 is the upgraded request (RFC 7540 §3.2), its settings in HTTP2-Settings."""
        stream = H2Stream(upgraded.start, None)
        stream.upgraded, stream.req_done = upgraded, True
        stream.resp_start = upgraded.response_start
        self.streams[1], self.last_client = stream, 1
        for name, value in upgraded.request_fields:
            if name.lower() == "http2-settings":
                try:
                    raw = base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
                except (binascii.Error, ValueError):
                    continue
                self._settings(True, raw[: len(raw) - len(raw) % 6])

    # -- input from the connection -----------------------------------------------
    def data(self, from_client: bool, ts: float, data: bytes) -> None:
        if self.stopped or self.done:
            return
        side = self.client if from_client else self.server
        events = side.reader.feed(data)
        try:
            for ev in events:
                if type(ev) is DataChunk:
                    self._data(from_client, ts, ev)
                else:
                    assert isinstance(ev, Frame)
                    self._frame(from_client, side, ts, ev)
        except FrameError as e:
            self._stop(ts, f"{_who(from_client)}: {e}")
            return
        if side.reader.error is not None:
            self._stop(ts, f"{_who(from_client)}: {side.reader.error}")

    def gap(self, from_client: bool, ts: float, size: int) -> None:
        side = "client" if from_client else "server"
        self.stop(from_client, ts, f"{size} bytes missing from the {side} stream (capture gap)")

    def stop(self, from_client: bool, ts: float, why: str) -> None:
        """No more of this direction can be read; without it the connection cannot be."""
        if not self.done:
            self._stop(ts, why)

    def fin(self, from_client: bool, ts: float) -> None:
        return  # what is still open is reported at close

    def close(self, ts: float, reason: str) -> None:
        if self.done:
            return
        self.done = True
        ended = END_REASONS.get(reason, reason)
        for stream in self.streams.values():
            if self.stopped:
                pass  # already said
            elif not stream.req_done and not stream.server_reset:
                stream.errors.append(f"request incomplete: {ended}")
            elif stream.status is None:
                stream.errors.append(f"no response: {ended}")
            elif stream.resp_end is None:
                stream.errors.append(f"response incomplete: {ended}")
            self.host.emit(self._record(stream, ts))
        self.streams.clear()

    # -- frames ------------------------------------------------------------------
    def _frame(self, from_client: bool, side: _Side, ts: float, f: Frame) -> None:
        kind = f.type
        if side.block is not None and kind != FrameType.CONTINUATION:  # RFC 9113 §6.10
            raise FrameError(
                f"frame type {kind} inside a header block on stream {side.block_stream}"
            )
        if kind in (FrameType.HEADERS, FrameType.PUSH_PROMISE):
            if kind == FrameType.PUSH_PROMISE and from_client:
                raise FrameError("PUSH_PROMISE from the client")  # §8.4
            side.block, side.block_stream = bytearray(f.payload), f.stream
            side.block_end, side.block_promised = bool(f.flags & END_STREAM), f.promised
        elif kind == FrameType.CONTINUATION:
            if side.block is None or f.stream != side.block_stream:
                raise FrameError(f"CONTINUATION on stream {f.stream} without a header block")
            side.block += f.payload
        elif kind == FrameType.RST_STREAM:
            self._reset(from_client, ts, f.stream, int.from_bytes(f.payload, "big"))
            return
        elif kind == FrameType.SETTINGS:
            if not f.flags & ACK:
                self._settings(from_client, f.payload)
            return
        else:
            return  # PRIORITY, PING, GOAWAY, WINDOW_UPDATE, unknown: nothing to record
        if len(side.block) > HEADER_BLOCK_LIMIT:
            raise FrameError(f"header block on stream {f.stream} over {HEADER_BLOCK_LIMIT} bytes")
        if f.flags & END_HEADERS:
            block, side.block = bytes(side.block), None
            try:
                headers: Headers = [(k, v) for k, v in side.hpack.decode(block, raw=True)]
            except HPACKError as e:
                raise FrameError(f"HPACK: {e or type(e).__name__}") from e
            if side.block_promised:
                self._pushed(ts, side.block_promised, headers)
            elif from_client:
                self._request_headers(ts, side.block_stream, headers, side.block_end)
            else:
                self._response_headers(ts, side.block_stream, headers, side.block_end)

    def _settings(self, from_client: bool, payload: bytes) -> None:
        """The sender's HEADER_TABLE_SIZE bounds the table of the *other* direction's encoder."""
        for ident, value in settings(payload):
            if ident == SETTINGS_HEADER_TABLE_SIZE:
                decoder = (self.server if from_client else self.client).hpack
                decoder.max_allowed_table_size = min(value, TABLE_LIMIT)

    def _request_headers(self, ts: float, sid: int, headers: Headers, end: bool) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            if sid % 2 == 0:
                raise FrameError(f"client opened even-numbered stream {sid}")  # §5.1.1
            if sid <= self.last_client:
                return  # a closed stream: nothing more to record
            self.last_client = sid
            stream = self._open(sid, opened_by_request(ts, headers))
        elif stream.request is None and stream.upgraded is None and not stream.errors:
            stream.request = opened_by_request(ts, headers).request
        elif not end:  # a trailer section must end the stream (§8.1)
            stream.errors.append("request: header block after the head without END_STREAM")
        if end:
            stream.req_done = True
            self._maybe_done(sid, stream, ts)

    def _response_headers(self, ts: float, sid: int, headers: Headers, end: bool) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            if sid % 2 == 0 or sid <= self.last_client:
                return  # a closed stream, or a push whose promise was not seen
            self.last_client = sid
            stream = self._open(sid, H2Stream(ts, None))
            stream.errors.append(f"response on stream {sid}, which the client never opened")
        if stream.resp_start is None:
            stream.resp_start = ts
        if stream.status is None:
            status = response_status(headers)
            if status is None:  # malformed: a stream error (§8.1.1), the connection goes on
                del self.streams[sid]
                stream.errors.append("response without a valid :status")
                self.host.emit(self._record(stream, ts))
                return
            if 100 <= status < 200 and not end:
                return  # informational (§8.1)
            stream.status, stream.response = status, headers
            if self.grpc is not None:
                self.grpc.head(stream, headers)
        elif not end:
            stream.errors.append("response: header block after the head without END_STREAM")
        elif self.grpc is not None:  # a trailer section: a gRPC call's status
            self.grpc.trailers(stream, headers)
        if end:
            stream.resp_end = ts
            self._maybe_done(sid, stream, ts)

    def _pushed(self, ts: float, sid: int, headers: Headers) -> None:
        if sid % 2 or sid <= self.last_pushed:  # §6.6, §5.1.1
            raise FrameError(f"PUSH_PROMISE of invalid stream {sid}")
        self.last_pushed = sid
        stream = self._open(sid, opened_by_request(ts, headers))
        stream.req_done = True

    def _open(self, sid: int, stream: H2Stream) -> H2Stream:
        if len(self.streams) >= MAX_STREAMS:
            raise FrameError(f"more than {MAX_STREAMS} streams open at once")
        self.streams[sid] = stream
        if self.grpc is not None:
            self.grpc.open(stream, stream.request, stream.start)
        return stream

    def _data(self, from_client: bool, ts: float, chunk: DataChunk) -> None:
        stream = self.streams.get(chunk.stream)
        if stream is None:
            return  # a closed or reset stream: late data is discarded (§5.1)
        data = chunk.data
        if self.grpc is not None:
            self.grpc.data(stream, from_client, data, ts)
        if from_client:
            stream.req_body += len(data)
            if self.preview:
                keep(stream.req_preview, data, self.preview)
            if chunk.end_stream:
                stream.req_done = True
                self._maybe_done(chunk.stream, stream, ts)
        else:
            stream.resp_body += len(data)
            if self.preview:
                keep(stream.resp_preview, data, self.preview)
            if chunk.end_stream:
                stream.resp_end = ts
                self._maybe_done(chunk.stream, stream, ts)

    def _reset(self, from_client: bool, ts: float, sid: int, code: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        if not from_client and code == 0 and stream.resp_end is not None:
            # §8.1: a complete response, and the client asked to stop sending without error;
            # what it had already sent is still on its way, so the stream stays open for it
            stream.server_reset = True
            return
        if not (from_client and stream.server_reset):
            stream.errors.append(f"stream reset by the {_who(from_client)} ({error_name(code)})")
        del self.streams[sid]
        self.host.emit(self._record(stream, ts))

    def _maybe_done(self, sid: int, stream: H2Stream, ts: float) -> None:
        if stream.req_done and stream.resp_end is not None:
            del self.streams[sid]
            self.host.emit(self._record(stream, ts))

    def _stop(self, ts: float, why: str) -> None:
        if self.stopped:
            return
        self.stopped = why
        self.client.block = self.server.block = None
        if not self.streams:
            self.host.emit(self._record(H2Stream(ts, None), ts, [why]))
        for stream in self.streams.values():
            stream.errors.append(why)
            self.host.emit(self._record(stream, ts))
        self.streams.clear()

    # -- records -----------------------------------------------------------------
    def _record(self, s: H2Stream, end: float, errors: list[str] | None = None) -> CapturedExchange:
        return stream_record(s, self.host, self.scheme, self.grpc, end, errors)


def _who(from_client: bool) -> str:
    return "client" if from_client else "server"
