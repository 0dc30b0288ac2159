"""Playbook tests of the WebSocket layer: frames in, frames and records out."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.flow.hooks import HoldSwitch, HookKind, Kill, LiveMessage, MessageEdit, Proceed
from proxy.flow.wsinfo import WsMessage
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Hook,
    PauseReading,
    ResumeReading,
    SendData,
    SetTimer,
    server_conn,
)
from proxy.layers.events import DataReceived, EofReceived, HookResumed, Stopping, TimerFired
from proxy.layers.websocket.deflate import Deflate, negotiated
from proxy.layers.websocket.layer import TIMERS, WebSocketLayer
from proxy.layers.websocket.settings import WsSettings
from proxy.layers.websocket.wssetup import WsSetup
from proxy.rules import SourceText, load_sources
from proxy.rules.wsrules import WsPlan
from tests.playbook import Match, Playbook

S = server_conn(1)


def frame(
    opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv1: bool = False
) -> bytes:
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n <= 125:
        head += bytes([bit | n])
    elif n <= 0xFFFF:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def unframe(data: bytes) -> tuple[int, bool, bytes]:
    """One frame's opcode, RSV1 and unmasked payload."""
    n, at = data[1] & 0x7F, 2
    if n == 126:
        n, at = struct.unpack("!H", data[2:4])[0], 4
    elif n == 127:
        n, at = struct.unpack("!Q", data[2:10])[0], 10
    if data[1] & 0x80:
        key, at = data[at : at + 4], at + 4
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[at : at + n]))
    else:
        payload = data[at : at + n]
    assert len(data) == at + n
    return data[0] & 0x0F, bool(data[0] & 0x40), payload


def layer(
    rules: str = "", deflate: Deflate | None = None, limit: int = 1 << 20, preview: int = 256
) -> WebSocketLayer:
    plan: WsPlan | None = None
    if rules:
        text = "version: 1\nwebsocket:\n" + rules
        ruleset = load_sources([SourceText(Path("/t/r.yaml"), text)])
        plan = ruleset.ws_for("h", "/")
    setup = WsSetup("f1", "regular", "", deflate, WsSettings(), limit, preview)
    return WebSocketLayer(S, setup, lambda: 100.0, plan)


def message(**checks: object) -> Match:
    def ok(flow: object) -> bool:
        m = getattr(flow, "message", None)
        return isinstance(m, WsMessage) and all(getattr(m, k) == v for k, v in checks.items())

    return Match(Hook, kind=HookKind.MESSAGE, flow=ok)


def test_messages_forwarded_as_their_own_frames_and_recorded() -> None:
    up = frame(0x1, b"hello")
    down = frame(0x2, b"\x00\x01", mask=False)
    assert (
        Playbook(layer())
        >> DataReceived(CLIENT, up)
        << SendData(S, up)
        << message(direction="upstream", index=0, opcode="text", size=5, preview=b"hello")
        >> DataReceived(S, down)
        << SendData(CLIENT, down)
        << message(direction="downstream", index=0, opcode="binary", size=2)
    )


def test_fragments_and_a_ping_between_them_pass_in_order() -> None:
    a, ping, b = frame(0x1, b"he", fin=False), frame(0x9, b"p"), frame(0x0, b"llo")
    assert (
        Playbook(layer())
        >> DataReceived(CLIENT, a + ping + b[:7])  # header, mask key, one payload byte
        << SendData(S, a)
        << SendData(S, ping)
        << SendData(S, b[:7])
        >> DataReceived(CLIENT, b[7:])
        << SendData(S, b[7:])
        << message(frames=2, size=5, preview=b"hello", wire_size=len(a) + len(b))
    )


def test_close_handshake_recorded_with_who_closed() -> None:
    ws = layer()
    close = frame(0x8, struct.pack("!H", 4000) + b"done")
    reply = frame(0x8, struct.pack("!H", 4000), mask=False)
    assert (
        Playbook(ws)
        >> DataReceived(CLIENT, close)
        << SendData(S, close)
        >> DataReceived(S, reply)
        << SendData(CLIENT, reply)
        >> EofReceived(S)
        << CloseConnection(S)
        << CloseConnection(CLIENT)
    )
    assert ws.done is not None and ws.done.websocket is not None
    info = ws.done.websocket
    assert info.closed_by == "client" and info.client_close is not None
    assert (info.client_close.code, info.client_close.reason) == (4000, "done")
    assert info.server_close is not None and info.server_close.code == 4000


def test_unmasked_client_frame_fails_with_1002_both_ways() -> None:
    ws = layer()
    out = ws.handle(DataReceived(CLIENT, frame(0x1, b"x", mask=False)))
    to_client = [c for c in out if isinstance(c, SendData) and c.conn == CLIENT]
    to_server = [c for c in out if isinstance(c, SendData) and c.conn == S]
    assert unframe(to_client[0].data)[2][:2] == struct.pack("!H", 1002)
    assert to_server[0].data[1] & 0x80  # our Close to the server is masked (RFC 6455 §5.3)
    assert ws.done is not None and ws.done.websocket is not None
    assert ws.done.websocket.error is not None and "unmasked" in ws.done.websocket.error


def test_big_held_message_streams_past_the_limit() -> None:
    rules = "  - match: {direction: upstream}\n    drop: true\n"
    first, second = frame(0x2, b"a" * 60, fin=False), frame(0x0, b"b" * 60)
    assert (
        Playbook(layer(rules, limit=100))
        >> DataReceived(CLIENT, first)  # held: a rule may drop it
        >> DataReceived(CLIENT, second)  # over the limit: what was held goes, and the rest
        << SendData(S, first + second)
        << message(truncated=True, size=120, action=None)
    )


def deflate_frame(z: zlib._Compress, data: bytes, mask: bool = True) -> bytes:
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    return frame(0x1, out[:-4], mask=mask, rsv1=True)


def test_deflate_desync_after_a_rewrite_reencodes_later_messages() -> None:
    """Context takeover: after a rewrite the receiver's window differs from the
    sender's, so later compressed messages are re-encoded, and the receiver
    can still inflate every one of them."""
    rules = "  - match: {text: {contains: one}}\n    replace: {regex: one, with: ONE}\n"
    deflate = negotiated("permessage-deflate")
    assert deflate is not None and deflate.takeover(False)
    ws = layer(rules, deflate)
    sender = zlib.compressobj(6, zlib.DEFLATED, -15)
    receiver = zlib.decompressobj(-15)
    got = []
    for text in (b"message one", b"message one again", b"message two"):
        out = ws.handle(DataReceived(S, deflate_frame(sender, text, mask=False)))
        [send] = [c for c in out if isinstance(c, SendData)]
        opcode, rsv1, payload = unframe(send.data)
        assert opcode == 0x1 and rsv1
        got.append(receiver.decompress(payload + b"\x00\x00\xff\xff"))
    assert got == [b"message ONE", b"message ONE again", b"message two"]
    assert ws.down.desync


def test_rewritten_messages_are_masked_toward_the_server_only() -> None:
    """RFC 6455 §5.1: a client closes on a masked frame, a server on an unmasked
    one (aiohttp lets either pass; wsproto, as browsers, does not)."""
    rules = "  - match: {text: {contains: one}}\n    replace: {regex: one, with: ONE}\n"
    for deflate in (None, negotiated("permessage-deflate")):
        for up in (True, False):
            ws = layer(rules, deflate)
            sender = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = b"message one"
            wire = deflate_frame(sender, data, mask=up) if deflate else frame(1, data, mask=up)
            out = ws.handle(DataReceived(CLIENT if up else S, wire))
            [send] = [c for c in out if isinstance(c, SendData)]
            assert send.conn == (S if up else CLIENT)
            assert bool(send.data[1] & 0x80) is up, (deflate, up)


def test_deflate_untouched_messages_keep_their_frames() -> None:
    deflate = negotiated("permessage-deflate; server_no_context_takeover")
    ws = layer("  - match: {text: {contains: zzz}}\n    drop: true\n", deflate)
    sender = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = deflate_frame(sender, b"hello hello hello", mask=False)
    assert (
        Playbook(ws)
        >> DataReceived(S, data)
        << SendData(CLIENT, data)
        << message(compressed=True, size=17, preview=b"hello hello hello")
    )


def test_inject_on_open_repeats_on_its_timer_and_stopping_closes_1001() -> None:
    rules = "  - inject: {to: client, text: tick, when: open, every_ms: 500, count: 2}\n"
    ws = layer(rules)
    tick = frame(0x1, b"tick", mask=False)
    out = ws.start()
    assert out == [SetTimer(0.0, TIMERS)]
    out = ws.handle(TimerFired(TIMERS))
    assert out[0] == SendData(CLIENT, tick) and out[2] == SetTimer(0.5, TIMERS)
    out = ws.handle(TimerFired(TIMERS))
    assert out[0] == SendData(CLIENT, tick) and len(out) == 2  # the second and last
    out = ws.handle(Stopping())
    closes = [unframe(c.data)[2][:2] for c in out if isinstance(c, SendData)]
    assert closes == [struct.pack("!H", 1001)] * 2
    assert ws.done is not None and ws.done.websocket is not None
    assert ws.done.websocket.injected == 2 and ws.done.websocket.closed_by == "proxy"


def test_a_good_message_before_a_violation_in_the_same_read_still_goes() -> None:
    good, bad = frame(0x1, b"fine"), frame(0x1, b"x", mask=False)
    ws = layer()
    out = ws.handle(DataReceived(CLIENT, good + bad))
    assert out[0] == SendData(S, good)
    assert isinstance(out[1], Hook)
    assert ws.done is not None and ws.done.websocket is not None
    assert ws.done.websocket.upstream == 1 and ws.done.websocket.error is not None


def test_delay_holds_the_message_and_those_after_it() -> None:
    rules = "  - match: {text: {contains: slow}}\n    delay: {ms: 200}\n"
    slow, fast = frame(0x1, b"slow"), frame(0x1, b"fast")
    assert (
        Playbook(layer(rules))
        >> DataReceived(CLIENT, slow)
        << SendData(S, slow, 100.2)
        << message(action="delayed")
        >> DataReceived(CLIENT, fast)
        << SendData(S, fast, 100.2)  # not before the delayed one
        << message(action=None)
    )


_MESSAGES = st.lists(
    st.tuples(st.booleans(), st.lists(st.binary(max_size=300), min_size=1, max_size=4)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(messages=_MESSAGES, cuts=st.lists(st.integers(1, 50), max_size=30), ping=st.booleans())
def test_any_reads_forward_the_same_bytes_and_record_every_message(
    messages: list[tuple[bool, list[bytes]]], cuts: list[int], ping: bool
) -> None:
    """Valid frames, cut anywhere: the server gets exactly the client's bytes,
    and each message is recorded whole, in order."""
    wire = b""
    for text, parts in messages:
        parts = [p.decode("latin-1").encode("utf-8") for p in parts] if text else parts
        for i, part in enumerate(parts):
            wire += frame(
                0x1 if text and i == 0 else 0x2 if i == 0 else 0x0, part, i == len(parts) - 1
            )
            if ping and i == 0:
                wire += frame(0x9, b"p")
    ws = layer()
    sent, recorded, at = b"", [], 0
    for cut in [*cuts, len(wire)]:
        for c in ws.handle(DataReceived(CLIENT, wire[at : at + cut])):
            if isinstance(c, SendData):
                sent += c.data
            elif isinstance(c, Hook):
                recorded.append(c.flow.message)
        at += cut
        if at >= len(wire):
            break
    assert sent == wire and ws.done is None
    expected = [
        sum(len(p.decode("latin-1").encode()) if t else len(p) for p in ps) for t, ps in messages
    ]
    assert [m.size for m in recorded] == expected
    assert [m.index for m in recorded] == list(range(len(messages)))


# -- breakpoints on messages (HookKind.WS_MESSAGE, armed by a HoldSwitch) --------------
def held_layer(switch: HoldSwitch) -> WebSocketLayer:
    setup = WsSetup("f1", "regular", "", None, WsSettings(), 1 << 20, 256, 0, "http://h/ws", switch)
    return WebSocketLayer(S, setup, lambda: 100.0, None)


def test_an_armed_breakpoint_holds_each_message_and_what_follows_it() -> None:
    switch = HoldSwitch()
    ws = held_layer(switch)
    first = frame(1, b"hello")
    assert (
        Playbook(ws) >> DataReceived(CLIENT, first) << SendData(S, first) << message(index=0)
    )  # not armed: straight through
    switch.kinds = frozenset({HookKind.WS_MESSAGE})
    second, ping = frame(1, b"change me"), frame(9, b"p")
    later = frame(1, b"after")

    def live(flow: object) -> bool:
        return isinstance(flow, LiveMessage) and flow.payload == b"change me" and flow.from_client

    assert (
        Playbook(ws)
        >> DataReceived(CLIENT, second + ping)
        << Match(Hook, kind=HookKind.WS_MESSAGE, hold=True, flow=live)
        << PauseReading(CLIENT)
        << PauseReading(S)
        >> DataReceived(CLIENT, later)  # in flight before the pause: waits, in order
        >> DataReceived(S, frame(1, b"from server", mask=False))
        >> HookResumed(HookKind.WS_MESSAGE, Proceed(MessageEdit(b"changed")))
        << ResumeReading(CLIENT)
        << ResumeReading(S)
        << Match(SendData, conn=S, data=lambda d: unframe(d) == (1, False, b"changed"))
        << message(direction="upstream", action="replaced")
        << SendData(S, ping)  # the rest of the read the message ended in
        << Match(Hook, kind=HookKind.WS_MESSAGE, flow=lambda f: f.payload == b"after")
        << PauseReading(CLIENT)
        << PauseReading(S)
        >> HookResumed(HookKind.WS_MESSAGE, Proceed(MessageEdit(drop=True)))
        << ResumeReading(CLIENT)
        << ResumeReading(S)
        << message(direction="upstream", action="dropped")
        << Match(Hook, kind=HookKind.WS_MESSAGE, flow=lambda f: not f.from_client)
        << PauseReading(CLIENT)
        << PauseReading(S)
        >> HookResumed(HookKind.WS_MESSAGE, Kill())
        << ResumeReading(CLIENT)
        << ResumeReading(S)
        << Match(SendData, conn=CLIENT)  # a Close each way (1008), then both closed
        << Match(SendData, conn=S)
        << CloseConnection(S)
        << CloseConnection(CLIENT)
    )
    assert ws.done is not None and ws.done.websocket is not None
    assert ws.done.websocket.closed_by == "proxy"
