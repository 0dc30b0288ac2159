"""Regenerate the ``tls`` fuzz seeds: ``python -m tests.fuzz.make_tls_seeds``.

Each seed is a key log and a transcript in ``fuzz_tls.py``'s framing:

* ``seed-rfc8448.bin``: RFC 8448 §3 with its traffic secrets;
* ``seed-tls12-*.bin`` / ``seed-tls13-*.bin``: Python's ``ssl`` (OpenSSL)
  client and server over ``MemoryBIO`` pairs, no network, one per cipher
  suite, with an HTTP/1.1 exchange after the handshake and the client's key
  log; ``-h2`` negotiates h2 and carries an HTTP/2 exchange made with the
  ``h2`` library (preface, SETTINGS, HEADERS, DATA), ``-nokeys`` has an
  empty key log. ``python -m tests.fuzz.make_tls_seeds h2`` remakes the h2
  seed only.

Certificates are made afresh and handshakes carry random bytes, so rerunning
this changes the seeds.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
import tempfile
from pathlib import Path

import h2.config
import h2.connection

from tests.fuzz.fuzz_tls import Chunk, join
from tests.support.certs import CertAuthority
from tests.unit import rfc8448_vectors as v

CORPUS = Path(__file__).resolve().parent / "corpus" / "tls"
REQUEST = b"GET /seed HTTP/1.1\r\nHost: localhost\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def rfc8448() -> bytes:
    r = v.CLIENT_HELLO_RECORD[11:43].hex()
    keylog = (
        f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {v.CLIENT_HS_SECRET.hex()}\n"
        f"SERVER_HANDSHAKE_TRAFFIC_SECRET {r} {v.SERVER_HS_SECRET.hex()}\n"
        f"CLIENT_TRAFFIC_SECRET_0 {r} {v.CLIENT_AP_SECRET.hex()}\n"
        f"SERVER_TRAFFIC_SECRET_0 {r} {v.SERVER_AP_SECRET.hex()}\n"
    ).encode()
    chunks = [
        (True, v.CLIENT_HELLO_RECORD),
        (False, v.SERVER_HELLO_RECORD + v.SERVER_HS_RECORD),
        (True, v.CLIENT_FINISHED_RECORD),
        (False, v.NEW_SESSION_TICKET_RECORD),
        (True, v.CLIENT_APP_RECORD),
        (False, v.SERVER_APP_RECORD),
        (True, v.CLIENT_ALERT_RECORD),
        (False, v.SERVER_ALERT_RECORD),
    ]
    return join(keylog, chunks)


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO, from_client: bool, out: list[Chunk]) -> bool:
    data = src.read()
    if data:
        out.append((from_client, data))
        dst.write(data)
    return bool(data)


def h2_exchange() -> tuple[bytes, bytes]:
    """What an h2 client and server send for one GET with a 5-byte answer."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    headers = [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
               (":path", "/seed")]  # fmt: skip
    client.send_headers(1, headers, end_stream=True)
    request = client.data_to_send()
    server.initiate_connection()
    server.receive_data(request)
    server.send_headers(1, [(":status", "200"), ("content-length", "5")])
    server.send_data(1, b"hello", end_stream=True)
    return request, server.data_to_send()


def session(tmp: Path, cert: Path, ca: Path, version: str, suite: str, alpn: str) -> bytes:
    """A handshake and one HTTP exchange between in-memory OpenSSL endpoints."""
    request, response = h2_exchange() if alpn == "h2" else (REQUEST, RESPONSE)
    keys = tmp / f"{version}-{suite}-{alpn.replace('/', '')}.keys"
    client_ctx = ssl.create_default_context(cafile=str(ca))
    client_ctx.keylog_filename = str(keys)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert))
    for ctx in (client_ctx, server_ctx):
        ctx.set_alpn_protocols([alpn])
        if version == "tls12":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(suite)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    chunks: list[Chunk] = []
    for _ in range(10):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        moved = _pump(c_out, s_in, True, chunks) | _pump(s_out, c_in, False, chunks)
        if not moved:
            break
    client.write(request)
    _pump(c_out, s_in, True, chunks)
    assert server.read(1 << 16) == request
    server.write(response)
    _pump(s_out, c_in, False, chunks)
    assert client.read(1 << 16) == response
    return join(keys.read_bytes(), chunks)


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["h2"]:
        with tempfile.TemporaryDirectory() as d:
            ca = CertAuthority.create(Path(d) / "ca")
            cert = ca.server_cert(["localhost"], "server.pem")
            seed = session(Path(d), cert, ca.cert_path, "tls13", "", "h2")
            (CORPUS / "seed-tls13-aes256-h2.bin").write_bytes(seed)
        return
    (CORPUS / "seed-rfc8448.bin").write_bytes(rfc8448())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ca = CertAuthority.create(tmp / "ca")
        cert = ca.server_cert(["localhost"], "server.pem")
        sessions = [
            ("tls12", "ECDHE-ECDSA-AES128-GCM-SHA256", "http/1.1"),
            ("tls12", "ECDHE-ECDSA-AES256-GCM-SHA384", "http/1.1"),
            ("tls12", "ECDHE-ECDSA-CHACHA20-POLY1305", "http/1.1"),
            ("tls13", "", "http/1.1"),
            ("tls13", "", "h2"),
        ]
        for version, suite, alpn in sessions:
            seed = session(tmp, cert, ca.cert_path, version, suite, alpn)
            name = f"seed-{version}-{suite.lower() or 'aes256'}-{alpn.replace('/', '')}.bin"
            (CORPUS / name).write_bytes(seed)
        seed = session(tmp, cert, ca.cert_path, "tls13", "", "http/1.1")
        n = int.from_bytes(seed[:2], "big")
        (CORPUS / "seed-tls13-nokeys.bin").write_bytes(b"\x00\x00" + seed[2 + n :])


if __name__ == "__main__":
    main()
