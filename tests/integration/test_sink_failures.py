"""Outputs that cannot be written (issue 14 item 5).

At start, an unwritable ``--flow-log``, ``--har``, ``--pcap`` or
``--capture-bodies`` stops the proxy with exit 2 and a message in words. An
output that fails later (a full disk: ``/dev/full``, or a tiny tmpfs as
root) is reported once on stderr; what it could not write is counted, in
the SIGUSR1 stats and in the exit summary, while the proxy keeps proxying.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_setup_errors import run_proxy
from tests.support.mounts import read_only_dir, tiny_fs
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams


@pytest.mark.parametrize(
    ("option", "name"),
    [("--flow-log", "f.jsonl"), ("--har", "f.har"), ("--pcap", "f.pcapng")],
)
def test_unwritable_file_output_fails_at_start(tmp_path: Path, option: str, name: str) -> None:
    with read_only_dir(tmp_path / "ro") as ro:
        done = run_proxy(option, str(ro / name))
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert err.startswith(f"tapproxy: {option} {ro / name}: cannot write this file: "), err
    assert "read-only" in err or "permission denied" in err, err
    assert "Errno" not in err and "listening" not in err, err


def test_output_path_that_is_a_directory_fails_at_start(tmp_path: Path) -> None:
    done = run_proxy("--har", str(tmp_path))
    assert done.returncode == 2
    assert f"--har {tmp_path}: cannot write this file: it is a directory" in done.stderr


@pytest.mark.parametrize("sub", ["", "bodies"], ids=["read-only", "under-read-only"])
def test_unwritable_capture_dir_fails_at_start(tmp_path: Path, sub: str) -> None:
    with read_only_dir(tmp_path / "ro") as ro:
        target = ro / sub if sub else ro
        done = run_proxy("--capture-bodies", str(target))
    assert done.returncode == 2, done.stderr
    assert f"--capture-bodies {target}: cannot write body files in this directory: " in (
        done.stderr
    )


def test_capture_dir_that_is_a_file_fails_at_start(tmp_path: Path) -> None:
    file = tmp_path / "bodies"
    file.write_text("")
    done = run_proxy("--capture-bodies", str(file))
    assert done.returncode == 2
    assert f"--capture-bodies {file}: cannot write body files" in done.stderr


def fetch(p: ProxyProcess, url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": p.url}))
    with opener.open(url, timeout=15) as r:
        r.read()
        return int(r.status)


def stats_then_stop(p: ProxyProcess) -> dict[str, int]:
    """SIGUSR1's stats line (after the writes settled), then a clean stop."""
    time.sleep(0.5)  # the sinks' writer thread hands over every 50 ms
    p.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    assert p.stop() == 0
    [line] = [x for x in p.stderr_text.splitlines() if x.startswith("tapproxy-stats ")]
    stats: dict[str, int] = json.loads(line.split(" ", 1)[1])
    return stats


def test_flow_log_on_a_full_disk_is_reported_once_and_counted(upstreams: Upstreams) -> None:
    p = start_proxy("--flow-log", "/dev/full")
    for i in range(5):
        assert fetch(p, f"{upstreams.url}/echo/{i}") == 200  # proxying goes on
    stats = stats_then_stop(p)
    err = p.stderr_text
    assert err.count("cannot write flow log /dev/full: no space left on the device") == 1, err
    assert stats["lost_flow_log"] == 5, stats
    assert "tapproxy: lost because an output failed: 5 flow-log records" in err, err


def test_tiny_disk_fills_up_under_har_pcap_and_bodies(tmp_path: Path, upstreams: Upstreams) -> None:
    with tiny_fs(tmp_path / "tiny", "64k") as tiny:
        p = start_proxy(
            "--har", str(tiny / "f.har"), "--pcap", str(tiny / "f.pcapng"),
            "--capture-bodies", str(tiny / "bodies"), "--body-preview", "256",
        )  # fmt: skip
        for i in range(8):
            assert fetch(p, f"{upstreams.url}/bytes/{30000 + i}") == 200
        stats = stats_then_stop(p)
    err = p.stderr_text
    assert stats["lost_pcap"] > 0, (stats, err)
    assert stats["lost_body_files"] > 0, (stats, err)
    for what in ("PCAP file", "body file"):
        assert err.count(f"cannot write {what}") == 1, err
    assert "no space left on the device" in err, err
    [summary] = [x for x in err.splitlines() if "lost because an output failed" in x]
    assert "PCAP packet" in summary and "body file" in summary, summary
    if stats["lost_har"]:
        assert err.count("cannot write HAR file") == 1, err
        assert "HAR entr" in summary, summary
