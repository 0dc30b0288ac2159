"""Flow log rotation by size (proxy/sinks/rotate.py through JsonlSink)."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from proxy.sinks.jsonl import JsonlSink
from proxy.sinks.rotate import RotatingFile, count_arg, parse_size, size_arg
from tests.unit.test_har_entry import make_record


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1", 1),
        ("4096", 4096),
        ("10k", 10 * 1024),
        ("10M", 10 * 1024**2),
        ("1G", 1024**3),
        ("2MB", 2 * 1024**2),
        ("3MiB", 3 * 1024**2),
        (" 5 m ", 5 * 1024**2),
        ("7b", 7),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-1", "0", "1.5M", "10X", "10 M B"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
    with pytest.raises(argparse.ArgumentTypeError):
        size_arg(text)


def test_count_arg() -> None:
    assert count_arg("0") == 0 and count_arg("5") == 5
    for bad in ("-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            count_arg(bad)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def test_rotates_between_lines_and_keeps_n(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    f = RotatingFile(str(path), max_size=100, keep=2)
    lines = [b"%02d" % i + b"x" * 37 + b"\n" for i in range(10)]  # 40 bytes each
    for line in lines:
        f.write_lines([line])
    f.close()
    # 2 lines per file: 0-1, 2-3, 4-5, 6-7, 8-9; only the newest 3 files remain
    assert lines_of(path) == lines[8:10]
    assert lines_of(tmp_path / "f.jsonl.1") == lines[6:8]
    assert lines_of(tmp_path / "f.jsonl.2") == lines[4:6]
    assert not (tmp_path / "f.jsonl.3").exists()
    assert f.rotations == 4


def test_shared_writers_rotate_as_one(tmp_path: Path) -> None:
    """Two writers (two workers) on one path: one size limit, one numbering, no loss."""
    path = str(tmp_path / "log")
    a = RotatingFile(path, max_size=100, keep=50, shared=True)
    b = RotatingFile(path, max_size=100, keep=50, shared=True)
    written = []
    for i in range(60):
        line = b"%s %02d ..........\n" % (b"ab"[i % 2 : i % 2 + 1], i)  # 16 bytes
        (a if i % 2 == 0 else b).write_lines([line])
        written.append(line)
    a.close()
    b.close()
    files = [path, *(f"{path}.{n}" for n in range(50, 0, -1))]
    found = [
        line for f in files if Path(f).exists() for line in Path(f).read_bytes().splitlines(True)
    ]
    assert sorted(found) == sorted(written)
    assert all(Path(f).stat().st_size <= 100 for f in files if Path(f).exists())
    assert (tmp_path / "log.lock").stat().st_mode & 0o777 == 0o600


def test_batches_are_split_at_line_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    f = RotatingFile(str(path), max_size=100, keep=10)
    lines = [b"y" * (10 + 7 * i) + b"\n" for i in range(12)]
    f.write_lines(lines[:7])
    f.write_lines(lines[7:])
    f.close()
    files = [path, *sorted(tmp_path.glob("f.jsonl.*"), key=lambda p: -int(p.suffix[1:]))]
    files = files[1:] + files[:1]  # oldest first
    got = [line for p in files for line in lines_of(p)]
    assert got == lines
    for p in files:
        data = p.read_bytes()
        assert data.endswith(b"\n")
        assert len(data) <= 100 or data.count(b"\n") == 1


def test_oversized_line_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    f = RotatingFile(str(path), max_size=50, keep=5)
    f.write_lines([b"a\n", b"B" * 200 + b"\n", b"c\n"])
    f.close()
    assert lines_of(tmp_path / "f.jsonl.2") == [b"a\n"]
    assert lines_of(tmp_path / "f.jsonl.1") == [b"B" * 200 + b"\n"]
    assert lines_of(path) == [b"c\n"]


def test_existing_file_counts_toward_the_size(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"z" * 90 + b"\n")
    f = RotatingFile(str(path), max_size=100, keep=1)
    f.write_lines([b"0123456789\n"])
    f.close()
    assert lines_of(tmp_path / "f.jsonl.1") == [b"z" * 90 + b"\n"]
    assert lines_of(path) == [b"0123456789\n"]


def test_keep_zero_discards_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    f = RotatingFile(str(path), max_size=10, keep=0)
    f.write_lines([b"first...\n", b"second..\n"])
    f.close()
    assert lines_of(path) == [b"second..\n"]
    assert list(tmp_path.iterdir()) == [path]


def test_no_limit_never_rotates(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    f = RotatingFile(str(path))
    f.write_lines([b"x" * 1000 + b"\n"] * 20)
    f.close()
    assert len(lines_of(path)) == 20 and f.rotations == 0


def test_torn_line_does_not_swallow_the_next(tmp_path: Path) -> None:
    """Disk full mid-line: write(2) stores a few bytes, then fails; the next line is whole."""
    path = tmp_path / "f.jsonl"
    f = RotatingFile(str(path))
    f.write_lines([b'{"a":1}\n'])
    assert f._file is not None
    real: IO[bytes] = f._file

    class Full(io.RawIOBase):
        calls = 0

        def write(self, b: Any) -> int:
            self.calls += 1
            if self.calls == 1:
                return real.write(bytes(b)[:4])  # a short write
            raise OSError(28, "No space left on device")

    f._file = Full()  # type: ignore[assignment]
    with pytest.raises(OSError):
        f.write_lines([b'{"b":2}\n'])
    f._file = real
    f.write_lines([b'{"c":3}\n'])
    f.close()
    assert path.read_bytes() == b'{"a":1}\n{"b"\n{"c":3}\n'
    assert f.size == path.stat().st_size


def test_jsonl_sink_rotates_records_whole(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    sink = JsonlSink(str(path), max_size=2000, keep=3)
    for batch in range(6):
        sink.write_batch([make_record(url=f"http://h/{batch}/{i}") for i in range(3)])
    sink.close()
    files = [path] + [tmp_path / f"flows.jsonl.{n}" for n in (1, 2, 3)]
    assert all(p.exists() for p in files) and not (tmp_path / "flows.jsonl.4").exists()
    assert sink.rotations >= 3 and sink.errors == 0
    for p in files:
        assert p.stat().st_size <= 2000
        for line in p.read_text().splitlines():
            assert json.loads(line)["schema"] == 3


def test_jsonl_stdout_ignores_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8"))
    sink = JsonlSink("-", max_size=10, keep=1)
    sink.write_batch([make_record() for _ in range(3)])
    sink.write_dropped(2)
    sink.close()
    recs = [json.loads(line) for line in raw.getvalue().splitlines()]
    assert [r["kind"] for r in recs] == ["http", "http", "http", "dropped"]
    assert sink.rotations == 0


def test_jsonl_unwritable_path_reported_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = JsonlSink(str(tmp_path / "no-such-dir" / "flows.jsonl"), max_size=100)
    sink.write_batch([make_record(), make_record()])
    sink.write_dropped(1)
    sink.close()
    err = capsys.readouterr().err
    assert err.count("cannot write flow log") == 1
    assert sink.errors == 3 and sink.lost == 3


def test_jsonl_resumes_when_the_path_becomes_writable(tmp_path: Path) -> None:
    directory = tmp_path / "later"
    sink = JsonlSink(str(directory / "flows.jsonl"))
    sink.write_batch([make_record()])
    directory.mkdir()
    sink.write_batch([make_record()])
    sink.close()
    assert len((directory / "flows.jsonl").read_text().splitlines()) == 1
    assert sink.lost == 1
