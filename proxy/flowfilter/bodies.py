"""Bodies as filters scan them: content codings undone, the first MiB only.

``~b`` regexes run over the body as the application wrote it, so a
``gzip``/``deflate``/``br``/``zstd`` body is decoded first (RFC 9110 §8.4,
codings from ``Content-Encoding``, last applied undone first). Only the
first ``SCAN_LIMIT`` bytes of the decoded body are scanned: decoding stops
there (a small compressed bomb cannot expand past it) and a regex runs over
at most that much. A body that cannot be decoded (corrupt, cut short by a
preview, an unknown coding, ``brotli``/``zstandard`` not installed) is
scanned as it is, as mitmproxy does.
"""

from __future__ import annotations

import zlib

from proxy.rules.body import brotli, codings_of, zstandard

#: Bytes of a decoded body that a body filter scans.
SCAN_LIMIT = 1 << 20


class _Undecodable(Exception):
    pass


def scannable(
    data: bytes, fields: tuple[tuple[bytes, bytes], ...], limit: int = SCAN_LIMIT
) -> bytes:
    """The first ``limit`` bytes of ``data`` with the codings of ``fields`` undone."""
    codings = codings_of(fields) if data else []
    try:
        out = data
        for coding in reversed(codings):
            out = _prefix(out, coding, limit)
        return out[:limit]
    except _Undecodable:
        return data[:limit]


def _prefix(data: bytes, coding: str, limit: int) -> bytes:
    """At most ``limit`` decoded bytes (more when a codec hands out more at once)."""
    try:
        if coding in ("gzip", "x-gzip"):
            return _zlib(data, 31, limit)
        if coding == "deflate":
            try:
                return _zlib(data, 15, limit)
            except zlib.error:
                return _zlib(data, -15, limit)  # raw deflate, as some servers send
        if coding == "br" and brotli is not None:
            return bytes(brotli.Decompressor().process(data, output_buffer_limit=limit))
        if coding == "zstd" and zstandard is not None:
            return _zstd(data, limit)
    except Exception as e:  # each codec has its own error type; all mean "cannot"
        raise _Undecodable from e
    raise _Undecodable


def _zlib(data: bytes, wbits: int, limit: int) -> bytes:
    out = bytearray()
    while data and len(out) < limit:
        d = zlib.decompressobj(wbits)
        out += d.decompress(data, limit - len(out))
        if not d.eof:
            break  # the limit, or a body cut short: what came out is the prefix
        data = d.unused_data.lstrip(b"\0")  # gzip members follow one another
    return bytes(out)


def _zstd(data: bytes, limit: int) -> bytes:
    assert zstandard is not None
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    out = bytearray()
    while len(out) < limit:
        chunk = reader.read(limit - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)
