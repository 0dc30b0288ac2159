"""Compressed gRPC messages (the flag bit and ``grpc-encoding``), inflated with a bound.

PROTOCOL-HTTP2.md "Message-Encoding": identity, gzip, deflate (zlib
format, RFC 1950; raw deflate is accepted too, as some peers send it),
snappy and others by name. Only the first ``limit`` bytes are produced,
so a small message cannot inflate into a memory bomb.
"""

from __future__ import annotations

import zlib


class CompressionError(ValueError):
    """The message cannot be inflated (unknown encoding, corrupt data)."""


def inflate(data: bytes, encoding: str, limit: int) -> tuple[bytes, bool]:
    """``data`` decompressed, at most ``limit`` bytes, and whether it was cut there."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        raise CompressionError("the compressed flag is set without a grpc-encoding")
    if name == "gzip":
        return _zlib(data, 16 + zlib.MAX_WBITS, limit)
    if name == "deflate":
        try:
            return _zlib(data, zlib.MAX_WBITS, limit)
        except CompressionError:
            return _zlib(data, -zlib.MAX_WBITS, limit)
    raise CompressionError(f"grpc-encoding {name!r} is not supported")


def _zlib(data: bytes, wbits: int, limit: int) -> tuple[bytes, bool]:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit)
    except zlib.error as e:
        raise CompressionError(f"cannot inflate: {e}") from None
    cut = bool(d.unconsumed_tail)
    if not cut and not d.eof:
        raise CompressionError("cannot inflate: the stream ends early")
    return out, cut
