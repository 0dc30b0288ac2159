"""TLS record framing, the key log reader, and what decrypted plaintext becomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli.analyze_cmd import main
from proxy.pcap.keylog import KeyLog, Label
from proxy.pcap.tlsrecord import MAX_CIPHERTEXT, MAX_HANDSHAKE, HandshakeReader, RecordReader
from tests.fuzz import fuzz_tls
from tests.fuzz._harness import CORPUS_ROOT

RANDOM = bytes(range(32))


def record(ctype: int, body: bytes) -> bytes:
    return bytes((ctype, 3, 3)) + len(body).to_bytes(2, "big") + body


def test_records_before_a_bad_header_are_kept() -> None:
    good = record(22, b"abc") + record(23, b"x" * 100)
    reader = RecordReader()
    out = reader.feed(good + b"\x63\x03\x03\x00\x01z" + record(23, b"lost"))
    assert [(r.type, r.fragment) for r in out] == [(22, b"abc"), (23, b"x" * 100)]
    assert reader.error == "record type 99 is not a TLS content type"
    assert reader.feed(record(23, b"more")) == [] and reader.buffered == 0


def test_an_oversized_record_is_refused_before_it_is_buffered() -> None:
    reader = RecordReader()
    assert reader.feed(b"\x17\x03\x03" + (MAX_CIPHERTEXT + 1).to_bytes(2, "big")) == []
    assert reader.error is not None and "exceeds" in reader.error
    assert reader.buffered == 0


def test_a_record_split_anywhere_is_one_record() -> None:
    raw = record(23, bytes(range(200)))
    for cut in (1, 4, 5, 6, 100, len(raw) - 1):
        reader = RecordReader()
        assert reader.feed(raw[:cut]) == []
        assert reader.buffered == cut
        (r,) = reader.feed(raw[cut:])
        assert (r.type, r.version, r.fragment, r.size) == (23, 0x0303, bytes(range(200)), 205)
        assert reader.buffered == 0


def test_handshake_messages_span_records_and_huge_ones_are_skipped() -> None:
    hs = HandshakeReader()
    message = b"\x02\x00\x00\x05hello"
    assert hs.feed(message[:3]) == [] and hs.pending
    assert hs.feed(message[3:] + b"\x14\x00") == [(2, b"hello")]
    assert hs.feed(b"\x00\x01!") == [(20, b"!")] and not hs.pending
    big = MAX_HANDSHAKE + 10
    assert hs.feed(b"\x0b" + big.to_bytes(3, "big") + b"c" * 1000) == []
    assert hs.feed(b"c" * (big - 1000 - 5)) == []
    assert hs.feed(b"c" * 5 + b"\x14\x00\x00\x00") == [(11, None), (20, b"")]


def test_key_log_lines() -> None:
    r, secret = RANDOM.hex(), "ab" * 48
    log = KeyLog.from_text(
        (
            "# a comment\n\n"
            f"CLIENT_RANDOM {r} {secret}\n"
            f"CLIENT_EARLY_TRAFFIC_SECRET {r} {'cd' * 32}\n"  # a label not used here
            f"SERVER_TRAFFIC_SECRET_0 {r} zz\n"  # not hex
            f"CLIENT_TRAFFIC_SECRET_0 {r[:10]} {'cd' * 32}\n"  # short random
            f"CLIENT_TRAFFIC_SECRET_0 {r} {'cd' * 32}"  # no final newline
        ).encode()
    )
    assert log.lookup(RANDOM, Label.CLIENT_RANDOM) == bytes.fromhex(secret)
    assert log.lookup(RANDOM, Label.CLIENT_TRAFFIC_SECRET_0) == b"\xcd" * 32
    assert log.lookup(RANDOM, Label.SERVER_TRAFFIC_SECRET_0) is None
    assert (len(log), log.stats.skipped_lines) == (2, 3)


def test_a_growing_key_log_is_read_again_when_a_secret_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# nothing yet\nCLIENT_RANDOM ")
    log = KeyLog.from_file(str(path))
    assert log.lookup(RANDOM, Label.CLIENT_RANDOM) is None
    with path.open("a") as f:
        f.write(f"{RANDOM.hex()} {'11' * 48}\n")
    assert log.lookup(RANDOM, Label.CLIENT_RANDOM) == b"\x11" * 48


def _seed(name: str) -> list[tuple[str, tuple[str, ...], str | None, bool]]:
    keylog, chunks = fuzz_tls.split((CORPUS_ROOT / "tls" / name).read_bytes())
    records = fuzz_tls.run(KeyLog.from_text(keylog), chunks)
    return [(r.kind, r.errors, r.url, bool(r.tls and r.tls.decrypted)) for r in records]


def test_h2_is_decrypted_and_decoded() -> None:
    assert _seed("seed-tls13-aes256-h2.bin") == [
        ("http", (), "https://localhost/seed", True),
        ("tls", (), None, True),
    ]


def test_tls12_in_memory_session_decodes_https() -> None:
    for suite in ("aes128-gcm-sha256", "aes256-gcm-sha384", "chacha20-poly1305"):
        assert _seed(f"seed-tls12-ecdhe-ecdsa-{suite}-http1.1.bin") == [
            ("http", (), "https://localhost/seed", True),
            ("tls", (), None, True),
        ]


def test_analyze_refuses_a_key_log_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "empty.pcap"
    capture.write_bytes(b"")
    assert main([str(capture), "--keylog", str(tmp_path / "missing.txt")]) == 1
    assert "cannot read key log" in capsys.readouterr().err
