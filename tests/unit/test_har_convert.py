"""``tapproxy convert FLOWS.jsonl --to har``: same HAR as the live sink, strict input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli.main import main
from proxy.flow.jsonview import record_to_json
from proxy.flow.record import FlowRecord, TunnelInfo
from proxy.sinks.dispatch import Sink
from proxy.sinks.har import HarLog, HarSink
from proxy.sinks.jsonl import JsonlSink
from tests.unit.test_har_entry import CASES, T0, make_record
from tests.unit.test_har_sink import load


def mixed_batches() -> list[list[FlowRecord]]:
    tunnel = make_record(
        b"CONNECT", url="h:443", kind="tunnel", tunnel=TunnelInfo(5, 6, "fin", "fin")
    )
    tcp = FlowRecord("t", "tcp", "tcp:h:1", T0, T0 + 1, ("127.0.0.1", 1), ("127.0.0.1", 2))
    cases = [r for _, r, _ in CASES]
    return [cases[:5], [tunnel, tcp], cases[5:]]


def write_both(tmp_path: Path) -> tuple[Path, Path]:
    """The same batches (and a dropped notice) through the JSONL and HAR sinks."""
    jsonl, har = tmp_path / "flows.jsonl", tmp_path / "live.har"
    sinks: list[Sink] = [JsonlSink(str(jsonl)), HarSink(str(har))]
    for i, batch in enumerate(mixed_batches()):
        for s in sinks:
            s.write_batch(batch)
            if i == 1:
                s.write_dropped(7)
    for s in sinks:
        s.close()
    return jsonl, har


def test_convert_equals_live_sink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl, live = write_both(tmp_path)
    out = tmp_path / "converted.har"
    assert main(["convert", str(jsonl), "--to", "har", "-o", str(out)]) == 0
    assert out.read_bytes() == live.read_bytes()
    doc = load(out)
    assert len(doc["log"]["entries"]) == len(CASES)
    assert doc["log"]["_tapproxy"] == {"dropped": 7, "skipped": {"tcp": 1, "tunnel": 1}}
    err = capsys.readouterr().err
    assert "skipped 1 'dropped' record (7 flows lost" in err
    assert "skipped 2 non-HTTP flows (1 tcp, 1 tunnel)" in err


def test_convert_to_stdout_by_default(tmp_path: Path) -> None:
    jsonl, live = write_both(tmp_path)
    root = Path(__file__).parents[2]
    for extra in ([], ["-o", "-"]):
        proc = subprocess.run(
            [sys.executable, "-m", "proxy", "convert", str(jsonl), *extra],
            cwd=root,
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == live.read_bytes()


def test_convert_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    jsonl, live = write_both(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(jsonl.read_text()))
    out = tmp_path / "o.har"
    assert main(["convert", "-", "-o", str(out)]) == 0
    assert out.read_bytes() == live.read_bytes()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"schema":4,"kind":"http"}',
            "flow log schema 4 is not supported (this tapproxy reads schemas 1 to 3)",
        ),
        ('{"kind":"http"}', "not a tapproxy flow record (no 'schema')"),
        ("[1,2]", "not a tapproxy flow record"),
    ],
)
def test_other_schemas_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    jsonl, _ = write_both(tmp_path)
    with jsonl.open("a") as f:
        f.write(line + "\n")
    out = tmp_path / "out.har"
    out.write_text("keep me")
    assert main(["convert", str(jsonl), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and f"{jsonl}:" in err
    assert out.read_text() == "keep me"  # not replaced by a partial document
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tapproxy")] == []


def test_torn_lines_are_skipped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl, _ = write_both(tmp_path)
    text = jsonl.read_text()
    jsonl.write_text(text + text.splitlines()[0][:40])  # a last line cut short by a crash
    out = tmp_path / "out.har"
    assert main(["convert", str(jsonl), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    lineno = len(text.splitlines()) + 1
    assert f"{jsonl}:{lineno}: skipped, not JSON" in err
    assert len(load(out)["log"]["entries"]) == len(CASES)


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.har"
    assert main(["convert", str(tmp_path / "nope.jsonl"), "-o", str(out)]) == 1
    assert "nope.jsonl" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["convert", "x.jsonl", "--to", "csv"])
    assert info.value.code == 2


def test_created_file_mode_follows_umask(tmp_path: Path) -> None:
    jsonl, _ = write_both(tmp_path)
    out = tmp_path / "out.har"
    assert main(["convert", str(jsonl), "-o", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == (tmp_path / "live.har").stat().st_mode & 0o777
    json.loads(out.read_bytes())


def test_malformed_records_are_skipped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl, _ = write_both(tmp_path)
    with jsonl.open("a") as f:
        f.write('{"schema":1,"id":"bad","kind":"http","request":{"method":"GET"}}\n')
    out = tmp_path / "out.har"
    assert main(["convert", str(jsonl), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "skipped, malformed flow record (record 'bad': KeyError" in err
    assert len(load(out)["log"]["entries"]) == len(CASES)


def test_har_log_keeps_going_after_a_malformed_record() -> None:
    log = HarLog()
    good = record_to_json(make_record())
    data = log.head() + log.add([{"kind": "http", "request": {}}, good]) + log.tail()
    assert log.invalid == 1 and log.entries == 1
    assert len(json.loads(data)["log"]["entries"]) == 1


def test_har_and_flow_log_cannot_share_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["-p", "0", "--flow-log", "-", "--har", "-"])
    assert info.value.code == 2
    assert "cannot both write to stdout" in capsys.readouterr().err
