"""Recording schema 2: trailers and WebSocket messages written, version 1 still read,
and the sink holds a WebSocket's message records until its connection's record."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.flow.record import FlowRecord, Message, RequestInfo, ResponseInfo, TunnelInfo
from proxy.flow.wsinfo import WS_MESSAGE_KIND, WsMessage
from proxy.replay.format import SCHEMA_VERSION, header_line
from proxy.replay.reader import load
from proxy.replay.writer import RecordingSink, gzip_member

V1_FLOW = {
    "type": "flow", "id": "a1", "protocol": "http/1.1", "kind": "http", "mode": "regular",
    "start": 1.0, "end": 2.0, "client": None, "server": None, "tls": False,
    "request": {"method": "GET", "url": "http://s/x", "http_version": "1.1", "headers": [],
                "body": {"size": 0, "data": ""}},
    "forwarded": None,
    "response": {"status": 200, "reason": "OK", "http_version": "1.1", "headers": [],
                 "body": {"size": 2, "data": "aGk="}},
    "upstream": None, "source": "upstream", "offsets": {}, "error": None, "messages": [],
}  # fmt: skip


def test_a_version_1_recording_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "v1.tap"
    header = {**header_line(0.0, "0.1.0"), "schema_version": 1}
    path.write_bytes(gzip_member((json.dumps(header) + "\n" + json.dumps(V1_FLOW)).encode()))
    (flow,) = load(path).flows
    assert flow.response is not None and flow.response.body.data == b"hi"
    assert flow.response.trailers == () and flow.messages == ()
    assert SCHEMA_VERSION == 2


def _ws_message(flow: str, up: bool, index: int, data: bytes | None, at: float) -> FlowRecord:
    direction = "upstream" if up else "downstream"
    size = 10 if data is None else len(data)
    m = WsMessage(flow, direction, index, "text", size, size + 6, 1, False, b"", False,
                  at=at, data=data)  # fmt: skip
    return FlowRecord(f"{flow}:{direction}:{index}", WS_MESSAGE_KIND, "regular", at, at,
                      ("", 0), None, message=m)  # fmt: skip


def test_the_sink_writes_a_websocket_with_its_messages_and_trailers(tmp_path: Path) -> None:
    path = tmp_path / "r.tap"
    sink = RecordingSink(str(path))
    req = RequestInfo(b"GET", "http://s/ws", Message(((b"Upgrade", b"websocket"),), 0, b""))
    resp = ResponseInfo(101, b"Switching Protocols", Message((), 0, b""))
    tunnel = TunnelInfo(9, 9, "fin", "proxy")
    ws = FlowRecord("w1", "websocket", "regular", 100.0, 105.0, ("127.0.0.1", 1), None,
                    request=req, response=resp, tunnel=tunnel)  # fmt: skip
    grpc_req = RequestInfo(b"POST", "http://s/demo.Echo/Unary", Message((), 5, b"\0" * 5))
    trailers = ((b"grpc-status", b"0"), (b"grpc-message", b""))
    grpc_resp = ResponseInfo(200, b"OK", Message((), 5, b"\0" * 5, b"2.0", trailers))
    call = FlowRecord("g1", "http", "regular", 100.0, 101.0, ("127.0.0.1", 1), None,
                      request=grpc_req, response=grpc_resp)  # fmt: skip
    sink.write_batch([
        _ws_message("w1", False, 0, b"welcome", 100.5),
        _ws_message("w1", True, 0, b"hi", 101.0),
        _ws_message("w1", True, 1, None, 101.5),  # injected by a rule: no payload kept
        _ws_message("w1", False, 1, b"there", 102.25),
    ])  # fmt: skip
    sink.write_batch([ws, call])
    sink.close()
    loaded = load(path)
    assert [f.id for f in loaded.flows] == ["w1", "g1"] and not loaded.skipped
    w, g = loaded.flows
    assert [(m.from_client, m.data, m.offset) for m in w.messages] == [
        (False, b"welcome", 0.5), (True, b"hi", 1.0), (False, b"there", 2.25)
    ]  # fmt: skip
    assert g.response is not None and g.response.trailers == trailers
