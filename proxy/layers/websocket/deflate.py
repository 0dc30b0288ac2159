"""permessage-deflate (RFC 7692) as a proxy sees it.

The proxy changes nothing in the handshake: the extension the server
accepted in its ``101`` (``Sec-WebSocket-Extensions``) is what both ends
use, so ``negotiated`` reads it (with wsproto's parameter parser) and each
direction gets an ``Inflater`` (to inspect) and, when a message has to be
re-encoded, a ``Deflater``.

Context takeover (§7.1.1): a sender that keeps its LZ77 window across
messages makes the receiver's window a copy of everything it decompressed.
So while the proxy forwards the sender's original frames it must also feed
every compressed message to its own inflater; and once it rewrites or drops
a compressed message of such a sender, the receiver's window no longer
matches the sender's, and every later compressed message of that direction
is re-encoded by the proxy's deflater (``Direction.resync``).

Decompression is capped (a "zip bomb" of a few kilobytes may inflate to
gigabytes): output comes in pieces of ``STEP`` bytes, counted against the
message limit and a ratio limit, and is kept only as far as it is needed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from wsproto.extensions import PerMessageDeflate

from proxy.layers.websocket.frames import WsError

STEP = 64 * 1024  # decompressed bytes produced per call
TAIL = b"\x00\x00\xff\xff"  # removed by the sender, appended by the receiver (§7.2.2)
RATIO_FLOOR = 1024 * 1024  # the ratio cap applies once a message inflated past this


@dataclass(frozen=True, slots=True)
class Deflate:
    """The negotiated parameters; ``client_*`` concern client-to-server messages."""

    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False
    client_max_window_bits: int = 15
    server_max_window_bits: int = 15

    def takeover(self, from_client: bool) -> bool:
        """Whether this direction's sender keeps its window across messages."""
        if from_client:
            return not self.client_no_context_takeover
        return not self.server_no_context_takeover

    def window_bits(self, from_client: bool) -> int:
        bits = self.client_max_window_bits if from_client else self.server_max_window_bits
        return max(9, bits)  # zlib cannot make raw deflate with an 8-bit window


def extension_names(value: str) -> list[str]:
    """The extension names in a ``Sec-WebSocket-Extensions`` value."""
    return [part.split(";", 1)[0].strip().lower() for part in value.split(",") if part.strip()]


def negotiated(value: str) -> Deflate | None:
    """The permessage-deflate parameters the server accepted, or None."""
    for part in value.split(","):
        if part.split(";", 1)[0].strip().lower() != "permessage-deflate":
            continue
        ext = PerMessageDeflate()
        try:
            ext.finalize(part.strip())
        except ValueError:
            return None
        return Deflate(
            ext.client_no_context_takeover,
            ext.server_no_context_takeover,
            ext.client_max_window_bits or 15,
            ext.server_max_window_bits or 15,
        )
    return None


class Inflater:
    """One direction's decompression, with the message and ratio caps."""

    __slots__ = ("_z", "max_message", "ratio", "size_in", "size_out", "takeover")

    def __init__(self, takeover: bool, max_message: int, ratio: int) -> None:
        self.takeover = takeover
        self.max_message = max_message
        self.ratio = ratio
        self._z = zlib.decompressobj(-15)
        self.size_in = 0
        self.size_out = 0

    def begin(self) -> None:
        """A new compressed message starts."""
        if not self.takeover:
            self._z = zlib.decompressobj(-15)
        self.size_in = self.size_out = 0

    def pieces(self, data: bytes, last: bool) -> Iterator[bytes]:
        """Inflate ``data`` (the message's end when ``last``) in pieces of at
        most ``STEP`` bytes, each counted against the caps before it is seen."""
        if last:
            data += TAIL
        z = self._z
        try:
            while True:
                before = len(data)
                piece = z.decompress(data, STEP)
                data = z.unconsumed_tail
                self.size_in += before - len(data)  # the input this output came from
                self._count(len(piece))
                if piece:
                    yield piece
                if not data and len(piece) < STEP:
                    break
        except zlib.error as e:
            raise WsError(1007, f"permessage-deflate: {e}") from None

    def _count(self, n: int) -> None:
        self.size_out += n
        if self.size_out > self.max_message:
            raise WsError(1009, f"message inflates past {self.max_message} bytes")
        if self.size_out > RATIO_FLOOR and self.size_out > self.ratio * max(1, self.size_in):
            raise WsError(
                1009,
                f"permessage-deflate ratio over {self.ratio}:1 "
                f"({self.size_out} bytes from {self.size_in})",
            )


class Deflater:
    """The proxy's own compression for one direction (messages it re-encodes)."""

    __slots__ = ("_bits", "_z", "takeover")

    def __init__(self, takeover: bool, bits: int) -> None:
        self.takeover = takeover
        self._bits = bits
        self._z = zlib.compressobj(6, zlib.DEFLATED, -bits)

    def message(self, data: bytes) -> bytes:
        """One whole message, compressed as §7.2.1 says (the empty tail removed)."""
        if not self.takeover:
            self._z = zlib.compressobj(6, zlib.DEFLATED, -self._bits)
        out = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(TAIL) else out
