"""The sans-IO ClientHello reader: real hellos, every split, hand-made edge cases, fuzzing."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.tls.clienthello import (
    ClientHello,
    ClientHelloError,
    looks_like_tls,
    parse_client_hello,
)


def real_hello(
    host: str | None = "example.com",
    alpn: tuple[str, ...] = ("h2", "http/1.1"),
    max_version: ssl.TLSVersion | None = None,
) -> bytes:
    """The bytes Python's own TLS client sends first, captured through a MemoryBIO."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if max_version is not None:
        context.maximum_version = max_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=host)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


HELLO = real_hello()


def record(payload: bytes, content_type: int = 0x16, version: bytes = b"\x03\x01") -> bytes:
    return bytes([content_type]) + version + len(payload).to_bytes(2, "big") + payload


def refragment(data: bytes, size: int) -> bytes:
    """Re-split the handshake message inside ``data`` into records of ``size`` bytes."""
    message = data[5:]
    return b"".join(record(message[i : i + size]) for i in range(0, len(message), size))


def vec(data: bytes, length_size: int) -> bytes:
    return len(data).to_bytes(length_size, "big") + data


def ext(ext_type: int, body: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + vec(body, 2)


def sni_ext(*names: bytes, name_type: int = 0) -> bytes:
    return ext(0, vec(b"".join(bytes([name_type]) + vec(n, 2) for n in names), 2))


def make_hello(
    extensions: bytes | None = b"",
    *,
    version: bytes = b"\x03\x03",
    session_id: bytes = b"",
    suites: bytes = b"\x13\x01",
    compression: bytes = b"\x00",
    handshake_type: int = 1,
) -> bytes:
    body = version + b"\x00" * 32 + vec(session_id, 1) + vec(suites, 2) + vec(compression, 1)
    if extensions is not None:
        body += vec(extensions, 2)
    return record(bytes([handshake_type]) + len(body).to_bytes(3, "big") + body)


# -- real hellos ---------------------------------------------------------------------


def test_real_tls13_hello() -> None:
    hello = parse_client_hello(HELLO)
    assert isinstance(hello, ClientHello)
    assert hello.sni == "example.com"
    assert hello.alpn_protocols == (b"h2", b"http/1.1")
    assert hello.legacy_version == 0x0303
    assert hello.offers_tls13 and 0x0303 in hello.supported_versions
    assert hello.cipher_suites_count == len(hello.cipher_suites) > 0
    assert 0 in hello.extensions and 16 in hello.extensions
    assert hello.record_bytes == len(HELLO)


@pytest.mark.parametrize(
    ("kwargs", "sni", "alpn", "tls13"),
    [
        ({"host": None}, None, (b"h2", b"http/1.1"), True),
        ({"host": "127.0.0.1"}, None, (b"h2", b"http/1.1"), True),  # no SNI for IP literals
        ({"alpn": ()}, "example.com", (), True),
        ({"max_version": ssl.TLSVersion.TLSv1_2}, "example.com", (b"h2", b"http/1.1"), False),
        ({"host": "xn--bcher-kva.example"}, "xn--bcher-kva.example", (b"h2", b"http/1.1"), True),
    ],
)
def test_real_hello_variants(
    kwargs: dict[str, object], sni: str | None, alpn: tuple[bytes, ...], tls13: bool
) -> None:
    hello = parse_client_hello(real_hello(**kwargs))  # type: ignore[arg-type]
    assert hello is not None
    assert (hello.sni, hello.alpn_protocols, hello.offers_tls13) == (sni, alpn, tls13)
    if not tls13:
        assert hello.supported_versions == ()


def test_every_prefix_needs_more_bytes() -> None:
    for cut in range(len(HELLO)):
        assert parse_client_hello(HELLO[:cut]) is None, cut
    assert parse_client_hello(HELLO) is not None


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 17, 100, 511])
def test_hello_split_across_records(size: int) -> None:
    data = refragment(HELLO, size)
    hello = parse_client_hello(data)
    assert hello is not None
    assert hello.sni == "example.com" and hello.alpn_protocols == (b"h2", b"http/1.1")
    assert hello.record_bytes == len(data)


def test_every_prefix_of_a_fragmented_hello_needs_more_bytes() -> None:
    data = refragment(HELLO, 37)
    assert all(parse_client_hello(data[:cut]) is None for cut in range(len(data)))


def test_trailing_bytes_are_ignored() -> None:
    hello = parse_client_hello(HELLO + record(b"early data", content_type=0x17))
    assert hello is not None and hello.record_bytes == len(HELLO)


def test_accepts_bytearray_and_memoryview() -> None:
    assert parse_client_hello(bytearray(HELLO)) == parse_client_hello(HELLO)
    assert parse_client_hello(memoryview(HELLO)) == parse_client_hello(HELLO)


# -- hand-made hellos ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        (None, {"sni": None, "extensions": ()}),  # pre-TLS 1.2: no extensions block
        (b"", {"sni": None, "extensions": ()}),
        (sni_ext(b"a.example"), {"sni": "a.example"}),
        (sni_ext(b"MiXeD.Example."), {"sni": "MiXeD.Example."}),
        (sni_ext(b"x", name_type=7), {"sni": None}),  # unknown name types are skipped
        (ext(16, vec(vec(b"h2", 1), 2)), {"alpn_protocols": (b"h2",)}),
        (ext(43, vec(b"\x03\x04\x7a\x7a", 1)), {"supported_versions": (0x0304, 0x7A7A)}),
        (ext(0xFE0D, b"opaque") + ext(0x7A7A, b""), {"extensions": (0xFE0D, 0x7A7A)}),
    ],
)
def test_hand_made_hellos(extensions: bytes | None, expected: dict[str, object]) -> None:
    hello = parse_client_hello(make_hello(extensions))
    assert hello is not None
    for field, value in expected.items():
        assert getattr(hello, field) == value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n", "not handshake"),
        (b"\x16\x02", "not 3.x"),
        (b"\x16\x03\x05", "unknown"),
        (b"\x16\x03\x01\x00\x00", "record length 0"),
        (b"\x16\x03\x01\x40\x01", "record length 16385"),
        (b"\x80\x2e\x01\x03\x01", "not handshake"),  # SSLv2-style hello
        (make_hello(handshake_type=2), "type 2"),
        (make_hello(version=b"\x02\x00"), "version"),
        (make_hello(session_id=b"x" * 33), "session id"),
        (make_hello(suites=b""), "no cipher suites"),
        (make_hello(suites=b"\x13"), "truncated"),
        (make_hello(compression=b""), "no compression"),
        (make_hello(sni_ext(b"a") + sni_ext(b"b")), "duplicate extension"),
        (make_hello(sni_ext(b"a", b"b")), "two host_name"),
        (make_hello(sni_ext(b"")), "empty or not ASCII"),
        (make_hello(sni_ext("é.example".encode())), "empty or not ASCII"),
        (make_hello(ext(0, vec(b"", 2) + b"junk")), "trailing bytes in server_name"),
        (make_hello(ext(16, vec(vec(b"", 1), 2))), "empty ALPN protocol"),
        (make_hello(ext(16, vec(b"", 2))), "empty ALPN list"),
        (make_hello(ext(43, vec(b"", 1))), "empty supported_versions"),
        (make_hello(ext(43, vec(b"\x03", 1))), "truncated"),
        (make_hello(b"\x00\x00\x00\x05ab"), "truncated"),
        (make_hello(b"")[:-2] + b"\x00\x05", "truncated"),
        (make_hello(b"")[:5] + b"\x01\xff\xff\xff", "impossible"),
        (record(HELLO[5:20]) + record(b"\x01", content_type=0x15), "not handshake"),
    ],
)
def test_malformed_input_is_a_clienthello_error(data: bytes, message: str) -> None:
    with pytest.raises(ClientHelloError, match=message):
        parse_client_hello(data)


def test_trailing_bytes_after_extensions_block() -> None:
    data = make_hello(b"")
    body = data[9:] + b"\x00"
    bad = record(b"\x01" + len(body).to_bytes(3, "big") + body)
    with pytest.raises(ClientHelloError, match="trailing bytes in ClientHello"):
        parse_client_hello(bad)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (HELLO, True),
        (b"\x16\x03\x01", True),
        (b"\x16\x03\x00", True),
        (b"\x16\x03\x04\x00", True),
        (b"\x16\x03", False),  # not enough bytes to say
        (b"", False),
        (b"\x16\x03\x05", False),
        (b"\x17\x03\x03", False),
        (b"\x16\x02\x00", False),
        (b"GET", False),
        (b"CONNECT example.com:443", False),
        (b"\x80\x2e\x01", False),
    ],
)
def test_looks_like_tls(data: bytes, expected: bool) -> None:
    assert looks_like_tls(data) is expected


# -- fuzzing -------------------------------------------------------------------------


def _total(data: bytes) -> None:
    try:
        result = parse_client_hello(data)
    except ClientHelloError:
        return
    assert result is None or isinstance(result, ClientHello)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    _total(data)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_behind_a_handshake_header(tail: bytes) -> None:
    _total(b"\x16\x03\x01" + tail)
    _total(b"\x16\x03\x01" + len(tail).to_bytes(2, "big") + b"\x01" + tail)


@given(st.data())
def test_mutated_real_hellos_never_raise_anything_else(data: st.DataObject) -> None:
    sample = bytearray(refragment(HELLO, data.draw(st.integers(1, 600))))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(sample) - 1))
        sample[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(sample)))
    _total(bytes(sample[:cut]))
