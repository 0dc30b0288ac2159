#!/usr/bin/env python3
"""Fuzz target ``tls``: TLS record, handshake and decryption for captures.

Run:  python tests/fuzz/fuzz_tls.py tests/fuzz/corpus/tls

The code under test is proxy/pcap/tlsrecord.py, tlshandshake.py, tlskeys.py,
tlsstream.py, tlsapp.py and keylog.py. An input is a key log and a
transcript (see ``split``): a 2-byte length and that many bytes of key log
text, then chunks of a 1-byte direction (even: client, odd: server), a
2-byte length and the bytes. The seeds (``make_tls_seeds.py``) are real
handshakes and HTTP exchanges with their key logs, so mutations reach
decryption and the HTTP decoder behind it. Checks:

* ``TlsStream`` never raises; it emits exactly one ``"tls"`` record, last,
  whose byte counts are the transcript's, and any ``"http"`` records before
  it carry the same ``TlsFacts`` version and cipher;
* the same transcript fed in pieces of ``CUT`` bytes gives the same records
  (framing does not depend on how TCP cut the stream);
* ``RecordReader`` never holds more than one record, and its records (and
  its error) are the same for any split of the input; the handshake
  parsers raise only ``HandshakeError``; ``KeyLog`` never raises.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fuzz_main, instrumented

with instrumented(__name__ == "__main__"):
    from proxy.pcap.keylog import KeyLog
    from proxy.pcap.records import CapturedExchange, Endpoint
    from proxy.pcap.tlshandshake import (
        HandshakeError,
        parse_certificate,
        parse_client_hello_body,
        parse_encrypted_extensions,
        parse_server_hello,
    )
    from proxy.pcap.tlsrecord import (
        MAX_CIPHERTEXT,
        HandshakeReader,
        Record,
        RecordReader,
    )
    from proxy.pcap.tlsstream import TlsStream

TARGET = "tls"
CUT = 97  # bytes per piece when the transcript is fed again, cut differently
Chunk = tuple[bool, bytes]


def split(data: bytes) -> tuple[bytes, list[Chunk]]:
    """(key log text, [(from_client, bytes)]) from the input's framing; lenient."""
    n = int.from_bytes(data[:2], "big")
    keylog, rest = data[2 : 2 + n], data[2 + n :]
    chunks: list[Chunk] = []
    pos = 0
    while pos + 3 <= len(rest):
        length = int.from_bytes(rest[pos + 1 : pos + 3], "big")
        chunks.append((rest[pos] % 2 == 0, rest[pos + 3 : pos + 3 + length]))
        pos += 3 + length
    return keylog, chunks


def join(keylog: bytes, chunks: list[Chunk]) -> bytes:
    """The inverse of ``split`` (for the seed maker)."""
    out = len(keylog).to_bytes(2, "big") + keylog
    for from_client, data in chunks:
        for i in range(0, max(len(data), 1), 0xFFFF):
            piece = data[i : i + 0xFFFF]
            out += (b"\x00" if from_client else b"\x01") + len(piece).to_bytes(2, "big") + piece
    return out


class _Conn:
    client = Endpoint("192.0.2.1", 50000)
    server = Endpoint("192.0.2.2", 443)
    connection = 1

    def __init__(self) -> None:
        self.records: list[CapturedExchange] = []

    def next_id(self) -> str:
        return f"1-{len(self.records) + 1}"

    def emit(self, record: CapturedExchange) -> None:
        self.records.append(record)


def run(keylog: KeyLog, chunks: list[Chunk]) -> list[CapturedExchange]:
    conn = _Conn()
    stream = TlsStream(conn, 0.0, keylog, preview=64)
    for i, (from_client, data) in enumerate(chunks):
        stream.data(from_client, float(i), data)
        assert stream.c.records.buffered <= MAX_CIPHERTEXT + 5
        assert stream.s.records.buffered <= MAX_CIPHERTEXT + 5
    stream.fin(True, 1e6)
    stream.close(1e6, "fin")
    return conn.records


def check_stream(keylog_text: bytes, chunks: list[Chunk]) -> None:
    records = run(KeyLog.from_text(keylog_text), chunks)
    assert records and records[-1].kind == "tls", records
    last = records[-1]
    assert all(r.kind == "http" for r in records[:-1]), records
    up = sum(len(d) for c, d in chunks if c)
    down = sum(len(d) for c, d in chunks if not c)
    assert (last.bytes_client_to_server, last.bytes_server_to_client) == (up, down)
    assert last.tls is not None
    for r in records[:-1]:
        assert r.tls is not None and r.tls.decrypted
        assert (r.tls.version, r.tls.cipher) == (last.tls.version, last.tls.cipher)
    cut = [(c, d[i : i + CUT]) for c, d in chunks for i in range(0, len(d), CUT)]
    if len(cut) > len(chunks):
        again = run(KeyLog.from_text(keylog_text), cut)
        assert [(r.kind, r.errors, r.tls, r.method, r.status) for r in again] == [
            (r.kind, r.errors, r.tls, r.method, r.status) for r in records
        ], "records depend on how the stream was cut"


def records_of(pieces: list[bytes]) -> tuple[list[Record], str | None]:
    reader, out = RecordReader(), []
    for piece in pieces:
        out += reader.feed(piece)
        assert reader.buffered <= MAX_CIPHERTEXT + 5
    return out, reader.error


def check_records(data: bytes) -> None:
    whole, failed = records_of([data])
    cuts = [data[i : i + 7] for i in range(0, len(data), 7)]
    pieces, failed2 = records_of(cuts)
    assert failed == failed2, "an error depends on the cut"
    assert pieces == whole, "records depend on the cut"
    for record in whole:
        for _mtype, body in HandshakeReader().feed(record.fragment):
            if body is not None:
                check_parsers(body)


def check_parsers(body: bytes) -> None:
    for parse in (
        parse_server_hello,
        parse_encrypted_extensions,
        parse_client_hello_body,
        lambda b: parse_certificate(b, True),
        lambda b: parse_certificate(b, False),
    ):
        with contextlib.suppress(HandshakeError):
            parse(body)


def one_input(data: bytes) -> None:
    keylog, chunks = split(data)
    check_stream(keylog, chunks)
    for from_client in (True, False):
        check_records(b"".join(d for c, d in chunks if c == from_client))


if __name__ == "__main__":
    fuzz_main(one_input)
