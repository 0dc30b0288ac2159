"""TLS record and handshake-message framing for one direction of a stream.

``RecordReader`` cuts a byte stream into TLS records (RFC 8446 §5.1,
RFC 5246 §6.2.1): a 5-byte header (type, legacy version, length) and a
fragment. It holds at most one incomplete record: input is consumed as it
arrives and whole records in it are sliced out directly, so memory per
direction is bounded by the largest legal record (2^14 + 2048 bytes of
ciphertext in TLS 1.2, RFC 5246 §6.2.3; TLS 1.3 allows less).

``HandshakeReader`` joins handshake messages (RFC 8446 §4, a 1-byte type and
a 3-byte length) that span records, from the plaintext of handshake records.
A message longer than ``MAX_HANDSHAKE`` (one record's worth; only a large
certificate chain is that long) is skipped: its type is still reported, its
body is ``None``, and nothing of it is held.

On input no TLS peer could have sent (an unknown content type, a version
that is not 3.x, an oversized length), ``RecordReader`` keeps the records
completed before it, sets ``error`` and reads nothing more: the caller
handles those records, then stops reading that direction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "MAX_CIPHERTEXT",
    "MAX_HANDSHAKE",
    "ContentType",
    "HandshakeReader",
    "HandshakeType",
    "Record",
    "RecordError",
    "RecordReader",
]

HEADER = 5
MAX_CIPHERTEXT = (1 << 14) + 2048  # RFC 5246 §6.2.3: TLSCiphertext.length limit
MAX_HANDSHAKE = MAX_CIPHERTEXT  # handshake bodies held (one record's worth); longer: skipped


class RecordError(ValueError):
    """Bytes that cannot be a TLS record header."""


class ContentType(enum.IntEnum):
    """RFC 8446 §5.1 ContentType."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


class HandshakeType(enum.IntEnum):
    """RFC 8446 §4 and RFC 5246 §7.4 HandshakeType values the analyzer looks at."""

    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    NEW_SESSION_TICKET = 4
    END_OF_EARLY_DATA = 5
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20
    KEY_UPDATE = 24


_TYPES = frozenset(int(t) for t in ContentType)


@dataclass(frozen=True, slots=True)
class Record:
    type: int  # a ContentType value
    version: int  # legacy_record_version, e.g. 0x0303
    fragment: bytes
    size: int  # header + fragment, as on the wire


class RecordReader:
    """Records out of one direction's bytes; at most one partial record held."""

    __slots__ = ("_buf", "_need", "error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = HEADER  # bytes that complete what _buf holds (header, then record)
        self.error: str | None = None  # set once: why nothing more is read

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Record]:
        """The records completed by ``data``, in order, up to any bad header (``error``)."""
        out: list[Record] = []
        if self.error is not None:
            return out
        try:
            self._feed(data, out)
        except RecordError as e:
            self.error = str(e)
            self._buf.clear()
        return out

    def _feed(self, data: bytes, out: list[Record]) -> None:
        view = memoryview(data)
        pos, end = 0, len(data)
        buf = self._buf
        while pos < end:
            if not buf and end - pos >= HEADER:  # fast path: a whole record in ``data``
                length = _check_header(view[pos : pos + HEADER])
                total = HEADER + length
                if end - pos >= total:
                    out.append(_record(bytes(view[pos : pos + total])))
                    pos += total
                    continue
            take = min(self._need - len(buf), end - pos)
            buf += view[pos : pos + take]
            pos += take
            if len(buf) < self._need:
                break
            if self._need == HEADER:
                self._need = HEADER + _check_header(buf)
                if self._need > HEADER:
                    continue
            out.append(_record(bytes(buf)))
            buf.clear()
            self._need = HEADER


def _check_header(header: bytes | bytearray | memoryview) -> int:
    """The fragment length from a record header, or ``RecordError``."""
    ctype, major, length = header[0], header[1], (header[3] << 8) | header[4]
    if ctype not in _TYPES:
        raise RecordError(f"record type {ctype} is not a TLS content type")
    if major != 3:
        raise RecordError(f"record version {major}.{header[2]} is not 3.x")
    if length > MAX_CIPHERTEXT:
        raise RecordError(f"record length {length} exceeds {MAX_CIPHERTEXT}")
    return length


def _record(raw: bytes) -> Record:
    return Record(raw[0], (raw[1] << 8) | raw[2], raw[HEADER:], len(raw))


class HandshakeReader:
    """Handshake messages, joined across records; oversized ones reported unread."""

    __slots__ = ("_buf", "_skip", "_skip_type")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip = 0  # bytes left of a message too large to hold
        self._skip_type = 0

    @property
    def pending(self) -> bool:
        """True while a message is incomplete (a key change here is a protocol error)."""
        return bool(self._buf) or self._skip > 0

    def feed(self, data: bytes) -> list[tuple[int, bytes | None]]:
        """(type, body) of each message completed by ``data``; body None if skipped."""
        out: list[tuple[int, bytes | None]] = []
        if self._skip:
            used = min(self._skip, len(data))
            self._skip -= used
            data = data[used:]
            if self._skip == 0:
                out.append((self._skip_type, None))
        buf = self._buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            mtype = buf[pos]
            length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            if length > MAX_HANDSHAKE:
                have = len(buf) - pos - 4
                if have >= length:
                    out.append((mtype, None))
                    pos += 4 + length
                    continue
                self._skip, self._skip_type = length - have, mtype
                pos = len(buf)
                break
            if len(buf) - pos - 4 < length:
                break
            out.append((mtype, bytes(buf[pos + 4 : pos + 4 + length])))
            pos += 4 + length
        del buf[:pos]
        return out
