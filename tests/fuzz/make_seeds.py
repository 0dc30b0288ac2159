"""Regenerate the generated seed corpora: ``python -m tests.fuzz.make_seeds``.

* ``corpus/clienthello/seed-*.bin``: real ClientHellos from Python's ``ssl``
  module (OpenSSL), taken from a client ``SSLObject`` over ``MemoryBIO``s
  with no network: TLS 1.3 and 1.2, with and without SNI and ALPN, and one
  refragmented over several handshake records.
* ``corpus/pcap/seed-*``: small captures written with
  ``proxy.pcap.writer.PcapngWriter`` (HTTP, TLS, pipelining, chunked, RST,
  IPv6, raw-IP link type, HTTP/2 with prior knowledge and by
  ``Upgrade: h2c`` made with the ``h2`` library) and the same conversations
  rewritten as libpcap files in both byte orders and timestamp resolutions.
  ``python -m tests.fuzz.make_seeds h2c`` writes the HTTP/2 seed only.

``corpus/pcap/real-tcpdump-*.pcap`` is not generated here: it is a real
libpcap capture made once with tcpdump (see corpus/README.md). ClientHellos
carry random bytes, so rerunning this changes the clienthello seeds.
"""

from __future__ import annotations

import contextlib
import io
import ssl
import struct
import sys
from pathlib import Path

import h2.config
import h2.connection

from proxy.pcap.decode import LINKTYPE_ETHERNET, LINKTYPE_RAW
from proxy.pcap.reader import read_packets
from proxy.pcap.writer import PcapngWriter

CORPUS = Path(__file__).resolve().parent / "corpus"


# -- ClientHello -----------------------------------------------------------------------


def client_hello(
    sni: str | None, alpn: list[str] | None = None, maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> bytes:  # fmt: skip
    """The first flight of an OpenSSL client: one ClientHello in TLS records."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if maximum is not None:
        ctx.maximum_version = maximum
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        tls.do_handshake()
    return outgoing.read()


def refragment(hello: bytes, size: int) -> bytes:
    """The same handshake message spread over records of ``size`` bytes."""
    version, length = hello[1:3], int.from_bytes(hello[3:5], "big")
    body = hello[5 : 5 + length]
    out = b""
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += b"\x16" + version + len(part).to_bytes(2, "big") + part
    return out


def clienthello_seeds() -> dict[str, bytes]:
    tls13 = client_hello("api.example.com", ["h2", "http/1.1"])
    return {
        "seed-tls13-sni-alpn.bin": tls13,
        "seed-tls13-no-sni.bin": client_hello(None),
        "seed-tls12-sni.bin": client_hello("www.example.com", None, ssl.TLSVersion.TLSv1_2),
        "seed-tls12-few-ciphers-alpn.bin": client_hello(
            "x.svc", ["http/1.1"], ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256"
        ),
        "seed-tls13-fragmented.bin": refragment(tls13, 61),
        "seed-tls13-with-trailing-record.bin": tls13 + b"\x17\x03\x03\x00\x04abcd",
    }


# -- captures ----------------------------------------------------------------------------

REQUEST = b"GET /v1/x?a=1 HTTP/1.1\r\nHost: api.svc\r\nUser-Agent: seed\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;x=y\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"
)
POST = b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\na=1&b=2"


def capture(linktype: int, build: str) -> bytes:
    out = io.BytesIO()
    w = PcapngWriter(out, linktype)
    if build == "http":
        c = w.open_conversation(("10.0.0.1", 40000), ("10.0.0.2", 80), 1_700_000_000.0, "flow-1")
        c.data(1_700_000_000.1, True, REQUEST)
        c.data(1_700_000_000.2, False, RESPONSE)
        c.close(1_700_000_000.3)
    elif build == "pipelined-chunked-v6":
        c = w.open_conversation(("fd00::1", 40001), ("fd00::2", 8080), 1.0)
        c.data(1.1, True, REQUEST + POST)
        c.data(1.2, False, CHUNKED + RESPONSE)
        c.close(1.3, from_client=False)
    elif build == "tls-and-rst":
        hello = client_hello("api.example.com", ["h2"])
        c = w.open_conversation(("192.168.1.5", 51000), ("93.184.216.34", 443), 5.0)
        c.data(5.1, True, hello)
        c.data(5.2, False, b"\x16\x03\x03\x00\x02\x02\x00")
        c.close(5.3, rst=True)
        d = w.open_conversation(("192.168.1.5", 51001), ("192.168.1.9", 6379), 6.0)
        d.data(6.1, True, b"PING\r\n")
        d.data(6.2, False, b"+PONG\r\n")
        d.close(6.3)
    elif build == "connect-tunnel":
        c = w.open_conversation(("10.0.0.1", 40002), ("10.0.0.3", 3128), 9.0)
        c.data(9.1, True, b"CONNECT a.svc:443 HTTP/1.1\r\nHost: a.svc:443\r\n\r\n")
        c.data(9.2, False, b"HTTP/1.1 200 Connection established\r\n\r\n")
        c.data(9.3, True, b"\x16\x03\x01\x00\x01\x01")
        c.close(9.4)
    elif build == "h2c":
        _h2c(w)
    w.flush()
    return out.getvalue()


def _h2_peers() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    return client, server


def _h2c(w: PcapngWriter) -> None:
    """Prior knowledge (a GET, a POST with padding and trailers) and an upgrade."""
    get = [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/x")]
    client, server = _h2_peers()
    c = w.open_conversation(("10.0.0.1", 40010), ("10.0.0.2", 8080), 20.0)
    client.initiate_connection()
    client.send_headers(1, get, end_stream=True)
    client.send_headers(3, [(":method", "POST"), *get[1:3], (":path", "/form")])
    client.send_data(3, b"a=1&b=2", end_stream=True, pad_length=5)
    up = client.data_to_send()
    c.data(20.1, True, up)
    server.initiate_connection()
    server.receive_data(up)
    for sid in (1, 3):
        server.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
        server.send_data(sid, b"hello", end_stream=sid == 1)
    server.send_headers(3, [("x-trailer", "1")], end_stream=True)
    c.data(20.2, False, server.data_to_send())
    c.close(20.3)
    client, server = _h2_peers()
    u = w.open_conversation(("10.0.0.1", 40011), ("10.0.0.2", 8080), 21.0)
    settings = client.initiate_upgrade_connection()
    u.data(
        21.1,
        True,
        b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n" + client.data_to_send(),
    )
    server.initiate_upgrade_connection(settings)
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"upgraded", end_stream=True)
    u.data(
        21.2,
        False,
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        b"Upgrade: h2c\r\n\r\n" + server.data_to_send(),
    )
    u.close(21.3)


def as_libpcap(pcapng: bytes, order: str = "<", nano: bool = False) -> bytes:
    """The packets of a pcapng capture as a libpcap file (pcap-savefile(5))."""
    packets = list(read_packets(io.BytesIO(pcapng)))
    linktype = packets[0].linktype if packets else LINKTYPE_ETHERNET
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    scale = 1_000_000_000 if nano else 1_000_000
    for p in packets:
        sec = int(p.ts)
        frac = min(round((p.ts - sec) * scale), scale - 1)
        out += struct.pack(order + "IIII", sec, frac, len(p.data), len(p.data)) + p.data
    return out


def pcap_seeds() -> dict[str, bytes]:
    http = capture(LINKTYPE_ETHERNET, "http")
    v6 = capture(LINKTYPE_RAW, "pipelined-chunked-v6")
    tls = capture(LINKTYPE_ETHERNET, "tls-and-rst")
    return {
        "seed-http.pcapng": http,
        "seed-pipelined-chunked-v6-raw.pcapng": v6,
        "seed-tls-and-rst.pcapng": tls,
        "seed-connect-tunnel.pcapng": capture(LINKTYPE_ETHERNET, "connect-tunnel"),
        "seed-h2c.pcapng": capture(LINKTYPE_ETHERNET, "h2c"),
        "seed-http-le-usec.pcap": as_libpcap(http),
        "seed-v6-be-nsec.pcap": as_libpcap(v6, ">", nano=True),
    }


def main() -> None:
    if sys.argv[1:] == ["h2c"]:
        (CORPUS / "pcap" / "seed-h2c.pcapng").write_bytes(capture(LINKTYPE_ETHERNET, "h2c"))
        return
    for target, seeds in (("clienthello", clienthello_seeds()), ("pcap", pcap_seeds())):
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
            print(f"{folder / name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
