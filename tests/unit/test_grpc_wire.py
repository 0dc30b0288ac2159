"""proxy/grpc: framing, compression, status and the schemaless decoder, fed bytes.

The hostile inputs of issue 16 (deep nesting, huge lengths, truncated
varints) must give a ``WireError`` (or a decode error in the message's
record), never another exception; framing must hold at most the cap of a
message whatever its prefix says.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.grpc import schemaless
from proxy.grpc.compression import CompressionError, inflate
from proxy.grpc.decode import MessageContext, decode_frame
from proxy.grpc.framing import Deframer, Frame, TextDecoder
from proxy.grpc.status import details_of, status_of
from proxy.grpc.webtrailers import parse_trailers, trailer_frame
from proxy.grpc.wire import WireError, WireType, encode_field, encode_varint


def frame(data: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + len(data).to_bytes(4, "big") + data


def test_messages_split_at_any_chunking() -> None:
    body = frame(b"abc") + frame(b"") + frame(b"\x08\x01", 1)
    for step in (1, 2, 3, 7, len(body)):
        d = Deframer(1024)
        out: list[Frame] = []
        for i in range(0, len(body), step):
            out += d.feed(body[i : i + step])
        assert [(f.data, f.compressed, f.truncated) for f in out] == [
            (b"abc", False, False), (b"", False, False), (b"\x08\x01", True, False),
        ]  # fmt: skip
        assert d.pending == 0


def test_a_message_over_the_cap_keeps_only_its_start() -> None:
    d = Deframer(4)
    prefix = b"\x00" + (10_000_000).to_bytes(4, "big")
    assert d.feed(prefix + b"x" * 1000) == []
    assert d.pending == 5 + 1000 and len(d._buf) == 4  # never more than the cap
    for _ in range(9998):
        assert d.feed(b"y" * 1000) == []
    assert len(d._buf) == 4
    out = d.feed(b"y" * 1000 + frame(b"next"))
    assert [(f.size, f.data, f.truncated) for f in out] == [
        (10_000_000, b"xxxx", True), (4, b"next", False),
    ]  # fmt: skip


def test_grpc_web_text_in_separately_padded_pieces() -> None:
    stream = base64.b64encode(frame(b"ab")) + base64.b64encode(frame(b"xy", 0x80))
    assert b"=" in stream[:-4]  # a padded piece in the middle
    t = TextDecoder()
    data = b"".join(t.feed(stream[i : i + 3]) for i in range(0, len(stream), 3))
    assert data == frame(b"ab") + frame(b"xy", 0x80) and t.error is None
    bad = TextDecoder()
    assert bad.feed(b"!!!!") == b"" and bad.error is not None


def test_web_trailers_frame_round_trip() -> None:
    fields = ((b"grpc-status", b"14"), (b"grpc-message", b"down%20now"))
    data = trailer_frame(fields)
    [f] = Deframer(100).feed(data)
    assert f.trailers and parse_trailers(f.data) == fields


def test_inflate_gzip_deflate_and_bounds() -> None:
    text = b"hello " * 1000
    assert inflate(gzip.compress(text), "gzip", 10**6) == (text, False)
    assert inflate(zlib.compress(text), "deflate", 10**6) == (text, False)
    raw = zlib.compressobj(wbits=-15)
    assert inflate(raw.compress(text) + raw.flush(), "deflate", 10**6) == (text, False)
    bomb = gzip.compress(b"\x00" * 50_000_000)
    out, cut = inflate(bomb, "gzip", 1000)
    assert len(out) == 1000 and cut
    for data, enc in ((b"junk", "gzip"), (gzip.compress(text)[:-20], "gzip"), (b"x", "snappy")):
        with pytest.raises(CompressionError):
            inflate(data, enc, 1000)


def test_status_from_trailers_percent_decoded_with_details() -> None:
    any_value = encode_field(1, WireType.LEN, b"retry") + encode_field(2, WireType.VARINT, 3)
    detail = encode_field(1, WireType.LEN, b"type.googleapis.com/x.Retry") + encode_field(
        2, WireType.LEN, any_value
    )
    status = (
        encode_field(1, WireType.VARINT, 14)
        + encode_field(2, WireType.LEN, "café down".encode())
        + encode_field(3, WireType.LEN, detail)
    )
    b64 = base64.b64encode(status).rstrip(b"=")  # -bin values may come unpadded
    s = status_of(
        (
            (b"grpc-status", b"14"),
            (b"grpc-message", b"caf%C3%A9 down%"),
            (b"grpc-status-details-bin", b64),
        )
    )
    assert s is not None and s.code == 14 and s.name == "UNAVAILABLE"
    assert s.message == "café down%"
    assert s.details is not None and s.details["code"] == 14 and s.details["message"] == "café down"
    [d] = s.details["details"]
    assert d["type_url"] == "type.googleapis.com/x.Retry"
    assert d["fields"] == [
        {"n": 1, "type": "string", "value": "retry"},
        {"n": 2, "type": "varint", "value": 3},
    ]
    # found by fuzz_grpc: "²" is a digit to str.isdigit() but not to int()
    for raw in (b"abc", b"\xb2", b"1\xb9"):
        weird = status_of(((b"grpc-status", raw),))
        assert weird is not None and weird.code is None and weird.raw_code == raw.decode("latin-1")
    odd = status_of(((b"grpc-status", b"abc"),))
    assert odd is not None and odd.code is None and odd.raw_code == "abc"
    assert status_of(((b"content-type", b"application/grpc"),)) is None
    assert "error" in details_of(base64.b64encode(b"\x0a\xff\xff"))


def test_schemaless_guesses() -> None:
    nested = encode_field(1, WireType.VARINT, 7) + encode_field(2, WireType.LEN, b"\xff\x01\x02")
    msg = (
        encode_field(1, WireType.LEN, "naïve text\n".encode())
        + encode_field(2, WireType.LEN, nested)
        + encode_field(3, WireType.LEN, encode_varint(1) + encode_varint(300))
        + encode_field(4, WireType.I32, 0x3F800000)
        + encode_field(5, WireType.I64, 0x7FF0000000000000)
        + encode_field(6, WireType.VARINT, -2)
        + encode_field(7, WireType.LEN, b"")
        + bytes([8 << 3 | 3]) + encode_field(1, WireType.VARINT, 1) + bytes([8 << 3 | 4])
    )  # fmt: skip
    tree = schemaless.decode(msg)
    assert tree[0] == {"n": 1, "type": "string", "value": "naïve text\n"}
    assert tree[1]["type"] == "message" and tree[1]["value"][0] == {
        "n": 1,
        "type": "varint",
        "value": 7,
    }
    assert tree[1]["value"][1]["type"] == "bytes" and tree[1]["value"][1]["value"] == "/wEC"
    assert tree[2]["type"] == "bytes" and tree[2]["packed"] == [1, 300]
    assert tree[3] == {"n": 4, "type": "fixed32", "value": 0x3F800000, "float": 1.0}
    assert tree[4]["float"] == "inf"
    assert tree[5]["signed"] == -2
    assert tree[6] == {"n": 7, "type": "string", "value": ""}
    assert tree[7] == {"n": 8, "type": "group", "value": [{"n": 1, "type": "varint", "value": 1}]}


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\xff\xff\xff\xff\x0f",  # a length far beyond the end
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an 11-byte varint
        b"\x08\x80",  # a truncated varint
        b"\x00\x01",  # field number 0
        b"\x0f",  # wire type 7
        bytes([1 << 3 | 4]),  # a group end without its start
        bytes([1 << 3 | 3]),  # a group never closed
    ],
)
def test_hostile_bytes_are_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        schemaless.decode(data)


def test_deep_nesting_is_bounded() -> None:
    deep = b"\x08\x01"
    for _ in range(5000):
        deep = encode_field(1, WireType.LEN, deep)
    tree = schemaless.decode(deep)
    depth = 0
    node = tree[0]
    while node["type"] == "message":
        node = node["value"][0]
        depth += 1
    assert depth == schemaless.MAX_DEPTH - 1 and node["type"] == "bytes"


def test_the_tree_is_cut_at_the_node_budget() -> None:
    tree = schemaless.decode(encode_field(1, WireType.VARINT, 1) * 50, max_nodes=10)
    assert len(tree) == 11 and tree[-1] == {"truncated": True}


def test_decode_frame_reports_errors_instead_of_raising() -> None:
    where = MessageContext("f", "/a.B/C", True, "gzip")
    m = decode_frame(Frame(1, 4, b"junk", False), 0, where, None, 1000, 16)
    assert m.error is not None and "inflate" in m.error and m.fields is None
    big = decode_frame(Frame(0, 5000, b"x" * 100, True), 1, where, None, 100, 16)
    assert big.truncated and big.error is not None and big.raw == b"x" * 16
    plain = decode_frame(Frame(0, 2, b"\x08\x01", False), 2, where, None, 100, 16)
    assert plain.fields == [{"n": 1, "type": "varint", "value": 1}] and plain.error is None
    assert (plain.service, plain.method, plain.direction) == ("a.B", "C", "request")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        schemaless.decode(data)
    where = MessageContext("f", "/a.B/C", False, "deflate")
    decode_frame(Frame(1, len(data), data, False), 0, where, None, 10_000, 64)
    decode_frame(Frame(0, len(data), data, False), 0, where, None, 10_000, 64)
