"""Setup errors at start say what, where, why and which option fixes it.

Issue 14 item 4 (the certificate directory) and item 5 (unwritable sinks):
the proxy exits 2 before listening, with one message in words (no
``[Errno 13]``, no temporary file path).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mounts import read_only_dir


def run_proxy(*args: str) -> subprocess.CompletedProcess[str]:
    """Start the proxy, which must refuse to start; return its exit and stderr."""
    cmd = [sys.executable, "-m", "proxy", "-q", "-p", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def assert_certs_message(done: subprocess.CompletedProcess[str], directory: Path, why: str) -> None:
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert err.startswith(f"tapproxy: certificate directory {directory}:"), err
    assert why in err and "--certs DIR" in err, err
    assert "Errno" not in err and ".tmp" not in err, err
    assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize("tail", ["certs", "a/b/certs"], ids=["child", "deep"])
def test_certs_under_an_unwritable_parent(tmp_path: Path, tail: str) -> None:
    with read_only_dir(tmp_path / "ro") as ro:
        done = run_proxy("--mitm", "--certs", str(ro / tail))
        why = "read-only" if "read-only" in done.stderr else "permission denied"
        assert_certs_message(done, ro / tail, "cannot create it: ")
        assert why in done.stderr


def test_certs_in_a_read_only_dir(tmp_path: Path) -> None:
    with read_only_dir(tmp_path / "ro") as ro:
        done = run_proxy("--mitm", "--certs", str(ro))
        assert_certs_message(done, ro, "cannot write a new CA in it: ")


def test_certs_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "certs"
    file.write_text("not a directory")
    done = run_proxy("--mitm", "--certs", str(file))
    assert_certs_message(done, file, "it is a file, not a directory")


def test_certs_under_a_file(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("")
    done = run_proxy("--mitm", "--certs", str(file / "certs"))
    assert_certs_message(done, file / "certs", f"its parent {file} is a file")


def test_ca_subcommand_says_the_same(tmp_path: Path) -> None:
    file = tmp_path / "certs"
    file.write_text("")
    cmd = [sys.executable, "-m", "proxy", "ca", "path", "--certs", str(file)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert f"certificate directory {file}: it is a file" in done.stderr


def test_ca_regenerate_in_a_read_only_dir(tmp_path: Path) -> None:
    with read_only_dir(tmp_path / "ro") as ro:
        cmd = [sys.executable, "-m", "proxy", "ca", "regenerate", "--yes", "--certs", str(ro)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert f"certificate directory {ro}: cannot write a new CA in it: " in done.stderr
    assert "--certs DIR" in done.stderr and "Errno" not in done.stderr


def test_ca_export_to_an_unwritable_file(tmp_path: Path) -> None:
    out = tmp_path / "no-such-dir" / "ca.pem"
    cmd = [sys.executable, "-m", "proxy", "ca", "export", "--certs", str(tmp_path / "c"),
           "-o", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert f"error: -o {out}: cannot write it: it or a parent directory does not exist" in (
        done.stderr
    )
