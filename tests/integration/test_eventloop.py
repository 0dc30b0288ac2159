"""``--loop``: which event loop the proxy runs on.

The relaying itself is tested on uvloop by running the integration suite
with uvloop installed (``--loop auto`` then picks it; README and .ci/run).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.proxyproc import running_proxy
from tests.support.upstreams import Upstreams


def _uvloop_imports() -> bool:
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return False
    return True


UVLOOP = _uvloop_imports()


def _active_line(stderr: str) -> str:
    [line] = [x for x in stderr.splitlines() if x.startswith("tapproxy: active:")]
    return line


def test_uvloop_asked_for_and_missing_is_refused() -> None:
    hide = "import sys; sys.modules['uvloop'] = None; from proxy.cli.main import main; "
    proc = subprocess.run(
        [sys.executable, "-c", hide + "sys.exit(main(['-p', '0', '--loop', 'uvloop']))"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--loop uvloop: uvloop is not installed" in proc.stderr


def test_auto_takes_uvloop_only_when_installed(upstreams: Upstreams) -> None:
    with running_proxy("--loop", "auto") as p:
        r = requests.get(f"{upstreams.url}/echo/x", proxies={"http": p.url}, timeout=10)
        assert r.status_code == 200
    assert ("event loop uvloop" in _active_line(p.stderr_text)) is UVLOOP


def test_asyncio_forced() -> None:
    with running_proxy("--loop", "asyncio") as p:
        pass
    assert "uvloop" not in _active_line(p.stderr_text)


@pytest.mark.skipif(not UVLOOP, reason="uvloop is not installed (pip install -e '.[fast]')")
def test_uvloop_forced_relays(upstreams: Upstreams, tmp_path: Path) -> None:
    with running_proxy("--loop", "uvloop", flow_log=tmp_path / "flows.jsonl") as p:
        with requests.Session() as s:
            for i in range(20):
                r = s.get(f"{upstreams.url}/echo/{i}", proxies={"http": p.url}, timeout=10)
                assert r.status_code == 200
        assert len(p.records(20)) == 20
    assert "event loop uvloop" in _active_line(p.stderr_text)
