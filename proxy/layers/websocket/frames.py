"""WebSocket frames in and out (RFC 6455 §5), on wsproto's frame codec.

``FrameReader`` reads one direction: wsproto's ``FrameDecoder`` parses the
headers, unmasks and checks what §5 requires of a frame (a control frame is
never fragmented and carries at most 125 bytes, §5.5; a client's frames are
masked and a server's are not, §5.1/§5.3; no reserved bit without an
extension that defines it, §5.2; minimal length encodings). Besides each
piece of payload it hands back the wire bytes that carried it, so a message
no rule changed is forwarded as the very frames that arrived. Payload comes
out as it arrives: a big frame is never held whole.

``encode`` builds the frames the proxy writes itself (a rewritten or
injected message, a close), masked toward the server (§5.3).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from wsproto.extensions import Extension
from wsproto.frame_protocol import (
    CloseReason,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    ParseFailed,
    RsvBits,
    XorMaskerSimple,
)

__all__ = ["Chunk", "FrameReader", "Opcode", "WsError", "close_payload", "encode", "parse_close"]


class WsError(Exception):
    """The peer broke the protocol: fail the connection with ``code`` (§7.1.7)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code
        self.why = why


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of one frame's payload (unmasked, still compressed when it was)."""

    opcode: Opcode  # CONTINUATION for the second and later frames of a message
    payload: bytes
    frame_done: bool  # the last piece of this frame
    fin: bool  # the frame is the last of its message
    rsv1: bool  # the frame's RSV1 bit (permessage-deflate: the message is compressed)
    raw: bytes  # the wire bytes consumed since the previous chunk (header included)
    size: int  # this frame's payload length


class _Rsv1(Extension):
    """permessage-deflate's claim on RSV1 (RFC 7692 §6): allowed on the first
    frame of a data message, nowhere else. Decompression is ours (``deflate``)."""

    name = "permessage-deflate"

    def __init__(self) -> None:
        self.last_rsv1 = False

    def offer(self) -> bool:  # pragma: no cover - never offered: we do not handshake
        return False

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        first_data = opcode in (Opcode.TEXT, Opcode.BINARY)
        if rsv.rsv1 and not first_data:
            return CloseReason.PROTOCOL_ERROR
        self.last_rsv1 = rsv.rsv1
        return RsvBits(first_data, False, False)


class FrameReader:
    """Frames from one side: ``from_client`` frames must be masked."""

    __slots__ = ("_decoder", "_fed", "_rsv", "_size", "max_frame")

    def __init__(self, from_client: bool, deflate: bool, max_frame: int) -> None:
        self._rsv = _Rsv1() if deflate else None
        exts: list[Extension] = [self._rsv] if self._rsv is not None else []
        # wsproto's "client" is the side that receives unmasked frames.
        self._decoder = FrameDecoder(client=not from_client, extensions=exts)
        self._fed = bytearray()  # wire bytes not yet handed back with a chunk
        self._size = 0
        self.max_frame = max_frame

    def feed(self, data: bytes) -> Iterator[Chunk]:
        """The payload pieces ``data`` completes, in order; raises ``WsError``
        at a violation (after the pieces before it)."""
        dec = self._decoder
        dec.receive_bytes(data)
        self._fed += data
        while True:
            had_header = dec.header is not None
            try:
                if not had_header and not dec.parse_header():
                    break
                header = dec.header
                assert header is not None
                if not had_header:
                    self._size = header.payload_len
                    if header.payload_len > self.max_frame:
                        raise WsError(1009, f"frame of {header.payload_len} bytes over the limit")
                rsv1 = header.rsv.rsv1
                frame = dec.process_buffer()
            except ParseFailed as e:
                raise WsError(int(e.code), str(e)) from None
            if frame is None:
                break
            used = len(self._fed) - len(dec.buffer)
            raw = bytes(self._fed[:used])
            del self._fed[:used]
            payload = frame.payload
            assert isinstance(payload, bytes)  # no extension of ours changes it
            yield Chunk(
                frame.opcode,
                payload,
                frame.frame_finished,
                frame.message_finished,
                rsv1,
                raw,
                self._size,
            )

    @property
    def buffered(self) -> int:
        """Wire bytes read but not yet handed back (a partial header)."""
        return len(self._fed)


def encode(
    opcode: Opcode, payload: bytes, to_server: bool, fin: bool = True, rsv1: bool = False
) -> bytes:
    """One frame as the proxy writes it: masked toward the server (§5.3)."""
    n = len(payload)
    head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | int(opcode)])
    mask_bit = 0x80 if to_server else 0
    if n <= 125:
        head.append(mask_bit | n)
    elif n <= 0xFFFF:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if not to_server:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(XorMaskerSimple(key).process(bytearray(payload)))


def close_payload(code: int | None, reason: str = "") -> bytes:
    """A Close frame's body (§5.5.1): the code, then a UTF-8 reason of at most 123 bytes."""
    if code is None:
        return b""
    data = reason.encode("utf-8")[:123]
    while data:
        try:
            data.decode("utf-8")
            break
        except UnicodeDecodeError:
            data = data[:-1]
    return struct.pack("!H", code) + data


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """A Close frame's code and reason; raises ``WsError`` for a malformed one (§7.4)."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise WsError(1002, "close frame with a 1-byte payload")
    (code,) = struct.unpack("!H", payload[:2])
    if code < 1000 or code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000 or code >= 5000:
        raise WsError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WsError(1007, "close reason is not UTF-8") from None
    return code, reason
