#!/usr/bin/env python3
"""Fuzz target ``clienthello``: the TLS ClientHello reader (proxy/tls/clienthello.py).

Run:  python tests/fuzz/fuzz_clienthello.py tests/fuzz/corpus/clienthello

The input is the first bytes a client sent. Checks:

* ``parse_client_hello`` returns a ``ClientHello`` or ``None`` or raises
  ``ClientHelloError``, nothing else (``looks_like_tls`` never raises);
* a ``ClientHello`` is consistent: ``record_bytes`` within the input,
  16-bit values, an ASCII SNI, non-empty ALPN ids, no repeated extension;
* the answer is a function of the bytes the records hold, as the proxy's
  peek-and-retry loop assumes: the hello parses the same from exactly
  ``record_bytes`` bytes and with bytes appended, every shorter prefix of
  those (a few tried) is ``None`` ("need more"), a prefix of an incomplete
  input is incomplete too, and an error stays the same error when more
  bytes arrive.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fuzz_main, instrumented

with instrumented(__name__ == "__main__"):
    from proxy.tls.clienthello import (
        ClientHello,
        ClientHelloError,
        looks_like_tls,
        parse_client_hello,
    )

TARGET = "clienthello"
# Appended to check that more bytes change nothing once the answer is known:
# a second handshake record, as a client sending early data would.
MORE = b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00" + bytes(range(256))

Result = ClientHello | None | ClientHelloError


def parse(data: bytes | bytearray) -> Result:
    try:
        result = parse_client_hello(data)
    except ClientHelloError as e:
        return e
    assert result is None or isinstance(result, ClientHello), result
    return result


def same(a: Result, b: Result) -> bool:
    if isinstance(a, ClientHelloError) and isinstance(b, ClientHelloError):
        return str(a) == str(b)
    return a == b


def check_hello(h: ClientHello, size: int) -> None:
    assert 0 < h.record_bytes <= size, (h.record_bytes, size)
    assert h.legacy_version >> 8 == 3, h
    assert h.cipher_suites and all(0 <= s <= 0xFFFF for s in h.cipher_suites), h
    assert len(set(h.extensions)) == len(h.extensions), h
    assert all(0 <= t <= 0xFFFF for t in h.extensions + h.supported_versions), h
    assert h.sni is None or (h.sni and h.sni.isascii()), h
    assert all(p for p in h.alpn_protocols), h
    if h.sni is not None:
        assert 0 in h.extensions, h
    assert h.cipher_suites_count == len(h.cipher_suites)
    assert isinstance(h.offers_tls13, bool)


def prefixes(n: int) -> list[int]:
    """A few prefix lengths below ``n``: the ends, the middle, around record headers."""
    picks = {0, 1, 4, 5, 6, 9, n // 2, n - 5, n - 4, n - 1}
    return sorted(p for p in picks if 0 <= p < n)


def one_input(data: bytes) -> None:
    looks_like_tls(data)
    result = parse(data)
    again = parse(bytearray(data))
    assert same(result, again), "bytearray gives another answer"
    if isinstance(result, ClientHello):
        check_hello(result, len(data))
        exact = data[: result.record_bytes]
        assert parse(exact) == result, "hello differs when cut to its records"
        assert parse(data + MORE) == result, "hello differs with more bytes behind"
        assert looks_like_tls(data), "a parsed ClientHello that does not look like TLS"
        for n in prefixes(result.record_bytes):
            assert parse(exact[:n]) is None, f"prefix of {n} bytes is not 'need more'"
    elif result is None:
        for n in prefixes(len(data)):
            got = parse(data[:n])
            assert got is None, f"prefix of {n} bytes of an incomplete hello gave {got!r}"
    else:
        got = parse(data + MORE)
        assert same(got, result), f"error {result} became {got!r} with more bytes"


if __name__ == "__main__":
    fuzz_main(one_input)
