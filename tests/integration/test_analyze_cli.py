"""``tapproxy analyze`` command line: output, JSON shape, progress, errors."""

from __future__ import annotations

import io
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from proxy.cli.analyze_cmd import main
from proxy.pcap.writer import PcapngWriter

GET = b"GET /x HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


def hello() -> bytes:
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="tls.example")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.fixture
def cap(tmp_path: Path) -> Path:
    path = tmp_path / "cap.pcapng"
    f = io.BytesIO()
    w = PcapngWriter(f)
    web = w.open_conversation(("10.0.0.1", 40000), ("10.0.0.2", 80), 100.0, "a")
    web.data(100.1, True, GET)
    web.data(100.2, False, OK)
    web.close(100.3)
    tls = w.open_conversation(("10.0.0.1", 40001), ("10.0.0.3", 443), 101.0, "b")
    tls.data(101.1, True, hello())
    tls.data(101.2, False, b"\x16\x03\x03\x00\x01x")
    tls.close(101.3)
    raw = w.open_conversation(("fd00::1", 40002), ("fd00::2", 22), 102.0, "c")
    raw.data(102.1, False, b"SSH-2.0-x\r\n")
    raw.close(102.2, rst=True)
    path.write_bytes(f.getvalue())
    return path


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[dict[str, Any]], str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_records_to_stdout(cap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, recs, err = run([str(cap), "--no-progress"], capsys)
    assert code == 0 and err == ""
    web, tls, raw = recs
    # The live proxy's flow-log schema (docs/flow-log.md), mode "capture".
    assert {k: web[k] for k in ("schema", "id", "kind", "mode", "client", "server", "error")} == {
        "schema": 3, "id": "1-1", "kind": "http", "mode": "capture",
        "client": {"ip": "10.0.0.1", "port": 40000}, "server": {"ip": "10.0.0.2", "port": 80},
        "error": None,
    }  # fmt: skip
    assert web["request"] == {
        "method": "GET", "url": "http://example.com/x", "http_version": "HTTP/1.1",
        "headers": [["Host", "example.com"], ["Accept", "*/*"]], "body_size": 0,
    }  # fmt: skip
    assert web["response"] == {
        "status": 200, "reason": "OK", "http_version": "HTTP/1.1",
        "headers": [["Content-Length", "2"]], "body_size": 2, "source": "upstream",
    }  # fmt: skip
    assert web["duration_ms"] == 100.0 and web["timings_ms"]["response_done"] == 100.0
    assert tls["kind"] == "tunnel" and tls["tls"]["intercepted"] is False
    assert tls["tls"]["client"]["sni"] == "tls.example"
    assert tls["tls"]["client"]["offered_alpn"] == ["h2"]
    assert tls["tunnel"]["bytes_server_to_client"] == 6 and tls["tunnel"]["server_close"] == "fin"
    assert raw["kind"] == "tcp" and raw["server"] == {"ip": "fd00::2", "port": 22}
    assert raw["tunnel"] == {
        "bytes_client_to_server": 0, "bytes_server_to_client": 11,
        "client_close": "rst", "server_close": "rst",
    }  # fmt: skip


def test_output_file_filter_and_previews(cap: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert main([str(cap), "-o", str(out), "--filter", "tcp port 80", "--body-preview", "1"]) == 0
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["response"]["body_preview"] == {"data": "h", "encoding": "utf-8", "truncated": True}
    assert main([str(cap), "-o", str(out), "--filter", "ip6"]) == 0
    assert [json.loads(x)["kind"] for x in out.read_text().splitlines()] == ["tcp"]


def test_progress_line(cap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, recs, err = run([str(cap), "--progress"], capsys)
    assert code == 0 and len(recs) == 3
    assert "100.0%" in err and "packets/s" in err and "3 records" in err


def test_corrupt_capture_keeps_what_was_decoded(
    cap: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = cap.read_bytes()
    cut = data.index(b"SSH-2.0")  # inside the third conversation's data packet
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(data[:cut])
    out = tmp_path / "out.jsonl"
    assert main([str(bad), "-o", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "truncated block at byte offset" in err and str(bad) in err
    kinds = [json.loads(x)["kind"] for x in out.read_text().splitlines()]
    assert kinds == ["http", "tunnel", "tcp"]  # the open connection is closed as the capture ended


def test_usage_errors(cap: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(cap), "--filter", "port 80 and"]) == 2
    assert "invalid filter" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pcap")]) == 1
    assert "cannot open" in capsys.readouterr().err
    assert main(["--format", "har", str(cap)]) == 2
    assert main(["--help"]) == 0
    not_capture = tmp_path / "x.txt"
    not_capture.write_text("hello, world, this is text")
    assert main([str(not_capture)]) == 1
    assert "not a pcap or pcapng file" in capsys.readouterr().err


def test_rules_tag_flows_and_convert_reads_the_output(cap: Path, tmp_path: Path) -> None:
    rules = tmp_path / "tags.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: example-site\n    match: {host: example.com}\n"
        "    log: {tags: [example]}\n"
    )
    out = tmp_path / "out.jsonl"
    assert main([str(cap), "-o", str(out), "--rules", str(rules), "--no-progress"]) == 0
    web = json.loads(out.read_text().splitlines()[0])
    assert web["rules"]["tags"] == ["example"]
    assert web["rules"]["matched"][0]["rule"] == "example-site"
    # Same schema as the live flow log: tapproxy convert makes a HAR of it.
    from proxy.cli.convert_cmd import main as convert

    har = tmp_path / "cap.har"
    assert convert([str(out), "--to", "har", "-o", str(har)]) == 0
    entries = json.loads(har.read_text())["log"]["entries"]
    assert [e["request"]["url"] for e in entries] == ["http://example.com/x"]
