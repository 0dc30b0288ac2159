"""Directories that refuse writes, and tiny file systems that fill up.

As root, permission bits do not stop a write, so a read-only or full
directory is a tmpfs mounted for the test (and unmounted after); as another
user, a directory with mode 0555 stands in for the read-only one, and a
tiny file system is not available (those tests skip).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@contextlib.contextmanager
def read_only_dir(where: Path) -> Iterator[Path]:
    """``where``, existing and empty, where nothing can be created."""
    if os.geteuid() == 0:
        if not _mount_tmpfs(where, "ro,size=64k,mode=0755"):
            pytest.skip("cannot mount a read-only tmpfs here")
        try:
            yield where
        finally:
            _umount(where)
        return
    where.mkdir(parents=True, exist_ok=True)
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


@contextlib.contextmanager
def tiny_fs(where: Path, size: str = "48k") -> Iterator[Path]:
    """A writable tmpfs of ``size`` at ``where``, that a test can fill up."""
    if os.geteuid() != 0 or not _mount_tmpfs(where, f"size={size},mode=0755"):
        pytest.skip("a tiny tmpfs needs root and mount")
    try:
        yield where
    finally:
        _umount(where)
