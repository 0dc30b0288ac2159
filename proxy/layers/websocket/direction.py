"""One direction of a WebSocket: frames in, messages (and the bytes to forward) out.

Data frames are reassembled into messages (RFC 6455 §5.4); control frames
come out whole, as they arrive, even between the fragments of a message
(§5.5). What happens to a message's frames depends on the direction:

* nothing to decide (no message rule for this direction): every frame's
  wire bytes go on as they arrive (``Forward``); the message is only
  observed (size, preview, UTF-8 of text, inflation for the preview);
* ``hold``: the frames are held until the message is complete, then the
  layer decides (rules) whether the original frames go, or a re-encoded
  message, or nothing. A message longer than ``limit`` (``--max-body``)
  stops being held: what was held goes on and the rest streams, untouched
  and recorded truncated; rules do not see it.

After the proxy changed or dropped a compressed message of a sender that
keeps its deflate context (``desync``), a compressed message can no longer
be forwarded as it came (``proxy.layers.websocket.deflate``): a held one is
re-encoded by the layer, a streamed one goes on uncompressed (``plain``).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass

from proxy.layers.websocket.deflate import STEP, Deflate, Deflater, Inflater
from proxy.layers.websocket.frames import Chunk, FrameReader, Opcode, WsError, encode
from proxy.layers.websocket.settings import WsSettings

_DATA = (Opcode.TEXT, Opcode.BINARY)


class Msg:
    """A message in progress (and, once complete, what the layer decides on)."""

    __slots__ = (
        "compressed", "frames", "index", "opcode", "payload", "plain", "preview", "raw", "size",
        "truncated", "wire",
    )  # fmt: skip

    def __init__(self, opcode: Opcode, compressed: bool, index: int, hold: bool) -> None:
        self.opcode = opcode
        self.compressed = compressed
        self.index = index
        self.frames = 0
        self.wire = 0  # wire bytes of its frames
        self.size = 0  # payload bytes (inflated)
        self.preview = bytearray()
        self.raw: list[bytes] | None = [] if hold else None  # held wire bytes
        self.payload: bytearray | None = bytearray() if hold else None  # held payload
        self.truncated = False  # longer than --max-body: streamed, rules did not see it
        self.plain = False  # streamed uncompressed (after a desync)

    @property
    def text(self) -> bool:
        return self.opcode is Opcode.TEXT


@dataclass(frozen=True, slots=True)
class Forward:
    data: bytes  # wire bytes for the other side


@dataclass(frozen=True, slots=True)
class Control:
    chunk: Chunk  # a whole ping, pong or close frame


@dataclass(frozen=True, slots=True)
class Complete:
    msg: Msg


Item = Forward | Control | Complete


class Direction:
    """Frames from one side (``from_client``) for the other."""

    __slots__ = (
        "_frame_open", "_utf8", "deflate", "deflater", "desync", "from_client", "hold",
        "index", "inflater", "limit", "max_message", "mid", "msg", "preview_cap", "reader",
    )  # fmt: skip

    def __init__(
        self,
        from_client: bool,
        deflate: Deflate | None,
        settings: WsSettings,
        limit: int,
        hold: bool,
        preview_cap: int,
    ) -> None:
        self.from_client = from_client
        self.deflate = deflate
        self.reader = FrameReader(from_client, deflate is not None, settings.max_message)
        self.inflater = (
            Inflater(deflate.takeover(from_client), settings.max_message, settings.inflate_ratio)
            if deflate is not None
            else None
        )
        self.deflater: Deflater | None = None
        self.max_message = settings.max_message
        self.limit = limit
        self.hold = hold
        self.preview_cap = preview_cap
        self.msg: Msg | None = None
        self.index = 0
        self.desync = False
        self.mid = False  # a message's first frames went out, not its last
        self._frame_open = False
        self._utf8: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes) -> tuple[list[Item], WsError | None]:
        """What ``data`` completes, and the violation that stopped it, if any
        (what came before the violation is still handed back, in order)."""
        items: list[Item] = []
        try:
            for chunk in self.reader.feed(data):
                if chunk.opcode not in _DATA and chunk.opcode is not Opcode.CONTINUATION:
                    items.append(Control(chunk))
                else:
                    self._data(chunk, items)
        except WsError as e:
            return items, e
        return items, None

    # -- data frames -------------------------------------------------------------
    def _data(self, chunk: Chunk, items: list[Item]) -> None:
        msg = self.msg
        if chunk.opcode is Opcode.CONTINUATION:
            if msg is None:
                raise WsError(1002, "continuation frame without a message to continue")
        elif msg is not None:
            raise WsError(1002, "a new message began before the previous one ended")
        else:
            msg = self.msg = Msg(chunk.opcode, chunk.rsv1, self.index, self.hold)
            self.index += 1
            if msg.compressed:
                assert self.inflater is not None
                self.inflater.begin()
            self._utf8 = codecs.getincrementaldecoder("utf-8")() if msg.text else None
        if not self._frame_open:
            msg.frames += 1
        self._frame_open = not chunk.frame_done
        last = chunk.fin and chunk.frame_done
        msg.wire += len(chunk.raw)
        if msg.raw is not None:
            msg.raw.append(chunk.raw)
        elif not msg.plain:
            items.append(Forward(chunk.raw))
            self.mid = not last
        for piece in self._pieces(msg, chunk.payload, last):
            self._piece(msg, piece, items)
        if last:
            self._end(msg, items)

    def _pieces(self, msg: Msg, payload: bytes, last: bool) -> Iterator[bytes]:
        if msg.compressed:
            assert self.inflater is not None
            yield from self.inflater.pieces(payload, last)
            return
        for at in range(0, len(payload), STEP):
            yield payload[at : at + STEP]

    def _piece(self, msg: Msg, piece: bytes, items: list[Item]) -> None:
        msg.size += len(piece)
        if msg.size > self.max_message:
            raise WsError(1009, f"message longer than {self.max_message} bytes")
        if self._utf8 is not None:
            try:
                self._utf8.decode(piece)
            except UnicodeDecodeError:
                raise WsError(1007, "text message is not valid UTF-8") from None
        room = self.preview_cap - len(msg.preview)
        if room > 0:
            msg.preview += piece[:room]
        if msg.size > self.limit:
            msg.truncated = True  # longer than rules may see (held or not)
        if msg.payload is not None:
            msg.payload += piece
            if msg.truncated:
                self._stream(msg, items)
        elif msg.plain:
            items.append(Forward(encode(Opcode.CONTINUATION, piece, not self.from_client, False)))

    def _stream(self, msg: Msg, items: list[Item]) -> None:
        """Over the limit: what was held goes on, the rest follows as it comes."""
        assert msg.payload is not None and msg.raw is not None
        if self.desync and msg.compressed:
            msg.plain = True  # the receiver cannot inflate the original frames
            first = encode(msg.opcode, bytes(msg.payload), not self.from_client, False)
            items.append(Forward(first))
        else:
            items.append(Forward(b"".join(msg.raw)))
        self.mid = True
        msg.payload = None
        msg.raw = None

    def _end(self, msg: Msg, items: list[Item]) -> None:
        if self._utf8 is not None:
            try:
                self._utf8.decode(b"", True)
            except UnicodeDecodeError:
                raise WsError(1007, "text message is not valid UTF-8") from None
            self._utf8 = None
        if msg.plain:
            items.append(Forward(encode(Opcode.CONTINUATION, b"", not self.from_client, True)))
        if msg.payload is None:
            self.mid = False
        self.msg = None
        items.append(Complete(msg))

    # -- what the layer sends --------------------------------------------------------
    def original(self, msg: Msg) -> bytes | None:
        """The held message's own frames, when the receiver can take them as they are."""
        if msg.raw is None or (self.desync and msg.compressed):
            return None
        return b"".join(msg.raw)

    def reencode(self, msg: Msg, payload: bytes) -> bytes:
        """A message the proxy writes (changed, or after a desync): compressed
        when the original was, with the proxy's own deflater."""
        to_server = self.from_client  # masked toward the server only (RFC 6455 §5.1)
        deflate = self.deflate
        if not msg.compressed or deflate is None:
            return encode(msg.opcode, payload, to_server)
        if self.deflater is None:
            takeover = deflate.takeover(self.from_client)
            self.deflater = Deflater(takeover, deflate.window_bits(self.from_client))
        return encode(msg.opcode, self.deflater.message(payload), to_server, rsv1=True)

    def diverted(self, msg: Msg) -> None:
        """A compressed message did not reach the receiver as sent: with context
        takeover, the receiver's window no longer follows the sender's."""
        if msg.compressed and self.deflate is not None and self.deflate.takeover(self.from_client):
            self.desync = True
