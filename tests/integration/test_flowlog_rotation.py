"""``--flow-log-max-size`` / ``--flow-log-keep`` on a live proxy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.proxyproc import start_proxy
from tests.support.upstreams import Upstreams


def test_rotation_on_a_live_proxy(tmp_path: Path, upstreams: Upstreams) -> None:
    log = tmp_path / "flows.jsonl"
    proxy = start_proxy("--flow-log-max-size", "4K", "--flow-log-keep", "2", flow_log=log)
    try:
        with requests.Session() as s:
            for i in range(30):
                r = s.get(f"{upstreams.url}/echo/{i}", proxies={"http": proxy.url}, timeout=10)
                assert r.status_code == 200
    finally:
        assert proxy.stop() == 0
    files = [tmp_path / "flows.jsonl.2", tmp_path / "flows.jsonl.1", log]
    assert all(p.exists() for p in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)
    paths: list[str] = []
    for p in files:
        data = p.read_bytes()
        assert 0 < len(data) <= 4096 and data.endswith(b"\n")
        paths += [
            json.loads(line)["request"]["url"].rsplit("/", 1)[1] for line in data.splitlines()
        ]
    # the newest records, in order, none split or repeated; the oldest were dropped
    assert paths == [str(i) for i in range(30 - len(paths), 30)]
    assert 6 <= len(paths) < 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flow-log-max-size", "ten"], "not a size"),
        (["--flow-log-max-size", "0"], "size must be positive"),
        (["--flow-log-keep", "-1"], "must be 0 or more"),
    ],
)
def test_bad_rotation_options(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "proxy", "-p", "0", "--flow-log", str(tmp_path / "f"), *args],
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert proc.returncode == 2 and message in proc.stderr
