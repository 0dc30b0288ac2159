"""--capture-bodies: bodies longer than the preview go to files named in the record."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import requests

from tests.support.proxyproc import running_proxy
from tests.support.upstreams import Upstreams, pattern_sha256


def test_large_bodies_written_small_ones_not(upstreams: Upstreams, tmp_path: Path) -> None:
    caps = tmp_path / "caps"
    args = ["--capture-bodies", str(caps), "--body-preview", "64", "--capture-max-body", "100000"]
    with running_proxy(*args, flow_log=tmp_path / "f.jsonl") as p:
        proxies = {"http": p.url}
        requests.post(f"{upstreams.url}/upload", data=b"u" * 5000, proxies=proxies, timeout=10)
        requests.get(f"{upstreams.url}/bytes/50000", proxies=proxies, timeout=10)
        requests.get(f"{upstreams.url}/bytes/300000", proxies=proxies, timeout=10)
        requests.get(f"{upstreams.url}/bytes/10", proxies=proxies, timeout=10)
        recs = p.records(4)
    upload, mid, big, small = recs
    assert Path(upload["request"]["body_file"]).read_bytes() == b"u" * 5000
    got = Path(mid["response"]["body_file"]).read_bytes()
    assert hashlib.sha256(got).hexdigest() == pattern_sha256(50000)
    # Over --capture-max-body: the file holds the first part and says so.
    assert Path(big["response"]["body_file"]).stat().st_size == 100000
    assert big["response"]["body_file_truncated"] is True
    assert "body_file" not in small["response"]  # the preview holds it
    assert stat.S_IMODE(caps.stat().st_mode) == 0o700


def test_total_budget_stops_new_files(upstreams: Upstreams, tmp_path: Path) -> None:
    caps = tmp_path / "caps"
    args = ["--capture-bodies", str(caps), "--body-preview", "0", "--capture-max-total", "150000"]
    with running_proxy(*args, flow_log=tmp_path / "f.jsonl") as p:
        for _ in range(3):
            requests.get(f"{upstreams.url}/bytes/60000", proxies={"http": p.url}, timeout=10)
        recs = p.records(3)
    written = [r for r in recs if "body_file" in r["response"]]
    assert len(written) == 2  # 2 x 60000 fit in 150000, the third does not
    assert all(Path(r["response"]["body_file"]).exists() for r in written)


def test_rule_log_capture_writes_every_body(upstreams: Upstreams, tmp_path: Path) -> None:
    rules = tmp_path / "capture.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: keep-echo\n    match: {path: {prefix: /echo}}\n"
        f"    log: {{capture: {tmp_path / 'rulecaps'}}}\n"
    )
    with running_proxy("--rules", str(rules), flow_log=tmp_path / "f.jsonl") as p:
        requests.get(f"{upstreams.url}/echo/kept", proxies={"http": p.url}, timeout=10)
        requests.get(f"{upstreams.url}/bytes/10", proxies={"http": p.url}, timeout=10)
        kept, other = p.records(2)
    assert b'"path": "/echo/kept"' in Path(kept["response"]["body_file"]).read_bytes()
    assert "body_file" not in other["response"]
