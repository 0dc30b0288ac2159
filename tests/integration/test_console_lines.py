"""Console lines a user reads without ``-v`` (issue 14 items 6 and 8).

* a rules reload error is one notice on stderr, never a flow line;
* mocked, blocked, delayed and aborted responses are marked, naming the rule;
* a tunnel's line shows the bytes each way, not ``--- -``;
* the startup line says which rules files, MitM and outputs are active.
"""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.request
from pathlib import Path

from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams

MARK_RULES = """\
version: 1
rules:
  - name: stub
    match: {host: marks.svc, path: /mock}
    respond: {status: 200, body: "mocked\\n"}
  - name: deny
    match: {host: marks.svc, path: /block}
    block: {status: 403}
  - name: boom
    match: {host: marks.svc, path: /abort}
    fault: {abort: {status: 503}}
  - name: slow
    match: {path: /echo/slow}
    fault: {phase: request, delay: {ms: 50}}
"""


def get(p: ProxyProcess, url: str) -> int:
    proxy = urllib.request.ProxyHandler({"http": p.url})
    opener = urllib.request.build_opener(proxy)
    try:
        with opener.open(url, timeout=10) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def wait_for(p: ProxyProcess, path: Path, expect: int) -> None:
    """Until the flow log has ``expect`` records: their console lines are out too."""
    assert len(p.records(expect)) >= expect


def line_with(text: str, needle: str) -> str:
    [line] = [x for x in text.splitlines() if needle in x]
    return line


def test_rule_effects_are_marked_without_verbose(tmp_path: Path, upstreams: Upstreams) -> None:
    rules = tmp_path / "marks.yaml"
    rules.write_text(MARK_RULES)
    log = tmp_path / "flows.jsonl"
    p = start_proxy("--rules", str(rules), flow_log=log, quiet=False)
    try:
        assert get(p, "http://marks.svc/mock") == 200
        assert get(p, "http://marks.svc/block") == 403
        assert get(p, "http://marks.svc/abort") == 503
        assert get(p, upstreams.url + "/echo/slow") == 200
        assert get(p, upstreams.url + "/echo/plain") == 200
        wait_for(p, log, 5)
    finally:
        p.stop()
    out = p.stdout_text()
    assert line_with(out, "/mock ").endswith("[mocked by stub]"), out
    assert line_with(out, "/block ").endswith("[blocked by deny]"), out
    assert line_with(out, "/abort ").endswith("[aborted by boom]"), out
    assert line_with(out, "/echo/slow ").endswith("[delayed by slow]"), out
    assert "[" not in line_with(out, "/echo/plain "), out


def test_tunnel_line_shows_bytes_each_way(tmp_path: Path, upstreams: Upstreams) -> None:
    log = tmp_path / "flows.jsonl"
    p = start_proxy(flow_log=log, quiet=False)
    try:
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % upstreams.port)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            s.sendall(b"GET /bytes/3000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        assert got.endswith(b"\r\n\r\n" + got.split(b"\r\n\r\n", 1)[1])
        wait_for(p, log, 1)
    finally:
        p.stop()
    line = line_with(p.stdout_text(), "CONNECT ")
    assert "--- -" not in line, line
    m = re.search(r" up (\d+)b down (\d+\.\d)k ", line)
    assert m is not None, line
    assert int(m.group(1)) > 40 and float(m.group(2)) >= 2.9, line


def test_rules_reload_error_is_one_notice_not_a_flow(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(MARK_RULES)
    log = tmp_path / "flows.jsonl"
    p = start_proxy("--rules", str(rules), flow_log=log, quiet=False)
    try:
        tmp = rules.with_name(".r.tmp")
        tmp.write_text(MARK_RULES.replace("path: /mock", "method: get"))  # lower case: refused
        os.replace(tmp, rules)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(r["kind"] == "rules_error" for r in p.records(0, timeout=0)):
                break
            time.sleep(0.1)
        time.sleep(1.5)  # a second poll: the same broken file is not reported again
    finally:
        p.stop()
    err, out = p.stderr_text, p.stdout_text()
    assert err.count("rules not reloaded") == 1, err
    assert "RULES_ERROR" not in out and "RULES_ERROR" not in err, out
    assert out.strip() == "", out  # no flow happened: no flow line


def test_startup_line_names_what_is_active(tmp_path: Path) -> None:
    rules = tmp_path / "marks.yaml"
    rules.write_text(MARK_RULES)
    log, har = tmp_path / "flows.jsonl", tmp_path / "flows.har"
    p = start_proxy("--rules", str(rules), "--har", str(har), flow_log=log)
    p.stop()
    [line] = [x for x in p.stderr_text.splitlines() if x.startswith("tapproxy: active:")]
    assert f"rules {rules} (4 rules)" in line, line
    assert "MitM off" in line, line
    assert f"flow log {log}" in line and f"HAR {har}" in line, line
    assert "PCAP" not in line, line
