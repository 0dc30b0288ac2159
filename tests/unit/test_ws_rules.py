"""WebSocket message rules: the example file does what it says; errors are located."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.rules import RulesError, SourceText, load_rules, load_sources

ROOT = Path(__file__).resolve().parents[2]


def test_example_verdicts() -> None:
    rules = load_rules([ROOT / "rules" / "examples" / "websocket.yaml"])
    plan = rules.ws_for("api.example.test", "/live")
    v = plan.decide("downstream", True, b'{"type":"x","token":"abc"}')
    assert v.payload == b'{"type":"x","token":"REDACTED"}' and v.rules == ["hide-tokens"]
    v = plan.decide("downstream", True, b'{"type":"quote","price":12}')
    assert v.payload == b'{"type":"quote","price":0}'
    assert plan.decide("upstream", True, b'{"telemetry":1}').drop
    assert plan.decide("downstream", False, b"\x00").delay_ms == 200
    v = plan.decide("upstream", True, b'{"op":"ping"}')
    assert [i.payload for i in v.injects] == [b'{"op":"pong","from":"tapproxy"}']
    assert plan.decide("upstream", True, b'{"role":"admin"}').close == (4003, "forbidden")
    assert plan.decide("upstream", True, b'{"role":"admin"}').close is None  # times: 1
    assert [name for name, _ in plan.on_open()] == ["heartbeat"]
    other = rules.ws_for("elsewhere.test", "/")
    assert other.decide("downstream", True, b'{"token":"abc"}').payload is None
    assert other.on_open() == []


@pytest.mark.parametrize(
    ("rule", "where", "message"),
    [
        ("  - match: {opcode: txt}\n    drop: true\n", "3:21", "expected one of text, binary"),
        ("  - replace: {regex: '(', with: x}\n", "3:22", "invalid regex"),
        ("  - close: {code: 1006}\n", "3:19", "1006 may not be sent"),
        ("  - inject: {to: client, text: a, every_ms: 5}\n", "3:13", "for 'when: open'"),
        ("  - match: {direction: upstream}\n", "3:5", "needs at least one of"),
        ("  - drop: true\n    colse: {code: 4000}\n", "4:5", "colse"),
    ],
)
def test_errors_are_located(rule: str, where: str, message: str) -> None:
    text = "version: 1\nwebsocket:\n" + rule
    with pytest.raises(RulesError) as e:
        load_sources([SourceText(Path("/t/w.yaml"), text)])
    errors = [str(x) for x in e.value.errors]
    assert any(x.startswith(f"/t/w.yaml:{where}:") and message in x for x in errors), errors
