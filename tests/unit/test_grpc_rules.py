"""gRPC rules without a network: loading, matching, and the message editor.

The live behaviour (what a grpcio client sees) is in
tests/integration/test_grpc_rules.py; here the loader's errors, which
requests the ``grpc`` match key takes, and the editor on bytes cut in every
way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.grpc.content import Protocol
from proxy.grpc.edit import GrpcEditor, frame
from proxy.grpc.fieldedit import MISSING, FieldError, assign, value
from proxy.grpc.observer import GrpcObserver
from proxy.grpc.settings import GrpcSettings
from proxy.grpc.wire import WireType, encode_field
from proxy.http1 import Framing, FramingKind, RequestHead
from proxy.rules import RequestInfo, Respond, RulesError, SourceText, load_sources
from proxy.rules.grpcspec import MessageAction, MessageActions

GRPC = ((b"content-type", b"application/grpc+proto"),)


def load(text: str) -> object:
    return load_sources([SourceText(Path("/tmp/r.yaml"), "version: 1\nrules:\n" + text)])


def info(path: str, fields: tuple[tuple[bytes, bytes], ...] = GRPC) -> RequestInfo:
    return RequestInfo("http", "h", 80, "POST", path, "", fields)


def test_match_service_and_method_of_grpc_calls_only() -> None:
    rules = load(
        "  - match: {grpc: {service: 'demo.*', method: [Unary, {prefix: Server}]}}\n"
        "    grpc: {status: {code: 14, message: down}}\n"
    )
    hit = rules.on_request(info("/demo.Echo/Unary"))  # type: ignore[attr-defined]
    assert isinstance(hit.terminal, Respond) and hit.terminal.kind == "grpc_status"
    assert dict(hit.terminal.fields)[b"grpc-status"] == b"14"
    assert rules.on_request(info("/demo.Echo/ServerStream")).terminal is not None  # type: ignore[attr-defined]
    for miss in (info("/demo.Echo/Bidi"), info("/other.Svc/Unary"), info("/demo.Echo/Unary", ())):
        assert rules.on_request(miss).terminal is None  # type: ignore[attr-defined]


def test_message_actions_reach_the_plan_in_rule_order() -> None:
    rules = load(
        "  - match: {grpc: true}\n    grpc: {request: [{set: {/1: a}}]}\n"
        "  - match: {grpc: {method: M}}\n    grpc: {response: [{drop: true, index: 2}]}\n"
    )
    plan = rules.on_request(info("/s.S/M"))  # type: ignore[attr-defined]
    actions = plan.decision.grpc
    assert [a.kind for a in actions.request] == ["set"] and actions.response[0].index == 2
    assert [h.actions for h in plan.hits] == [
        ("grpc request set /1",), ("grpc response drop #2",),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "  - match: {grpc: {servce: x}}\n    log: {tags: [a]}\n",
            "3:20: rules[0].match.grpc: unknown key 'servce'",
        ),
        (
            "  - grpc: {status: {code: NOPE}}\n",
            "3:27: rules[0].grpc.status.code: unknown gRPC status 'NOPE'",
        ),
        (
            "  - grpc: {status: {message: x}}\n",
            "3:20: rules[0].grpc.status: a grpc status needs a code",
        ),
        (
            "  - grpc: {request: [{delay: {ms: 5}}]}\n",
            "3:30: rules[0].grpc.request[0].delay: delay applies to response",
        ),
        (
            "  - grpc: {response: [{set: {nope: 1}}]}\n",
            "rules[0].grpc.response[0].set.nope: JSON Pointer 'nope' must",
        ),
        ("  - grpc: {response: [{drop: true, set: {/1: 2}}]}\n", "exactly one of set, drop, delay"),
        ("  - respond: {status: 200}\n    grpc: {status: {code: 1}}\n", "a rule answers once"),
        (
            "  - match: {status: 500}\n    grpc: {response: [{drop: true}]}\n",
            "'grpc' cannot depend on response matchers",
        ),
    ],
)
def test_mistakes_are_reported_where_they_are(text: str, message: str) -> None:
    with pytest.raises(RulesError) as info_:
        load(text)
    assert any(message in str(e) for e in info_.value.errors), [str(e) for e in info_.value.errors]


def test_fields_by_number() -> None:
    inner = encode_field(1, WireType.LEN, b"in")
    msg = encode_field(1, WireType.LEN, b"hello") + encode_field(4, WireType.LEN, inner)
    assert value(msg, ("1",)) == "hello" and value(msg, ("4", "1")) == "in"
    assert value(msg, ("9",)) is MISSING and value(msg, ("x",)) is MISSING
    edited = assign(assign(msg, ("4", "1"), "out"), ("2",), 7)
    assert value(edited, ("4", "1")) == "out" and value(edited, ("2",)) == 7
    assert value(assign(msg, ("3",), 1.5), ("3",)) == 0x3FF8000000000000  # a double
    for bad in ((("name",), 1), (("1",), [1]), (("1",), 1 << 70)):
        with pytest.raises(FieldError):
            assign(msg, *bad)  # type: ignore[arg-type]


def editor(actions: MessageActions) -> GrpcEditor:
    head = RequestHead(b"POST", b"/s.S/M", b"2.0", GRPC, Framing(FramingKind.CHUNKED))
    observer = GrpcObserver(Protocol.GRPC, head, GrpcSettings(), "f", 64)
    return GrpcEditor(actions, observer, None, 100)


def test_editor_gives_the_same_bytes_for_any_cut() -> None:
    msgs = [encode_field(1, WireType.LEN, t) for t in (b"a", b"hello", b"b")]
    big = b"\x00" + (300).to_bytes(4, "big") + b"z" * 300  # over the cap: passes untouched
    body = b"".join(frame(0, m) for m in msgs) + big + frame(0, msgs[1])
    actions = MessageActions(
        request=(MessageAction("set", ((("1",), "HI"),), where=((("1",), "hello"),)),
                 MessageAction("drop", index=0)),
    )  # fmt: skip
    want = frame(0, encode_field(1, WireType.LEN, b"HI")) + frame(0, msgs[2]) + big
    want += frame(0, encode_field(1, WireType.LEN, b"HI"))
    for step in (1, 2, 5, 7, 64, len(body)):
        e = editor(actions)
        got = b"".join(e.request(body[i : i + step]) for i in range(0, len(body), step))
        assert got + e.rest(True) == want, step
        assert e.notes[:2] == ["request #0 dropped", "request #1 set /1"]


def test_editor_forwards_a_cut_message_as_it_came() -> None:
    e = editor(MessageActions(response=(MessageAction("drop"),)))
    assert e.response(b"\x00\x00\x00\x00\x09abc") == []
    assert e.rest(False) == b"\x00\x00\x00\x00\x09abc"
    delayed = editor(MessageActions(response=(MessageAction("delay", delay_ms=250),)))
    assert delayed.response(frame(0, b"\x08\x01")) == [(frame(0, b"\x08\x01"), 0.25)]


def test_the_example_file_does_what_it_says() -> None:
    from proxy.rules import load_rules

    root = Path(__file__).resolve().parents[2]
    rules = load_rules([root / "rules" / "examples" / "grpc.yaml"], rng=lambda: 0.1)
    down = rules.on_request(info("/shop.Payments/Charge"))
    assert isinstance(down.terminal, Respond) and down.terminal.rule == "payments-down"
    users = rules.on_request(info("/shop.Users/Get"))
    assert users.decision.grpc.request[0].where == ((("user", "role"), "admin"),)
    assert [a.kind for a in users.decision.grpc.response] == ["delay"]
    assert rules.on_request(info("/x.Orders/Upload")).terminal is not None
    assert rules.on_request(info("/shop.Payments/Charge", ())).terminal is None  # not gRPC


def test_match_on_the_first_message_by_number_and_with_the_schema(tmp_path: Path) -> None:
    from dataclasses import replace

    from proxy.grpc.protoload import load as load_protos

    rules = load(
        "  - match: {grpc: {method: M, message: {/1: hello, /4/1: in}}}\n    fault: {reset: true}\n"
    )
    inner = encode_field(1, WireType.LEN, b"in")
    msg = frame(0, encode_field(1, WireType.LEN, b"hello") + encode_field(4, WireType.LEN, inner))
    plan = rules.on_request(info("/s.S/M"))  # type: ignore[attr-defined]
    assert plan.pending  # the body decides
    assert rules.complete_request(plan, msg).terminal is not None  # type: ignore[attr-defined]
    other = frame(0, encode_field(1, WireType.LEN, b"bye"))
    assert rules.complete_request(plan, other).terminal is None  # type: ignore[attr-defined]
    assert rules.complete_request(plan, b"\x00\x00").terminal is None  # type: ignore[attr-defined]
    proto = tmp_path / "s.proto"
    proto.write_text(
        'syntax = "proto3"; package s; message In { string label = 1; }\n'
        "message Q { string text = 1; In inner = 4; }\nservice S { rpc M(Q) returns (Q); }\n"
    )
    named = load(
        "  - match: {grpc: {method: M, message: {/text: hello, /inner/label: in}}}\n"
        "    fault: {reset: true}\n"
    )
    with_schema = replace(info("/s.S/M"), schemas=load_protos([str(proto)]))
    plan = named.on_request(with_schema)  # type: ignore[attr-defined]
    assert named.complete_request(plan, msg).terminal is not None  # type: ignore[attr-defined]
    assert named.complete_request(plan, other).terminal is None  # type: ignore[attr-defined]
