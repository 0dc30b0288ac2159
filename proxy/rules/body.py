"""Content codings for bodies that rules match or rewrite (RFC 9110 §8.4).

Rules see a body as the application wrote it, so a ``gzip``/``deflate``/
``br``/``zstd`` body is decoded first and re-encoded with the same codings
after an edit. ``br`` and ``zstd`` come from the third-party ``brotli`` and
``zstandard`` packages; when one is not installed the body counts as
"cannot decode" (a warning, never a crash) and is forwarded untouched.

Decoding is bounded: output over ``limit`` bytes is an error, not a memory
blow-up (a 1 KiB zstd frame can claim 50 MB).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from types import ModuleType

from proxy.http1.events import Fields
from proxy.http1.fields import get_all, split_list

DEFAULT_LIMIT = 10 * 1024 * 1024


def _optional(name: str) -> ModuleType | None:
    try:
        return __import__(name)
    except ImportError:
        return None


brotli = _optional("brotli")
zstandard = _optional("zstandard")


class CodecError(Exception):
    """A body cannot be decoded or encoded; the message says why."""


def codings_of(fields: Fields) -> list[str]:
    """Content codings in the order applied, ``identity`` dropped (§8.4)."""
    out: list[str] = []
    for value in get_all(fields, b"content-encoding"):
        for part in split_list(value):
            name = part.decode("latin-1").lower()
            if name != "identity":
                out.append("gzip" if name == "x-gzip" else name)
    return out


def decode(data: bytes, codings: Sequence[str], limit: int = DEFAULT_LIMIT) -> bytes:
    """Undo ``codings`` (last applied first); raise ``CodecError`` on any problem."""
    for coding in reversed(codings):
        data = _decode_one(data, coding, limit)
    return data


def encode(data: bytes, codings: Sequence[str]) -> bytes:
    """Apply ``codings`` in order, as the original sender did."""
    for coding in codings:
        data = _encode_one(data, coding)
    return data


def _decode_one(data: bytes, coding: str, limit: int) -> bytes:
    if coding == "gzip":
        return _zlib(data, 31, limit, members=True)
    if coding == "deflate":
        # RFC 9110 §8.4.1.2: zlib format, though some servers send raw deflate.
        try:
            return _zlib(data, 15, limit, members=False)
        except CodecError:
            return _zlib(data, -15, limit, members=False)
    if coding == "br":
        return _brotli(data, limit)
    if coding == "zstd":
        return _zstd(data, limit)
    raise CodecError(f"unsupported content coding '{coding}'")


def _encode_one(data: bytes, coding: str) -> bytes:
    if coding in ("gzip", "deflate"):
        c = zlib.compressobj(6, zlib.DEFLATED, 31 if coding == "gzip" else 15)
        return c.compress(data) + c.flush()
    if coding == "br":
        if brotli is None:
            raise CodecError("br needs the 'brotli' package, which is not installed")
        return bytes(brotli.compress(data, quality=5))
    if coding == "zstd":
        if zstandard is None:
            raise CodecError("zstd needs the 'zstandard' package, which is not installed")
        return bytes(zstandard.ZstdCompressor(level=3).compress(data))
    raise CodecError(f"unsupported content coding '{coding}'")


def _zlib(data: bytes, wbits: int, limit: int, members: bool) -> bytes:
    out = bytearray()
    while True:
        d = zlib.decompressobj(wbits)
        try:
            out += d.decompress(data, limit + 1 - len(out))
        except zlib.error as e:
            raise CodecError(f"corrupt body: {e}") from None
        if len(out) > limit:
            raise CodecError(f"decoded body over {limit} bytes")
        if not d.eof:
            raise CodecError("truncated compressed body")
        data = d.unused_data
        if not (members and data.strip(b"\0")):
            return bytes(out)


def _brotli(data: bytes, limit: int) -> bytes:
    if brotli is None:
        raise CodecError("br needs the 'brotli' package, which is not installed")
    d = brotli.Decompressor()
    try:
        try:
            out = bytes(d.process(data, output_buffer_limit=limit + 1))
        except TypeError:  # brotli < 1.2 has no output limit
            out = bytes(d.process(data))
    except brotli.error as e:
        raise CodecError(f"corrupt body: {e}") from None
    if len(out) > limit:
        raise CodecError(f"decoded body over {limit} bytes")
    if not d.is_finished():
        raise CodecError("truncated compressed body")
    return out


def _zstd(data: bytes, limit: int) -> bytes:
    if zstandard is None:
        raise CodecError("zstd needs the 'zstandard' package, which is not installed")
    d = zstandard.ZstdDecompressor()
    try:
        # Bound the output first: a frame may declare no size, or a false one.
        probe = d.stream_reader(data, read_across_frames=True).read(limit + 1)
        if len(probe) > limit:
            raise CodecError(f"decoded body over {limit} bytes")
        out = bytearray()
        while data:
            obj = d.decompressobj()
            out += obj.decompress(data)
            if not obj.eof:
                raise CodecError("truncated compressed body")
            data = obj.unused_data
    except zstandard.ZstdError as e:
        raise CodecError(f"corrupt body: {e}") from None
    return bytes(out)
