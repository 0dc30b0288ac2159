"""``--view-filter EXPR`` through a live proxy: curl sends a mix of requests,
and only the flows the expression matches reach the console and the flow
log; a bad expression stops the start with its column (docs/filters.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.proxyproc import ProxyProcess, record_for, start_proxy
from tests.support.upstreams import Upstreams

EXPR = "~m POST & ~bq needle | ~hq '^x-keep: yes$' | ~bs 'echoed-in-body'"


def curl(p: ProxyProcess, url: str, *args: str) -> None:
    subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", "-x", p.url, *args, url],
        check=True,
        timeout=20,
    )


def test_only_matching_flows_are_printed_and_logged(tmp_path: Path, upstreams: Upstreams) -> None:
    log = tmp_path / "flows.jsonl"
    p = start_proxy("--view-filter", EXPR, flow_log=log, quiet=False)
    base = upstreams.url
    try:
        curl(p, f"{base}/echo/skip")
        curl(p, f"{base}/echo/post-a", "-d", "needle=1")  # ~m POST & ~bq needle
        curl(p, f"{base}/echo/post-b", "-d", "other=1")  # POST without the needle
        curl(p, f"{base}/echo/hdr", "-H", "X-Keep: yes")  # ~hq
        curl(p, f"{base}/echo/hdr-no", "-H", "X-Keep: yes please")  # ^...$ does not match
        curl(p, f"{base}/echo/note", "-H", "X-Note: echoed-in-body")  # the echo's body: ~bs
        curl(p, f"{base}/echo/last", "-H", "X-Keep: yes")
        # Flows are written in the order they end: once the last is there, all are.
        record_for(p, lambda r: r.get("request", {}).get("url", "").endswith("/echo/last"))
    finally:
        assert p.stop() == 0
    logged = [r["request"]["url"].removeprefix(base) for r in p.records()]
    assert logged == ["/echo/post-a", "/echo/hdr", "/echo/note", "/echo/last"]
    console = p.stdout_text()
    printed = [line.split()[3].removeprefix(base) for line in console.splitlines() if line]
    assert printed == logged, console


def test_without_the_option_every_flow_is_logged(tmp_path: Path, upstreams: Upstreams) -> None:
    """The control: the same requests all reach the log without a filter."""
    log = tmp_path / "flows.jsonl"
    p = start_proxy(flow_log=log)
    try:
        curl(p, f"{upstreams.url}/echo/skip")
        curl(p, f"{upstreams.url}/echo/post-b", "-d", "other=1")
        assert len(p.records(2)) == 2
    finally:
        p.stop()


def test_a_bad_expression_is_a_startup_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "-p", "0", "--view-filter", "~d a.com & ~c"],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "tapproxy: --view-filter: expected a status code after '~c' at column 14" in err
    assert err.splitlines()[-1] == "               ^", err  # under column 14
    assert "usage:" not in err
    assert "listening" not in err
