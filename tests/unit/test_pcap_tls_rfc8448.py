"""TLS 1.3 key schedule and record layer against RFC 8448 §3, then the whole trace
through ``TlsStream`` with a key log made of the trace's secrets."""

from __future__ import annotations

from proxy.pcap.keylog import KeyLog
from proxy.pcap.records import CapturedExchange, Endpoint
from proxy.pcap.tlskeys import SUITES, Decryptor, hkdf_expand_label, traffic_keys13
from proxy.pcap.tlsrecord import ContentType, HandshakeReader, RecordReader
from proxy.pcap.tlsstream import TlsStream
from tests.unit import rfc8448_vectors as v

AES128 = SUITES[0x1301]
CLIENT_RANDOM = v.CLIENT_HELLO_RECORD[11:43]


def _open(secret: bytes, *records: bytes) -> list[tuple[int, bytes]]:
    d = Decryptor(AES128, traffic_keys13(AES128, secret))
    out = []
    for raw in records:
        (rec,) = RecordReader().feed(raw)
        out.append(d.open(rec.type, rec.version, rec.fragment))
    return out


def test_hkdf_expand_label_gives_the_traces_keys() -> None:
    # RFC 8448 §3: "key info (13 octets): 00 10 09 74 6c 73 31 33 20 6b 65 79 00"
    assert hkdf_expand_label(v.SERVER_HS_SECRET, b"key", b"", 16, AES128.hash) == v.SERVER_HS_KEY
    for secret, key, iv in (
        (v.SERVER_HS_SECRET, v.SERVER_HS_KEY, v.SERVER_HS_IV),
        (v.CLIENT_HS_SECRET, v.CLIENT_HS_KEY, v.CLIENT_HS_IV),
        (v.SERVER_AP_SECRET, v.SERVER_AP_KEY, v.SERVER_AP_IV),
        (v.CLIENT_AP_SECRET, v.CLIENT_AP_KEY, v.CLIENT_AP_IV),
    ):
        keys = traffic_keys13(AES128, secret)
        assert (keys.key, keys.iv) == (key, iv)


def test_server_handshake_record_decrypts() -> None:
    ((ctype, plain),) = _open(v.SERVER_HS_SECRET, v.SERVER_HS_RECORD)
    assert ctype == ContentType.HANDSHAKE
    assert plain.startswith(v.ENCRYPTED_EXTENSIONS) and plain.endswith(v.SERVER_FINISHED)
    types = [t for t, _ in HandshakeReader().feed(plain)]
    assert types == [8, 11, 15, 20]  # EncryptedExtensions, Certificate, CertificateVerify, Finished


def test_client_finished_and_application_data_decrypt() -> None:
    ((ctype, fin),) = _open(v.CLIENT_HS_SECRET, v.CLIENT_FINISHED_RECORD)
    assert ctype == ContentType.HANDSHAKE and fin[0] == 20 and len(fin) == 4 + 32
    client = _open(v.CLIENT_AP_SECRET, v.CLIENT_APP_RECORD, v.CLIENT_ALERT_RECORD)
    assert client == [
        (ContentType.APPLICATION_DATA, v.APP_DATA),
        (ContentType.ALERT, v.CLOSE_NOTIFY),
    ]
    server = _open(
        v.SERVER_AP_SECRET, v.NEW_SESSION_TICKET_RECORD, v.SERVER_APP_RECORD, v.SERVER_ALERT_RECORD
    )
    assert [t for t, _ in server] == [ContentType.HANDSHAKE, ContentType.APPLICATION_DATA, 21]
    assert server[0][1][0] == 4  # NewSessionTicket
    assert server[1][1] == v.APP_DATA and server[2][1] == v.CLOSE_NOTIFY


def test_a_flipped_bit_fails_the_tag() -> None:
    bad = bytearray(v.CLIENT_APP_RECORD)
    bad[20] ^= 1
    d = Decryptor(AES128, traffic_keys13(AES128, v.CLIENT_AP_SECRET))
    (rec,) = RecordReader().feed(bytes(bad))
    try:
        d.open(rec.type, rec.version, rec.fragment)
    except ValueError as e:
        assert "authentication tag" in str(e)
    else:
        raise AssertionError("a corrupt record decrypted")
    assert d.seq == 0


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


def trace_keylog() -> KeyLog:
    r = CLIENT_RANDOM.hex()
    return KeyLog.from_text(
        (
            "# RFC 8448 section 3\n"
            f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {v.CLIENT_HS_SECRET.hex()}\n"
            f"SERVER_HANDSHAKE_TRAFFIC_SECRET {r} {v.SERVER_HS_SECRET.hex()}\n"
            f"CLIENT_TRAFFIC_SECRET_0 {r} {v.CLIENT_AP_SECRET.hex()}\n"
            f"SERVER_TRAFFIC_SECRET_0 {r} {v.SERVER_AP_SECRET.hex()}\n"
            f"EXPORTER_SECRET {r} {'00' * 32}\n"
        ).encode()
    )


def trace_steps() -> list[tuple[bool, bytes]]:
    return [
        (True, v.CLIENT_HELLO_RECORD),
        (False, v.SERVER_HELLO_RECORD + v.SERVER_HS_RECORD),
        (True, v.CLIENT_FINISHED_RECORD),
        (False, v.NEW_SESSION_TICKET_RECORD),
        (True, v.CLIENT_APP_RECORD),
        (False, v.SERVER_APP_RECORD),
        (True, v.CLIENT_ALERT_RECORD),
        (False, v.SERVER_ALERT_RECORD),
    ]


def run_stream(steps: list[tuple[bool, bytes]], keylog: KeyLog | None) -> list[CapturedExchange]:
    conn = _Conn()
    stream = TlsStream(conn, 1.0, keylog, preview=64)
    for i, (from_client, data) in enumerate(steps):
        stream.data(from_client, 2.0 + i, data)
    stream.close(20.0, "fin")
    return conn.records


def test_the_whole_trace_decrypts_in_the_stream() -> None:
    keylog = trace_keylog()
    assert len(keylog) == 4 and keylog.stats.skipped_lines == 1
    *http, tls = run_stream(trace_steps(), keylog)
    assert tls.kind == "tls" and tls.sni == "server"
    assert tls.tls is not None
    assert (tls.tls.version, tls.tls.cipher, tls.tls.decrypted) == (
        "TLSv1.3",
        "TLS_AES_128_GCM_SHA256",
        True,
    )
    assert (tls.tls.cert_subject, tls.tls.cert_issuer) == ("CN=rsa", "CN=rsa")
    assert not any("decrypt" in e for e in tls.errors), tls.errors
    # The trace's application data (bytes 00..31) is not HTTP: the decoder says so,
    # which shows the plaintext reached it.
    assert http and http[0].errors and http[0].errors[0].startswith("request:")


def test_without_keys_the_trace_is_recorded_undecrypted() -> None:
    (tls,) = run_stream(trace_steps(), None)
    assert tls.tls is not None and (tls.tls.version, tls.tls.decrypted) == ("TLSv1.3", False)
    assert tls.tls.cert_subject is None and tls.errors == ()
    (tls,) = run_stream(trace_steps(), KeyLog.from_text(b""))
    assert tls.errors == ("no CLIENT_HANDSHAKE_TRAFFIC_SECRET in the key log",)


def test_one_byte_at_a_time_gives_the_same_records() -> None:
    whole = run_stream(trace_steps(), trace_keylog())
    bytewise = [(c, data[i : i + 1]) for c, data in trace_steps() for i in range(len(data))]
    split = run_stream(bytewise, trace_keylog())
    assert [(r.kind, r.errors, r.tls) for r in split] == [(r.kind, r.errors, r.tls) for r in whole]


def test_a_corrupt_record_stops_that_direction_only() -> None:
    steps = trace_steps()
    bad = bytearray(v.CLIENT_APP_RECORD)
    bad[-1] ^= 0x80
    steps[4] = (True, bytes(bad))
    *_, tls = run_stream(steps, trace_keylog())
    assert tls.errors == (
        "client record could not be decrypted: record 0: authentication tag does not verify",
    )
