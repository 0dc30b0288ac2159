#!/usr/bin/env python3
"""Fuzz target ``grpc``: gRPC framing and the schemaless protobuf decoder (proxy/grpc).

Run:  python tests/fuzz/fuzz_grpc.py tests/fuzz/corpus/grpc -dict=tests/fuzz/dicts/grpc.dict

The input is a gRPC body as it streams (5-byte prefixed messages); its
first byte picks how the body is cut into pieces and whether it is read as
gRPC-Web text (base64). Checks, for every input:

* ``schemaless.decode`` returns a tree or raises ``WireError``, nothing else,
  on the whole input and on every message; a tree is JSON-encodable and no
  deeper than ``MAX_DEPTH`` messages;
* ``Deframer`` gives the same frames however the body is cut, never keeps
  more than the cap of a message, and its frames' sizes plus what is
  pending add up to the body;
* ``decode_frame`` (inflate, schemaless, the record's fields) never raises,
  for the message as is and with the compressed flag under each encoding;
* ``status_of`` on the input as trailer values never raises.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fuzz_main, instrumented

with instrumented(__name__ == "__main__"):
    from proxy.grpc import schemaless
    from proxy.grpc.decode import MessageContext, decode_frame
    from proxy.grpc.framing import PREFIX, Deframer, Frame, TextDecoder
    from proxy.grpc.status import status_of
    from proxy.grpc.wire import WireError

TARGET = "grpc"
CAP = 512


def depth(tree: list[dict[str, Any]]) -> int:
    inner = [depth(n["value"]) for n in tree if n.get("type") in ("message", "group")]
    return 1 + max(inner, default=0)


def check_decode(data: bytes) -> None:
    try:
        tree = schemaless.decode(data)
    except WireError:
        return
    json.dumps(tree)
    assert depth(tree) <= schemaless.MAX_DEPTH + 1, "nested deeper than MAX_DEPTH"


def frames_of(body: bytes, step: int) -> tuple[list[Frame], int]:
    d = Deframer(CAP)
    out: list[Frame] = []
    for i in range(0, len(body), step):
        out += d.feed(body[i : i + step])
        assert len(d._buf) <= max(CAP, PREFIX), "the deframer kept more than the cap"
    return out, d.pending


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 0x80:  # gRPC-Web text: the body is read as base64
        t = TextDecoder()
        body = b"".join(t.feed(body[i : i + 5]) for i in range(0, len(body), 5))
    check_decode(body)
    whole, pending = frames_of(body, max(1, len(body)))
    cut, pending_cut = frames_of(body, 1 + (mode & 0x0F))
    assert whole == cut and pending == pending_cut, "frames depend on the cut"
    assert sum(PREFIX + f.size for f in whole) + pending == len(body), "bytes lost in framing"
    for i, f in enumerate(whole):
        assert len(f.data) == min(f.size, CAP) and f.truncated == (f.size > CAP)
        check_decode(f.data)
        for encoding in (None, "gzip", "deflate", "snappy"):
            where = MessageContext("f", "/a.B/C", bool(i & 1), encoding)
            flags = f.flags | (1 if encoding else 0)
            m = decode_frame(Frame(flags, f.size, f.data, f.truncated), i, where, None, CAP, 64)
            assert len(m.raw) <= 64 and (m.fields is None or m.error is None)
    status_of(
        ((b"grpc-status", body[:12]), (b"grpc-message", body), (b"grpc-status-details-bin", body))
    )


if __name__ == "__main__":
    fuzz_main(one_input)
