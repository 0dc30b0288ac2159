"""Checking rule files, and hot reload in a live proxy (bar b).

``tapproxy rules check`` names file:line:column and exits 1 on a broken file.
A running proxy polls its rule files every second: a broken edit keeps the
previous rules (stderr and a ``rules_error`` flow record say why), a fixed
file applies, a new file in a rules folder is picked up, and ``times``
counters start again after a reload. All waits are bounded polls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.rules_support import DATA, EXAMPLES, Origin, curl, rules_proxy
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams


def check(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "rules", "check", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_atomically(path: Path, text: str) -> None:
    """Replace a rules file the way editors and git checkouts do (no half-written reads)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def poll(condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# -- tapproxy rules check ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "where", "what"),
    [
        ("reload-broken.yaml", ":7:39:", "case-sensitive"),
        ("broken-syntax.yaml", ":6:12:", "YAML syntax"),
    ],
)
def test_check_reports_file_line_column(name: str, where: str, what: str) -> None:
    r = check(DATA / name)
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert f"{DATA / name}{where}" in out and what in out, out


def test_check_accepts_every_example() -> None:
    r = check(*sorted(EXAMPLES.glob("*.yaml")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok: ")


def test_proxy_refuses_to_start_with_a_broken_file() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "-q",
            "-p",
            "0",
            "--rules",
            str(DATA / "reload-broken.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert f"{DATA / 'reload-broken.yaml'}:7:39:" in r.stderr


# -- hot reload ------------------------------------------------------------------------------


def body_of(p: ProxyProcess) -> bytes:
    r = curl(p, "http://reload.svc/")
    assert r.status == 200, r
    return r.body


def test_broken_edit_keeps_rules_then_fix_applies(tmp_path: Path) -> None:
    rules = tmp_path / "reload.yaml"
    rules.write_text((DATA / "reload-v1.yaml").read_text())
    log = tmp_path / "flows.jsonl"
    p = start_proxy("--rules", str(rules), flow_log=log)
    try:
        assert body_of(p) == b"v1\n"
        write_atomically(rules, (DATA / "reload-broken.yaml").read_text())

        def rules_errors() -> list[dict[str, object]]:
            return [r for r in p.records(0, timeout=0) if r["kind"] == "rules_error"]

        assert poll(lambda: bool(rules_errors())), "no rules_error record within 10 s"
        (err,) = rules_errors()
        assert f"{rules}:7:39:" in str(err["error"])
        assert "keeping the previous" in str(err["error"])
        assert body_of(p) == b"v1\n"  # the previous rules are still in force
        time.sleep(1.5)  # measured: no second report for the same broken file (polls 1/s)
        assert len(rules_errors()) == 1
        assert body_of(p) == b"v1\n"

        write_atomically(rules, (DATA / "reload-v2.yaml").read_text())
        assert poll(lambda: body_of(p) == b"v2\n"), "the fixed file was not applied"
        recs = [r for r in p.records(0, timeout=0) if r["kind"] == "http"]
        assert recs[-1]["rules"]["matched"][0]["rule"] == "version"
    finally:
        p.stop()
    assert p.proc.returncode == 0
    stderr = p.stderr_text
    assert "rules not reloaded, keeping the previous ones" in stderr
    assert f"{rules}:7:39: rules[0].match.method" in stderr
    assert "rules reloaded (1 rule)" in stderr


def test_new_file_in_rules_folder_is_loaded(tmp_path: Path) -> None:
    folder = tmp_path / "rules"  # rules_proxy loads this folder
    with rules_proxy(tmp_path, "data/reload-v1.yaml") as p:
        assert body_of(p) == b"v1\n"
        extra = "version: 1\nrules:\n  - name: extra\n    match: {path: /extra}\n" \
                "    respond: {status: 201, body: \"extra\\n\"}\n"  # fmt: skip
        write_atomically(folder / "20-extra.yaml", extra)

        def extra_applies() -> bool:
            return curl(p, "http://any.svc/extra").status == 201

        assert poll(extra_applies), "a new file in the folder was not loaded"
        assert body_of(p) == b"v1\n"


def test_times_counters_restart_after_reload(tmp_path: Path, upstreams: Upstreams) -> None:
    """percent-times.yaml: first-three-fail fails three requests, and three more after
    the file changes (the counters of a reloaded rule set start at zero)."""
    origin = Origin(upstreams)
    try:
        with rules_proxy(tmp_path, "examples/percent-times.yaml", origin=origin) as p:
            assert [curl(p, f"http://orders.svc/a{i}").status for i in range(4)] == [
                500, 500, 500, 200,
            ]  # fmt: skip
            path = tmp_path / "rules" / "10-percent-times.yaml"
            write_atomically(path, path.read_text() + "# touched\n")
            seen: list[int] = []

            def failed_again() -> bool:
                seen.append(curl(p, "http://orders.svc/b").status)
                return seen[-1] == 500

            assert poll(failed_again, step=0.2), seen
            assert [curl(p, f"http://orders.svc/c{i}").status for i in range(3)] == [
                500, 500, 200,
            ]  # fmt: skip
    finally:
        origin.close()
