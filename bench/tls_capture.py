"""A synthetic HTTPS capture and its key log, for ``bench_analyze.py --tls``.

Real TLS, made in memory: Python's ``ssl`` (OpenSSL) client and server over
``MemoryBIO`` pairs, a full handshake per connection, the client's secrets
appended to a key log (``SSLContext.keylog_filename``, the NSS format that
``SSLKEYLOGFILE`` writes). The ciphertext each side sends is written as a
TCP conversation to port 443 with ``proxy.pcap.writer``. The mix rotates
through four kinds of connection: TLS 1.2 (ECDHE-ECDSA with AES-128-GCM or
ChaCha20-Poly1305) and TLS 1.3 (OpenSSL's default suite), each with ALPN
http/1.1 (1-6 keep-alive exchanges) or h2 (1-6 streams, made with the ``h2``
library). Bodies and sizes come from ``bench_analyze``'s seeded mix.
"""

from __future__ import annotations

import contextlib
import random
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.settings

from bench.origin import BenchPKI, make_bench_pki
from proxy.pcap.writer import PcapngWriter

Chunk = tuple[bool, bytes]  # (from the client, ciphertext)
KINDS = (("1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"), ("1.3", ""),
         ("1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"), ("1.3", ""))  # fmt: skip


class _Pair:
    """A client and a server SSLObject wired through memory; every flight is kept."""

    def __init__(self, client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext) -> None:
        self.c_in, self.c_out, self.s_in, self.s_out = (ssl.MemoryBIO() for _ in range(4))
        self.client = client_ctx.wrap_bio(self.c_in, self.c_out, server_hostname="a.bench.test")
        self.server = server_ctx.wrap_bio(self.s_in, self.s_out, server_side=True)
        self.chunks: list[Chunk] = []
        for _ in range(10):
            for end in (self.client, self.server):
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
            if not (self._move(True) | self._move(False)):
                break

    def _move(self, from_client: bool) -> bool:
        wire = (self.c_out if from_client else self.s_out).read()
        if wire:
            self.chunks.append((from_client, wire))
            (self.s_in if from_client else self.c_in).write(wire)
        return bool(wire)

    def send(self, from_client: bool, plain: bytes) -> bytes:
        """``plain`` from one side; what the other side reads."""
        (self.client if from_client else self.server).write(plain)
        self._move(from_client)
        reader, out = self.server if from_client else self.client, bytearray()
        while True:
            try:
                data = reader.read(1 << 20)
            except ssl.SSLWantReadError:
                return bytes(out)
            if not data:
                return bytes(out)
            out += data


def _contexts(pki: BenchPKI, keys: Path, version: str, suite: str, alpn: str) -> tuple[
    ssl.SSLContext, ssl.SSLContext
]:  # fmt: skip
    client = ssl.create_default_context(cafile=str(pki.ca_pem))
    client.keylog_filename = str(keys)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(pki.cert_pem), str(pki.key_pem))
    for ctx in (client, server):
        ctx.set_alpn_protocols([alpn])
        if version == "1.2":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(suite)
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return client, server


Exchange = tuple[bytes, bytes]  # an HTTP/1.1 request and its response, or h2 (headers, body)


def _http1(pair: _Pair, exchanges: list[Exchange]) -> int:
    for request, response in exchanges:
        assert pair.send(True, request) == request
        assert len(pair.send(False, response)) == len(response)
    return len(exchanges)


def _h2(pair: _Pair, exchanges: list[Exchange]) -> int:
    """One stream per exchange: the request line's method and path, the response's body."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    client.increment_flow_control_window(1 << 30)
    server.initiate_connection()
    server.receive_data(pair.send(True, client.data_to_send()))
    client.receive_data(pair.send(False, server.data_to_send()))
    server.receive_data(pair.send(True, client.data_to_send()))
    for request, response in exchanges:
        method, path = request.split(b" ", 2)[:2]
        body = response.split(b"\r\n\r\n", 1)[1]
        sid = client.get_next_available_stream_id()
        headers = [(b":method", method), (b":scheme", b"https"),
                   (b":authority", b"a.bench.test"), (b":path", path)]  # fmt: skip
        client.send_headers(sid, headers, end_stream=method != b"POST")
        if method == b"POST":
            client.send_data(sid, request.split(b"\r\n\r\n", 1)[1], end_stream=True)
        server.receive_data(pair.send(True, client.data_to_send()))
        server.send_headers(sid, [(b":status", b"200"), (b"server", b"bench")])
        for i in range(0, len(body), 16384):
            server.send_data(sid, body[i : i + 16384], end_stream=i + 16384 >= len(body))
        if not body:
            server.send_data(sid, b"", end_stream=True)
        client.receive_data(pair.send(False, server.data_to_send()))
        if out := client.data_to_send():
            server.receive_data(pair.send(True, out))
    return len(exchanges)


def generate_tls(
    path: Path,
    keys: Path,
    size_mb: int,
    make: Callable[[random.Random, int], Exchange],
    seed: int = 1,
) -> tuple[int, int]:
    """Write the capture and the key log; returns (packets, requests)."""
    rng = random.Random(seed)
    keys.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as d:
        pki = make_bench_pki(Path(d))
        contexts = [
            _contexts(pki, keys, version, suite, alpn)
            for version, suite in KINDS
            for alpn in ("http/1.1", "h2")
        ]
        return _write(path, size_mb, rng, contexts, make)


def _write(
    path: Path, size_mb: int, rng: random.Random,
    contexts: list[tuple[ssl.SSLContext, ssl.SSLContext]],
    make: Callable[[random.Random, int], Exchange],
) -> tuple[int, int]:  # fmt: skip
    ts, requests, conns = 1_700_000_000.0, 0, 0
    with path.open("wb", buffering=1 << 20) as f:
        w = PcapngWriter(f)
        while f.tell() < size_mb * 1_000_000:
            client_ctx, server_ctx = contexts[conns % len(contexts)]
            h2_alpn = conns % 2 == 1  # contexts alternate http/1.1, h2
            conns += 1
            exchanges = [make(rng, requests + i) for i in range(rng.randint(1, 6))]
            pair = _Pair(client_ctx, server_ctx)
            requests += (_h2 if h2_alpn else _http1)(pair, exchanges)
            client = (f"10.{conns >> 16 & 255}.{conns >> 8 & 255}.{conns & 255 or 1}",
                      40000 + conns % 20000)  # fmt: skip
            conv = w.open_conversation(client, ("192.0.2.80", 443), ts)
            for from_client, wire in pair.chunks:
                ts += 0.0005
                conv.data(ts, from_client, wire)
            ts += 0.0005
            conv.close(ts)
        return w.packets, requests
