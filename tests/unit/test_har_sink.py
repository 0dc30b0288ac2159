"""The live HAR sink: a valid document after every batch, and after a crash."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import jsonschema
import pytest
from haralyzer import HarParser

from proxy import __version__
from proxy.flow.record import FlowRecord, TunnelInfo
from proxy.sinks.har import HarSink
from tests.unit.test_har_entry import SCHEMA, T0, make_record, msg


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_bytes())
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    HarParser(doc)
    return doc


def records(n: int, start: int = 0) -> list[FlowRecord]:
    return [
        make_record(url=f"http://127.0.0.1:9000/r/{i}", id=f"{i:016x}")
        for i in range(start, start + n)
    ]


def test_valid_after_every_batch(tmp_path: Path) -> None:
    path = tmp_path / "s.har"
    sink = HarSink(str(path))
    doc = load(path)
    assert doc["log"]["entries"] == []
    assert doc["log"]["creator"] == {"name": "tapproxy", "version": __version__}
    assert doc["log"]["version"] == "1.2"
    total = 0
    for size in (1, 3, 0, 7):
        sink.write_batch(records(size, total))
        total += size
        doc = load(path)
        urls = [e["request"]["url"] for e in doc["log"]["entries"]]
        assert urls == [f"http://127.0.0.1:9000/r/{i}" for i in range(total)]
    sink.close()
    assert len(load(path)["log"]["entries"]) == total


def test_non_http_and_dropped_are_counted_in_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "s.har"
    sink = HarSink(str(path))
    tunnel = make_record(
        b"CONNECT", url="h:443", kind="tunnel", tunnel=TunnelInfo(1, 1, "fin", "fin")
    )
    tcp = FlowRecord("t", "tcp", "tcp:h:1", T0, T0 + 1, ("127.0.0.1", 1), ("127.0.0.1", 2))
    sink.write_batch([tunnel, *records(2), tcp, tcp])
    sink.write_dropped(1234567)
    doc = load(path)
    assert len(doc["log"]["entries"]) == 2
    assert doc["log"]["_tapproxy"] == {"dropped": 1234567, "skipped": {"tcp": 2, "tunnel": 1}}
    sink.write_batch(records(1, 2))
    sink.write_dropped(1)
    sink.close()
    doc = load(path)
    assert len(doc["log"]["entries"]) == 3 and doc["log"]["_tapproxy"]["dropped"] == 1234568


_CRASH = """
import os, sys
from proxy.sinks.har import HarSink
from tests.unit.test_har_sink import records
sink = HarSink(sys.argv[1])
for i in range(3):
    sink.write_batch(records(4, 4 * i))
os._exit(9)  # no close(), no interpreter cleanup: like a SIGKILL
"""


def test_crash_leaves_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "crash.har"
    root = Path(__file__).parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, str(path)], cwd=root, timeout=60, capture_output=True
    )
    assert proc.returncode == 9, proc.stderr
    assert len(load(path)["log"]["entries"]) == 12


def test_open_failure_is_reported_once_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = HarSink(str(tmp_path / "missing-dir" / "s.har"))
    sink.write_batch(records(2))
    sink.write_batch(records(3))
    sink.close()
    err = capsys.readouterr().err
    assert err.count("cannot write HAR file") == 1
    assert sink.errors == 3 and sink.lost == 5


def test_failed_write_heals_on_the_next_batch(tmp_path: Path) -> None:
    """A batch that fails is lost, but the file stays valid and commas stay right."""
    path = tmp_path / "s.har"
    sink = HarSink(str(path))
    sink.write_batch(records(1))
    assert sink._file is not None
    real: IO[bytes] = sink._file

    class Full(io.RawIOBase):
        def seek(self, *a: Any) -> int:
            return real.seek(*a)

        def write(self, b: Any) -> int:
            real.write(bytes(b)[:5])  # a torn write, then the disk is full
            raise OSError(28, "No space left on device")

    sink._file = Full()  # type: ignore[assignment]
    sink.write_batch(records(2, 1))
    assert sink.lost == 2 and sink.errors == 1
    sink._file = real
    sink.write_batch(records(1, 3))
    sink.close()
    urls = [e["request"]["url"] for e in load(path)["log"]["entries"]]
    assert urls == ["http://127.0.0.1:9000/r/0", "http://127.0.0.1:9000/r/3"]


def test_stdout_streams_and_completes_at_close(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buf))
    sink = HarSink("-")
    sink.write_batch(records(2))
    sink.write_dropped(3)
    sink.write_batch(records(1, 2))
    sink.close()
    doc = json.loads(buf.getvalue())
    assert len(doc["log"]["entries"]) == 3 and doc["log"]["_tapproxy"]["dropped"] == 3


def test_file_is_replaced_not_appended(tmp_path: Path) -> None:
    path = tmp_path / "s.har"
    path.write_text("old content that is much longer than a fresh empty HAR document " * 50)
    HarSink(str(path)).close()
    assert load(path)["log"]["entries"] == []
    assert os.path.getsize(path) < 200


def test_bodies_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.har"
    sink = HarSink(str(path))
    sink.write_batch([make_record(resp=msg(((b"Content-Type", b"text/plain"),), b"\xe2\x9c\x93"))])
    sink.close()
    assert load(path)["log"]["entries"][0]["response"]["content"]["text"] == "\u2713"
